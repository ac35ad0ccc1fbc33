/* Threads, on one backend kind (argv[1]), with a 2-layer xPos decoder, a
 * 24-row prefill and decode steps enqueued without waiting in between:
 *  - several threads, each with its own backend, weights, cache and
 *    programs, running at the same time, give bit for bit what the same work
 *    gives run alone on the main thread: the library keeps no state that two
 *    backends share;
 *  - one backend with its weights, cache and programs handed from thread to
 *    thread (each thread enqueues a few steps without waiting and ends; the
 *    next one, started after it has been joined, goes on, and the main thread
 *    waits for them all) gives what one thread gives: nothing is tied to the
 *    thread that made it;
 *  - failures at the same time on several threads each leave their own
 *    message: porta_last_error is per thread. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "decoder.h"
#include "testutil.h"

enum { LAYERS = 2, E = 64, H = 4, F = 96, ROWS = 2, PREFILL = 24, STEPS = 16, THREADS = 3 };

/* Floats one job's outputs take: the prefill's, then one row of E per step and sequence. */
#define OUT_PER_JOB ((size_t)ROWS * PREFILL * E + (size_t)STEPS * ROWS * E)

typedef struct job {
    const char *backend;
    uint64_t seed;
    porta_backend *be;
    dec_weights *w;
    porta_kvcache *kv;
    porta_program *prefill, *decode;
    float *x, *y; /* inputs [PREFILL + STEPS] and outputs of every run, each its own */
    int id;
    porta_status status;
    char where[64], message[512];
    int message_ok;
    pthread_barrier_t *ready, *errors_set; /* threads at once: every run starts together */
} job;

/* Records the first failure of a job (threads must not exit the process). */
static int job_ok(job *j, porta_status s, const char *where)
{
    if (s == PORTA_OK) return 1;
    if (j->status == PORTA_OK) {
        j->status = s;
        snprintf(j->where, sizeof j->where, "%s", where);
        snprintf(j->message, sizeof j->message, "%s", porta_last_error());
    }
    return 0;
}

static porta_program *compile(job *j, int chunk)
{
    porta_graph *g;
    porta_program *p = NULL;
    if (!job_ok(j, porta_graph_new(&g), "porta_graph_new")) return NULL;
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ ROWS, chunk, E });
    if (job_ok(j, porta_output(g, dec_build(g, j->w, j->kv, x)), "building the graph"))
        job_ok(j, porta_compile(g, j->be, &p), "porta_compile");
    porta_graph_free(g);
    return p;
}

/* Backend (when j->be is not set yet), weights from the job's seed, cache,
 * the two programs, inputs drawn from the seed and outputs poisoned. */
static void job_setup(job *j)
{
    if (!j->be && !job_ok(j, porta_backend_open(j->backend, &j->be), "porta_backend_open")) return;
    dec_config c = { LAYERS, E, H, F, 1 };
    if (!job_ok(j, dec_weights_new(j->be, &c, j->seed, &j->w), "dec_weights_new")) return;
    porta_kvcache_desc kd = { LAYERS, ROWS, H, PREFILL + STEPS, E / H, PORTA_F32 };
    if (!job_ok(j, porta_kvcache_new(j->be, &kd, &j->kv), "porta_kvcache_new")) return;
    if (!(j->prefill = compile(j, PREFILL)) || !(j->decode = compile(j, 1))) return;
    size_t n = (size_t)ROWS * (PREFILL + STEPS) * E;
    j->x = malloc(n * sizeof *j->x);
    j->y = malloc(OUT_PER_JOB * sizeof *j->y);
    if (!j->x || !j->y) {
        job_ok(j, PORTA_ERR_NOMEM, "test buffers");
        return;
    }
    rng r = { j->seed * 7919 + 1 };
    fill_random(&r, j->x, (int64_t)n, 1.0f);
    fill_nan(j->y, (int64_t)OUT_PER_JOB);
}

/* Runs [from, to): run 0 is the prefill, run k > 0 decode step k - 1. Each
 * run reads its own input and writes its own output, so none waits. */
static void job_runs(job *j, int from, int to)
{
    for (int k = from; k < to && j->status == PORTA_OK; k++) {
        const float *x = j->x + (k == 0 ? 0 : (size_t)ROWS * (PREFILL + k - 1) * E);
        float *y = j->y + (k == 0 ? 0 : (size_t)ROWS * PREFILL * E + (size_t)(k - 1) * ROWS * E);
        porta_step st = { .n_new = k == 0 ? PREFILL : 1,
                          .inputs = (const float *const[]){ x },
                          .outputs = (float *const[]){ y } };
        job_ok(j, porta_run(k == 0 ? j->prefill : j->decode, &st), "porta_run");
    }
}

static void job_wait(job *j)
{
    if (j->prefill) job_ok(j, porta_program_wait(j->prefill), "porta_program_wait");
    if (j->decode) job_ok(j, porta_program_wait(j->decode), "porta_program_wait");
}

static void job_teardown(job *j, int close_backend)
{
    porta_program_free(j->decode);
    porta_program_free(j->prefill);
    porta_kvcache_free(j->kv);
    dec_weights_free(j->w);
    if (close_backend) porta_backend_close(j->be);
    free(j->x);
    j->x = NULL;
}

