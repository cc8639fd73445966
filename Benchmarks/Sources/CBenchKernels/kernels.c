#define _GNU_SOURCE
#include "CBenchKernels.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <time.h>
#include <unistd.h>


// MARK: - fcontext ping-pong

typedef struct {
    fcontext_t caller;
    uint64_t count;
} pingpong_t;

static void pingpong_entry(transfer_t t) {
    pingpong_t *state = (pingpong_t *)t.data;
    state->caller = t.fctx;
    for (;;) {
        state->count++;
        t = jump_fcontext(state->caller, NULL);
        state->caller = t.fctx;
    }
}

uint64_t cb_fcontext_switch(uint64_t rounds) {
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    pingpong_t state = {0};
    fcontext_t ctx = make_fcontext(stack + size, size, pingpong_entry);
    for (uint64_t i = 0; i < rounds; i++) {
        transfer_t t = jump_fcontext(ctx, &state);
        ctx = t.fctx;
    }
    free(stack);
    return state.count;
}

// MARK: - ucontext ping-pong

typedef struct {
    ucontext_t main, ctx;
    uint64_t count;
} ucontext_state_t;

static ucontext_state_t *ucontext_current;

static void ucontext_entry(void) {
    ucontext_state_t *state = ucontext_current;
    for (;;) {
        state->count++;
        swapcontext(&state->ctx, &state->main);
    }
}

uint64_t cb_ucontext_switch(uint64_t rounds) {
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    ucontext_state_t *state = calloc(1, sizeof *state);
    getcontext(&state->ctx);
    state->ctx.uc_stack.ss_sp = stack;
    state->ctx.uc_stack.ss_size = size;
    state->ctx.uc_link = NULL;
    ucontext_current = state;
    makecontext(&state->ctx, ucontext_entry, 0);
    for (uint64_t i = 0; i < rounds; i++) swapcontext(&state->main, &state->ctx);
    uint64_t count = state->count;
    free(state);
    free(stack);
    return count;
}

// MARK: - thread handoff ("coroutines" as threads passing a baton)

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int turn;  // 0: main's turn, 1: worker's turn, 2: stop
    uint64_t count;
} handoff_t;

static void *handoff_worker(void *raw) {
    handoff_t *h = raw;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (h->turn == 0) pthread_cond_wait(&h->cond, &h->lock);
        if (h->turn == 2) break;
        h->count++;
        h->turn = 0;
        pthread_cond_signal(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

uint64_t cb_thread_handoff_switch(uint64_t rounds) {
    handoff_t h;
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.cond, NULL);
    h.turn = 0;
    h.count = 0;
    pthread_t worker;
    pthread_create(&worker, NULL, handoff_worker, &h);
    pthread_mutex_lock(&h.lock);
    for (uint64_t i = 0; i < rounds; i++) {
        h.turn = 1;
        pthread_cond_signal(&h.cond);
        while (h.turn == 1) pthread_cond_wait(&h.cond, &h.lock);
    }
    h.turn = 2;
    pthread_cond_signal(&h.cond);
    pthread_mutex_unlock(&h.lock);
    pthread_join(worker, NULL);
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.lock);
    return h.count;
}

// MARK: - fcontext run queue (fanout floor)

// cb_task and cb_stack_pool are in internal.h (the timer kernels in pitfalls.c share them).

typedef struct {
    fcontext_t main;
    cb_task *head, *tail;
    uint64_t steps_done;
} cb_sched;

cb_stack_pool *cb_stack_pool_create(size_t stack_size) {
    cb_stack_pool *pool = calloc(1, sizeof *pool);
    pool->stack_size = stack_size;
    pool->page = (size_t)sysconf(_SC_PAGESIZE);
    return pool;
}

// Same stack shape as Spindle's: guard page below, control block at the top of the mapping.
cb_task *cb_pool_take(cb_stack_pool *pool) {
    cb_task *task = pool->free;
    if (task) {
        pool->free = task->next;
        task->next = NULL;
        return task;
    }
    size_t total = pool->stack_size + pool->page;
    char *mapping = mmap(NULL, total, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mapping == MAP_FAILED) abort();
    mprotect(mapping, pool->page, PROT_NONE);
    task = (cb_task *)(mapping + total - ((sizeof(cb_task) + 63) & ~(size_t)63));
    memset(task, 0, sizeof *task);
    task->mapping = mapping;
    return task;
}

void cb_stack_pool_destroy(cb_stack_pool *pool) {
    size_t total = pool->stack_size + pool->page;
    while (pool->free) {
        cb_task *task = pool->free;
        pool->free = task->next;
        munmap(task->mapping, total);
    }
    free(pool);
}

static cb_sched *fanout_sched;  // set for the duration of one cb_fcontext_fanout call

static void fanout_entry(transfer_t t) {
    cb_task *task = t.data;
    cb_sched *s = fanout_sched;
    s->main = t.fctx;
    while (task->remaining > 0) {
        task->remaining--;
        s->steps_done++;
        // yield: back of the run queue, then to the scheduler
        task->next = NULL;
        if (s->tail) s->tail->next = task; else s->head = task;
        s->tail = task;
        t = jump_fcontext(s->main, NULL);
        s->main = t.fctx;
    }
    task->done = 1;
    jump_fcontext(s->main, NULL);
}

uint64_t cb_fcontext_fanout(cb_stack_pool *pool, uint32_t ops, uint32_t steps) {
    cb_sched s = {0};
    fanout_sched = &s;
    size_t usable = pool->stack_size - ((sizeof(cb_task) + 63) & ~(size_t)63);
    for (uint32_t i = 0; i < ops; i++) {
        cb_task *task = cb_pool_take(pool);
        task->remaining = steps;
        task->done = 0;
        task->ctx = make_fcontext((char *)task, usable, fanout_entry);
        task->next = NULL;
        if (s.tail) s.tail->next = task; else s.head = task;
        s.tail = task;
    }
    while (s.head) {
        cb_task *task = s.head;
        s.head = task->next;
        if (!s.head) s.tail = NULL;
        transfer_t t = jump_fcontext(task->ctx, task);
        task->ctx = t.fctx;
        if (task->done) {
            task->next = pool->free;
            pool->free = task;
        }
    }
    fanout_sched = NULL;
    return s.steps_done;
}

double cb_prefault_floor_seconds(uint64_t count, size_t stack_size, uint32_t per_slab) {
    uint64_t slabs = (count + per_slab - 1) / per_slab;
    char **bases = malloc(slabs * sizeof *bases);
    if (!bases) return -ENOMEM;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (uint64_t slab = 0; slab < slabs; slab++) {
        char *base = mmap(NULL, stack_size * per_slab, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (base == MAP_FAILED) {
            int error = errno;
            for (uint64_t done = 0; done < slab; done++) munmap(bases[done], stack_size * per_slab);
            free(bases);
            return -error;
        }
        bases[slab] = base;
        for (uint32_t index = 0; index < per_slab; index++) {
            memset(base + (index + 1) * stack_size - 512, 0, 512);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    for (uint64_t slab = 0; slab < slabs; slab++) munmap(bases[slab], stack_size * per_slab);
    free(bases);
    return (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
}
