/* Decoder-stack benchmark on any backend: a compiled program replayed per step
 * against rebuilding and compiling the graph at every step, with the physical
 * limits measured in the same run (memory bandwidth; sgemm on the CPU). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "decoder.h"
#ifdef PORTA_BENCH_CBLAS
#include <cblas.h>
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, porta_status s)
{
    fprintf(stderr, "bench_decoder: %s: %s: %s\n", what, porta_status_name(s), porta_last_error());
    exit(1);
}
#define OK(x)                                                                                                      \
    do {                                                                                                           \
        porta_status s_ = (x);                                                                                     \
        if (s_ != PORTA_OK) die(#x, s_);                                                                           \
    } while (0)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- physical limits --------------------------------------------------- */

typedef struct copier { float *dst; const float *src; size_t n; } copier;

static void *copy_part(void *arg)
{
    copier *c = arg;
    memcpy(c->dst, c->src, c->n * sizeof *c->src);
    return NULL;
}

/* Host copy bandwidth (bytes read + written) with `threads` threads over
 * `bytes`, best of 5: the same measure as the device copy on GPUs, over a
 * working set as large as the weights so that caches count alike. */
static double host_copy_gbs(int threads, double bytes)
{
    size_t n = (size_t)(bytes / 4);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023), b[i] = 0;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[256];
        copier cp[256];
        double t0 = now();
        for (int t = 0; t < threads && t < 256; t++) {
            size_t part = n / (size_t)threads;
            cp[t] = (copier){ b + part * (size_t)t, a + part * (size_t)t, part };
            pthread_create(&th[t], NULL, copy_part, &cp[t]);
        }
        for (int t = 0; t < threads && t < 256; t++) pthread_join(th[t], NULL);
        double gbs = 2.0 * (double)n * 4 / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(a);
    free(b);
    return best;
}

/* Device copy bandwidth through porta_buffer_copy (bytes read + written). */
static double device_copy_gbs(porta_backend *be)
{
    int64_t n = (int64_t)64 << 20;
    porta_buffer *a, *b;
    OK(porta_buffer_new(be, PORTA_F32, 2 * n, &a));
    OK(porta_buffer_new(be, PORTA_F32, 2 * n, &b));
    OK(porta_buffer_copy(b, 0, a, 0, 2 * n));
    OK(porta_backend_sync(be));
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int k = 0; k < 4; k++) OK(porta_buffer_copy(b, 0, a, 0, 2 * n));
        OK(porta_backend_sync(be));
        double gbs = 4.0 * 2 * 2 * (double)n * 4 / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    porta_buffer_free(a);
    porta_buffer_free(b);
    return best;
}

/* ---- the decoder -------------------------------------------------------- */

typedef struct setup {
    porta_backend *be;
    dec_weights *w;
    porta_kvcache *kv;
    int rows, chunk;
} setup;

static porta_program *compile_for(const setup *S, int rows, int chunk)
{
    porta_graph *g;
    porta_program *p;
    OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ rows, chunk, S->w->c.embed });
    OK(porta_output(g, dec_build(g, S->w, S->kv, x)));
    OK(porta_compile(g, S->be, &p));
    porta_graph_free(g);
    return p;
}

/* Fills every row of the cache to `context` positions with a 64-row chunk
 * program (real data), then leaves the lengths there. */
static void fill_cache(const setup *S, int context)
{
    int chunk = context < 64 ? context : 64;
    porta_program *f = compile_for(S, S->rows, chunk);
    size_t n = (size_t)S->rows * chunk * S->w->c.embed;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = sinf(0.37f * (float)(i % 1000));
    OK(porta_kvcache_reset(S->kv, -1));
    for (int done = 0; done < context; done += chunk) {
        int k = context - done < chunk ? context - done : chunk;
        OK(porta_run(f, &(porta_step){ .n_new = k, .inputs = (const float *const[]){ x } }));
    }
    OK(porta_program_wait(f));
    porta_program_free(f);
    free(x);
}

typedef struct decode_times {
    double replay, rebuild;
    uint64_t captures, prefetches, chained;
} decode_times;

/* Median seconds of one decode step at `context` (each step truncated back),
 * replaying one program; and, when rebuild_steps > 0, building and compiling
 * the graph for every step. */
