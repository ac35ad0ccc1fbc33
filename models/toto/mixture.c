/* Draws from Toto's output distribution, a mixture of Student-t components
 * (distribution.py's MixtureOfStudentTsOutput), from the head's raw outputs.
 *
 * A block of draws at a time, one draw per vector lane, in loops the
 * compiler vectorises: no libm call, no branch on data but the rare gamma
 * rejection. The component weights are the only part computed in float
 * (exp by a polynomial within 3 ulp of the exact value on [-87, 0]); the
 * drawn component's df and scale, its Student-t draw and the normals are
 * double, by exp and log within 2 ulp of libm's. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "toto_internal.h"

_Static_assert(TOTO_MIXTURE_BLOCK % TOTO_RNG_LANES == 0, "a block takes whole rounds of the generator");

/* The sampler is built for x86-64-v4 (AVX-512) and x86-64-v3 (AVX2, FMA)
 * as well as the baseline, the loader picking one (GNU ifunc); every helper
 * below is inlined into each build. Contraction into fused multiply-adds is
 * on (CMakeLists.txt): the two FMA builds draw the same values, the
 * baseline build differs from them in rounding. A static function: clang
 * names an exported clone set apart. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones) && __has_attribute(always_inline)
#define TOTO_SAMPLER_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define TOTO_INLINE __attribute__((always_inline)) inline
#endif
#endif
#ifndef TOTO_SAMPLER_CLONES
#define TOTO_SAMPLER_CLONES
#define TOTO_INLINE inline
#endif

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

double toto_student_df(float raw)
{
    double df = softplus(raw);
    return 2.0 + (df > FLT_EPSILON ? df : FLT_EPSILON);
}

double toto_mixture_scale(float raw)
{
    double sc = softplus(raw);
    return sc > FLT_EPSILON ? sc : FLT_EPSILON;
}

static TOTO_INLINE uint64_t bits_of(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static TOTO_INLINE double from_bits(uint64_t b)
{
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* exp(x) for x in [-1022 ln 2, 1023 ln 2], Cephes exp's reduction and Pade
 * form, n = x / ln 2 rounded by adding 0x1.8p52. */
static TOTO_INLINE double exp_d(double x)
{
    double t = x * 1.4426950408889634 + 0x1.8p52, n = t - 0x1.8p52;
    double r = x - n * 6.93145751953125e-1 - n * 1.42860682030941723212e-6, rr = r * r;
    double p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1);
    double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr +
               2.00000000000000000009e0;
    return (1 + 2 * (p / (q - p))) * from_bits((bits_of(t) - 0x4338000000000000ull + 1023) << 52);
}

/* log(x) for a positive normal x: x = 2^k z with z in [sqrt(1/2), sqrt(2))
 * by integer steps, then Cephes log's rational form in z - 1. */
static TOTO_INLINE double log_d(double x)
{
    uint64_t ix = bits_of(x), kb = (ix - 0x3FE6A09E667F3BCDull + 0x3FF0000000000000ull) >> 52; /* k + 1023 */
    double k = from_bits(0x4330000000000000ull | kb) - (0x1p52 + 1023);
    double f = from_bits(ix - ((kb - 1023) << 52)) - 1, ff = f * f;
    double p = ((((1.01875663804580931796e-4 * f + 4.97494994976747001425e-1) * f + 4.70579119878881725854e0) * f +
                 1.44989225341610930846e1) * f + 1.79368678507819816313e1) * f + 7.70838733755885391666e0;
    double q = ((((f + 1.12873587189167450590e1) * f + 4.52279145837532221105e1) * f + 8.29875266912776603211e1) * f +
                7.11544750618563894466e1) * f + 2.31251620126765340583e1;
    double y = f * (ff * p / q) - k * 2.121944400546905827679e-4 - 0.5 * ff;
    return f + y + k * 0.693359375;
}

/* exp(x) for x in [-87, 0] within 3 ulp: Cephes expf's reduction (n =
 * x / ln 2 rounded by adding 0x1.8p23f, no conversion), then a degree-5
 * polynomial on [-ln 2 / 2, ln 2 / 2], 1 + r + r^2 (c2 + ...) fitted for
 * relative error. */
static TOTO_INLINE float exp_nonpos(float x)
{
    float t = x * 1.44269504088896341f + 0x1.8p23f, n = t - 0x1.8p23f;
    uint32_t tb, sb;
    memcpy(&tb, &t, sizeof tb);
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 8.312515510e-03f;
    p = p * r + 4.189020080e-02f;
    p = p * r + 1.666711483e-01f;
    p = p * r + 4.999923120e-01f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n: n in [-126, 0] */
    float s;
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

/* The drawn component of each of the m <= TOTO_MIXTURE_BLOCK mixtures with
 * logits lg [m][K] into comp [m]: the first whose cumulative weight reaches
 * u times the total, u uniform in (0, 1). Work: [K][TOTO_MIXTURE_BLOCK]. */
static TOTO_INLINE void draw_components(toto_rng *r, int m, int K, const float *lg, float *work, int32_t *comp)
{
    enum { NB = TOTO_MIXTURE_BLOCK };
    float mx[NB], acc[NB], t[NB];
    double u[NB];
    for (int i = 0; i < m; i++) mx[i] = work[i] = lg[(size_t)i * K];
    for (int k = 1; k < K; k++)
        for (int i = 0; i < m; i++) {
            float l = lg[(size_t)i * K + k];
            work[k * NB + i] = l;
            mx[i] = l > mx[i] ? l : mx[i];
        }
    /* Cumulative weights. A logit more than 87 below the largest (or NaN)
     * weighs exp(-87), nothing next to the largest weight, 1. */
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < m; i++) {
            float x = work[k * NB + i] - mx[i];
            work[k * NB + i] = acc[i] += exp_nonpos(x > -87.0f ? x : -87.0f);
        }
    /* 0 < t <= total: the component found has a positive weight. */
    for (int i = 0; i < m; i += TOTO_RNG_LANES) toto_rng_uniforms(r, u + i);
    for (int i = 0; i < m; i++) t[i] = (float)(u[i] * acc[i]);
    for (int i = 0; i < m; i++) comp[i] = 0;
    for (int k = 0; k < K - 1; k++)
        for (int i = 0; i < m; i++) comp[i] += work[k * NB + i] < t[i];
}

