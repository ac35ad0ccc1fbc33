/* porta_mixture_sample draws from the mixture of Student-t components Toto's
 * raw head outputs define: its draw (mixture_sample.h) run on the host
 * without arguments (as the forecaster does where the backend lacks the op),
 * the op on a backend given as the argument. For a few fixed mixtures, the
 * Kolmogorov-Smirnov distance between N draws and the exact mixture CDF
 * (regularised incomplete beta) stays below 2.7 / sqrt(N), exceeded by an
 * exact sampler with probability about 1.5e-6. The distance is taken at 2000
 * order statistics, which can only lower it. Three mixtures interleave in
 * one node's draws; K = 1, 3 and 24 components; df from 2 + FLT_EPSILON (the
 * floor) to ~30. The generator, Philox4x32-10, is checked against its
 * authors' known-answer vectors. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mixture_sample.h"
#include "toto_internal.h"
#include "testutil.h"

enum { DRAWS = 400000, POINTS = 2000, MAXK = 24 };

typedef struct mixture {
    const char *name;
    int K;
    float raw[TOTO_HEAD_COUNT][MAXK];
} mixture;

/* Continued fraction of the incomplete beta (modified Lentz). */
static double beta_cf(double a, double b, double x)
{
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    d = fabs(d) < 1e-300 ? 1e-300 : d;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        for (int odd = 0; odd < 2; odd++) {
            double num = odd ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
                             : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + num * d;
            d = fabs(d) < 1e-300 ? 1e-300 : d;
            c = 1 + num / c;
            c = fabs(c) < 1e-300 ? 1e-300 : c;
            d = 1 / d;
            h *= d * c;
            if (odd && fabs(d * c - 1) < 1e-15) return h;
        }
    }
    return h;
}

/* I_x(a, b), with 1 - x given separately for precision. */
static double beta_reg(double a, double b, double x, double x1)
{
    if (x <= 0) return 0;
    if (x1 <= 0) return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log(x1);
    if (x < (a + 1) / (a + b + 2)) return exp(lbt) * beta_cf(a, b, x) / a;
    return 1 - exp(lbt) * beta_cf(b, a, x1) / b;
}

static double student_t_cdf(double t, double df)
{
    double tail = 0.5 * beta_reg(df / 2, 0.5, df / (df + t * t), t * t / (df + t * t));
    return t > 0 ? 1 - tail : tail;
}

static double mixture_cdf(const mixture *m, double y)
{
    double mx = m->raw[TOTO_HEAD_LOGITS][0], z = 0, F = 0;
    for (int k = 1; k < m->K; k++) mx = fmax(mx, m->raw[TOTO_HEAD_LOGITS][k]);
    for (int k = 0; k < m->K; k++) {
        double w = exp(m->raw[TOTO_HEAD_LOGITS][k] - mx), df = toto_student_df(m->raw[TOTO_HEAD_DF][k]);
        z += w;
        F += w * student_t_cdf((y - m->raw[TOTO_HEAD_LOC][k]) / toto_mixture_scale(m->raw[TOTO_HEAD_SCALE][k]), df);
    }
    return F / z;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* KS distance of the draws y [n] (sorted here) from m's CDF, at POINTS
 * order statistics. */
static double ks_distance(const mixture *m, double *y, int n)
{
    qsort(y, (size_t)n, sizeof *y, cmp_double);
    double D = 0;
    for (int j = 0; j < POINTS; j++) {
        int r = (int)((j + 0.5) * n / POINTS);
        double F = mixture_cdf(m, y[r]);
        D = fmax(D, fmax(fabs(F - (double)r / n), fabs(F - (double)(r + 1) / n)));
    }
    return D;
}

/* DRAWS draws from each of the nm mixtures m (one K) by mixture_sample.h's
 * draw on the host, numbered as porta_mixture_sample numbers them (the
 * forecaster's host draws): draw j from mixture j % nm. */
static void draw_host(const mixture *m, int nm, uint32_t stream, double **out)
{
    for (int64_t j = 0; j < (int64_t)DRAWS * nm; j++) {
        const mixture *x = &m[j % nm];
        pmx_rng r = pmx_rng_init(2024, 0, 0, stream, (uint32_t)j);
        out[j % nm][j / nm] = (float)pmx_draw(&r, x->raw[TOTO_HEAD_DF], x->raw[TOTO_HEAD_LOC],
                                              x->raw[TOTO_HEAD_SCALE], x->raw[TOTO_HEAD_LOGITS], x->K);
    }
}

static void fill_mixture(mixture *m, const char *name, int K, rng *g, float logit_spread, float df_lo,
                         float df_hi)
{
    m->name = name;
    m->K = K;
    for (int k = 0; k < K; k++) {
        m->raw[TOTO_HEAD_LOGITS][k] = logit_spread * rng_uniform(g);
        m->raw[TOTO_HEAD_DF][k] = df_lo + (df_hi - df_lo) * 0.5f * (1 + rng_uniform(g));
        m->raw[TOTO_HEAD_LOC][k] = 2 * rng_uniform(g);
        m->raw[TOTO_HEAD_SCALE][k] = -1 + 1.5f * rng_uniform(g);
    }
}

/* DRAWS draws from each of the nm mixtures m (one K) by porta_mixture_sample
 * on be: one node, draw j from mixture j % nm. */
static void draw_op(porta_backend *be, const mixture *m, int nm, uint32_t stream, double **out)
{
    int K = m[0].K;
    porta_graph *g = NULL;
    CHECK_OK(porta_graph_new(&g));
    static const char *const names[TOTO_HEAD_COUNT] = {"df", "loc", "scale", "logits"};
    porta_tensor *p[TOTO_HEAD_COUNT];
    float *in[TOTO_HEAD_COUNT + 1];
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) {
        p[h] = porta_input(g, names[h], 2, (const int64_t[]){nm, K});
        in[h] = malloc((size_t)nm * K * sizeof(float));
        for (int j = 0; j < nm; j++) memcpy(in[h] + (size_t)j * K, m[j].raw[h], K * sizeof(float));
    }
    porta_tensor *key = porta_input(g, "key", 1, (const int64_t[]){4});
    CHECK_OK(porta_output(g, porta_mixture_sample(g, p[TOTO_HEAD_DF], p[TOTO_HEAD_LOC], p[TOTO_HEAD_SCALE],
                                                  p[TOTO_HEAD_LOGITS], key, DRAWS)));
    porta_program *prog = NULL;
    CHECK_OK(porta_compile(g, be, &prog));
    float k[4] = {2024, 0, 0, (float)stream};
    in[TOTO_HEAD_COUNT] = k;
    float *y = malloc((size_t)DRAWS * nm * sizeof(float));
    fill_nan(y, (int64_t)DRAWS * nm);
    porta_step st = {.n_new = 1, .inputs = (const float *const *)in, .outputs = &y};
    CHECK_OK(porta_run(prog, &st));
    CHECK_OK(porta_program_wait(prog));
    for (int64_t j = 0; j < (int64_t)DRAWS * nm; j++) out[j % nm][j / nm] = y[j];
    free(y);
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) free(in[h]);
    porta_program_free(prog);
    porta_graph_free(g);
}