static decode_times time_decode(const setup *S, int context, int steps, int rebuild_steps)
{
    decode_times r = { 0, 0, 0, 0, 0 };
    size_t n = (size_t)S->rows * S->w->c.embed;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) x[i] = sinf(0.11f * (float)(i % 977));
    porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
    double *t = malloc((size_t)(steps > rebuild_steps ? steps : rebuild_steps) * sizeof *t);
    fill_cache(S, context);
    porta_program *p = compile_for(S, S->rows, 1);
    /* Warm-up: two steps, and 0.2 s at least (a GPU that was idle may take
     * that long to raise its clocks). */
    double w0 = now();
    for (int i = 0; i < 2 || now() - w0 < 0.2; i++) {
        for (int b = 0; b < S->rows; b++) OK(porta_kvcache_truncate(S->kv, b, context));
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
    }
    for (int i = 0; i < steps; i++) {
        for (int b = 0; b < S->rows; b++) OK(porta_kvcache_truncate(S->kv, b, context));
        double t0 = now();
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
        t[i] = now() - t0;
    }
    r.replay = median(t, steps);
    porta_program_stats ps;
    OK(porta_program_stats_get(p, &ps));
    r.captures = ps.captures + ps.records;
    r.prefetches = ps.prefetches;
    r.chained = ps.chained;
    porta_program_free(p);
    for (int i = 0; i < rebuild_steps; i++) {
        for (int b = 0; b < S->rows; b++) OK(porta_kvcache_truncate(S->kv, b, context));
        double t0 = now();
        porta_program *q = compile_for(S, S->rows, 1);
        OK(porta_run(q, &st));
        OK(porta_program_wait(q));
        t[i] = now() - t0;
        porta_program_free(q);
    }
    if (rebuild_steps) r.rebuild = median(t, rebuild_steps);
    free(t);
    free(x);
    free(y);
    return r;
}

/* Bytes a decode step must read: every weight once, and each row's cached K
 * and V up to the context. */
static double decode_bytes(const dec_config *c, int rows, int context)
{
    return (double)dec_param_count(c) * 4 + 2.0 * c->layers * rows * (double)(context + 1) * c->embed * 4;
}

/* Matmul FLOPs of a step of `rows` positions (2 per multiply-add). */
static double matmul_flops(const dec_config *c, double rows)
{
    double E = c->embed, F = c->mlp;
    return 2.0 * rows * c->layers * (3 * E * E + E * E + 2 * F * E + F * E);
}

#ifdef PORTA_BENCH_CBLAS
/* sgemm GFLOP/s on the stack's matmul shapes for M rows, best of 3. */
static double sgemm_gflops(const dec_config *c, int M)
{
    int E = c->embed, F = c->mlp;
    int shapes[4][2] = { { 3 * E, E }, { E, E }, { 2 * F, E }, { E, F } };
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t = 0, flops = 0;
        for (int s = 0; s < 4; s++) {
            int N = shapes[s][0], K = shapes[s][1];
            float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
            for (int64_t i = 0; i < (int64_t)M * K; i++) A[i] = 0.001f * (float)(i % 97);
            for (int64_t i = 0; i < (int64_t)N * K; i++) B[i] = 0.001f * (float)(i % 89);
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            t += now() - t0;
            flops += 2.0 * M * N * K;
            free(A);
            free(B);
            free(C);
        }
        if (flops / t / 1e9 > best) best = flops / t / 1e9;
    }
    return best;
}
#endif

/* One porta linear [M, K] x [N, K]^T as a program, both operands resident on
 * the backend (no upload per run): median seconds. */
