/* Private layouts shared by the Toto model's files. */
#ifndef PORTA_TOTO_INTERNAL_H
#define PORTA_TOTO_INTERNAL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "porta/toto.h"

#define toto_fail porta_fail

/* A weight: its place in one of the model's buffers and its shape ([N, K]
 * linears). */
typedef struct toto_weight {
    int src;       /* 1: in the load-time buffer of the head's sources (head_src) */
    int64_t offset;
    int ndim;
    int64_t shape[2];
} toto_weight;

typedef struct toto_layer {
    int spacewise;
    int cache_layer; /* KV cache layer of a time-wise layer, else -1 */
    toto_weight norm1, norm2;
    toto_weight wqkv, bqkv, wo, bo;
    toto_weight w1, b1, w2, b2; /* MLP: [2F, E] then [E, F] */
} toto_layer;

struct porta_toto_model {
    porta_toto_config cfg;
    porta_backend *be;
    porta_buffer *weights;
    int64_t n_weights;
    /* The unembedding and the head's linears as the checkpoint has them:
     * read once, to compose `head`, then freed (NULL). */
    porta_buffer *head_src;
    toto_weight patch_w, patch_b, unembed_w, unembed_b;
    toto_weight head_w[4], head_b[4]; /* df, loc_proj, scale_proj, mixture_weights */
    /* The unembedding and each head linear composed into one linear
     * ([patch * k, embed] weights, [patch * k] bias per head), in `head`. */
    porta_buffer *head;
    toto_weight head_wc[4], head_bc[4];
    toto_layer *layers;
    int n_time_layers;
};

/* Order of the head's linears and of the programs' outputs. */
enum { TOTO_HEAD_DF, TOTO_HEAD_LOC, TOTO_HEAD_SCALE, TOTO_HEAD_LOGITS, TOTO_HEAD_COUNT };

/* RMSNorm eps of toto-ts's util.RMSNorm. */
#define TOTO_RMS_EPS 1e-8f

porta_status toto_read_text(const char *path, char **out);
porta_status toto_config_parse(const char *path, const char *text, porta_toto_config *cfg);
/* Loads and uploads the state dict of a checkpoint into m (cfg set). */
porta_status toto_weights_load(porta_toto_model *m, const char *path);

/* Builds the program of `rows` series of `variates` variates over T patches:
 * inputs x [rows, variates, T, patch] (scaled patches) and, when the model
 * has space-wise layers, an additive mask [rows * T, variates, variates];
 * outputs the head's four linears for the last patch, each
 * [rows, variates, patch, k]. draws > 0 adds an input, the sampling key [4]
 * (porta_mixture_sample), and a fifth output: `draws` draws from each
 * mixture, [draws, rows, variates, patch]. traced: porta_compile_traced
 * instead of porta_compile. */
porta_status toto_build(const porta_toto_model *m, porta_kvcache *kv, int rows, int variates, int T, int traced,
                        int draws, porta_program **out);
int toto_has_spacewise(const porta_toto_config *cfg);

/* CausalPatchStdMeanScaler on one series, incrementally: its running sums
 * and the global bounds (from the first `prefix` steps) used to stabilise the
 * scale. */
typedef struct toto_scaler_state {
    double cw, cv, m2, mean; /* weight, weighted sum, Welford M2, running mean */
    double lo, hi;
} toto_scaler_state;
/* Empty sums; bounds from x, w [prefix]. */
void toto_scaler_start(const porta_toto_config *cfg, const double *x, const double *w, int prefix,
                       toto_scaler_state *st);
/* Extends the sums by the n steps x, w (n a multiple of the patch, the series
 * so far whole patches too): loc and scale of each of the n / patch patches,
 * the causal statistics at its last step. */
void toto_scaler_extend(const porta_toto_config *cfg, toto_scaler_state *st, const double *x, const double *w,
                        int n, double *loc, double *scale);

/* Seeded generator: TOTO_RNG_LANES xoshiro256** streams, 2^128 steps
 * apart, their states laid out lane by lane so that one step of every
 * stream is a vector loop. Scalar draws step stream 0 alone. */
#define TOTO_RNG_LANES 16
typedef struct toto_rng {
    uint64_t s[4][TOTO_RNG_LANES];
} toto_rng;
void toto_rng_seed(toto_rng *r, uint64_t seed);

/* One xoshiro256** step of stream j. */
static inline uint64_t toto_rng_step(toto_rng *r, int j)
{
    uint64_t s0 = r->s[0][j], s1 = r->s[1][j], s2 = r->s[2][j] ^ s0, s3 = r->s[3][j] ^ s1;
    uint64_t x = s1 + (s1 << 2); /* s1 * 5, rotl 7, * 9: shifts and adds vectorise */
    x = (x << 7) | (x >> 57);
    x += x << 3;
    r->s[0][j] = s0 ^ s3;
    r->s[1][j] = s1 ^ s2;
    r->s[2][j] = s2 ^ (s1 << 17);
    r->s[3][j] = (s3 << 45) | (s3 >> 19);
    return x;
}

/* Uniform in (0, 1), 53 bits, from stream 0. */
static inline double toto_rng_uniform(toto_rng *r) { return ((double)(toto_rng_step(r, 0) >> 11) + 0.5) * 0x1.0p-53; }

/* TOTO_RNG_LANES uniforms in (0, 1) into u, one per stream: 52 bits as the
 * mantissa of a double in [1, 2), less 1 - 2^-53 (exact). */
static inline void toto_rng_uniforms(toto_rng *restrict r, double *restrict u)
{
    for (int j = 0; j < TOTO_RNG_LANES; j++) {
        uint64_t b = 0x3FF0000000000000ull | (toto_rng_step(r, j) >> 12);
        double d;
        memcpy(&d, &b, sizeof d);
        u[j] = d - (1 - 0x1p-53);
    }
}

/* Gamma(shape >= 1, 1) by Marsaglia and Tsang's method, whose first
 * candidate is the normal z and the uniform u, fresh draws after a
 * rejection. Its squeeze u < 1 - 0.0331 z^4 lies below the exact test: a
 * caller may take the first candidate, d v^3, itself where the squeeze
 * accepts it, and call this otherwise. */
double toto_rng_gamma(toto_rng *r, double shape, double z, double u);

/* Mixture parameters from the head's raw outputs, as distribution.py. */
double toto_student_df(float raw);
double toto_mixture_scale(float raw);
/* One draw from each of n mixtures of K Student-t components into y [n]:
 * head holds the raw df, loc, scale and logits of the n mixtures, each
 * [n][K]; work [K * TOTO_MIXTURE_BLOCK] is scratch. */
#define TOTO_MIXTURE_BLOCK 64
void toto_mixture_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], float *work,
                         double *y);

#endif
