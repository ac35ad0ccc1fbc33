/* The host side of a Toto sample-path decode step, timed alone: one draw
 * from the Student-t mixture of every (sample row, time in patch), as the
 * forecaster calls toto_mixture_sample (one call per row's patch). The peer
 * is the straightforward sampler in double precision (a libm exp per
 * component weight, polar normals, Marsaglia-Tsang gamma), run on the same
 * head outputs in the same run.
 *
 * Head outputs are random but shaped like a trained head's: logits spread
 * over a few units (a handful of components carry most weight), df from
 * about 2.1 to 10, scales from about 0.1 to 1.5. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "toto_internal.h"
#include "../tools/cli.h"

typedef struct options {
    int rows, points, k, repeat;
    unsigned seed;
} options;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_toto_sampling [options]\n"
               "  --rows R       sample rows (samples x series x variates, default 256)\n"
               "  --points P     time steps per patch (default 64)\n"
               "  --k K          mixture components (default 24)\n"
               "  --repeat N     timed steps per sampler after one warm-up (default 30)\n"
               "  --seed S       seed of the head outputs and the draws (default 1)\n"
               "  --help         this text\n");
}

/* 0: run, 1: --help, -1: bad usage (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.rows = 256, .points = 64, .k = 24, .repeat = 30, .seed = 1};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        int seed = 0;
        if (i + 1 >= argc || !((!strcmp(a, "--rows") && cli_int(argv[i + 1], 1, 1 << 20, &o->rows)) ||
                               (!strcmp(a, "--points") && cli_int(argv[i + 1], 1, 1 << 16, &o->points)) ||
                               (!strcmp(a, "--k") && cli_int(argv[i + 1], 1, 1024, &o->k)) ||
                               (!strcmp(a, "--repeat") && cli_int(argv[i + 1], 1, 100000, &o->repeat)) ||
                               (!strcmp(a, "--seed") && cli_int(argv[i + 1], 0, 1 << 30, &seed)))) {
            fprintf(stderr, "bench_toto_sampling: bad option or value: %s%s%s\n", a, i + 1 < argc ? " " : "",
                    i + 1 < argc ? argv[i + 1] : "");
            return -1;
        }
        if (!strcmp(a, "--seed")) o->seed = (unsigned)seed;
    }
    return 0;
}

/* ---- the peer: the double-precision sampler ------------------------------ */

static double ref_normal(toto_rng *r)
{
    for (;;) {
        double u = 2 * toto_rng_uniform(r) - 1, v = 2 * toto_rng_uniform(r) - 1, q = u * u + v * v;
        if (q > 0 && q < 1) return u * sqrt(-2 * log(q) / q);
    }
}

static double ref_gamma(toto_rng *r, double shape)
{
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double z = ref_normal(r), v = 1 + c * z;
        if (v <= 0) continue;
        v = v * v * v;
        double u = toto_rng_uniform(r);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v)) return d * v;
    }
}

static double ref_softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

static void ref_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], void *work, double *y)
{
    double *e = work;
    for (int i = 0; i < n; i++) {
        const float *lg = head[TOTO_HEAD_LOGITS] + (size_t)i * K;
        double mx = lg[0], sum = 0;
        for (int k = 1; k < K; k++) mx = lg[k] > mx ? lg[k] : mx;
        for (int k = 0; k < K; k++) sum += e[k] = exp(lg[k] - mx);
        double u = toto_rng_uniform(r), acc = 0;
        int k = 0;
        while (k < K - 1 && (acc += e[k] / sum) < u) k++;
        size_t o = (size_t)i * K + k;
        double df = ref_softplus(head[TOTO_HEAD_DF][o]), sc = ref_softplus(head[TOTO_HEAD_SCALE][o]);
        df = 2 + (df > FLT_EPSILON ? df : FLT_EPSILON);
        sc = sc > FLT_EPSILON ? sc : FLT_EPSILON;
        double chi2 = 2 * ref_gamma(r, df / 2);
        y[i] = head[TOTO_HEAD_LOC][o] + sc * ref_normal(r) / sqrt(chi2 / df);
    }
}

/* ---- harness ------------------------------------------------------------- */

/* work: K * TOTO_MIXTURE_BLOCK floats or doubles. */
typedef void sampler_fn(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], void *work,
                        double *y);

static void porta_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], void *work,
                         double *y)
{
    toto_mixture_sample(r, n, K, head, work, y);
}

static double gauss(toto_rng *r)
{
    return sqrt(-2 * log(toto_rng_uniform(r))) * cos(6.283185307179586 * toto_rng_uniform(r));
}