static double linear_seconds(porta_backend *be, int M, int K, int N, int reps)
{
    porta_graph *g;
    porta_program *p;
    porta_buffer *w, *xb;
    OK(porta_buffer_new(be, PORTA_F32, (int64_t)N * K, &w));
    OK(porta_buffer_new(be, PORTA_F32, (int64_t)M * K, &xb));
    int64_t big = (int64_t)(M > N ? M : N) * K;
    float *h = malloc((size_t)big * 4);
    for (int64_t i = 0; i < big; i++) h[i] = 0.001f * (float)(i % 101);
    OK(porta_buffer_write(w, 0, (int64_t)N * K, h));
    OK(porta_buffer_write(xb, 0, (int64_t)M * K, h));
    free(h);
    OK(porta_graph_new(&g));
    porta_tensor *x = porta_param(g, xb, 0, 2, (int64_t[]){ M, K });
    porta_tensor *y = porta_linear(g, x, porta_param(g, w, 0, 2, (int64_t[]){ N, K }), NULL);
    /* Read back one row only: the output copy must not dominate. */
    OK(porta_output(g, porta_slice(g, y, 0, 0, 1)));
    OK(porta_compile(g, be, &p));
    float *yo = malloc((size_t)N * 4);
    porta_step st = { .n_new = 1, .outputs = (float *const[]){ yo } };
    double t[64];
    if (reps > 64) reps = 64;
    for (int i = -1; i < reps; i++) {
        double t0 = now();
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
        if (i >= 0) t[i] = now() - t0;
    }
    porta_program_free(p);
    porta_graph_free(g);
    porta_buffer_free(w);
    porta_buffer_free(xb);
    free(yo);
    return median(t, reps);
}

/* What one more kernel costs when it depends on the one before: programs of
 * 1 and of 65 chained 768-element adds (x = x + c_i), each replayed back to
 * back, microseconds per added kernel. The latency a decode step pays per
 * dependent op, whatever the op does. */
static double dependent_kernel_us(porta_backend *be)
{
    const int64_t E = 768, chain = 64;
    porta_buffer *w;
    OK(porta_buffer_new(be, PORTA_F32, (chain + 2) * E, &w));
    float *h = malloc((size_t)((chain + 2) * E) * sizeof *h);
    for (int64_t i = 0; i < (chain + 2) * E; i++) h[i] = 0.001f * (float)(i % 97);
    OK(porta_buffer_write(w, 0, (chain + 2) * E, h));
    free(h);
    double per[2];
    for (int k = 0; k < 2; k++) {
        int64_t n = k ? chain + 1 : 1;
        porta_graph *g;
        porta_program *p;
        OK(porta_graph_new(&g));
        porta_tensor *x = porta_param(g, w, 0, 2, (int64_t[]){ 1, E });
        for (int64_t i = 0; i < n; i++) x = porta_add(g, x, porta_param(g, w, E * (i + 1), 2, (int64_t[]){ 1, E }));
        OK(porta_output(g, x));
        OK(porta_compile(g, be, &p));
        porta_step st = { .n_new = 1 };
        double t[9];
        for (int r = -1; r < 9; r++) {
            double t0 = now();
            for (int i = 0; i < 50; i++) OK(porta_run(p, &st));
            OK(porta_program_wait(p));
            if (r >= 0) t[r] = (now() - t0) / 50;
        }
        per[k] = median(t, 9);
        porta_program_free(p);
        porta_graph_free(g);
    }
    porta_buffer_free(w);
    return (per[1] - per[0]) / chain * 1e6;
}

/* Host time of porta_run alone (no wait), in pairs of replays: fewer than any
 * backend's ring of in-flight slots, so no call waits for the device. */
static double host_replay_us(const setup *S)
{
    porta_program *p = compile_for(S, S->rows, 1);
    size_t n = (size_t)S->rows * S->w->c.embed;
    float *x = calloc(n, sizeof *x), *y = malloc(n * sizeof *y);
    x[0] = 1;
    porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
    double t[50];
    for (int i = 0; i < 50; i++) {
        OK(porta_kvcache_reset(S->kv, -1));
        double host = 0;
        for (int k = 0; k < 2; k++) {
            double t0 = now();
            OK(porta_run(p, &st));
            host += now() - t0;
        }
        OK(porta_program_wait(p));
        t[i] = host / 2;
    }
    porta_program_free(p);
    free(x);
    free(y);
    return median(t, 50) * 1e6;
}

