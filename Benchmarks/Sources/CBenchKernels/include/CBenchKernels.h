// C kernels for spindle-bench: the floors (raw fcontext) and the pitfalls (ucontext, thread
// handoff) that Spindle's fibers are measured against, in the same process and run.
#ifndef SPINDLE_CBENCHKERNELS_H
#define SPINDLE_CBENCHKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Raw jump_fcontext ping-pong: the caller and one context switch back and forth `rounds`
/// times (one round = two jumps). Returns the number of rounds the context counted (== rounds).
uint64_t cb_fcontext_switch(uint64_t rounds);

/// ucontext ping-pong with swapcontext (which saves the signal mask: a syscall per switch).
uint64_t cb_ucontext_switch(uint64_t rounds);

/// Two threads passing a baton through a mutex and condition variable; a round trip is the
/// baton going there and back. Returns the rounds completed.
uint64_t cb_thread_handoff_switch(uint64_t rounds);

/// A C run-queue scheduler on raw fcontext: `ops` contexts each yield `steps` times through a
/// FIFO run queue, the scheduler jumping into each in turn. Stacks come from `pool` (reused
/// between runs: warm) or are mapped fresh when the pool is empty (cold). Returns the total of
/// completed steps (== ops * steps).
typedef struct cb_stack_pool cb_stack_pool;
cb_stack_pool *cb_stack_pool_create(size_t stack_size);
void cb_stack_pool_destroy(cb_stack_pool *pool);
uint64_t cb_fcontext_fanout(cb_stack_pool *pool, uint32_t ops, uint32_t steps);

#endif
