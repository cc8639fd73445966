// CSpindleSupport: the few things Spindle needs that only C can do.
//
// - the fiber control block and scheduler core as C structs, because the SIGSEGV reporter (C, on
//   an alternate signal stack) and the gdb helper read them without the Swift runtime;
// - the thread-local "current fiber" pointer (initial-exec TLS: one %fs-relative load);
// - the Swift runtime's exclusivity-context swap entry points (exported by libswiftCore);
// - the guard-page SIGSEGV reporter on sigaltstack;
// - Valgrind stack registration (a client-request macro, so it needs C);
// - sanitizer fiber annotations (compiled in only under ASan/TSan).
#ifndef SPINDLE_CSPINDLESUPPORT_H
#define SPINDLE_CSPINDLESUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Fiber control block

/// Lifecycle of a fiber. Mirrored by `Fiber.State` in Swift.
enum {
    SPINDLE_FIBER_CREATED = 0,
    SPINDLE_FIBER_RUNNABLE = 1,
    SPINDLE_FIBER_RUNNING = 2,
    SPINDLE_FIBER_PARKED = 3,
    SPINDLE_FIBER_FINISHED = 4,
};

typedef struct spindle_fiber spindle_fiber_t;
typedef struct spindle_sched spindle_sched_t;

/// One fiber. It lives at the top of its own stack mapping, so spawning from a pooled stack
/// allocates nothing for it. Fields are plain values: the switch path does no reference counting.
struct spindle_fiber {
    // Line 0 (the block is 64-byte aligned): what every resume, switch and spawn touches. The
    // drain prefetches this line of the next-but-one fiber, then the body it points to.
    void *context;               // saved fcontext while the fiber is not running
    spindle_fiber_t *next;       // intrusive link: run queue or pool of non-default-size stacks
    spindle_sched_t *sched;      // the scheduler (and so the loop) the fiber is pinned to
    uintptr_t exclusivity[2];    // this fiber's Swift dynamic-exclusivity access set
    uint64_t id;                 // unique per scheduler, starting at 1
    void *body;                  // +1 retained Swift object that runs the body and keeps the result,
                                 // or NULL for a detached fiber, whose closure is detached_function
    uint8_t state;               // SPINDLE_FIBER_*
    uint8_t park_reason;         // Fiber.ParkReason raw value while parked
    uint8_t cancelled;           // set by cancel(); blocking calls throw CancellationError
    uint8_t wake_status;         // set by the waker: 0 = woken normally, else a reason code
    uint8_t park_cancellable;    // parked in a wait that cancel() and deadlines may interrupt
    uint8_t deadline_passed;     // a withTimeout/withDeadline around the running code expired
    uint8_t deadline_depth;      // how many withTimeout scopes are active
    uint8_t deadline_expired;    // the outermost expired scope's depth (0: none)
    // Line 1: a spawn's and a reclaim's links, a detached body, a park's wait list.
    spindle_fiber_t *all_prev;   // the scheduler's list of live fibers (reports, gdb); a reclaim
    spindle_fiber_t *all_next;   // writes its neighbours' links, so they share the line
    void *detached_function;     // a detached fiber's `() -> Void` closure: function and
    void *detached_context;      // +1 retained context (NULL when it captures nothing)
    spindle_fiber_t *wait_next;  // intrusive links of the one wait list the fiber is on; separate
    spindle_fiber_t *wait_prev;  // from `next`, as an interrupted waiter is briefly on both
    uint8_t on_wait_list;        // linked on a WaitList right now
    uint8_t painted;             // the stack was painted at spawn (StackPool.paintsStacks)
    uint8_t named;               // `name` holds this fiber's name (else it has none, and `name`
                                 // may hold an earlier fiber's: a spawn does not touch line 3)
    uint8_t default_size;        // the stack is of the pool's default size (set when mapped)
    uint32_t stack_usable;       // stack_hi - stack_lo, the usable bytes (set when mapped; kept
                                 // here so that a spawn's make_fcontext reads no line but the
                                 // first two)
    uint64_t park_detail;        // a number that goes with the park reason (e.g. a fiber id)
    // Line 2 on: set once per stack, or diagnostics.
    void *park_object;           // what the fiber waits on while it waits, else NULL (never
                                 // written by a spawn: a finished fiber left it NULL)
    char *mapping;               // the whole stack mapping, guard page included
    size_t mapping_size;
    char *stack_lo;              // lowest usable stack address (just above the guard page)
    char *stack_hi;              // highest usable stack address (the control block starts here)
    size_t stack_size;           // usable bytes, as requested
    size_t guard_size;
    unsigned valgrind_stack_id;
    void *san_fake_stack;        // ASan fake-stack handle saved while suspended
    void *tsan_fiber;            // TSan fiber object
    char name[48];               // NUL-terminated copy; read by the SIGSEGV reporter
};