/* Cached attention alone: GB/s of K and V read at one context length. */
static double attention_gbs(porta_backend *be, int context, int heads, int hd, double *ms)
{
    porta_kvcache *kv;
    porta_kvcache_desc kd = { 1, 1, heads, context + 1, hd, PORTA_F32 };
    OK(porta_kvcache_new(be, &kd, &kv));
    porta_graph *g;
    porta_program *p;
    OK(porta_graph_new(&g));
    porta_tensor *q = porta_input(g, "q", 4, (int64_t[]){ 1, 1, heads, hd });
    porta_tensor *kc = porta_kv_append(g, kv, 0, PORTA_KV_K, q);
    porta_tensor *vc = porta_kv_append(g, kv, 0, PORTA_KV_V, q);
    OK(porta_output(g, porta_attention_cached(g, q, kc, vc, 0.125f)));
    OK(porta_compile(g, be, &p));
    float *x = malloc((size_t)heads * hd * 4), *y = malloc((size_t)heads * hd * 4);
    for (int i = 0; i < heads * hd; i++) x[i] = sinf((float)i);
    porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
    for (int i = 0; i < context; i++) OK(porta_run(p, &st));
    OK(porta_program_wait(p));
    double t[30];
    for (int i = 0; i < 30; i++) {
        OK(porta_kvcache_truncate(kv, 0, context));
        double t0 = now();
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
        t[i] = now() - t0;
    }
    double s = median(t, 30);
    *ms = s * 1e3;
    porta_program_free(p);
    porta_graph_free(g);
    porta_kvcache_free(kv);
    free(x);
    free(y);
    return 2.0 * (context + 1) * heads * hd * 4 / s / 1e9;
}

typedef struct shape_case { int rows, context; } shape_case;

#define MAX_BACKENDS 4
#define MAX_CASES 4
static const dec_config big = { 12, 768, 12, 3072, 1 };
static const dec_config small = { 2, 64, 4, 96, 0 };

