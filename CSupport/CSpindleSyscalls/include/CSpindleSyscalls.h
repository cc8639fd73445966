#ifndef CSPINDLE_SYSCALLS_H
#define CSPINDLE_SYSCALLS_H

// A system call counter for spindle-doctor: runs a program under ptrace and counts, for each of
// its threads, the system calls it entered by number, and its voluntary and involuntary
// context switches (read from /proc when the thread exits). Linux only; nothing of it runs in a
// program that links Spindle.

#include <stdint.h>
#include <sys/types.h>

/// The highest system call number counted (above it, calls are counted as SPINDLE_SYSCALL_MAX).
#define SPINDLE_SYSCALL_MAX 512

/// One thread of the traced program.
typedef struct {
    long tid;                                  // kernel thread id (gettid)
    char name[16];                             // its name when it exited (/proc/.../comm)
    uint64_t counts[SPINDLE_SYSCALL_MAX + 1];  // system calls entered, by number
    long voluntary_switches;                   // voluntary_ctxt_switches when it exited (-1: not read)
    long involuntary_switches;                 // nonvoluntary_ctxt_switches when it exited
} spindle_thread_syscalls_t;

/// Runs `argv[0]` (searched in PATH as execvp does) with `argv` and the environment `envp`
/// under ptrace, counting every thread's system calls into `threads` (room for `capacity`;
/// threads beyond it are counted in the last record). On success returns 0 and sets `*count`
/// to the threads recorded and `*exit_status` to the program's wait status; on failure returns
/// an errno value (ptrace refused, fork failed, the program could not be executed: ENOENT,
/// EACCES, ...).
int spindle_count_syscalls(char *const argv[], char *const envp[], spindle_thread_syscalls_t *threads,
                           int capacity, int *count, int *exit_status);

/// The name of system call `number` on this architecture, or NULL when the table does not
/// know it.
const char *spindle_syscall_name(long number);

#endif