_Static_assert(offsetof(struct spindle_fiber, all_prev) == 64, "the hot fields of a fiber fill its first cache line");
_Static_assert(offsetof(struct spindle_fiber, park_object) == 128, "a spawn's and a reclaim's fields fill the second");

/// The loop-side half of a scheduler: run queue and the context that resumes fibers.
struct spindle_sched {
    void *main_context;          // the loop-side context while a fiber runs
    void *owner;                 // the Swift Scheduler (unretained; it owns this struct)
    spindle_fiber_t *run_head;   // FIFO run queue through spindle_fiber.next, which is NULL at the
    spindle_fiber_t *run_tail;   // tail; empty when run_head is NULL (run_tail is then stale).
    spindle_fiber_t *all_head;   // live fibers through all_next/all_prev
    uint64_t enqueued;           // run-queue appends other than yields (spawns, wakes)
    uint64_t popped;             // run-queue removals, added up at the end of each drain
    uint8_t draining;            // the loop side is resuming fibers right now
    uint8_t idle_active;         // the scheduler's idle handle is started (run queue non-empty)
    uint8_t annotate;            // sanitizer switch annotations are compiled in
    uint8_t reserved[5];
    uint64_t owner_thread_id;    // spindle_thread_id() of the loop's thread: the identity checks
    void *const *exclusivity_head; // this thread's Swift access-set head (see spindle_exclusivity_head_location)
    uint64_t parked;             // fibers parked right now
    uint64_t next_id;
    // Always-on counters (plain integers, one loop thread writes them).
    uint64_t spawns;
    uint64_t yields;
    uint64_t parks;
    uint64_t parks_by_reason[32]; // indexed by Fiber.ParkReason's raw value
    uint64_t wakes;
    uint64_t finishes;
    uint64_t run_queue_high_water;
    uint64_t turns;              // loop iterations (the drain watcher runs once per iteration)
    uint64_t completion_resumes; // fibers run straight from the I/O completion that woke them
    uint64_t bodies_made;        // joinable fibers' body objects allocated (not reused from the pool)
    uint64_t zero_sleeps;        // Fiber.sleep calls for zero: a timer that only waits for the next
                                 // loop turn (shorter sleeps round up to the timer's millisecond)
    uint64_t channels_made;      // Channels created by this scheduler's fibers
    uint64_t drain_ticks;        // spindle_trace_clock() ticks spent draining (running fibers)
    uint64_t clock_ticks0;       // a spindle_trace_clock() reading and the CLOCK_MONOTONIC ns
    uint64_t clock_ns0;          // taken with it at start: they turn ticks into nanoseconds
    // Sanitizer bookkeeping for the loop-side stack (unused without ASan/TSan).
    void *main_fake_stack;
    const void *main_stack_bottom;
    size_t main_stack_size;
    void *main_tsan_fiber;
    // The loop's "work was posted from another thread" flag (EventLoop.postedFlag), looked at
    // every 64 resumes of a drain so that a loop kept busy by its fibers still answers soon.
    const int *posted_flag;
    // The trace ring buffer while tracing is on, else NULL (one predictable branch per hook).
    struct spindle_trace *trace;
    // Every live scheduler of the process, for debuggers (Tools/gdb/spindle.py walks it).
    spindle_sched_t *registry_prev;
    spindle_sched_t *registry_next;
    uint64_t owner_thread;       // pthread_t of the loop's thread (for gdb and the trace)
};

// MARK: - The current fiber (thread-local)