static void fill_head(const options *o, float *head[TOTO_HEAD_COUNT])
{
    toto_rng r;
    toto_rng_seed(&r, o->seed + 1000003u);
    size_t n = (size_t)o->rows * o->points * o->k;
    for (size_t i = 0; i < n; i++) {
        head[TOTO_HEAD_DF][i] = (float)(1.0 + 1.2 * gauss(&r));
        head[TOTO_HEAD_LOC][i] = (float)(0.5 * gauss(&r));
        head[TOTO_HEAD_SCALE][i] = (float)(-1.0 + 0.8 * gauss(&r));
        head[TOTO_HEAD_LOGITS][i] = (float)(2.5 * gauss(&r));
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct sampler {
    const char *name;
    sampler_fn *fn;
    toto_rng rng;
    double *y, *times; /* [rows * points] the last step's draws; [repeat] */
    double median, min, median_draw;
} sampler;

/* One step (every row's patch) of s, timed. */
static double step(const options *o, sampler *s, float *const head[TOTO_HEAD_COUNT], void *work)
{
    size_t row = (size_t)o->points * o->k;
    double t0 = now();
    for (int b = 0; b < o->rows; b++) {
        const float *h[TOTO_HEAD_COUNT];
        for (int k = 0; k < TOTO_HEAD_COUNT; k++) h[k] = head[k] + b * row;
        s->fn(&s->rng, o->points, o->k, h, work, s->y + (size_t)b * o->points);
    }
    return now() - t0;
}

/* The samplers take turns, one warm-up step each and then o->repeat timed
 * ones, so that both see the same machine. */
static void run(const options *o, sampler *s, int n, float *const head[TOTO_HEAD_COUNT], void *work)
{
    for (int rep = -1; rep < o->repeat; rep++)
        for (int j = 0; j < n; j++) {
            double t = step(o, &s[j], head, work);
            if (rep >= 0) s[j].times[rep] = t;
        }
    size_t draws = (size_t)o->rows * o->points;
    for (int j = 0; j < n; j++) {
        qsort(s[j].y, draws, sizeof *s[j].y, cmp_double);
        s[j].median_draw = s[j].y[draws / 2];
        qsort(s[j].times, (size_t)o->repeat, sizeof *s[j].times, cmp_double);
        s[j].median = s[j].times[o->repeat / 2];
        s[j].min = s[j].times[0];
    }
}

/* The build toto_mixture_sample runs (its clones, in the loader's order:
 * x86-64-v4, x86-64-v3, baseline), as far as the main CPU features tell. */
static const char *sampler_build(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "x86-64-v4 (AVX-512) build, where the library has clones";
    if (v3) return "x86-64-v3 (AVX2, FMA) build, where the library has clones";
#endif
    return "baseline build";
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a) return cli_usage_exit(a, usage);
    size_t n = (size_t)o.rows * o.points * o.k, draws = (size_t)o.rows * o.points;
    float *head[TOTO_HEAD_COUNT];
    int ok = 1;
    for (int k = 0; k < TOTO_HEAD_COUNT; k++) ok &= (head[k] = malloc(n * sizeof(float))) != NULL;
    double *work = malloc((size_t)o.k * TOTO_MIXTURE_BLOCK * sizeof(double));
    sampler s[2] = {{.name = "porta (toto_mixture_sample)", .fn = porta_sample},
                    {.name = "peer: double-precision sampler", .fn = ref_sample}};
    for (int j = 0; j < 2; j++) {
        toto_rng_seed(&s[j].rng, o.seed);
        ok &= (s[j].y = malloc(draws * sizeof(double))) != NULL;
        ok &= (s[j].times = malloc((size_t)o.repeat * sizeof(double))) != NULL;
    }
    if (!ok || !work) {
        fprintf(stderr, "bench_toto_sampling: out of host memory\n");
        return 1;
    }
    fill_head(&o, head);
    run(&o, s, 2, head, work);
    printf("Toto sampling, host: %d rows x %d points (%zu draws a step), %d components, %d steps each\n", o.rows,
           o.points, draws, o.k, o.repeat);
    printf("toto_mixture_sample here: %s\n", sampler_build());
    printf("  %-32s %14s %14s %12s\n", "", "ns/draw", "ms/step", "median");
    printf("  %-32s %7s %6s %7s %6s %12s\n", "", "median", "min", "median", "min", "draw");
    for (int j = 0; j < 2; j++)
        printf("  %-32s %7.1f %6.1f %7.3f %6.3f %12.5f\n", s[j].name, 1e9 * s[j].median / (double)draws,
               1e9 * s[j].min / (double)draws, 1e3 * s[j].median, 1e3 * s[j].min, s[j].median_draw);
    printf("  %-32s %7.2f %6.2f\n", "speed-up (peer / porta)", s[1].median / s[0].median, s[1].min / s[0].min);
    for (int k = 0; k < TOTO_HEAD_COUNT; k++) free(head[k]);
    for (int j = 0; j < 2; j++) {
        free(s[j].y);
        free(s[j].times);
    }
    free(work);
    return 0;
}
