/*
 * platform/spinlock.cc - the futex slow paths of spinlock_t.
 */
#include "platform/spinlock.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace kalloc {

__thread bool spin_lock_bypass __attribute__((tls_model("initial-exec")));

void __spin_lock_slow(spinlock_t *lock)
{
    for (int i = 0; i < 200; i++) {
        __builtin_ia32_pause();
        int expected = 0;
        if (READ_ONCE(lock->state) == 0 &&
            __atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
    }
    int saved = errno;
    while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, &lock->state, FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
    errno = saved;
}

void __spin_unlock_wake(spinlock_t *lock)
{
    int saved = errno;
    syscall(SYS_futex, &lock->state, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    errno = saved;
}

} // namespace kalloc
