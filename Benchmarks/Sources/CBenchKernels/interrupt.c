#include "CBenchKernels.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signo) {
    (void)signo;
    interrupted = 1;
    static const char message[] = "\nspindle-bench: stopping after the current row (Ctrl-C again to quit now)\n";
    (void)!write(2, message, sizeof message - 1);
    signal(SIGINT, SIG_DFL);
}

void cb_install_interrupt_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
}

int cb_interrupted(void) { return interrupted; }
