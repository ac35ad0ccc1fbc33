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

typedef struct bench_model {
    const char *name;
    dec_config c;
} bench_model;

typedef struct setup {
    porta_backend *be;
    dec_weights *w;
    porta_kvcache *kv;
    int rows, chunk;
} setup;

static porta_program *compile_step(const setup *S)
{
    porta_graph *g;
    porta_program *p;
    OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ S->rows, S->chunk, S->w->c.embed });
    OK(porta_output(g, dec_build(g, S->w, S->kv, x)));
    OK(porta_compile(g, S->be, &p));
    porta_graph_free(g);
    return p;
}

/* Median seconds per step of `steps` replays of one program (after warm-up),
 * each followed by a wait, and of the same steps rebuilt and compiled. */
static void time_decode(const setup *S, int context, int steps, double *replay, double *rebuild)
{
    int E = S->w->c.embed;
    float *x = malloc((size_t)S->rows * S->chunk * E * sizeof *x), *y = malloc((size_t)S->rows * S->chunk * E * sizeof *y);
    for (int i = 0; i < S->rows * S->chunk * E; i++) x[i] = sinf(0.37f * (float)i);
    porta_step st = { .n_new = S->chunk, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
    double *t = malloc((size_t)steps * sizeof *t);
    porta_program *p = compile_step(S);
    /* Fill the cache to the context length, then time decode steps there. */
    OK(porta_kvcache_reset(S->kv, -1));
    for (int i = 0; i < context; i += S->chunk) OK(porta_run(p, &st));
    OK(porta_program_wait(p));
    for (int i = 0; i < steps; i++) {
        OK(porta_kvcache_truncate(S->kv, 0, context));
        for (int r = 1; r < S->rows; r++) OK(porta_kvcache_truncate(S->kv, r, context));
        double t0 = now();
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
        t[i] = now() - t0;
    }
    *replay = median(t, steps);
    for (int i = 0; i < steps; i++) {
        for (int r = 0; r < S->rows; r++) OK(porta_kvcache_truncate(S->kv, r, context));
        double t0 = now();
        porta_program *q = compile_step(S);
        OK(porta_run(q, &st));
        OK(porta_program_wait(q));
        t[i] = now() - t0;
        porta_program_free(q);
    }
    *rebuild = median(t, steps);
    porta_program_free(p);
    free(t);
    free(x);
    free(y);
}

/* Bytes of weights a decode step reads (all float32). */
static double weight_bytes(const dec_config *c) { return (double)dec_param_count(c) * 4; }

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

/* Host cost of one replay: a one-node program (add of 64 floats). */
static double replay_overhead_us(porta_backend *be)
{
    porta_graph *g;
    porta_program *p;
    OK(porta_graph_new(&g));
    porta_tensor *a = porta_input(g, "a", 1, (int64_t[]){ 64 });
    OK(porta_output(g, porta_add(g, a, a)));
    OK(porta_compile(g, be, &p));
    float x[64] = { 1 }, y[64];
    porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
    for (int i = 0; i < 100; i++) OK(porta_run(p, &st));
    OK(porta_program_wait(p));
    int n = 2000;
    double t0 = now();
    for (int i = 0; i < n; i++) OK(porta_run(p, &st));
    double host = (now() - t0) / n;
    OK(porta_program_wait(p));
    porta_program_free(p);
    porta_graph_free(g);
    return host * 1e6;
}

/* One [1, 768] x [768, 768] matmul of the stack, as a program. */
static double one_matmul_us(porta_backend *be, int E)
{
    porta_graph *g;
    porta_program *p;
    porta_buffer *w;
    OK(porta_buffer_new(be, PORTA_F32, (int64_t)E * E, &w));
    float *h = malloc((size_t)E * E * 4);
    for (int i = 0; i < E * E; i++) h[i] = 0.001f * (float)(i % 101);
    OK(porta_buffer_write(w, 0, (int64_t)E * E, h));
    free(h);
    OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 2, (int64_t[]){ 1, E });
    OK(porta_output(g, porta_linear(g, x, porta_param(g, w, 0, 2, (int64_t[]){ E, E }), NULL)));
    OK(porta_compile(g, be, &p));
    float *xin = calloc((size_t)E, 4), *y = malloc((size_t)E * 4);
    xin[0] = 1;
    porta_step st = { .n_new = 1, .inputs = (const float *const[]){ xin }, .outputs = (float *const[]){ y } };
    double t[50];
    for (int i = 0; i < 50; i++) {
        double t0 = now();
        OK(porta_run(p, &st));
        OK(porta_program_wait(p));
        t[i] = now() - t0;
    }
    porta_program_free(p);
    porta_graph_free(g);
    porta_buffer_free(w);
    free(xin);
    free(y);
    return median(t, 50) * 1e6;
}

/* Cached attention alone at one context length: GB/s of K and V read. */
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
    /* Grow to the context with real runs, then time steps there. */
    double t[30];
    for (int i = 0; i < context; i++) OK(porta_run(p, &st));
    OK(porta_program_wait(p));
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