/* Runs everything on one backend; fills step_ms[case] for the 12-layer stack. */
static void bench_backend(const char *name, int quick, int steps_only, const shape_case *cases, int n_cases,
                          double *step_ms)
{
    porta_backend *be;
    porta_status s = porta_backend_open(name, &be);
    if (s != PORTA_OK) {
        printf("== %s: unavailable (%s)\n\n", name, porta_last_error());
        for (int i = 0; i < n_cases; i++) step_ms[i] = 0;
        return;
    }
    const char *kind = porta_backend_kind(be);
    int cpu = !strcmp(kind, "cpu"), cuda = !strcmp(kind, "cuda");
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double bw = cpu ? host_copy_gbs(threads, 4.0 * (double)dec_param_count(&big)) : device_copy_gbs(be);
    printf("== %s: %s\n", kind, porta_backend_device(be));
    printf("memory bandwidth now: %.1f GB/s (%s copy of a weights-sized buffer, bytes read + written)\n\n", bw,
           cpu ? "host" : "device-to-device");

    /* A second instance of the CUDA backend that launches the same kernels one
     * by one, without the graph. */
    porta_backend *eager = NULL;
    if (cuda) {
        setenv("PORTA_CUDA_EAGER", "1", 1);
        if (porta_backend_open(name, &eager) != PORTA_OK) eager = NULL;
        unsetenv("PORTA_CUDA_EAGER");
    }
    printf("%-9s %5s %6s %10s %11s %8s %10s %8s %9s %6s\n", "model", "batch", "ctx", "replay ms", "rebuild ms",
           "rebuild/", "eager ms", "eager/", "read GB/s", "of bw");
    printf("%-9s %5s %6s %10s %11s %8s %10s %8s %9s %6s\n", "", "", "", "", "", "replay", "", "replay", "", "");
    for (int m = 0; m < 1 + n_cases; m++) {
        const dec_config *c = m == 0 ? &small : &big;
        shape_case sc = m == 0 ? (shape_case){ 1, 64 } : cases[m - 1];
        setup S = { be, NULL, NULL, sc.rows, 1 };
        OK(dec_weights_new(be, c, 7, &S.w));
        porta_kvcache_desc kd = { c->layers, sc.rows, c->heads, sc.context + 8, c->embed / c->heads, PORTA_F32 };
        s = porta_kvcache_new(be, &kd, &S.kv);
        if (s != PORTA_OK) {
            printf("%-9s %5d %6d  skipped: %s\n", m ? "12x768" : "2x64", sc.rows, sc.context, porta_last_error());
            dec_weights_free(S.w);
            if (m) step_ms[m - 1] = 0;
            continue;
        }
        int heavy = sc.rows * sc.context > 20000 && cpu;
        /* Replays are cheap on a GPU: the median of 15 even with --quick
         * (the median of 3 once read 1.07 ms for a Vulkan step that measured
         * 0.63 to 0.66 ms in the other runs of the same build). */
        int steps = heavy || (quick && cpu) ? 3 : 15;
        decode_times d = time_decode(&S, sc.context, steps, heavy ? 1 : quick ? 3 : steps);
        double em = 0;
        if (eager) {
            setup E = S;
            E.be = eager;
            /* Same weights and cache live on the first instance: the eager
             * instance gets its own copies. */
            OK(dec_weights_new(eager, c, 7, &E.w));
            OK(porta_kvcache_new(eager, &kd, &E.kv));
            decode_times de = time_decode(&E, sc.context, steps, 0);
            em = de.captures == 0 ? de.replay : -1;
            porta_kvcache_free(E.kv);
            dec_weights_free(E.w);
        }
        double gbs = decode_bytes(c, sc.rows, sc.context) / d.replay / 1e9;
        char eb[24] = "-", er[24] = "-";
        if (em > 0) snprintf(eb, sizeof eb, "%.3f", em * 1e3), snprintf(er, sizeof er, "%.1fx", em / d.replay);
        else if (em < 0) snprintf(eb, sizeof eb, "(captured)");
        printf("%-9s %5d %6d %10.3f %11.3f %7.1fx %10s %8s %9.1f %5.0f%%\n", m ? "12x768" : "2x64", sc.rows,
               sc.context, d.replay * 1e3, d.rebuild * 1e3, d.rebuild / d.replay, eb, er, gbs, 100 * gbs / bw);
        if (m) step_ms[m - 1] = d.replay * 1e3;
        if (d.prefetches || d.chained)
            printf("%-9s %5s %6s   besides its kernels: %llu L2 prefetches, %llu nodes chained without barriers\n", "",
                   "", "", (unsigned long long)d.prefetches, (unsigned long long)d.chained);
        porta_kvcache_free(S.kv);
        dec_weights_free(S.w);
    }

    if (steps_only) {
        printf("\n");
        porta_backend_close(eager);
        porta_backend_close(be);
        return;
    }

    /* Prefill of 448 rows, against the vendor GEMM on the same shapes (CPU:
     * sgemm) or a large GEMM through the same backend (GPU: cuBLAS / the
     * Vulkan matmul at 4096^3). */
    {
        setup S = { be, NULL, NULL, 1, 448 };
        OK(dec_weights_new(be, &big, 7, &S.w));
        porta_kvcache_desc kd = { big.layers, 1, big.heads, 448, big.embed / big.heads, PORTA_F32 };
        OK(porta_kvcache_new(be, &kd, &S.kv));
        porta_program *p = compile_for(&S, 1, 448);
        float *x = malloc((size_t)448 * big.embed * 4), *y = malloc((size_t)448 * big.embed * 4);
        for (int i = 0; i < 448 * big.embed; i++) x[i] = sinf(0.01f * (float)i);
        porta_step st = { .n_new = 448, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
        double t[8];
        int reps = quick ? 2 : 6;
        for (int i = -1; i < reps; i++) {
            OK(porta_kvcache_reset(S.kv, -1));
            double t0 = now();
            OK(porta_run(p, &st));
            OK(porta_program_wait(p));
            if (i >= 0) t[i] = now() - t0;
        }
        double sec = median(t, reps), gf = matmul_flops(&big, 448) / sec / 1e9, peak = 0;
        const char *what = "";
#ifdef PORTA_BENCH_CBLAS
        if (cpu) peak = sgemm_gflops(&big, 448), what = "OpenBLAS sgemm, same shapes";
#endif
        if (!cpu) {
            int n = 4096;
            peak = 2.0 * n * n * (double)n / linear_seconds(be, n, n, n, quick ? 3 : 10) / 1e9;
            what = "porta linear 4096^3 on this backend";
        }
        printf("\nprefill 448 rows, 12x768: %.2f ms, %.1f GFLOP/s in matmuls; peak %.1f GFLOP/s (%s): %.0f%%\n",
               sec * 1e3, gf, peak, what, peak > 0 ? 100 * gf / peak : 0);
        porta_program_free(p);
        free(x);
        free(y);
        porta_kvcache_free(S.kv);
        dec_weights_free(S.w);
    }

    double ams;
    int actx = quick ? 1024 : 4096;
    double ag = attention_gbs(be, actx, 12, 64, &ams);
    printf("cached attention, 12 heads x 64, context %d: %.3f ms, %.1f GB/s of K and V: %.0f%% of bandwidth\n", actx,
           ams, ag, 100 * ag / bw);

    /* Host cost of a replay: should not grow with the layer count. */
    double hs[2];
    for (int k = 0; k < 2; k++) {
        const dec_config *c = k ? &big : &small;
        setup S = { be, NULL, NULL, 1, 1 };
        OK(dec_weights_new(be, c, 7, &S.w));
        porta_kvcache_desc kd = { c->layers, 1, c->heads, 16, c->embed / c->heads, PORTA_F32 };
        OK(porta_kvcache_new(be, &kd, &S.kv));
        hs[k] = host_replay_us(&S);
        porta_kvcache_free(S.kv);
        dec_weights_free(S.w);
    }
    double mm = linear_seconds(be, 1, 768, 768, 30) * 1e6;
    printf("host time per porta_run%s: %.2f us (2 layers), %.2f us (12 layers); one 1x768x768 matmul program: %.2f us\n",
           cpu ? " (the CPU backend computes inside it)" : "", hs[0], hs[1], mm);
    printf("a dependent kernel: %.2f us more per kernel (65 chained 768-element adds against one, replayed back to "
           "back)\n\n",
           dependent_kernel_us(be));
    porta_backend_close(eager);
    porta_backend_close(be);
}

int main(int argc, char **argv)
{
    const char *list = "cpu";
    int quick = 0, steps_only = 0;
    setvbuf(stdout, NULL, _IOLBF, 0); /* tables appear as they are measured */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_decoder [--backends LIST] [--quick] [--steps-only]\n"
                   "  Times decoder stacks (2 layers x 64 wide; 12 layers x 768 wide, 12 heads, MLP 3072)\n"
                   "  on each backend of LIST (comma-separated, default cpu): a program compiled once\n"
                   "  and replayed per step, against rebuilding and compiling the graph per step and\n"
                   "  (CUDA) launching the same kernels without a graph; a 448-row prefill against\n"
                   "  the vendor GEMM; cached attention; the host time of a replay; the cost of one\n"
                   "  more dependent kernel. Bandwidth and GEMM peaks are measured in the same run.\n"
                   "  Ends with per-step times of every backend side by side. --quick: fewer\n"
                   "  repetitions and shapes. --steps-only: the decode-step tables alone (for\n"
                   "  comparing settings run by run).\n");
            return 0;
        } else if ((!strcmp(argv[i], "--backends") || !strcmp(argv[i], "--backend")) && i + 1 < argc) {
            list = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--steps-only")) {
            steps_only = 1;
        } else {
            fprintf(stderr, "bench_decoder: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    shape_case cases[MAX_CASES] = { { 1, 64 }, { 1, 1024 }, { 256, 64 }, { 256, 1024 } };
    int n_cases = quick ? 2 : 4;
    if (quick) cases[1] = (shape_case){ 256, 64 };
    char names[MAX_BACKENDS][32];
    double ms[MAX_BACKENDS][MAX_CASES];
    int nb = 0;
    for (const char *p = list; *p && nb < MAX_BACKENDS;) {
        size_t len = strcspn(p, ",");
        snprintf(names[nb], sizeof names[nb], "%.*s", (int)len, p);
        bench_backend(names[nb], quick, steps_only, cases, n_cases, ms[nb]);
        nb++;
        p += len + (p[len] == ',');
    }
    if (nb < 2) return 0;
    printf("== 12 layers x 768: decode step, ms (ratio: the first backend's time over each one's)\n%-14s", "batch x ctx");
    for (int b = 0; b < nb; b++) printf(" %12s", names[b]);
    printf("\n");
    for (int c = 0; c < n_cases; c++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%d x %d", cases[c].rows, cases[c].context);
        printf("%-14s", lab);
        for (int b = 0; b < nb; b++) {
            if (ms[b][c] > 0 && ms[0][c] > 0) printf(" %7.3f %4.2fx", ms[b][c], ms[0][c] / ms[b][c]);
            else printf(" %12s", "-");
        }
        printf("\n");
    }
    return 0;
}