extern __thread spindle_fiber_t *spindle_tls_current_fiber __attribute__((tls_model("initial-exec")));

/// The fiber running on this thread, or NULL when the thread is not inside a fiber.
static inline spindle_fiber_t *spindle_current_fiber(void) { return spindle_tls_current_fiber; }

static inline void spindle_set_current_fiber(spindle_fiber_t *fiber) { spindle_tls_current_fiber = fiber; }

/// The two words of exclusivity state, as the runtime's entry points want them.
static inline char *spindle_fiber_exclusivity(spindle_fiber_t *fiber) { return (char *)fiber->exclusivity; }

/// Asks the CPU to start loading the cache line at `address` (no fault if it is invalid).
static inline void spindle_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }

/// The Swift runtime's retain without the atomic read-modify-write (libswiftCore exports it).
void *swift_nonatomic_retain(void *object);

/// Adds a reference to a Swift object that no other thread can be touching: one the caller has
/// just made, or just found uniquely referenced. A plain increment, not a locked one.
static inline void spindle_retain_unshared(void *object) { (void)swift_nonatomic_retain(object); }

/// Starts loading what a fiber's first resume touches beyond its saved registers: the frames its
/// entry calls push below them (a pooled stack's lines there were last written by another fiber,
/// long ago) and its body object. Later resumes return into frames above the saved registers.
static inline void spindle_prefetch_first_run(const spindle_fiber_t *fiber) {
    const char *saved = (const char *)fiber->context;
    __builtin_prefetch(saved - 64, 1, 3);
    __builtin_prefetch(saved - 128, 1, 3);
    __builtin_prefetch(saved - 192, 1, 3);
    if (fiber->body) __builtin_prefetch(fiber->body, 1, 3);
}

// MARK: - Swift runtime: exclusivity access sets

// Exported by libswiftCore; Swift's own tasks call these on every job switch. `state` is two
// pointers of storage owned by the fiber (spindle_fiber.exclusivity).
void swift_task_enterThreadLocalContext(char *state);
void swift_task_exitThreadLocalContext(char *state);

/// Where the Swift runtime keeps the calling thread's dynamic-exclusivity access-set head.
///
/// Switching access sets on every fiber switch through the two entry points above costs ~70
/// instructions a round trip (two calls, each reaching its thread-local through __tls_get_addr).
/// Nearly always both sets are empty, which one load can tell: this finds the head's address
/// once per thread by calibration — it installs a marker access set through
/// swift_task_enterThreadLocalContext, finds the one word in the thread's TLS blocks that holds
/// the marker, and removes it again through swift_task_exitThreadLocalContext. The switch then
/// calls the runtime only when the fiber's saved set or the thread's current set is non-empty,
/// which is exactly when the entry points would do anything.
///
/// When calibration does not find exactly one such word (a runtime laid out differently), it
/// returns the address of a constant non-NULL word, so every switch calls the runtime: slower,
/// never wrong.
void *const *spindle_exclusivity_head_location(void);
/// The fallback location (a constant non-NULL word): every switch then calls the runtime.
/// Tests use it to hold the slow path to the same behaviour as the fast one.
void *const *spindle_exclusivity_fallback_location(void);
/// 1 when spindle_exclusivity_head_location found the runtime's word on this thread.
int spindle_exclusivity_fast_path_available(void *const *location);

// MARK: - Trace recorder

/// What a trace event records (SpindleTrace exports them as Chrome/Perfetto JSON).
enum {
    SPINDLE_TRACE_SPAWN = 1,   // a fiber was created (detail: 0)
    SPINDLE_TRACE_RESUME = 2,  // the loop side switched into a fiber: its slice starts
    SPINDLE_TRACE_YIELD = 3,   // the fiber yielded: its slice ends
    SPINDLE_TRACE_PARK = 4,    // the fiber parked (detail: the park reason): its slice ends
    SPINDLE_TRACE_WAKE = 5,    // a parked fiber was made runnable (detail: the wake reason)
    SPINDLE_TRACE_FINISH = 6,  // the fiber's body returned: its slice ends
    SPINDLE_TRACE_TURN = 7,    // a loop iteration reached the scheduler's drain
    SPINDLE_TRACE_IO = 8,      // an I/O completion (a read, a receive) for a parked fiber (detail:
                               // 1 when the fiber then runs at once, from the completion)
};

