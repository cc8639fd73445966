#define _GNU_SOURCE
#include "CSpindleSyscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Reads a thread's name and context switches from /proc while it still exists (its exit stop).
static void read_thread_status(pid_t process, spindle_thread_syscalls_t *record) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%ld/status", (int)process, record->tid);
    FILE *file = fopen(path, "r");
    if (!file) return;
    char line[256];
    while (fgets(line, sizeof line, file)) {
        if (strncmp(line, "Name:\t", 6) == 0) {
            size_t length = strcspn(line + 6, "\n");
            if (length > sizeof record->name - 1) length = sizeof record->name - 1;
            memcpy(record->name, line + 6, length);
            record->name[length] = 0;
        } else if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) {
            record->voluntary_switches = strtol(line + 24, NULL, 10);
        } else if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0) {
            record->involuntary_switches = strtol(line + 27, NULL, 10);
        }
    }
    fclose(file);
}

static spindle_thread_syscalls_t *record_for(long tid, spindle_thread_syscalls_t *threads, int capacity,
                                             int *count, int *is_new) {
    for (int index = 0; index < *count; index++) {
        if (threads[index].tid == tid) {
            *is_new = 0;
            return &threads[index];
        }
    }
    *is_new = 1;
    if (*count == capacity) return &threads[capacity - 1];
    spindle_thread_syscalls_t *record = &threads[(*count)++];
    memset(record, 0, sizeof *record);
    record->tid = tid;
    record->voluntary_switches = -1;
    record->involuntary_switches = -1;
    return record;
}

