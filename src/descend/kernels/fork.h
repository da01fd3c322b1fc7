#ifndef DESCEND_FORK_H
#define DESCEND_FORK_H

/* What a forked child's default thread count reads until the child calls set_num_threads: run on one thread. */
#define FORK_CHILD_THREADS (-1)

/* Registers the fork handlers, once per process: before a fork the forking thread's OpenMP pool is released (GNU
 * libgomp's pool does not survive fork, and a parallel region on the stale pool never returns), and in the child
 * *default_threads is set to FORK_CHILD_THREADS. Returns 0, or an errno value from pthread_atfork. */
int fork_init(int *default_threads);

#endif