typedef struct {
    uint64_t ticks;   // spindle_trace_clock(): the TSC on x86-64, else CLOCK_MONOTONIC ns
    uint64_t fiber;   // fiber id (0: none)
    uint32_t kind;    // SPINDLE_TRACE_*
    uint32_t detail;
} spindle_trace_event_t;

/// A ring of `mask + 1` events (a power of two); the newest overwrite the oldest.
struct spindle_trace {
    spindle_trace_event_t *events;
    uint64_t mask;
    uint64_t count;        // events ever recorded (the ring holds the last mask + 1)
    uint64_t start_ticks;  // spindle_trace_clock() and CLOCK_MONOTONIC ns when recording began:
    uint64_t start_ns;     // with a second pair at export, they turn ticks into nanoseconds
    uint64_t last_ticks;   // the ticks of the event recorded last, kept in a cached line: reading
                           // them back from the ring means reading a line just written with
                           // non-temporal stores (still in a write-combining buffer on some CPUs:
                           // hundreds of nanoseconds on an AMD EPYC)
};

/// CLOCK_MONOTONIC nanoseconds.
static inline uint64_t spindle_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/// The trace's clock: the time-stamp counter on x86-64 (a few cycles; clock_gettime through the
/// vDSO costs ~20 ns a call here, which made tracing 5x the cost of a switch), else
/// CLOCK_MONOTONIC.
static inline uint64_t spindle_trace_clock(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return spindle_monotonic_ns();
#endif
}

/// Records one event when the scheduler is tracing; one load and a not-taken branch when not.
static inline void spindle_trace_record(spindle_sched_t *sched, uint32_t kind, uint64_t fiber, uint32_t detail) {
#ifdef SPINDLE_NO_TRACE  // `make trace-cost`'s build without tracing code
    (void)sched; (void)kind; (void)fiber; (void)detail;
    return;
#endif
    struct spindle_trace *trace = sched->trace;
    if (__builtin_expect(trace == NULL, 1)) return;
    spindle_trace_event_t *event = &trace->events[trace->count & trace->mask];
    trace->count++;
    uint64_t now = spindle_trace_clock();
    trace->last_ticks = now;
    // Non-temporal stores: a large ring is written once and read at export, so its lines need
    // not be read into the cache first (that read made tracing memory-bound). Nothing reads
    // them back while recording (see last_ticks).
    __builtin_nontemporal_store(now, &event->ticks);
    __builtin_nontemporal_store(fiber, &event->fiber);
    __builtin_nontemporal_store(((uint64_t)detail << 32) | kind, (uint64_t *)&event->kind);
}

/// 0 for the first call in the process, then 1, 2, ... (SPINDLE_TRACE's file names).
int spindle_trace_file_index(void);
/// The calling thread's kernel id (gettid): how a syscall counter outside the process names it.
long spindle_kernel_thread_id(void);
/// Registers `handler` with atexit the first time it is called (later calls do nothing).
void spindle_trace_at_exit_once(void (*handler)(void));

/// Counts a park, in total and by its reason (one indexed increment more than the total alone).
static inline void spindle_count_park(spindle_sched_t *sched, uint8_t reason) {
    sched->parks++;
    sched->parks_by_reason[reason & 31]++;
}

/// Makes the ring's non-temporal stores visible before it is read (export).
static inline void spindle_trace_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/// Records an event at the time of the one before it (no clock read): for a resume that
/// follows the previous fiber's switch-out within one drain, a few instructions later.
static inline void spindle_trace_record_at_previous(spindle_sched_t *sched, uint32_t kind, uint64_t fiber, uint32_t detail) {
    struct spindle_trace *trace = sched->trace;
    if (__builtin_expect(trace == NULL, 1)) return;
    uint64_t previous = trace->last_ticks;
    spindle_trace_event_t *event = &trace->events[trace->count & trace->mask];
    trace->count++;
    __builtin_nontemporal_store(previous, &event->ticks);
    __builtin_nontemporal_store(fiber, &event->fiber);
    __builtin_nontemporal_store(((uint64_t)detail << 32) | kind, (uint64_t *)&event->kind);
}

