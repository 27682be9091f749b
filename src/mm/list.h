/*
 * mm/list.h - the kernel's intrusive doubly linked list (include/linux/list.h).
 *
 * A list_head is embedded in the structure it links (struct page's lru);
 * the list itself is a sentinel list_head.  No allocation, O(1) insert and
 * delete without knowing which list an entry is on.
 */
#pragma once

#include <stddef.h>

namespace kalloc {

struct list_head {
    list_head *next;   /* following entry, or the sentinel */
    list_head *prev;   /* preceding entry, or the sentinel */
};

static inline void INIT_LIST_HEAD(list_head *l) { l->next = l->prev = l; }
static inline bool list_empty(const list_head *l) { return l->next == l; }

static inline void __list_add(list_head *n, list_head *prev, list_head *next)
{
    next->prev = n;
    n->next = next;
    n->prev = prev;
    prev->next = n;
}
static inline void list_add(list_head *n, list_head *head) { __list_add(n, head, head->next); }
static inline void list_add_tail(list_head *n, list_head *head) { __list_add(n, head->prev, head); }
static inline void list_del(list_head *e)
{
    e->next->prev = e->prev;
    e->prev->next = e->next;
    e->next = e->prev = nullptr;
}
static inline void list_move(list_head *e, list_head *head)
{
    list_del(e);
    list_add(e, head);
}
static inline void list_move_tail(list_head *e, list_head *head)
{
    list_del(e);
    list_add_tail(e, head);
}

/* Move every entry of `from` to the tail of `head`, in order; `from` ends
 * empty. */
static inline void list_splice_tail_init(list_head *from, list_head *head)
{
    if (list_empty(from))
        return;
    list_head *first = from->next, *last = from->prev;
    first->prev = head->prev;
    head->prev->next = first;
    last->next = head;
    head->prev = last;
    INIT_LIST_HEAD(from);
}

#define list_entry(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#define list_first_entry(head, type, member) list_entry((head)->next, type, member)

/*
 * Sort a list in place, stably, by `less(a, b)` on its entries (the
 * kernel's lib/list_sort.c, simplified): a bottom-up merge sort over the
 * next links with 64 pending runs on the stack, then the prev links are
 * rebuilt.  O(n log n), no allocation.
 */
template <typename Less>
static inline list_head *__list_merge(list_head *a, list_head *b, Less &less)
{
    list_head head, *tail = &head;
    while (a && b) {
        if (less(b, a)) {        /* take a on ties: stable */
            tail->next = b;
            b = b->next;
        } else {
            tail->next = a;
            a = a->next;
        }
        tail = tail->next;
    }
    tail->next = a ? a : b;
    return head.next;
}

template <typename Less>
static inline void list_sort(list_head *head, Less less)
{
    if (list_empty(head) || head->next == head->prev)
        return;
    list_head *pending[64] = {};    /* pending[i]: a sorted run of 2^i entries, or nullptr */
    head->prev->next = nullptr;
    list_head *e = head->next;
    while (e) {
        list_head *run = e;
        e = e->next;
        run->next = nullptr;
        unsigned i = 0;
        for (; i < 63 && pending[i]; i++) {
            run = __list_merge(pending[i], run, less);
            pending[i] = nullptr;
        }
        pending[i] = run;
    }
    list_head *sorted = nullptr;
    for (unsigned i = 0; i < 64; i++)
        if (pending[i])
            sorted = sorted ? __list_merge(pending[i], sorted, less) : pending[i];
    /* Rebuild the prev links and close the ring. */
    list_head *prev = head;
    for (list_head *x = sorted; x; x = x->next) {
        x->prev = prev;
        prev->next = x;
        prev = x;
    }
    prev->next = head;
    head->prev = prev;
}

} // namespace kalloc
