// pcp_large_bench: malloc/free of large blocks (40 KiB, 100 KiB, 300 KiB)
// with 1 and 2 threads; prints the time per malloc+free pair and how many
// times the zone lock was taken per pair (pa_stats.zone_lock).  Built with
// the unit tests (it links src/'s objects directly), not run by ctest:
//
//   build/tests/unit/pcp_large_bench [iterations] [heap MiB]
//
// `heap MiB` keeps that much in live 2 MiB blocks first, so the zone has a
// realistic size (pageset limits scale with it, see per_cpu_pages.h).
// Times are wall time per iteration and CPU time (user + system, all
// threads) per malloc+free pair.
// Two patterns per size: "pair" (malloc, touch, free) and "batch" (16
// mallocs, then the 16 frees).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <initializer_list>

#include "kalloc/kalloc.h"
#include "mm/page_alloc.h"

namespace {

long iterations = 200000;
size_t cur_size;
bool cur_batch;

double now_s()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void *worker(void *)
{
    if (!cur_batch) {
        for (long i = 0; i < iterations; i++) {
            char *p = (char *)kalloc_malloc(cur_size);
            p[0] = 1;
            p[cur_size - 1] = 2;
            kalloc_free(p);
        }
    } else {
        void *v[16];
        for (long i = 0; i < iterations; i += 16) {
            for (auto &p : v) {
                p = kalloc_malloc(cur_size);
                ((char *)p)[0] = 1;
            }
            for (auto &p : v)
                kalloc_free(p);
        }
    }
    return nullptr;
}

double cpu_s()
{
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

void run(size_t size, unsigned threads, bool batch)
{
    cur_size = size;
    cur_batch = batch;
    unsigned long locks0 = kalloc::pa_stats.zone_lock;
    double t0 = now_s(), c0 = cpu_s();
    pthread_t th[2];
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&th[i], nullptr, worker, nullptr);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], nullptr);
    double t = now_s() - t0, c = cpu_s() - c0;
    double pairs = (double)iterations * threads;
    printf("%-6s %4zu KiB %u thread%s  %7.1f ns wall/iteration  %7.1f ns cpu/pair  %.3f zone locks/pair\n",
           batch ? "batch" : "pair", size >> 10, threads, threads > 1 ? "s" : " ",
           t * 1e9 / (double)iterations, c * 1e9 / pairs,
           (double)(kalloc::pa_stats.zone_lock - locks0) / pairs);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc > 1)
        iterations = atol(argv[1]);
    long heap_mib = argc > 2 ? atol(argv[2]) : 0;
    for (long i = 0; i < heap_mib / 2; i++)
        ((char *)kalloc_malloc(2 << 20))[0] = 1;     // kept live on purpose
    for (bool batch : {false, true})
        for (size_t kib : {40, 100, 300})
            for (unsigned threads : {1u, 2u})
                run(kib << 10, threads, batch);
    return 0;
}
