// Shared between the kernels (not part of the module's interface).
#ifndef SPINDLE_CBENCHKERNELS_INTERNAL_H
#define SPINDLE_CBENCHKERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

// The same fcontext ABI Spindle uses (libboost_context).
typedef void *fcontext_t;
typedef struct { fcontext_t fctx; void *data; } transfer_t;
extern transfer_t jump_fcontext(fcontext_t const to, void *vp);
extern fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

/// A task's control block, at the top of its stack mapping (guard page at the bottom).
typedef struct cb_task {
    fcontext_t ctx;
    struct cb_task *next;
    char *mapping;
    uint32_t remaining;
    uint32_t done;
    void *extra;  // kernel-specific (the timer kernels: their uv_timer_t and ucontext_t)
} cb_task;

struct cb_stack_pool {
    size_t stack_size;
    size_t page;
    cb_task *free;
};

/// A task from the pool, or a fresh mapping when the pool is empty.
cb_task *cb_pool_take(struct cb_stack_pool *pool);

#endif
