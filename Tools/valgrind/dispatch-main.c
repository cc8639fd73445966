// Preloaded into the Swift Testing runner under Valgrind (Tools/valgrind/run.sh).
//
// Valgrind 3.19 (Debian 12's) dies with an internal SIGSEGV ("the 'impossible' happened") when
// a Swift program's async main parks its main thread in libdispatch's dispatch_main: that ends
// the main thread with pthread_exit and traps it in a sigsuspend loop from a thread-specific
// destructor, and Valgrind's handling of that sigsuspend crashes before the first test. A
// one-test package with no Spindle code in it crashes the same way.
//
// This dispatch_main does the same hand-over without the sigsuspend: it registers its own
// destructor, created after libdispatch's (glibc runs them in creation order, so libdispatch
// first hands the main queue to its worker threads), which parks the thread in sleep(), and then
// ends the main thread. The process ends when the runner calls exit() from another thread.
#include <pthread.h>
#include <unistd.h>

static void park_forever(void *unused) {
    (void)unused;
    for (;;) sleep(3600);
}

void dispatch_main(void) {
    pthread_key_t key;
    pthread_key_create(&key, park_forever);
    pthread_setspecific(key, &key);
    pthread_exit(NULL);
}