int main(int argc, char **argv)
{
    const char *backend = "cpu";
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_decoder [--backend NAME] [--quick]\n"
                   "  Times decoder stacks on one backend: a program compiled once and replayed\n"
                   "  per step against rebuilding and compiling the graph at every step, a\n"
                   "  448-row prefill, cached attention, and the host cost of a replay, next to\n"
                   "  memory bandwidth (and sgemm on the CPU) measured in the same run.\n"
                   "  --quick: fewer repetitions and a shorter context.\n");
            return 0;
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else {
            fprintf(stderr, "bench_decoder: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    porta_backend *be;
    OK(porta_backend_open(backend, &be));
    int cpu = !strcmp(porta_backend_kind(be), "cpu");
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("porta bench_decoder: backend %s (%s)\n", porta_backend_kind(be), porta_backend_device(be));
    double bw = cpu ? host_copy_gbs(threads, 4.0 * dec_param_count(&(dec_config){ 12, 768, 12, 3072, 1 }))
                    : device_copy_gbs(be);
    printf("memory bandwidth, measured now: %.1f GB/s (%s copy of a weights-sized buffer, read + write)\n\n", bw,
           cpu ? "host" : "device-to-device");

    const bench_model models[] = {
        { "2 layers, 64 wide, 4 heads", { 2, 64, 4, 96, 0 } },
        { "12 layers, 768 wide, 12 heads", { 12, 768, 12, 3072, 1 } },
    };
    int context = quick ? 64 : 256, steps = quick ? 5 : 15;
    printf("%-30s %-22s %11s %11s %8s %10s %8s\n", "model", "step", "replay ms", "rebuild ms", "ratio", "weights GB/s",
           "of bw");
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        setup S = { be, NULL, NULL, 1, 1 };
        OK(dec_weights_new(be, &models[m].c, 7, &S.w));
        porta_kvcache_desc kd = { models[m].c.layers, 1, models[m].c.heads, context + 8,
                                  models[m].c.embed / models[m].c.heads, PORTA_F32 };
        OK(porta_kvcache_new(be, &kd, &S.kv));
        double rp, rb;
        time_decode(&S, context, steps, &rp, &rb);
        double gbs = weight_bytes(&models[m].c) / rp / 1e9;
        char step[40];
        snprintf(step, sizeof step, "decode b=1 ctx %d", context);
        printf("%-30s %-22s %11.3f %11.3f %7.1fx %10.1f %7.0f%%\n", models[m].name, step, rp * 1e3, rb * 1e3, rb / rp,
               gbs, 100 * gbs / bw);
        porta_kvcache_free(S.kv);
        dec_weights_free(S.w);
    }

    /* Prefill of 448 rows on the 12-layer stack. */
    {
        const dec_config *c = &models[1].c;
        setup S = { be, NULL, NULL, 1, 448 };
        OK(dec_weights_new(be, c, 7, &S.w));
        porta_kvcache_desc kd = { c->layers, 1, c->heads, 448, c->embed / c->heads, PORTA_F32 };
        OK(porta_kvcache_new(be, &kd, &S.kv));
        porta_program *p = compile_step(&S);
        float *x = malloc((size_t)448 * c->embed * 4), *y = malloc((size_t)448 * c->embed * 4);
        for (int i = 0; i < 448 * c->embed; i++) x[i] = sinf(0.01f * (float)i);
        porta_step st = { .n_new = 448, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
        double t[5];
        int reps = quick ? 2 : 5;
        for (int i = 0; i < reps; i++) {
            OK(porta_kvcache_reset(S.kv, -1));
            double t0 = now();
            OK(porta_run(p, &st));
            OK(porta_program_wait(p));
            t[i] = now() - t0;
        }
        double s = median(t, reps), gf = matmul_flops(c, 448) / s / 1e9;
        printf("\n%-30s %-22s %11.1f ms  %8.1f GFLOP/s (matmuls)", models[1].name, "prefill 448 rows", s * 1e3, gf);
#ifdef PORTA_BENCH_CBLAS
        if (cpu) {
            double peak = sgemm_gflops(c, 448);
            printf("  sgemm same shapes %.1f GFLOP/s: %.0f%%", peak, 100 * gf / peak);
        }
#endif
        printf("\n");
        porta_program_free(p);
        free(x);
        free(y);
        porta_kvcache_free(S.kv);
        dec_weights_free(S.w);
    }

    double ams;
    int actx = quick ? 1024 : 4096;
    double ag = attention_gbs(be, actx, 12, 64, &ams);
    printf("%-30s %-22s %11.3f ms  %8.1f GB/s of K,V: %.0f%% of bandwidth\n", "attention 12 heads x 64", "decode, ctx",
           ams, ag, 100 * ag / bw);
    printf("  (context %d)\n", actx);

    double ov = replay_overhead_us(be), mm = one_matmul_us(be, 768);
    printf("%-30s %11.2f us host time per replay; one 1x768x768 matmul program %.2f us: ratio %.2f\n",
           "replay overhead", ov, mm, ov / mm);
    porta_backend_close(be);
    return 0;
}
