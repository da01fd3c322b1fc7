/* Fork safety of the kernels.
 *
 * GNU libgomp keeps one pool of worker threads per thread that opens a parallel region, and has no fork handler of
 * its own: in a child process the forking thread's pool still records workers that were not copied, so its next
 * parallel region waits for them forever. That is the hang of a forked child (os.fork, multiprocessing's "fork"
 * start method) whose parent had stepped more than one chunk of elements.
 *
 * Two handlers prevent it. Before the fork, the forking thread's pool is released (omp_pause_resource_all): the
 * parent builds a new one on its next multi-threaded step, and the child starts with none. In the child, the default
 * thread count is set to "one thread, no OpenMP region at all" until the program calls set_num_threads, as torch's
 * DataLoader workers do: a child of a multi-threaded parent is usually one of many workers, which would otherwise
 * each start as many threads as the machine has cores, and a child forked while another thread of the parent was
 * inside libgomp may hold a copy of a lock that nobody will release.
 */
#include <omp.h>
#include <pthread.h>

#include "fork.h"

static int *threads_setting = 0;
static int registered = 0;

static void before_fork(void) { (void)omp_pause_resource_all(omp_pause_soft); }

static void in_child(void) {
    if (threads_setting) *threads_setting = FORK_CHILD_THREADS;
}

int fork_init(int *default_threads) {
    threads_setting = default_threads;
    if (registered) return 0;
    const int rc = pthread_atfork(before_fork, 0, in_child);
    if (rc == 0) registered = 1;
    return rc;
}