/* A failure whose message names this thread's own row, then (after every
 * thread has failed) the message must still be this thread's. */
static void job_fail_own(job *j)
{
    int len, row = 1000 + j->id;
    porta_status s = porta_kvcache_length(j->kv, row, &len);
    char want[32];
    snprintf(want, sizeof want, "row %d ", row);
    pthread_barrier_wait(j->errors_set);
    snprintf(j->message, sizeof j->message, "%s", porta_last_error());
    j->message_ok = s == PORTA_ERR_ARG && strstr(j->message, want) != NULL;
}

static void *job_thread(void *arg)
{
    job *j = arg;
    job_setup(j);
    pthread_barrier_wait(j->ready);
    job_runs(j, 0, 1 + STEPS);
    job_wait(j);
    if (j->kv) job_fail_own(j);
    else pthread_barrier_wait(j->errors_set);
    job_teardown(j, 1);
    return NULL;
}

typedef struct segment {
    job *j;
    int from, to;
} segment;

static void *segment_thread(void *arg)
{
    segment *sg = arg;
    job_runs(sg->j, sg->from, sg->to);
    return NULL;
}

static int job_report(checker *ck, const job *j, const char *what)
{
    if (j->status == PORTA_OK) return 1;
    printf("     %s: %s failed: %s: %s\n", what, j->where, porta_status_name(j->status), j->message);
    check_true(ck, what, 0);
    return 0;
}

/* Outputs equal bit for bit, and none left poisoned. */
static void same_outputs(checker *ck, const char *what, const float *y, const float *want)
{
    int64_t diff = 0, nan = 0;
    for (size_t i = 0; i < OUT_PER_JOB; i++) {
        diff += memcmp(&y[i], &want[i], sizeof *y) != 0;
        nan += y[i] != y[i];
    }
    if (diff || nan) printf("     %s: %lld of %zu outputs differ, %lld not finite\n", what, (long long)diff,
                            OUT_PER_JOB, (long long)nan);
    check_true(ck, what, diff == 0 && nan == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: test_threads BACKEND\n  backends, caches and programs of BACKEND used from several threads\n");
        return argc < 2 ? 2 : 0;
    }
    porta_backend_close(open_or_skip(argv[1]));
    checker ck = { 0, 0 };

    /* Each seed's work alone on the main thread: the reference. */
    float *want[THREADS];
    for (int t = 0; t < THREADS; t++) {
        job j = { .backend = argv[1], .seed = 100 + (uint64_t)t };
        job_setup(&j);
        job_runs(&j, 0, 1 + STEPS);
        job_wait(&j);
        want[t] = j.y;
        job_teardown(&j, 1);
        if (!job_report(&ck, &j, "the work alone on the main thread")) return checker_exit(&ck);
    }

    /* The same work on THREADS threads at once, a backend each. */
    job jobs[THREADS];
    pthread_t tid[THREADS];
    pthread_barrier_t ready, errors_set;
    pthread_barrier_init(&ready, NULL, THREADS);
    pthread_barrier_init(&errors_set, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (job){ .backend = argv[1], .seed = 100 + (uint64_t)t, .id = t, .ready = &ready,
                         .errors_set = &errors_set };
        if (pthread_create(&tid[t], NULL, job_thread, &jobs[t])) {
            fprintf(stderr, "test_threads: pthread_create failed\n");
            return 1;
        }
    }
    for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&errors_set);
    int all = 1, messages = 1;
    for (int t = 0; t < THREADS; t++) {
        char what[128];
        snprintf(what, sizeof what, "thread %d of %d, a backend each, at the same time", t, THREADS);
        if (!job_report(&ck, &jobs[t], what)) {
            all = 0;
            continue;
        }
        same_outputs(&ck, what, jobs[t].y, want[t]);
        if (!jobs[t].message_ok) printf("     thread %d's message: %s\n", t, jobs[t].message);
        messages &= jobs[t].message_ok;
    }
    if (all) {
        printf("     thread 0's own failure: %s\n", jobs[0].message);
        check_true(&ck, "failures at the same time leave each thread its own message", messages);
    }
    for (int t = 0; t < THREADS; t++) free(jobs[t].y);

    /* One backend, cache and programs made on the main thread, driven by a
     * new thread per few steps (the replays of one still in flight when the
     * next starts), waited for on the main thread. */
    job j = { .backend = argv[1], .seed = 100 };
    job_setup(&j);
    const int cuts[] = { 0, 1, 6, 11, 1 + STEPS };
    for (int s = 0; s + 1 < (int)(sizeof cuts / sizeof *cuts) && j.status == PORTA_OK; s++) {
        segment sg = { &j, cuts[s], cuts[s + 1] };
        pthread_t t;
        if (pthread_create(&t, NULL, segment_thread, &sg)) {
            fprintf(stderr, "test_threads: pthread_create failed\n");
            return 1;
        }
        pthread_join(t, NULL);
    }
    job_wait(&j);
    const char *handed = "one backend and its programs handed from thread to thread";
    if (job_report(&ck, &j, handed)) same_outputs(&ck, handed, j.y, want[0]);
    job_teardown(&j, 1);
    free(j.y);

    for (int t = 0; t < THREADS; t++) free(want[t]);
    return checker_exit(&ck);
}
