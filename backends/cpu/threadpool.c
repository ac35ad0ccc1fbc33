#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <immintrin.h>

/* Pause iterations a worker polls for the next job before sleeping on the
 * condition variable (roughly 100 us to 1 ms, depending on the processor):
 * long enough to bridge consecutive kernels of one step, short enough not to
 * burn a core for long once the host stops submitting. */
#define SPIN_PAUSES (1 << 13)

typedef struct worker_arg {
    struct cpu_pool *pool;
    int id;
} worker_arg;

struct cpu_pool {
    int threads;
    int started;
    pthread_t *tids;
    worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t run_mu; /* one job at a time */
    atomic_uint_fast64_t gen;
    atomic_int pending;
    atomic_int stop;
    atomic_int park;
    atomic_int_fast64_t next;
    /* The current job: written before gen is bumped (release), read after. */
    int64_t n, chunk;
    cpu_task_fn fn;
    void *ctx;
};

static void do_chunks(struct cpu_pool *p, int id)
{
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&p->next, p->chunk, memory_order_relaxed);
        if (b >= p->n) return;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e, id);
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    struct cpu_pool *p = wa->pool;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < SPIN_PAUSES && !atomic_load_explicit(&p->park, memory_order_relaxed); i++) {
            _mm_pause();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
        do_chunks(p, wa->id);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

static void bump(struct cpu_pool *p)
{
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    /* Taking the mutex orders the wake-up after any worker that checked gen
     * under it and is about to wait. */
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void stop_workers(struct cpu_pool *p)
{
    atomic_store_explicit(&p->stop, 1, memory_order_relaxed);
    bump(p);
    for (int i = 0; i < p->started; i++) pthread_join(p->tids[i], NULL);
    p->started = 0;
}

int cpu_pool_new(int threads, cpu_pool **out)
{
    *out = NULL;
    if (threads < 1) return EINVAL;
    struct cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return ENOMEM;
    p->threads = threads;
    p->tids = calloc((size_t)threads, sizeof *p->tids);
    p->args = calloc((size_t)threads, sizeof *p->args);
    if (!p->tids || !p->args) {
        free(p->tids);
        free(p->args);
        free(p);
        return ENOMEM;
    }
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->park, 0);
    atomic_init(&p->next, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    for (int i = 1; i < threads; i++) {
        p->args[i] = (worker_arg){p, i};
        int rc = pthread_create(&p->tids[p->started], NULL, worker_main, &p->args[i]);
        if (rc) {
            stop_workers(p);
            cpu_pool_free(p);
            return rc;
        }
        p->started++;
    }
    *out = p;
    return 0;
}

void cpu_pool_free(cpu_pool *p)
{
    if (!p) return;
    stop_workers(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->run_mu);
    free(p->tids);
    free(p->args);
    free(p);
}

int cpu_pool_threads(const cpu_pool *p) { return p->threads; }

void cpu_pool_run(cpu_pool *p, int64_t n, int64_t grain, cpu_task_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    pthread_mutex_lock(&p->run_mu);
    if (p->threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        pthread_mutex_unlock(&p->run_mu);
        return;
    }
    /* About four chunks per thread: enough to even out uneven tasks (causal
     * attention rows), few enough that the shared counter stays cold. */
    int64_t chunk = (n + 4 * (int64_t)p->threads - 1) / (4 * (int64_t)p->threads);
    p->n = n;
    p->chunk = chunk > grain ? chunk : grain;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->park, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    bump(p);
    do_chunks(p, 0);
    for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) {
        if (i < SPIN_PAUSES)
            _mm_pause();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&p->run_mu);
}

void cpu_pool_park(cpu_pool *p) { atomic_store_explicit(&p->park, 1, memory_order_relaxed); }
