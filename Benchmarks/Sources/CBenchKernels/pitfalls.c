// The fanout `timer` workload as C schedulers on libuv: the floor (fcontext, loop polled only
// when nothing is runnable) and three classic mistakes — ucontext switches, a non-blocking loop
// turn before every switch, and coroutines that are threads passing a baton.
#define _GNU_SOURCE
#include "CBenchKernels.h"
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <ucontext.h>
#include <uv.h>

// MARK: - one-thread schedulers (fcontext, ucontext, poll-every-switch)

typedef struct {
    uv_timer_t *timer;  // in the run's array of timers; timer->data: the task
    ucontext_t uctx;    // CB_TIMER_UCONTEXT only
} timer_extra;

// The timers of a run, side by side (kept from run to run, so a warm run faults nothing).
static uv_timer_t *timer_store;
static size_t timer_store_count;

typedef struct {
    cb_timer_kind kind;
    uv_loop_t loop;
    fcontext_t main;
    ucontext_t main_uctx;
    cb_task *head, *tail;
    cb_task *current;
    cb_counts counts;
} timer_sched;

static timer_sched *timer_current;  // set for the duration of one cb_timer_fanout call

static void enqueue(timer_sched *s, cb_task *task) {
    task->next = NULL;
    if (s->tail) s->tail->next = task; else s->head = task;
    s->tail = task;
}

static void timer_fired(uv_timer_t *timer) { enqueue(timer_current, timer->data); }

static void idle_readable(uv_poll_t *watch, int status, int events) {
    (void)watch, (void)status, (void)events;  // nothing is ever written to it
}

// From a task to the scheduler.
static void to_scheduler(timer_sched *s, cb_task *task) {
    s->counts.switches++;
    if (s->kind == CB_TIMER_UCONTEXT) {
        swapcontext(&((timer_extra *)task->extra)->uctx, &s->main_uctx);
    } else {
        transfer_t t = jump_fcontext(s->main, NULL);
        s->main = t.fctx;
    }
}

static void task_body(timer_sched *s, cb_task *task) {
    timer_extra *extra = task->extra;
    while (task->remaining > 0) {
        task->remaining--;
        uv_timer_start(extra->timer, timer_fired, 0, 0);
        to_scheduler(s, task);  // parked until the timer puts it back on the run queue
        s->counts.steps++;
    }
    task->done = 1;
    to_scheduler(s, task);
}

static void fcontext_entry(transfer_t t) {
    timer_sched *s = timer_current;
    s->main = t.fctx;
    task_body(s, t.data);
}

static void ucontext_entry(void) {
    timer_sched *s = timer_current;
    task_body(s, s->current);
}

