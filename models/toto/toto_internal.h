/* Private layouts shared by the Toto model's files. */
#ifndef PORTA_TOTO_INTERNAL_H
#define PORTA_TOTO_INTERNAL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mixture_sample.h"
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

/* Mixture parameters from the head's raw outputs, as distribution.py (the
 * parameterisation porta_mixture_sample draws from). */
static inline double toto_student_df(float raw) { return 2 + pmx_softplus_floor(raw); }
static inline double toto_mixture_scale(float raw) { return pmx_softplus_floor(raw); }

#endif
