/*
 * platform/kthread.cc - background threads and futex waits (see kthread.h).
 */
#include "platform/kthread.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace kalloc {

bool process_single_threaded() { return __libc_single_threaded; }

bool kthread_run(void *(*fn)(void *), void *arg)
{
    int saved = errno;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    /* The new thread inherits the creator's mask: block everything around
     * the create so no signal handler of the program ever runs on it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int err = pthread_create(&t, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    errno = saved;
    return err == 0;
}

void kthread_wait(int *word, int val, unsigned timeout_ms)
{
    int saved = errno;
    struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, timeout_ms ? &ts : nullptr, nullptr, 0);
    errno = saved;
}

void kthread_wake(int *word)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    errno = saved;
}

} // namespace kalloc
