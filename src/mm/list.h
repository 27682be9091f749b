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

#define list_entry(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#define list_first_entry(head, type, member) list_entry((head)->next, type, member)

} // namespace kalloc
