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

/// What a timer fanout kernel did, for the report's "where the time goes".
typedef struct {
    uint64_t steps;        // steps completed (== ops * steps)
    uint64_t switches;     // context switches (each way counts one)
    uint64_t loop_turns;   // uv_run calls
    uint64_t stack_maps;   // stacks mapped fresh (mmap) during the run
} cb_counts;

/// How a timer fanout kernel switches and when it polls the loop.
typedef enum {
    CB_TIMER_FCONTEXT = 0,        // jump_fcontext; the loop runs when the run queue is empty
    CB_TIMER_UCONTEXT = 1,        // swapcontext (a sigprocmask syscall per switch)
    CB_TIMER_POLL_EVERY_SWITCH = 2 // jump_fcontext, and a non-blocking uv_run before every switch
} cb_timer_kind;

/// The fanout `timer` workload as a C scheduler on libuv: `ops` tasks each wait `steps` times
/// for a zero-delay uv_timer (started by the task, fired by the loop, which puts the task back
/// on the FIFO run queue). Stacks come from `pool`. Fills `counts`; returns completed steps.
uint64_t cb_timer_fanout(cb_timer_kind kind, cb_stack_pool *pool, uint32_t ops, uint32_t steps, cb_counts *counts);

/// The fanout `timer` workload with "coroutines" that are OS threads passing a baton: one
/// thread per operation; the loop thread hands the baton to an operation when its timer
/// fires and waits for it to come back (mutex + condition variable each way).
uint64_t cb_thread_handoff_timer_fanout(uint32_t ops, uint32_t steps, cb_counts *counts);

/// The `crossloop` channel floor: one producer thread and one consumer thread, pinned to two
/// CPUs, pass `messages` integers through a single-producer single-consumer ring of `capacity`
/// slots (a power of two), spinning (with sched_yield) when it is full or empty. Nanoseconds per
/// message, or -1 if the consumer's sum is wrong.
double cb_spsc_ring_ns_per_message(uint64_t messages, uint32_t capacity);

/// The `crossloop` call floor: two libuv loops on two pinned threads wake each other with
/// uv_async_send, `rounds` round trips. With `busy`, the answering loop spins (an active idle
/// handle) instead of blocking in epoll. Nanoseconds per round trip, or -1 on a miscount.
double cb_async_pingpong_ns_per_round(uint64_t rounds, int busy);

/// Ctrl-C: the first SIGINT only sets a flag (the run stops at the next row and reports what
/// finished); a second one ends the process as usual.
/// The prefault floor: maps `count` stacks of `stack_size` bytes in slabs of `per_slab` (one
/// mmap each, as Spindle's unguarded stacks are), writes the top 512 bytes of each (where a
/// fiber's control block goes), unmaps everything, and returns the seconds the mapping and
/// writing took: the kernel's cost of one fresh page per stack, with nothing else around it.
/// On failure it returns minus the errno value (an mmap refused: ENOMEM).
double cb_prefault_floor_seconds(uint64_t count, size_t stack_size, uint32_t per_slab);

void cb_install_interrupt_handler(void);
int cb_interrupted(void);

#endif