uint64_t cb_timer_fanout(cb_timer_kind kind, cb_stack_pool *pool, uint32_t ops, uint32_t steps, cb_counts *counts) {
    timer_sched *s = calloc(1, sizeof *s);
    s->kind = kind;
    uv_loop_init(&s->loop);
    timer_current = s;
    // A service always watches some socket: one idle descriptor in the loop, so that a loop
    // turn polls the kernel (libuv skips epoll_wait when it watches nothing).
    int idle_fds[2];
    uv_poll_t idle_watch;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, idle_fds) != 0) abort();
    uv_poll_init(&s->loop, &idle_watch, idle_fds[0]);
    uv_poll_start(&idle_watch, UV_READABLE, idle_readable);
    uv_unref((uv_handle_t *)&idle_watch);
    size_t reserved = ((sizeof(cb_task) + 63) & ~(size_t)63) + ((sizeof(timer_extra) + 63) & ~(size_t)63);
    size_t usable = pool->stack_size - reserved;
    // The timers in one array, as Spindle pools its sleep timers and the callbacks' timers come
    // from malloc: kept on each task's stack, every timer was on a page of its own, and libuv's
    // timer heap, which compares timers on every start and fire, missed the TLB and the cache on
    // each (the floor ran at about twice the callbacks' time).
    if (timer_store_count < ops) {
        free(timer_store);
        timer_store = aligned_alloc(64, (((size_t)ops * sizeof(uv_timer_t)) + 63) & ~(size_t)63);
        if (!timer_store) abort();
        timer_store_count = ops;
    }
    for (uint32_t i = 0; i < ops; i++) {
        int fresh = pool->free == NULL;
        cb_task *task = cb_pool_take(pool);
        if (fresh) s->counts.stack_maps++;
        task->remaining = steps;
        task->done = 0;
        // The ucontext lives just below the control block, on the task's own stack.
        timer_extra *extra = (timer_extra *)((char *)task - ((sizeof(timer_extra) + 63) & ~(size_t)63));
        task->extra = extra;
        extra->timer = &timer_store[i];
        uv_timer_init(&s->loop, extra->timer);
        extra->timer->data = task;
        char *stack_top = (char *)task - reserved + ((sizeof(cb_task) + 63) & ~(size_t)63);
        if (kind == CB_TIMER_UCONTEXT) {
            getcontext(&extra->uctx);
            extra->uctx.uc_stack.ss_sp = stack_top - usable;
            extra->uctx.uc_stack.ss_size = usable;
            extra->uctx.uc_link = NULL;
            makecontext(&extra->uctx, ucontext_entry, 0);
            task->ctx = NULL;
        } else {
            task->ctx = make_fcontext(stack_top, usable, fcontext_entry);
        }
        enqueue(s, task);
    }
    uint32_t live = ops;
    while (live > 0) {
        if (!s->head || kind == CB_TIMER_POLL_EVERY_SWITCH) {
            // The mistake: CB_TIMER_POLL_EVERY_SWITCH asks the kernel for events before every
            // switch, whether or not anything is waiting for them.
            s->counts.loop_turns++;
            uv_run(&s->loop, s->head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
            if (!s->head) continue;
        }
        cb_task *task = s->head;
        s->head = task->next;
        if (!s->head) s->tail = NULL;
        s->current = task;
        s->counts.switches++;
        if (kind == CB_TIMER_UCONTEXT) {
            swapcontext(&s->main_uctx, &((timer_extra *)task->extra)->uctx);
        } else {
            transfer_t t = jump_fcontext(task->ctx, task);
            task->ctx = t.fctx;
        }
        if (task->done) {
            live--;
            uv_close((uv_handle_t *)((timer_extra *)task->extra)->timer, NULL);
            task->next = pool->free;  // the mapping stays; the close completes before any reuse
            pool->free = task;
        }
    }
    uv_close((uv_handle_t *)&idle_watch, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);  // the close callbacks
    uv_loop_close(&s->loop);
    close(idle_fds[0]);
    close(idle_fds[1]);
    *counts = s->counts;
    timer_current = NULL;
    free(s);
    return counts->steps;
}

// MARK: - thread handoff

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int turn;  // 0: the loop's, 1: the operation's
    uint32_t remaining;
    uint64_t steps;
    uv_timer_t timer;
} handoff_op;

static void *handoff_op_main(void *raw) {
    handoff_op *op = raw;
    pthread_mutex_lock(&op->lock);
    while (op->remaining > 0) {
        while (op->turn == 0) pthread_cond_wait(&op->cond, &op->lock);
        op->remaining--;
        op->steps++;
        op->turn = 0;
        pthread_cond_signal(&op->cond);
    }
    pthread_mutex_unlock(&op->lock);
    return NULL;
}

static uint64_t handoff_switches;

static void handoff_fired(uv_timer_t *timer) {
    handoff_op *op = timer->data;
    // The baton goes to the operation's thread and comes back: two thread switches a step.
    pthread_mutex_lock(&op->lock);
    op->turn = 1;
    pthread_cond_signal(&op->cond);
    while (op->turn == 1) pthread_cond_wait(&op->cond, &op->lock);
    int again = op->remaining > 0;
    pthread_mutex_unlock(&op->lock);
    handoff_switches += 2;
    if (again) uv_timer_start(timer, handoff_fired, 0, 0);
}

uint64_t cb_thread_handoff_timer_fanout(uint32_t ops, uint32_t steps, cb_counts *counts) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    handoff_op *all = calloc(ops, sizeof *all);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    handoff_switches = 0;
    uint32_t started = 0;
    for (uint32_t i = 0; i < ops; i++) {
        handoff_op *op = &all[i];
        pthread_mutex_init(&op->lock, NULL);
        pthread_cond_init(&op->cond, NULL);
        op->remaining = steps;
        if (pthread_create(&op->thread, &attr, handoff_op_main, op) != 0) break;
        started++;
        uv_timer_init(&loop, &op->timer);
        op->timer.data = op;
        uv_timer_start(&op->timer, handoff_fired, 0, 0);
    }
    pthread_attr_destroy(&attr);
    uint64_t turns = 0;
    while (uv_run(&loop, UV_RUN_ONCE)) turns++;
    uint64_t total = 0;
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(all[i].thread, NULL);
        total += all[i].steps;
        uv_close((uv_handle_t *)&all[i].timer, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (uint32_t i = 0; i < started; i++) {
        pthread_cond_destroy(&all[i].cond);
        pthread_mutex_destroy(&all[i].lock);
    }
    free(all);
    counts->steps = total;
    counts->switches = handoff_switches;
    counts->loop_turns = turns + 1;
    counts->stack_maps = started;
    return total;
}
