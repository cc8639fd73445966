#define _GNU_SOURCE
#include "CSpindleSupport.h"
#include <sched.h>

#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SPINDLE_HAVE_VALGRIND 1
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SPINDLE_HAVE_MEMCHECK 1
#endif

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if __has_feature(address_sanitizer) || defined(__SANITIZE_ADDRESS__)
#define SPINDLE_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if __has_feature(thread_sanitizer) || defined(__SANITIZE_THREAD__)
#define SPINDLE_TSAN 1
#include <sanitizer/tsan_interface.h>
#endif

__thread spindle_fiber_t *spindle_tls_current_fiber __attribute__((tls_model("initial-exec"))) = NULL;

// MARK: - Exclusivity access-set head

// A word that is never NULL: the fallback "head" that makes every switch call the runtime.
static void *const always_call_runtime = (void *)1;

typedef struct {
    uintptr_t marker;
    void *const *found;
    int matches;
} tls_scan_t;

static int scan_tls_block(struct dl_phdr_info *info, size_t size, void *raw) {
    (void)size;
    tls_scan_t *scan = raw;
    if (info->dlpi_tls_data == NULL) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_TLS) continue;
        uintptr_t *words = info->dlpi_tls_data;
        size_t count = ph->p_memsz / sizeof(uintptr_t);
        for (size_t w = 0; w < count; w++) {
            if (words[w] == scan->marker) {
                scan->found = (void *const *)&words[w];
                scan->matches++;
            }
        }
    }
    return 0;
}

void *const *spindle_exclusivity_head_location(void) {
    // A fake access record (Pointer, PC, NextAndAction) forming a one-element access set.
    uintptr_t access[3] = {(uintptr_t)&access, 0, 0};
    uintptr_t state[2] = {(uintptr_t)access, (uintptr_t)access};
    swift_task_enterThreadLocalContext((char *)state);
    tls_scan_t scan = {.marker = (uintptr_t)access, .found = NULL, .matches = 0};
    dl_iterate_phdr(scan_tls_block, &scan);
    swift_task_exitThreadLocalContext((char *)state);
    if (scan.matches != 1) return &always_call_runtime;
    // After exit the marker must be gone from that word, or it was not the head.
    if (*scan.found == (void *)access) return &always_call_runtime;
    return scan.found;
}

void *const *spindle_exclusivity_fallback_location(void) {
    return &always_call_runtime;
}

int spindle_exclusivity_fast_path_available(void *const *location) {
    return location != &always_call_runtime;
}

// MARK: - Valgrind

unsigned spindle_valgrind_stack_register(void *lo, void *hi) {
#ifdef SPINDLE_HAVE_VALGRIND
    return VALGRIND_STACK_REGISTER(lo, hi);
#else
    (void)lo;
    (void)hi;
    return 0;
#endif
}

void spindle_valgrind_stack_deregister(unsigned id) {
#ifdef SPINDLE_HAVE_VALGRIND
    if (id != 0) VALGRIND_STACK_DEREGISTER(id);
#else
    (void)id;
#endif
}

void spindle_valgrind_make_defined(const void *address, size_t length) {
#ifdef SPINDLE_HAVE_MEMCHECK
    VALGRIND_MAKE_MEM_DEFINED(address, length);
#else
    (void)address;
    (void)length;
#endif
}

int spindle_running_on_valgrind(void) {
#ifdef SPINDLE_HAVE_VALGRIND
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    return 0;
#endif
}

__thread void *spindle_tls_current_loop;

__thread uint64_t spindle_tls_thread_id __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t spindle_last_thread_id;

uint64_t spindle_assign_thread_id(void) {
    spindle_tls_thread_id = atomic_fetch_add_explicit(&spindle_last_thread_id, 1, memory_order_relaxed) + 1;
    return spindle_tls_thread_id;
}

int spindle_usable_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}

// MARK: Asymmetric fences

int spindle_asymmetric_fences_enabled = 0;
static pthread_once_t asymmetric_fences_once = PTHREAD_ONCE_INIT;

static void asymmetric_fences_register(void) {
    // MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (16) and MEMBARRIER_CMD_PRIVATE_EXPEDITED (8),
    // Linux 4.14+; spelt out so that older headers build.
    if (spindle_running_on_valgrind()) return;  // Valgrind does not implement it
    if (syscall(SYS_membarrier, 16, 0, 0) == 0) spindle_asymmetric_fences_enabled = 1;
}

void spindle_asymmetric_fences_setup(void) { pthread_once(&asymmetric_fences_once, asymmetric_fences_register); }

