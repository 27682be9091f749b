/*
 * platform/rseq.cc - per-CPU pointer arrays changed by restartable
 * sequences, and the membarrier fence that stops them (see rseq.h).
 *
 * The critical sections are written in assembly: the compiler must not move
 * a store before the committing one, nor spill into memory another thread
 * could read.  Each has its descriptor (struct rseq_cs: version 0, flags 0,
 * start_ip, post_commit_offset, abort_ip) in the __rseq_cs section, and its
 * abort handler, preceded by the 4-byte signature glibc registered
 * (RSEQ_SIG), in __rseq_failure.  The abort handler jumps back to the store
 * of the descriptor's address into rseq_cs (the kernel clears it on abort),
 * so a restarted sequence runs from the top.
 */
#include "platform/rseq.h"

#include "platform/os.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace kalloc {

namespace {

enum { PCPU_UNKNOWN, PCPU_OK, PCPU_NO };
int pcpu_state;             /* PCPU_*: rseq_percpu_init's answer, once known */

long membarrier(int cmd, unsigned flags)
{
    return syscall(SYS_membarrier, cmd, flags, 0);
}

} // namespace

bool rseq_percpu_init()
{
    int s = __atomic_load_n(&pcpu_state, __ATOMIC_ACQUIRE);
    if (likely(s != PCPU_UNKNOWN))
        return s == PCPU_OK;
#if defined(__x86_64__)
    /* cpu_id and rseq_cs must be in the area glibc registered: __rseq_size
     * is 20 from glibc 2.40 (and its backports, Debian 12's included), 32
     * before. */
    bool ok = &__rseq_size && __rseq_size >= 16 && &__rseq_offset;
    int saved = errno;
    /* Under a seccomp filter, membarrier may be what kills the process
     * (sandboxes allow what glibc's malloc calls): no per-CPU arrays. */
    if (ok && os_seccomp_filtered())
        ok = false;
    if (ok) {
        long cmds = membarrier(MEMBARRIER_CMD_QUERY, 0);
        ok = cmds > 0 && (cmds & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ) &&
             membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0) == 0;
    }
    errno = saved;
#else
    bool ok = false;
#endif
    __atomic_store_n(&pcpu_state, ok ? PCPU_OK : PCPU_NO, __ATOMIC_RELEASE);
    return ok;
}

bool rseq_fence()
{
    /* A filter installed after the arrays were set up (a sandbox that
     * starts late): no fence, so no drain; the arrays stay usable.  Filters
     * are never removed, so once seen this stays. */
    if (os_seccomp_filtered())
        return false;
    int saved = errno;
    long r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0);
    if (r != 0 && errno == EPERM) {
        /* A forked child: the registration belongs to the parent's mm. */
        if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0) == 0)
            r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0);
    }
    errno = saved;
    return r == 0;
}

#if defined(__x86_64__)

/* The block of the current CPU: rax = region + (cpu_id << shift); the stop
 * word is checked (got = RSEQ_PERCPU_STOPPED and out when set). */
#define RSEQ_PERCPU_PROLOGUE                                                                       \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                                          \
    ".balign 32\n\t"                                                                               \
    "3:\n\t"                                                                                       \
    ".long 0, 0\n\t"                                                                               \
    ".quad 1f, 2f - 1f, 4f\n\t"                                                                    \
    ".popsection\n\t"                                                                              \
    "0:\n\t"                                                                                       \
    "leaq 3b(%%rip), %%rax\n\t"                                                                    \
    "movq %%rax, 8(%[rs])\n\t"                                                                     \
    "1:\n\t"                                                                                       \
    "movl 4(%[rs]), %%eax\n\t"                                                                     \
    "movl $-1, %k[got]\n\t"                                                                        \
    "cmpl %[ncpu], %%eax\n\t"      /* a CPU past the region (hot-added): as stopped */          \
    "jae 2f\n\t"                                                                                   \
    "shlq %%cl, %%rax\n\t"                                                                         \
    "addq %[region], %%rax\n\t"                                                                    \
    "cmpl $0, (%%rax)\n\t"                                                                         \
    "jne 2f\n\t"