/* Random123's known-answer vectors for Philox4x32-10. */
static void check_philox(checker *c)
{
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t ctr[4] = {kat[i][0], kat[i][1], kat[i][2], kat[i][3]};
        pmx_philox(ctr, kat[i][4], kat[i][5]);
        char what[80];
        snprintf(what, sizeof what, "Philox4x32-10 known answer %d", i);
        check_true(c, what, !memcmp(ctr, kat[i] + 6, sizeof ctr));
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: test_toto_mixture [BACKEND]\n  no argument: the draws on the host; BACKEND: "
               "porta_mixture_sample there\n");
        return 0;
    }
    porta_backend *be = argc > 1 ? open_or_skip(argv[1]) : NULL;
    if (be && !porta_backend_can_sample(be)) {
        printf("SKIP: backend %s does not run porta_mixture_sample\n", argv[1]);
        porta_backend_close(be);
        return 77;
    }
    rng g = {42};
    mixture m[5];
    fill_mixture(&m[0], "K 24, spread weights, df 2.1..30", 24, &g, 3, -2, 30);
    fill_mixture(&m[1], "K 24, one dominant component, df floor", 24, &g, 1, -30, -20);
    m[1].raw[TOTO_HEAD_LOGITS][7] = 6;
    fill_mixture(&m[2], "K 24, near-equal weights, df 2..6", 24, &g, 0.1f, -4, 4);
    fill_mixture(&m[3], "K 3", 3, &g, 2, -1, 5);
    fill_mixture(&m[4], "K 1", 1, &g, 2, 0, 3);

    checker c = {0};
    double *y[5];
    for (int j = 0; j < 5; j++) y[j] = malloc(DRAWS * sizeof(double));
    if (be) {
        draw_op(be, m, 3, 0, y);
        draw_op(be, &m[3], 1, 1, &y[3]);
        draw_op(be, &m[4], 1, 2, &y[4]);
    } else {
        check_philox(&c);
        draw_host(m, 3, 0, y);
        draw_host(&m[3], 1, 1, &y[3]);
        draw_host(&m[4], 1, 2, &y[4]);
    }

    double limit = 2.7 / sqrt(DRAWS);
    for (int j = 0; j < 5; j++) {
        int finite = 1;
        for (int i = 0; i < DRAWS; i++) finite &= isfinite(y[j][i]) != 0;
        double D = ks_distance(&m[j], y[j], DRAWS);
        char what[160];
        snprintf(what, sizeof what, "%s: finite, KS distance %.5f < %.5f", m[j].name, D, limit);
        check_true(&c, what, finite && D < limit);
        free(y[j]);
    }
    porta_backend_close(be);
    return checker_exit(&c);
}