void spindle_heavy_fence(void) {
    if (spindle_asymmetric_fences_enabled && syscall(SYS_membarrier, 8, 0, 0) == 0) return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int spindle_current_cpu(void) { return sched_getcpu(); }

int spindle_current_thread_cpu_count(void) {
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int spindle_pin_current_thread(int index) {
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return errno;
    int count = CPU_COUNT(&allowed);
    if (count <= 0) return EINVAL;
    int wanted = index % count, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (seen++ != wanted) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
    return EINVAL;
}

int spindle_thread_name(uint64_t thread, char *buf, size_t len) {
    return pthread_getname_np((pthread_t)thread, buf, len);
}

int spindle_set_current_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    return pthread_setname_np(pthread_self(), truncated);
}

// MARK: - Stack overflow reporter
//
// Everything below runs inside a signal handler on the alternate stack: only async-signal-safe
// calls (write, sigaction), no malloc, no stdio.

static struct sigaction previous_segv;
static struct sigaction previous_bus;
static pthread_once_t reporter_once = PTHREAD_ONCE_INIT;
static int reporter_install_error = 0;

static size_t append_str(char *buf, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap) buf[at++] = *s++;
    return at;
}

static size_t append_u64(char *buf, size_t at, size_t cap, uint64_t v) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 24);
    while (n > 0 && at + 1 < cap) buf[at++] = digits[--n];
    return at;
}

static int fault_is_overflow(const spindle_fiber_t *f, uintptr_t addr, uintptr_t sp) {
    uintptr_t guard_lo = (uintptr_t)f->mapping;
    uintptr_t lo = (uintptr_t)f->stack_lo;
    if (addr >= guard_lo && addr < lo) return 1;
    // A frame larger than the guard page can jump past it; the stack pointer still tells.
    if (sp < lo && sp + (1u << 20) >= lo && addr < lo && addr + (1u << 20) >= lo) return 1;
    return 0;
}

static void forward_to_previous(int sig, siginfo_t *info, void *uctx) {
    const struct sigaction *prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
        prev->sa_sigaction(sig, info, uctx);
        return;
    }
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN && prev->sa_handler) {
        prev->sa_handler(sig);
        return;
    }
    // Default action: restore it and return; the faulting instruction runs again and the
    // kernel delivers the signal with its default (fatal) disposition.
    signal(sig, SIG_DFL);
}

static void overflow_handler(int sig, siginfo_t *info, void *uctx) {
    spindle_fiber_t *f = spindle_tls_current_fiber;
    uintptr_t addr = (uintptr_t)info->si_addr;
    uintptr_t sp = 0;
#if defined(__x86_64__)
    sp = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    sp = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.sp;
#endif
    if (f != NULL && fault_is_overflow(f, addr, sp)) {
        char msg[200];
        size_t n = 0;
        n = append_str(msg, n, sizeof msg, "fatal: stack overflow in fiber \"");
        n = append_str(msg, n, sizeof msg, f->named ? f->name : "");
        n = append_str(msg, n, sizeof msg, "\" (#");
        n = append_u64(msg, n, sizeof msg, f->id);
        n = append_str(msg, n, sizeof msg, ", ");
        n = append_u64(msg, n, sizeof msg, f->stack_size / 1024);
        n = append_str(msg, n, sizeof msg, " KiB stack)\n");
        ssize_t ignored = write(STDERR_FILENO, msg, n);
        (void)ignored;
        // Die by the signal itself, not by whatever handler came before us: the stack is gone.
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        return;
    }
    forward_to_previous(sig, info, uctx);
}

static void install_handlers_once(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous_segv) != 0) reporter_install_error = errno;
    if (sigaction(SIGBUS, &sa, &previous_bus) != 0) reporter_install_error = errno;
}

int spindle_overflow_reporter_install_on_this_thread(void) {
    pthread_once(&reporter_once, install_handlers_once);
    if (reporter_install_error) return reporter_install_error;

    stack_t current;
    if (sigaltstack(NULL, &current) != 0) return errno;
    if (!(current.ss_flags & SS_DISABLE) && current.ss_size >= (size_t)SIGSTKSZ) return 0;

    // One alternate stack per thread, kept for the thread's lifetime (a few pages, never freed:
    // a thread may still take a signal while it exits).
    size_t size = 64 * 1024;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return errno;
    stack_t alt = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&alt, NULL) != 0) {
        int err = errno;
        munmap(mem, size);
        return err;
    }
    return 0;
}

// MARK: - Sanitizer fiber annotations
//
// These switch the sanitizer's notion of the current stack, so they must not be instrumented
// themselves: TSan would record the function's entry on one fiber and its exit on another.

