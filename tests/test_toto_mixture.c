/* Toto's sampler (toto_mixture_sample) draws from the mixture of Student-t
 * components its raw head outputs define: for a few fixed mixtures, the
 * Kolmogorov-Smirnov distance between N draws and the exact mixture CDF
 * (regularised incomplete beta) stays below 2.7 / sqrt(N), exceeded by an
 * exact sampler with probability about 1.5e-6. The distance is taken at 2000
 * order statistics, which can only lower it. Mixtures interleave within a
 * call (one block of draws holds several) and calls span partial blocks;
 * K = 1, 3 and 24 components; df from 2 + FLT_EPSILON (the floor) to ~30. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* DRAWS draws from each of the nm mixtures m, interleaved: draw i of a call
 * comes from mixture i % nm, calls of `per_call` draws. Every m must have the
 * same K. */
static void draw_interleaved(toto_rng *r, const mixture *m, int nm, int per_call, double **out)
{
    int K = m[0].K;
    float *head[TOTO_HEAD_COUNT];
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) {
        head[h] = malloc((size_t)per_call * K * sizeof(float));
        for (int i = 0; i < per_call; i++) memcpy(head[h] + (size_t)i * K, m[i % nm].raw[h], K * sizeof(float));
    }
    float *work = malloc((size_t)K * TOTO_MIXTURE_BLOCK * sizeof(float));
    double *y = malloc((size_t)per_call * sizeof(double));
    int *got = calloc((size_t)nm, sizeof(int));
    for (int done = 0; done < nm;) {
        toto_mixture_sample(r, per_call, K, (const float *const *)head, work, y);
        done = 0;
        for (int i = 0; i < per_call; i++) {
            int j = i % nm;
            if (got[j] < DRAWS) out[j][got[j]++] = y[i];
        }
        for (int j = 0; j < nm; j++) done += got[j] == DRAWS;
    }
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) free(head[h]);
    free(work);
    free(y);
    free(got);
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

int main(void)
{
    rng g = {42};
    mixture m[5];
    fill_mixture(&m[0], "K 24, spread weights, df 2.1..30", 24, &g, 3, -2, 30);
    fill_mixture(&m[1], "K 24, one dominant component, df floor", 24, &g, 1, -30, -20);
    m[1].raw[TOTO_HEAD_LOGITS][7] = 6;
    fill_mixture(&m[2], "K 24, near-equal weights, df 2..6", 24, &g, 0.1f, -4, 4);
    fill_mixture(&m[3], "K 3", 3, &g, 2, -1, 5);
    fill_mixture(&m[4], "K 1", 1, &g, 2, 0, 3);

    toto_rng r;
    toto_rng_seed(&r, 2024);
    double *y[5];
    for (int j = 0; j < 5; j++) y[j] = malloc(DRAWS * sizeof(double));
    draw_interleaved(&r, m, 3, 2 * TOTO_MIXTURE_BLOCK + 27, y);
    draw_interleaved(&r, &m[3], 1, 37, &y[3]);
    draw_interleaved(&r, &m[4], 1, TOTO_MIXTURE_BLOCK, &y[4]);

    checker c = {0};
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
    return checker_exit(&c);
}
