/* A small fork-join pool: the calling thread and n-1 workers split a range of
 * task indices. Workers spin briefly before sleeping so that the hundreds of
 * short kernels of a decode step do not each pay a futex wake-up. */
#ifndef PORTA_CPU_THREADPOOL_H
#define PORTA_CPU_THREADPOOL_H

#include <stdint.h>

typedef struct cpu_pool cpu_pool;

/* Runs tasks [begin, end) of one job on thread tid (0 .. threads-1). */
typedef void (*cpu_task_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* Creates a pool of `threads` threads in all (the caller counts as one).
 * Returns 0 on success, an errno value otherwise. */
int cpu_pool_new(int threads, cpu_pool **out);
void cpu_pool_free(cpu_pool *p);
int cpu_pool_threads(const cpu_pool *p);

/* Calls fn over [0, n) in chunks of at least `grain` tasks and returns when
 * every chunk is done. Chunks are handed out dynamically; a kernel must give
 * the same result whichever thread runs which chunk. Calls from several host
 * threads are serialised. */
void cpu_pool_run(cpu_pool *p, int64_t n, int64_t grain, cpu_task_fn fn, void *ctx);

/* Sends spinning workers to sleep until the next job: called before handing
 * the cores to another library's threads (OpenBLAS), which would otherwise
 * compete with them for the processor. */
void cpu_pool_park(cpu_pool *p);

#endif