#if __has_attribute(disable_sanitizer_instrumentation)
#define SPINDLE_UNINSTRUMENTED __attribute__((disable_sanitizer_instrumentation))
#else
#define SPINDLE_UNINSTRUMENTED __attribute__((no_sanitize("thread", "address")))
#endif

int spindle_sanitizer_annotations_enabled(void) {
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
    return 1;
#else
    return 0;
#endif
}

SPINDLE_UNINSTRUMENTED void spindle_sanitizer_before_switch(spindle_sched_t *sched, spindle_fiber_t *from, spindle_fiber_t *to) {
#ifdef SPINDLE_ASAN
    void **save;
    if (from == NULL) save = &sched->main_fake_stack;
    else if (from->state == SPINDLE_FIBER_FINISHED) save = NULL;  // its fake stack can go
    else save = &from->san_fake_stack;
    if (to != NULL) {
        __sanitizer_start_switch_fiber(save, to->stack_lo, to->stack_usable);
    } else {
        __sanitizer_start_switch_fiber(save, sched->main_stack_bottom, sched->main_stack_size);
    }
#endif
#ifdef SPINDLE_TSAN
    if (sched->main_tsan_fiber == NULL) sched->main_tsan_fiber = __tsan_get_current_fiber();
    if (to != NULL && to->tsan_fiber == NULL) to->tsan_fiber = __tsan_create_fiber(0);
    __tsan_switch_to_fiber(to != NULL ? to->tsan_fiber : sched->main_tsan_fiber, 0);
#endif
    (void)sched;
    (void)from;
    (void)to;
}

SPINDLE_UNINSTRUMENTED void spindle_sanitizer_after_switch(spindle_sched_t *sched, spindle_fiber_t *resumed) {
#ifdef SPINDLE_ASAN
    const void *old_bottom = NULL;
    size_t old_size = 0;
    __sanitizer_finish_switch_fiber(resumed != NULL ? resumed->san_fake_stack : sched->main_fake_stack,
                                    &old_bottom, &old_size);
    if (resumed != NULL && sched->main_stack_bottom == NULL) {
        sched->main_stack_bottom = old_bottom;
        sched->main_stack_size = old_size;
    }
#endif
    (void)sched;
    (void)resumed;
}

void spindle_sanitizer_fiber_destroyed(spindle_fiber_t *fiber) {
#ifdef SPINDLE_TSAN
    if (fiber->tsan_fiber != NULL) {
        __tsan_destroy_fiber(fiber->tsan_fiber);
        fiber->tsan_fiber = NULL;
    }
#endif
#ifdef SPINDLE_ASAN
    // The stack goes back to the pool with the redzones of the frames it last held still
    // poisoned; the next fiber on it lays out different frames there.
    __asan_unpoison_memory_region(fiber->stack_lo, fiber->stack_usable);
#endif
    fiber->san_fake_stack = NULL;
    (void)fiber;
}

// MARK: - Debugger registry

spindle_sched_t *volatile spindle_sched_registry = NULL;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

void spindle_sched_register(spindle_sched_t *sched) {
    pthread_mutex_lock(&registry_lock);
    sched->registry_prev = NULL;
    sched->registry_next = spindle_sched_registry;
    if (spindle_sched_registry) spindle_sched_registry->registry_prev = sched;
    spindle_sched_registry = sched;
    pthread_mutex_unlock(&registry_lock);
}

void spindle_sched_unregister(spindle_sched_t *sched) {
    pthread_mutex_lock(&registry_lock);
    if (sched->registry_prev) sched->registry_prev->registry_next = sched->registry_next;
    else spindle_sched_registry = sched->registry_next;
    if (sched->registry_next) sched->registry_next->registry_prev = sched->registry_prev;
    sched->registry_prev = sched->registry_next = NULL;
    pthread_mutex_unlock(&registry_lock);
}

int spindle_trace_file_index(void) {
    static int next = 0;
    return __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
}

void spindle_trace_at_exit_once(void (*handler)(void)) {
    static int registered = 0;
    if (__atomic_exchange_n(&registered, 1, __ATOMIC_ACQ_REL) == 0) atexit(handler);
}

spindle_sched_t *spindle_sched_registry_first(void) {
    pthread_mutex_lock(&registry_lock);
    spindle_sched_t *first = spindle_sched_registry;
    pthread_mutex_unlock(&registry_lock);
    return first;
}

long spindle_kernel_thread_id(void) { return (long)syscall(SYS_gettid); }