// MARK: - A bounded multi-producer, multi-consumer ring (CrossLoopChannel)

/// The indices of a bounded MPMC queue (Dmitry Vyukov's): each slot has a sequence number that
/// says whose turn it is, so a producer and a consumer meet only at the slot, with one
/// compare-and-swap each and no lock. A slot is a cell of the caller's memory (`stride` bytes)
/// whose first word is its sequence number and whose value follows it, so a message moves
/// between cores in one cache line. Producers' and consumers' positions are 64 bytes apart, on
/// lines of their own (padding, not _Alignas: Swift does not import over-aligned C types).
typedef struct spindle_ring {
    intptr_t enqueue_position;
    char padding1[64 - sizeof(intptr_t)];
    intptr_t dequeue_position;
    char padding2[64 - sizeof(intptr_t)];
    char *cells;      // slots * stride bytes; each cell starts with its intptr_t sequence
    intptr_t stride;  // bytes per cell
    intptr_t mask;    // slots - 1 (slots: a power of two, at least 2)
} spindle_ring_t;

static inline intptr_t *spindle_ring_sequence(spindle_ring_t *ring, intptr_t position) {
    return (intptr_t *)(ring->cells + (position & ring->mask) * ring->stride);
}

/// Sets up `ring` over `cells` (`slots` cells of `stride` bytes, a power of two, at least 2).
static inline void spindle_ring_init(spindle_ring_t *ring, void *cells, intptr_t stride, intptr_t slots) {
    ring->enqueue_position = 0;
    ring->dequeue_position = 0;
    ring->cells = (char *)cells;
    ring->stride = stride;
    ring->mask = slots - 1;
    for (intptr_t i = 0; i < slots; i++) __atomic_store_n(spindle_ring_sequence(ring, i), i, __ATOMIC_RELAXED);
}