int spindle_count_syscalls(char *const argv[], char *const envp[], spindle_thread_syscalls_t *threads,
                           int capacity, int *count, int *exit_status) {
    if (capacity < 1 || !argv || !argv[0]) return EINVAL;
    *count = 0;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    if (child == 0) {
        close(report[0]);
        int error = 0;
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            error = errno;
        } else {
            raise(SIGSTOP);  // the parent sets its options here
            execvpe(argv[0], argv, envp);
            error = errno;
        }
        // The exec failed: say why through the pipe (closed on a successful exec).
        ssize_t written = write(report[1], &error, sizeof error);
        (void)written;
        _exit(127);
    }
    close(report[1]);
    int status;
    if (waitpid(child, &status, 0) != child) {
        int error = errno;
        close(report[0]);
        return error;
    }
    if (!WIFSTOPPED(status)) {  // PTRACE_TRACEME failed: the child wrote why and exited
        int error = EPERM;
        ssize_t got = read(report[0], &error, sizeof error);
        (void)got;
        close(report[0]);
        return error;
    }
    ptrace(PTRACE_SETOPTIONS, child, NULL,
           (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXIT |
                          PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
    int is_new;
    record_for(child, threads, capacity, count, &is_new);
    ptrace(PTRACE_SYSCALL, child, NULL, NULL);
    int exec_error = 0;
    int child_status = 0;
    for (;;) {
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0) {
            if (errno == EINTR) continue;
            break;  // ECHILD: every thread is gone
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (tid == child) child_status = status;
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        spindle_thread_syscalls_t *record = record_for(tid, threads, capacity, count, &is_new);
        int signal = WSTOPSIG(status);
        int event = status >> 16;
        int inject = 0;
        if (signal == (SIGTRAP | 0x80)) {
            struct __ptrace_syscall_info info;
            long size = ptrace(PTRACE_GET_SYSCALL_INFO, tid, (void *)sizeof info, &info);
            if (size > 0 && info.op == PTRACE_SYSCALL_INFO_ENTRY) {
                uint64_t number = info.entry.nr;
                record->counts[number > SPINDLE_SYSCALL_MAX ? SPINDLE_SYSCALL_MAX : number]++;
            }
        } else if (signal == SIGTRAP && event == PTRACE_EVENT_EXIT) {
            read_thread_status(child, record);
        } else if (signal == SIGTRAP && event != 0) {
            // clone, exec: the new thread is traced already; nothing to deliver.
        } else if (signal == SIGSTOP && is_new) {
            // A new thread's first stop.
        } else {
            inject = signal;  // a real signal: deliver it
        }
        ptrace(PTRACE_SYSCALL, tid, NULL, (void *)(long)inject);
    }
    ssize_t got = read(report[0], &exec_error, sizeof exec_error);
    close(report[0]);
    if (got == (ssize_t)sizeof exec_error && exec_error != 0) return exec_error;
    *exit_status = child_status;
    return 0;
}

const char *spindle_syscall_name(long number) {
    switch (number) {
#define NAME(call) case SYS_##call: return #call;
#ifdef SYS_read
        NAME(read)
#endif
#ifdef SYS_write
        NAME(write)
#endif
#ifdef SYS_readv
        NAME(readv)
#endif
#ifdef SYS_writev
        NAME(writev)
#endif
#ifdef SYS_pread64
        NAME(pread64)
#endif
#ifdef SYS_pwrite64
        NAME(pwrite64)
#endif
#ifdef SYS_openat
        NAME(openat)
#endif
#ifdef SYS_open
        NAME(open)
#endif
#ifdef SYS_close
        NAME(close)
#endif
#ifdef SYS_fstat
        NAME(fstat)
#endif
#ifdef SYS_newfstatat
        NAME(newfstatat)
#endif
#ifdef SYS_statx
        NAME(statx)
#endif
#ifdef SYS_lseek
        NAME(lseek)
#endif
#ifdef SYS_mmap
        NAME(mmap)
#endif
#ifdef SYS_munmap
        NAME(munmap)
#endif
#ifdef SYS_mprotect
        NAME(mprotect)
#endif
#ifdef SYS_madvise
        NAME(madvise)
#endif
#ifdef SYS_mremap
        NAME(mremap)
#endif
#ifdef SYS_brk
        NAME(brk)
#endif
#ifdef SYS_rt_sigprocmask
        NAME(rt_sigprocmask)
#endif
#ifdef SYS_rt_sigaction
        NAME(rt_sigaction)
#endif
#ifdef SYS_rt_sigreturn
        NAME(rt_sigreturn)
#endif
#ifdef SYS_sigaltstack
        NAME(sigaltstack)
#endif
#ifdef SYS_nanosleep
        NAME(nanosleep)
#endif
#ifdef SYS_clock_nanosleep
        NAME(clock_nanosleep)
#endif
#ifdef SYS_clock_gettime
        NAME(clock_gettime)
#endif
#ifdef SYS_gettimeofday
        NAME(gettimeofday)
#endif
#ifdef SYS_futex
        NAME(futex)
#endif
#ifdef SYS_sched_yield
        NAME(sched_yield)
#endif
#ifdef SYS_poll
        NAME(poll)
#endif
#ifdef SYS_ppoll
        NAME(ppoll)
#endif
#ifdef SYS_select
        NAME(select)
#endif
#ifdef SYS_pselect6
        NAME(pselect6)
#endif
#ifdef SYS_epoll_wait
        NAME(epoll_wait)
#endif
#ifdef SYS_epoll_pwait
        NAME(epoll_pwait)
#endif
#ifdef SYS_epoll_pwait2
        NAME(epoll_pwait2)
#endif
#ifdef SYS_epoll_ctl
        NAME(epoll_ctl)
#endif
#ifdef SYS_epoll_create1
        NAME(epoll_create1)
#endif
#ifdef SYS_eventfd2
        NAME(eventfd2)
#endif
#ifdef SYS_socket
        NAME(socket)
#endif
#ifdef SYS_connect
        NAME(connect)
#endif
#ifdef SYS_accept4
        NAME(accept4)
#endif
#ifdef SYS_accept
        NAME(accept)
#endif
#ifdef SYS_bind
        NAME(bind)
#endif
#ifdef SYS_listen
        NAME(listen)
#endif
#ifdef SYS_sendto
        NAME(sendto)
#endif
#ifdef SYS_recvfrom
        NAME(recvfrom)
#endif
#ifdef SYS_sendmsg
        NAME(sendmsg)
#endif
#ifdef SYS_recvmsg
        NAME(recvmsg)
#endif
#ifdef SYS_shutdown
        NAME(shutdown)
#endif
#ifdef SYS_setsockopt
        NAME(setsockopt)
#endif
#ifdef SYS_getsockopt
        NAME(getsockopt)
#endif
#ifdef SYS_ioctl
        NAME(ioctl)
#endif
#ifdef SYS_fcntl
        NAME(fcntl)
#endif
#ifdef SYS_pipe2
        NAME(pipe2)
#endif
#ifdef SYS_dup3
        NAME(dup3)
#endif
#ifdef SYS_clone
        NAME(clone)
#endif
#ifdef SYS_clone3
        NAME(clone3)
#endif
#ifdef SYS_exit
        NAME(exit)
#endif
#ifdef SYS_exit_group
        NAME(exit_group)
#endif
#ifdef SYS_wait4
        NAME(wait4)
#endif
#ifdef SYS_getpid
        NAME(getpid)
#endif
#ifdef SYS_gettid
        NAME(gettid)
#endif
#ifdef SYS_tgkill
        NAME(tgkill)
#endif
#ifdef SYS_getrusage
        NAME(getrusage)
#endif
#ifdef SYS_prctl
        NAME(prctl)
#endif
#ifdef SYS_sched_getaffinity
        NAME(sched_getaffinity)
#endif
#ifdef SYS_sched_setaffinity
        NAME(sched_setaffinity)
#endif
#ifdef SYS_getrandom
        NAME(getrandom)
#endif
#ifdef SYS_timerfd_settime
        NAME(timerfd_settime)
#endif
#ifdef SYS_io_uring_enter
        NAME(io_uring_enter)
#endif
#ifdef SYS_membarrier
        NAME(membarrier)
#endif
#ifdef SYS_rseq
        NAME(rseq)
#endif
#ifdef SYS_set_robust_list
        NAME(set_robust_list)
#endif
#undef NAME
    default:
        return NULL;
    }
}
