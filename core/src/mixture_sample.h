/* PORTA_OP_MIXTURE_SAMPLE's draw, one function for every backend that runs
 * the op: C for ref and cpu, CUDA (host and device) for cuda. Each draw is a
 * function of (seed, stream, draw index) alone: a Philox4x32-10 generator
 * whose counter holds the draw index, so draws need no shared state and any
 * number of them run in parallel.
 *
 * The mixture is Toto's (distribution.py, MixtureOfStudentTsOutput), from
 * raw head outputs: weights softmax(logits), df = 2 + max(softplus(df_raw),
 * eps), scale = max(softplus(scale_raw), eps), eps = FLT_EPSILON. A draw
 * picks a component by its cumulative weight, then draws a Student-t as
 * z * sqrt(df / chi2), chi2 = 2 Gamma(df / 2) by Marsaglia and Tsang's method,
 * normals by the polar method; all in double. */
#ifndef PORTA_MIXTURE_SAMPLE_H
#define PORTA_MIXTURE_SAMPLE_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PMX_FN static __host__ __device__ inline
#else
#define PMX_FN static inline
#endif

/* Philox4x32-10 (Salmon et al., SC'11): ten rounds on the counter c with the
 * key (k0, k1), in place. */
PMX_FN void pmx_philox(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (uint32_t)p1;
        c[2] = n2;
        c[3] = (uint32_t)p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* One draw's generator: counter (block, draw, stream, 0), key the seed; a
 * Philox block gives two uniforms. */
typedef struct pmx_rng {
    uint32_t k0, k1, draw, stream, block;
    uint32_t out[4];
    int left; /* uniforms left in out */
} pmx_rng;

/* An integer in [0, 2^24) held by a float of the key input; anything else
 * (negative, fractional, NaN) reads as 0 rather than overflow a conversion. */
PMX_FN uint32_t pmx_key_word(double v)
{
    if (!(v >= 0 && v < 16777216.0)) return 0;
    uint32_t w = (uint32_t)v;
    return (double)w == v ? w : 0;
}

/* The generator of draw `draw` from the key's four values: the seed's bits
 * 0-23, 24-47 and 48-63, then the stream. */
PMX_FN pmx_rng pmx_rng_init(double key0, double key1, double key2, double key3, uint32_t draw)
{
    uint64_t seed = (uint64_t)pmx_key_word(key0) | (uint64_t)pmx_key_word(key1) << 24 |
                    (uint64_t)(pmx_key_word(key2) & 0xFFFFu) << 48;
    pmx_rng r;
    r.k0 = (uint32_t)seed;
    r.k1 = (uint32_t)(seed >> 32);
    r.draw = draw;
    r.stream = pmx_key_word(key3);
    r.block = 0;
    r.left = 0;
    for (int i = 0; i < 4; i++) r.out[i] = 0;
    return r;
}

/* Uniform in (0, 1): 53 bits, plus half a step. */
PMX_FN double pmx_uniform(pmx_rng *r)
{
    if (r->left == 0) {
        uint32_t c[4] = {r->block++, r->draw, r->stream, 0};
        pmx_philox(c, r->k0, r->k1);
        for (int i = 0; i < 4; i++) r->out[i] = c[i];
        r->left = 2;
    }
    int i = 2 * (2 - r->left--);
    uint64_t b = ((uint64_t)r->out[i] << 32 | r->out[i + 1]) >> 11;
    return ((double)b + 0.5) * 0x1.0p-53;
}

/* A pair of independent standard normals (polar method). The loop ends with
 * probability one; the cap keeps a broken generator from spinning. */
PMX_FN void pmx_normal_pair(pmx_rng *r, double *z0, double *z1)
{
    for (int t = 0; t < 1000; t++) {
        double u = 2 * pmx_uniform(r) - 1, v = 2 * pmx_uniform(r) - 1, q = u * u + v * v;
        if (q > 0 && q < 1) {
            double m = sqrt(-2 * log(q) / q);
            *z0 = u * m;
            *z1 = v * m;
            return;
        }
    }
    *z0 = *z1 = 0;
}

/* softplus(x) floored at FLT_EPSILON (NaN gives the floor). */
PMX_FN double pmx_softplus_floor(double x)
{
    double sp = x > 20 ? x : log1p(exp(x));
    return sp > FLT_EPSILON ? sp : FLT_EPSILON;
}

/* One draw from the mixture of K components given by the raw outputs
 * df_raw, loc, scale_raw, logits [K]. */
PMX_FN double pmx_draw(pmx_rng *r, const float *df_raw, const float *loc, const float *scale_raw, const float *logits,
                       int K)
{
    /* Component: the first whose cumulative weight reaches u times the
     * total. A logit more than 87 below the largest, or NaN, weighs exp(-87). */
    float mx = logits[0];
    for (int k = 1; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
    double total = 0;
    for (int k = 0; k < K; k++) {
        float x = logits[k] - mx;
        total += exp((double)(x > -87.0f ? x : -87.0f));
    }
    double t = pmx_uniform(r) * total, acc = 0;
    int c = 0;
    for (; c < K - 1; c++) {
        float x = logits[c] - mx;
        acc += exp((double)(x > -87.0f ? x : -87.0f));
        if (acc >= t) break;
    }
    double df = 2 + pmx_softplus_floor(df_raw[c]), scale = pmx_softplus_floor(scale_raw[c]);
    df = df < FLT_MAX ? df : FLT_MAX; /* Marsaglia-Tsang never accepts an infinite shape */
    /* chi2 / 2 = Gamma(df / 2); its first candidate takes z0 of the pair
     * whose z1 is the Student-t's normal. */
    double z0, z1, spare = 0, g = df / 2;
    pmx_normal_pair(r, &z0, &z1);
    double d = df / 2 - 1.0 / 3, cc = 1 / sqrt(9 * d), z = z0, u = pmx_uniform(r);
    for (int t2 = 0, have = 0; t2 < 1000; t2++, have = !have) {
        double v = 1 + cc * z;
        if (v > 0) {
            v = v * v * v;
            double zz = z * z;
            if (u < 1 - 0.0331 * zz * zz || log(u) < 0.5 * zz + d - d * v + d * log(v)) {
                g = d * v;
                break;
            }
        }
        if (have) z = spare;
        else pmx_normal_pair(r, &z, &spare);
        u = pmx_uniform(r);
    }
    return loc[c] + scale * z1 * sqrt(df / (2 * g));
}

#endif
