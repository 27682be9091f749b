/*
 * preload_demo.c - an ordinary C program, built without any knowledge of
 * kalloc, that gets kalloc as its allocator through LD_PRELOAD:
 *
 *     cc -O2 preload_demo.c -o preload_demo
 *     ./preload_demo                                    # glibc's malloc
 *     LD_PRELOAD=/path/to/libkalloc.so ./preload_demo   # kalloc
 *     KALLOC_STATS=1 LD_PRELOAD=/path/to/libkalloc.so ./preload_demo
 *                                                       # + statistics at exit
 *
 * It mallocs, reallocs, callocs and frees, and prints what it computed; the
 * first line says which allocator served it (it looks for kalloc's
 * kalloc_version symbol in the process).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    unsigned value;
    char name[24];
};

int main(void)
{
    const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "kalloc_version");
    if (version)
        printf("allocator: kalloc %s\n", version());
    else
        printf("allocator: the system malloc\n");

    /* A linked list of 100000 small nodes, then freed in allocation order. */
    struct node *head = NULL, **tail = &head;
    unsigned long sum = 0;
    for (unsigned i = 0; i < 100000; i++) {
        struct node *n = malloc(sizeof *n);
        if (!n) { perror("malloc"); return 1; }
        n->next = NULL;
        n->value = i * 7u % 1000u;
        snprintf(n->name, sizeof n->name, "node-%u", i);
        *tail = n;
        tail = &n->next;
    }
    unsigned count = 0;
    while (head) {
        struct node *next = head->next;
        sum += head->value + strlen(head->name);
        free(head);
        head = next;
        count++;
    }
    printf("list: %u nodes, checksum %lu\n", count, sum);

    /* A buffer grown by realloc, doubling from 16 bytes to 16 MiB. */
    size_t cap = 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) { perror("malloc"); return 1; }
    while (cap < ((size_t)16 << 20)) {
        size_t ncap = cap * 2;
        char *nbuf = realloc(buf, ncap);
        if (!nbuf) { perror("realloc"); free(buf); return 1; }
        buf = nbuf;
        while (len < ncap - 1) { buf[len] = (char)('a' + len % 26); len++; }
        cap = ncap;
    }
    buf[len] = '\0';
    unsigned long digest = 5381;
    for (size_t i = 0; i < len; i++) digest = digest * 33 + (unsigned char)buf[i];
    printf("realloc: grew to %zu bytes, digest %lu\n", cap, digest);
    /* ... and shrunk again: the content must survive. */
    buf = realloc(buf, 100);
    printf("realloc: shrunk to 100 bytes, starts with \"%.26s\"\n", buf);
    free(buf);

    /* calloc'ed table, checked for zeroes; strdup. */
    size_t n = 1u << 20;
    uint32_t *table = calloc(n, sizeof *table);
    if (!table) { perror("calloc"); return 1; }
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += table[i] != 0;
    free(table);
    char *copy = strdup("kalloc preload demo");
    printf("calloc: %zu non-zero words of %zu; strdup: \"%s\"\n", nonzero, n, copy);
    free(copy);
    return nonzero == 0 ? 0 : 1;
}
