/*
 * malloc/fork.h - keeping kalloc usable in the child of fork().
 *
 * pthread_atfork handlers: before fork every allocator lock is taken in lock
 * order (so no lock is held mid-update by a thread that will not exist in
 * the child), after fork the parent releases them and the child
 * re-initialises them and recovers the other threads' cached objects.
 */
#pragma once

namespace kalloc {

void kalloc_register_fork_handlers();

} // namespace kalloc