#define RSEQ_PERCPU_EPILOGUE                                                                       \
    "2:\n\t"                                                                                       \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                                      \
    ".byte 0x0f, 0xb9, 0x3d\n\t" /* ud1 <sig>(%rip), %edi: the signature as an operand */         \
    ".long 0x53053053\n\t"                                                                         \
    "4:\n\t"                                                                                       \
    "jmp 0b\n\t"                                                                                   \
    ".popsection\n\t"

__attribute__((noinline)) unsigned rseq_percpu_pop(char *region, unsigned ncpu, unsigned shift,
                                                   unsigned off, void **out, unsigned want)
{
    rseq_area *rs = rseq_self();
    unsigned long got;
    asm volatile(RSEQ_PERCPU_PROLOGUE
                 "movl (%%rax,%[off]), %%edx\n\t"      /* count */
                 "movl %k[want], %k[got]\n\t"
                 "cmpl %%edx, %k[got]\n\t"
                 "cmoval %%edx, %k[got]\n\t"           /* got = min(want, count) */
                 "leaq 8(%%rax,%[off]), %%r8\n\t"
                 "xorl %%r9d, %%r9d\n\t"
                 "jmp 6f\n\t"
                 "5:\n\t"
                 "subl $1, %%edx\n\t"
                 "movq (%%r8,%%rdx,8), %%r10\n\t"
                 "movq %%r10, (%[out],%%r9,8)\n\t"
                 "addl $1, %%r9d\n\t"
                 "6:\n\t"
                 "cmpl %k[got], %%r9d\n\t"
                 "jb 5b\n\t"
                 "movl %%edx, (%%rax,%[off])\n\t"      /* commit: count -= got */
                 RSEQ_PERCPU_EPILOGUE
                 : [got] "=&r"(got)
                 : [rs] "r"(rs), [region] "r"(region), [ncpu] "m"(ncpu), "c"(shift),
                   [off] "r"((unsigned long)off), [out] "r"(out), [want] "r"(want)
                 : "rax", "rdx", "r8", "r9", "r10", "memory", "cc");
    return (unsigned)got;
}

__attribute__((noinline)) unsigned rseq_percpu_push(char *region, unsigned ncpu, unsigned shift,
                                                    unsigned off, void *const *in, unsigned n,
                                                    unsigned cap)
{
    rseq_area *rs = rseq_self();
    unsigned long got;
    asm volatile(RSEQ_PERCPU_PROLOGUE
                 "movl (%%rax,%[off]), %%edx\n\t"      /* count */
                 "xorl %k[got], %k[got]\n\t"
                 "movl %k[cap], %%r9d\n\t"
                 "subl %%edx, %%r9d\n\t"               /* room = cap - count */
                 "jbe 2f\n\t"
                 "cmpl %k[n], %%r9d\n\t"
                 "cmoval %k[n], %%r9d\n\t"             /* k = min(room, n) */
                 "testl %%r9d, %%r9d\n\t"
                 "jz 2f\n\t"
                 "leaq 8(%%rax,%[off]), %%r8\n\t"
                 "leaq (%%r8,%%rdx,8), %%r8\n\t"       /* the first free slot */
                 "5:\n\t"
                 "movq (%[in],%[got],8), %%r10\n\t"
                 "movq %%r10, (%%r8,%[got],8)\n\t"
                 "addq $1, %[got]\n\t"
                 "cmpl %%r9d, %k[got]\n\t"
                 "jb 5b\n\t"
                 "addl %k[got], %%edx\n\t"
                 "movl %%edx, (%%rax,%[off])\n\t"      /* commit: count += got */
                 RSEQ_PERCPU_EPILOGUE
                 : [got] "=&r"(got)
                 : [rs] "r"(rs), [region] "r"(region), [ncpu] "m"(ncpu), "c"(shift),
                   [off] "r"((unsigned long)off), [in] "r"(in), [n] "r"(n), [cap] "r"(cap)
                 : "rax", "rdx", "r8", "r9", "r10", "memory", "cc");
    return (unsigned)got;
}

#else

unsigned rseq_percpu_pop(char *, unsigned, unsigned, unsigned, void **, unsigned)
{
    return RSEQ_PERCPU_STOPPED;
}
unsigned rseq_percpu_push(char *, unsigned, unsigned, unsigned, void *const *, unsigned, unsigned)
{
    return RSEQ_PERCPU_STOPPED;
}

#endif

} // namespace kalloc