/// Claims up to `wanted` consecutive slots from `*cursor` on (the ring's enqueue or dequeue
/// position) whose sequence numbers say they are ready for this side: `position + ready`
/// (ready 0: free to write; 1: holding a value to read). One compare-and-swap claims the run:
/// returns its first position and sets `claimed`, or returns -1 when the next slot is not ready
/// (the ring is full, or empty). A slot seen ready stays so until its claimer publishes it, so
/// a run seen ready is still ready when the swap succeeds.
static inline intptr_t spindle_ring_claim_run(spindle_ring_t *ring, intptr_t *cursor, intptr_t ready,
                                              intptr_t wanted, intptr_t *claimed) {
    intptr_t position = __atomic_load_n(cursor, __ATOMIC_RELAXED);
    for (;;) {
        intptr_t count = 0;
        while (count < wanted && count <= ring->mask &&
               __atomic_load_n(spindle_ring_sequence(ring, position + count), __ATOMIC_ACQUIRE) == position + count + ready)
            count++;
        if (count == 0) {
            intptr_t sequence = __atomic_load_n(spindle_ring_sequence(ring, position), __ATOMIC_ACQUIRE);
            if (sequence - (position + ready) < 0) return -1;  // not ready: full, or empty
            position = __atomic_load_n(cursor, __ATOMIC_RELAXED);  // another claimer took it
            continue;
        }
        if (__atomic_compare_exchange_n(cursor, &position, position + count, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            *claimed = count;
            return position;
        }
    }
}

/// Claims up to `wanted` slots to write: write each value into its cell, then publish it with
/// spindle_ring_publish_enqueue. -1 when the ring is full.
static inline intptr_t spindle_ring_claim_enqueue_many(spindle_ring_t *ring, intptr_t wanted, intptr_t *claimed) {
    return spindle_ring_claim_run(ring, &ring->enqueue_position, 0, wanted, claimed);
}

/// Claims up to `wanted` slots to read: take each value from its cell, then publish it with
/// spindle_ring_publish_dequeue. -1 when the ring is empty.
static inline intptr_t spindle_ring_claim_dequeue_many(spindle_ring_t *ring, intptr_t wanted, intptr_t *claimed) {
    return spindle_ring_claim_run(ring, &ring->dequeue_position, 1, wanted, claimed);
}

/// Claims the next slot to write, or returns -1 when the ring is full.
static inline intptr_t spindle_ring_claim_enqueue(spindle_ring_t *ring) {
    intptr_t claimed;
    return spindle_ring_claim_run(ring, &ring->enqueue_position, 0, 1, &claimed);
}

/// Claims the next slot to read, or returns -1 when the ring is empty.
static inline intptr_t spindle_ring_claim_dequeue(spindle_ring_t *ring) {
    intptr_t claimed;
    return spindle_ring_claim_run(ring, &ring->dequeue_position, 1, 1, &claimed);
}

static inline void spindle_ring_publish_enqueue(spindle_ring_t *ring, intptr_t position) {
    __atomic_store_n(spindle_ring_sequence(ring, position), position + 1, __ATOMIC_RELEASE);
}

static inline void spindle_ring_publish_dequeue(spindle_ring_t *ring, intptr_t position) {
    __atomic_store_n(spindle_ring_sequence(ring, position), position + ring->mask + 1, __ATOMIC_RELEASE);
}

/// Whether a value is ready to be read now / a slot is free to be written now (a snapshot).
static inline int spindle_ring_has_value(spindle_ring_t *ring) {
    intptr_t position = __atomic_load_n(&ring->dequeue_position, __ATOMIC_SEQ_CST);
    return __atomic_load_n(spindle_ring_sequence(ring, position), __ATOMIC_SEQ_CST) == position + 1;
}

static inline int spindle_ring_has_room(spindle_ring_t *ring) {
    intptr_t position = __atomic_load_n(&ring->enqueue_position, __ATOMIC_SEQ_CST);
    return __atomic_load_n(spindle_ring_sequence(ring, position), __ATOMIC_SEQ_CST) == position;
}

/// Whether the flag at `flag` is set (a relaxed load: a hint, rechecked by whoever acts on it).
static inline int spindle_flag_is_set(const int *flag) { return __atomic_load_n(flag, __ATOMIC_RELAXED); }
static inline void spindle_flag_set(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELAXED); }
static inline void spindle_flag_clear(int *flag) { __atomic_store_n(flag, 0, __ATOMIC_RELAXED); }

