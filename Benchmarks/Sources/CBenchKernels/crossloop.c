// The `crossloop` workload's floors: what crossing between two cores costs before any runtime
// is added. An SPSC ring between two pinned threads that spin (the cache-line floor: a message
// costs the lines its slot and the indices move through), and a uv_async_send ping-pong between
// two libuv loops on two pinned threads (the wake-up floor: an eventfd write, an epoll return
// and a callback each way).
#define _GNU_SOURCE
#include "CBenchKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/// Pins the calling thread to the `index`-th CPU of `allowed` (wrapping), as LoopGroup's
/// pinning does.
static void pin(const cpu_set_t *allowed, int index) {
    cpu_set_t one;
    int count = CPU_COUNT(allowed), seen = 0;
    if (count <= 0) return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, allowed) || seen++ != index % count) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
        return;
    }
}

// MARK: - SPSC ring

typedef struct {
    _Alignas(64) _Atomic uint64_t head;  // written by the consumer
    _Alignas(64) _Atomic uint64_t tail;  // written by the producer
    _Alignas(64) uint64_t *slots;
    uint64_t mask;
    uint64_t messages;
    uint64_t sum;
    cpu_set_t allowed;
} spsc_t;

static void *spsc_consumer(void *raw) {
    spsc_t *ring = raw;
    pin(&ring->allowed, 1);
    uint64_t head = 0, sum = 0;
    while (head < ring->messages) {
        uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
        if (tail == head) {
            sched_yield();  // the producer may share this CPU (fewer CPUs than threads)
            continue;
        }
        while (head < tail) sum += ring->slots[head++ & ring->mask];
        atomic_store_explicit(&ring->head, head, memory_order_release);
    }
    ring->sum = sum;
    return NULL;
}

double cb_spsc_ring_ns_per_message(uint64_t messages, uint32_t capacity) {
    spsc_t *ring;
    if (posix_memalign((void **)&ring, 64, sizeof *ring) != 0) return -1;
    ring->slots = calloc(capacity, sizeof(uint64_t));
    ring->mask = capacity - 1;
    ring->messages = messages;
    atomic_init(&ring->head, 0);
    atomic_init(&ring->tail, 0);
    pthread_t consumer;
    pthread_getaffinity_np(pthread_self(), sizeof ring->allowed, &ring->allowed);
    cpu_set_t original = ring->allowed;
    pin(&original, 0);
    uint64_t start = now_ns();
    pthread_create(&consumer, NULL, spsc_consumer, ring);
    uint64_t tail = 0, head = 0;
    while (tail < messages) {
        if (tail - head == capacity) {
            head = atomic_load_explicit(&ring->head, memory_order_acquire);
            if (tail - head == capacity) sched_yield();
            continue;
        }
        ring->slots[tail & ring->mask] = tail;
        tail++;
        atomic_store_explicit(&ring->tail, tail, memory_order_release);
    }
    pthread_join(consumer, NULL);
    uint64_t elapsed = now_ns() - start;
    int correct = ring->sum == messages * (messages - 1) / 2;
    free(ring->slots);
    free(ring);
    pthread_setaffinity_np(pthread_self(), sizeof original, &original);
    return correct ? (double)elapsed / (double)messages : -1;
}

// MARK: - uv_async_send ping-pong

typedef struct {
    uv_loop_t loops[2];
    uv_async_t asyncs[2];   // asyncs[i] wakes loops[i]
    uv_idle_t spinner;      // keeps loop 1 busy (never blocking in epoll) when `busy`
    uint64_t rounds, done;  // done: loop 0's count
    _Atomic int stop;       // set by loop 0's thread once it is done
    int busy;
    uv_sem_t ready;
    cpu_set_t allowed;
} pingpong_t;

static void ping_arrived(uv_async_t *async);  // on loop 1: answer
static void pong_arrived(uv_async_t *async);  // on loop 0: count, ping again or stop

static void ping_arrived(uv_async_t *async) {
    pingpong_t *state = async->data;
    if (atomic_load_explicit(&state->stop, memory_order_acquire)) {
        uv_close((uv_handle_t *)&state->asyncs[1], NULL);
        if (state->busy) uv_close((uv_handle_t *)&state->spinner, NULL);
        return;
    }
    uv_async_send(&state->asyncs[0]);
}

static void pong_arrived(uv_async_t *async) {
    pingpong_t *state = async->data;
    state->done++;
    if (state->done < state->rounds) {
        uv_async_send(&state->asyncs[1]);
        return;
    }
    uv_close((uv_handle_t *)&state->asyncs[0], NULL);
}

static void spin(uv_idle_t *idle) { (void)idle; }

static void *responder(void *raw) {
    pingpong_t *state = raw;
    pin(&state->allowed, 1);
    uv_loop_init(&state->loops[1]);
    uv_async_init(&state->loops[1], &state->asyncs[1], ping_arrived);
    state->asyncs[1].data = state;
    if (state->busy) {
        uv_idle_init(&state->loops[1], &state->spinner);
        uv_idle_start(&state->spinner, spin);
    }
    uv_sem_post(&state->ready);
    uv_run(&state->loops[1], UV_RUN_DEFAULT);
    uv_loop_close(&state->loops[1]);
    return NULL;
}

double cb_async_pingpong_ns_per_round(uint64_t rounds, int busy) {
    pingpong_t *state = calloc(1, sizeof *state);
    state->rounds = rounds;
    state->busy = busy;
    uv_sem_init(&state->ready, 0);
    pthread_getaffinity_np(pthread_self(), sizeof state->allowed, &state->allowed);
    cpu_set_t original = state->allowed;
    pin(&original, 0);
    uv_loop_init(&state->loops[0]);
    uv_async_init(&state->loops[0], &state->asyncs[0], pong_arrived);
    state->asyncs[0].data = state;
    pthread_t thread;
    pthread_create(&thread, NULL, responder, state);
    uv_sem_wait(&state->ready);
    uint64_t start = now_ns();
    uv_async_send(&state->asyncs[1]);
    uv_run(&state->loops[0], UV_RUN_DEFAULT);
    uint64_t elapsed = now_ns() - start;
    uint64_t done = state->done;
    atomic_store_explicit(&state->stop, 1, memory_order_release);
    uv_async_send(&state->asyncs[1]);
    pthread_join(thread, NULL);
    uv_loop_close(&state->loops[0]);
    uv_sem_destroy(&state->ready);
    free(state);
    pthread_setaffinity_np(pthread_self(), sizeof original, &original);
    return done == rounds ? (double)elapsed / (double)rounds : -1;
}