/* softplus of the raw x, floored at FLT_EPSILON, as toto_mixture_scale:
 * below x = -20 the value is under the floor, so x is clamped there; above
 * 20 it is x. log1p(e) as log(1 + e) e / ((1 + e) - 1), exact to rounding
 * wherever the result clears the floor. */
static TOTO_INLINE double softplus_floor(double x)
{
    double xc = x < -20 ? -20 : x > 20 ? 20 : x;
    double e = exp_d(xc), w = 1 + e, sp = log_d(w) * (e / (w - 1));
    sp = x > 20 ? x : sp;
    return sp > FLT_EPSILON ? sp : FLT_EPSILON;
}

/* m pairs of independent standard normals by the polar method: the
 * candidates first (a rejected one is overwritten, no branch), then the
 * logarithms and roots of all of them in one vector loop. */
static TOTO_INLINE void normal_pairs(toto_rng *r, int m, double *z0, double *z1)
{
    double q[TOTO_MIXTURE_BLOCK], cu[TOTO_RNG_LANES], cv[TOTO_RNG_LANES];
    for (int j = 0; j < m;) {
        toto_rng_uniforms(r, cu);
        toto_rng_uniforms(r, cv);
        for (int l = 0; l < TOTO_RNG_LANES && j < m; l++) {
            double u = 2 * cu[l] - 1, v = 2 * cv[l] - 1;
            z0[j] = u;
            z1[j] = v;
            q[j] = u * u + v * v;
            j += q[j] < 1; /* q > 0: |u| >= 2^-52 */
        }
    }
    for (int i = 0; i < m; i++) {
        double f = sqrt(-2 * log_d(q[i]) / q[i]);
        z0[i] *= f;
        z1[i] *= f;
    }
}

/* One Student-t draw for each of the m drawn components (raw parameters
 * rdf, rsc, loc [m]) into y [m]: z1 / sqrt(chi2 / df), chi2 = 2 Gamma(df / 2)
 * whose first Marsaglia-Tsang candidate takes z0 of the same polar pair. The
 * candidates the squeeze accepts (most) are taken here, in vector loops;
 * toto_rng_gamma finishes the others. */
static TOTO_INLINE void student_t_block(toto_rng *r, int m, const double *rdf, const double *rsc, const double *loc,
                                        double *y)
{
    enum { NB = TOTO_MIXTURE_BLOCK };
    double df[NB], z0[NB], z1[NB], u[NB], v[NB], squeeze[NB], g[NB];
    normal_pairs(r, m, z0, z1);
    for (int i = 0; i < m; i += TOTO_RNG_LANES) toto_rng_uniforms(r, u + i);
    for (int i = 0; i < m; i++) {
        df[i] = 2 + softplus_floor(rdf[i]);
        df[i] = df[i] < FLT_MAX ? df[i] : FLT_MAX; /* Marsaglia-Tsang never accepts an infinite shape */
        double d = df[i] / 2 - 1.0 / 3, zz = z0[i] * z0[i];
        v[i] = 1 + z0[i] / sqrt(9 * d);
        g[i] = d * (v[i] * v[i] * v[i]);
        squeeze[i] = 1 - 0.0331 * zz * zz;
    }
    for (int i = 0; i < m; i++)
        if (!(v[i] > 0 && u[i] < squeeze[i])) g[i] = toto_rng_gamma(r, df[i] / 2, z0[i], u[i]);
    for (int i = 0; i < m; i++) y[i] = loc[i] + softplus_floor(rsc[i]) * z1[i] * sqrt(df[i] / (2 * g[i]));
}

/* The whole sampler, one block after another: the build the CPU runs. */
static TOTO_SAMPLER_CLONES void mixture_sample_blocks(toto_rng *r, int n, int K,
                                                      const float *const head[TOTO_HEAD_COUNT], float *work, double *y)
{
    enum { NB = TOTO_MIXTURE_BLOCK };
    int32_t comp[NB];
    double df[NB], scale[NB], loc[NB];
    for (int i0 = 0; i0 < n; i0 += NB) {
        int m = n - i0 < NB ? n - i0 : NB;
        draw_components(r, m, K, head[TOTO_HEAD_LOGITS] + (size_t)i0 * K, work, comp);
        for (int i = 0; i < m; i++) {
            size_t o = (size_t)(i0 + i) * K + comp[i];
            df[i] = head[TOTO_HEAD_DF][o];
            scale[i] = head[TOTO_HEAD_SCALE][o];
            loc[i] = head[TOTO_HEAD_LOC][o];
        }
        student_t_block(r, m, df, scale, loc, y + i0);
    }
}

void toto_mixture_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], float *work,
                         double *y)
{
    mixture_sample_blocks(r, n, K, head, work, y);
}