/// Tells the CPU the caller is spinning (x86 `pause`, arm64 `yield`): it slows the loop and
/// frees the core's resources for its sibling thread.
static inline void spindle_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// A full barrier: a store before it is seen by other threads before any load after it.
static inline void spindle_full_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/// Asymmetric fences for a Dekker-style handshake whose two sides run at very different rates
/// (a channel's every send and receive, against a fiber about to park): the frequent side calls
/// spindle_light_fence between its store and its load, the rare side spindle_heavy_fence. With
/// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) registered, the light fence is only a compiler
/// barrier and the heavy one makes every running thread of the process execute a full barrier;
/// where membarrier is not available (an old kernel, a sandbox, Valgrind), both are full fences.
/// Call spindle_asymmetric_fences_setup once before either (it is idempotent and thread-safe).
extern int spindle_asymmetric_fences_enabled;
void spindle_asymmetric_fences_setup(void);
void spindle_heavy_fence(void);
static inline void spindle_light_fence(void) {
    if (__builtin_expect(spindle_asymmetric_fences_enabled, 1)) {
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    } else {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
}

// MARK: - Debugger registry

/// The first of the process's live schedulers (through registry_next); gdb starts here.
extern spindle_sched_t *volatile spindle_sched_registry;
/// Adds a new scheduler to the registry / removes it (any thread; a mutex guards the list).
void spindle_sched_register(spindle_sched_t *sched);
void spindle_sched_unregister(spindle_sched_t *sched);
/// The registry's first scheduler (then follow registry_next).
spindle_sched_t *spindle_sched_registry_first(void);

// MARK: - Stacks

/// Registers a stack with Valgrind so memcheck follows switches onto it. Returns the id to pass
/// to spindle_valgrind_stack_deregister; 0 when not running under Valgrind.
unsigned spindle_valgrind_stack_register(void *lo, void *hi);
void spindle_valgrind_stack_deregister(unsigned id);
/// Non-zero when the process runs under Valgrind.
int spindle_running_on_valgrind(void);
/// Tells memcheck that `length` bytes at `address` hold defined values (no-op without it): a
/// finished fiber's painted stack lies below the last stack pointer it had, which memcheck
/// counts as unaddressable, and the paint scan reads it from the loop side.
void spindle_valgrind_make_defined(const void *address, size_t length);

// MARK: - Threads

/// The EventLoop (an unretained Swift object) running on this thread, or NULL.
extern __thread void *spindle_tls_current_loop;
static inline void *spindle_current_loop(void) { return spindle_tls_current_loop; }
static inline void spindle_set_current_loop(void *loop) { spindle_tls_current_loop = loop; }

/// The calling thread's number, unique in the process for its whole life (never 0). Loops and
/// schedulers record their owner's and compare: a pthread_t is not enough, as glibc hands a
/// finished thread's pthread_t to the next thread it creates, which would then pass for it.
/// (initial-exec: one load from the thread pointer, no call.)
extern __thread uint64_t spindle_tls_thread_id __attribute__((tls_model("initial-exec")));
uint64_t spindle_assign_thread_id(void);
static inline uint64_t spindle_thread_id(void) {
    uint64_t id = spindle_tls_thread_id;
    return __builtin_expect(id != 0, 1) ? id : spindle_assign_thread_id();
}
/// The calling thread's number if it has one yet, else 0. For comparing with an owner's
/// number (never 0): a thread without one is not the owner, so the check needs no branch to
/// assign it.
static inline uint64_t spindle_thread_id_or_zero(void) { return spindle_tls_thread_id; }

/// How many CPUs this process may run on (its affinity mask; at least 1).
int spindle_usable_cpu_count(void);
/// Pins the calling thread to the `index`-th CPU of the process's affinity mask (wrapping);
/// returns 0 or an errno value.
int spindle_pin_current_thread(int index);
/// The CPU the calling thread runs on now (sched_getcpu), or -1.
int spindle_current_cpu(void);
/// How many CPUs the calling thread may run on (its own affinity mask).
int spindle_current_thread_cpu_count(void);

/// Work posted to another thread's loop without allocating: the node lives in its poster's
/// memory until `run` is called, on the loop's thread, with `closed` non-zero when the loop
/// closed before it could run it normally. The inbox links nodes through `next`.
typedef struct spindle_remote_work spindle_remote_work_t;
struct spindle_remote_work {
    spindle_remote_work_t *next;
    void (*run)(spindle_remote_work_t *work, int closed);
    void *context;
};

/// Copies the name of `thread` (a pthread_t) into `buf`; returns 0 or an errno value.
int spindle_thread_name(uint64_t thread, char *buf, size_t len);
/// Names the calling thread (Linux keeps the first 15 bytes); returns 0 or an errno value.
int spindle_set_current_thread_name(const char *name);

// MARK: - Stack overflow reporting

/// Installs (once per process) the SIGSEGV/SIGBUS handler that reports a fault in a fiber's guard
/// page as `fatal: stack overflow in fiber "name" (#id, N KiB stack)`, and gives the calling
/// thread an alternate signal stack if it has none. Faults elsewhere go to the previous handler.
/// Returns 0 or an errno value.
int spindle_overflow_reporter_install_on_this_thread(void);

// MARK: - Sanitizer fiber annotations

/// 1 when this C target was compiled under ASan or TSan (switch annotations are then active).
int spindle_sanitizer_annotations_enabled(void);
/// Called right before a switch from `from` to `to` (either may be NULL for the loop side).
void spindle_sanitizer_before_switch(spindle_sched_t *sched, spindle_fiber_t *from, spindle_fiber_t *to);
/// Called right after a switch completes, in the context that was resumed.
void spindle_sanitizer_after_switch(spindle_sched_t *sched, spindle_fiber_t *resumed);
/// Called when a fiber's stack is released (TSan fiber objects are destroyed here).
void spindle_sanitizer_fiber_destroyed(spindle_fiber_t *fiber);

#ifdef __cplusplus
}
#endif

#endif
