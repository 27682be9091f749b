/* support/test-driver.c stand-in (kalloc, glibc_malloc.sh).  The test
 * defines do_test, or names its function with TEST_FUNCTION or
 * TEST_FUNCTION_ARGV; it runs in a child process, as in glibc's driver, so
 * that EXPECTED_SIGNAL and EXPECTED_STATUS tests can die.  Prints one line,
 * "PASS", "FAIL (...)" or "UNSUPPORTED", and exits 0 for PASS and
 * UNSUPPORTED, 1 otherwise. */
#include "../shim.h"

static int kshim_argc;
static char **kshim_argv;

static int kshim_test(void)
{
#if defined(TEST_FUNCTION_ARGV)
    return TEST_FUNCTION_ARGV(kshim_argc, kshim_argv);
#elif defined(TEST_FUNCTION)
    return TEST_FUNCTION();
#else
    return do_test();
#endif
}

int main(int argc, char **argv)
{
    kshim_argc = argc;
    kshim_argv = argv;
#ifdef PREPARE
    PREPARE(argc, argv);
#endif
    fflush(stdout);
    pid_t pid = xfork();
    if (pid == 0) {
        int r = kshim_test();
        if (r == 0 && support_record_failure_is_failed())
            r = 1;
        fflush(stdout);
        exit(r);
    }
    int st;
    xwaitpid(pid, &st, 0);
#ifdef EXPECTED_SIGNAL
    if (WIFSIGNALED(st) && WTERMSIG(st) == EXPECTED_SIGNAL) {
        puts("PASS");
        return 0;
    }
#else
    int want = 0;
#ifdef EXPECTED_STATUS
    want = EXPECTED_STATUS;
#endif
    if (WIFEXITED(st) && WEXITSTATUS(st) == want) {
        puts("PASS");
        return 0;
    }
#endif
    if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_UNSUPPORTED) {
        puts("UNSUPPORTED");
        return 0;
    }
    if (WIFSIGNALED(st))
        printf("FAIL (signal %d)\n", WTERMSIG(st));
    else
        printf("FAIL (status %d)\n", WEXITSTATUS(st));
    return 1;
}
