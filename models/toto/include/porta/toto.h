/* Toto 1.0 (Datadog's time-series forecaster) on porta.
 *
 * A model is a checkpoint directory (config.json + model.safetensors, as
 * toto-ts reads them) whose weights live in one buffer of one backend. A
 * forecaster is built for one forecast shape (series, variates, context
 * length, horizon, samples): it compiles two programs, prefill (every context
 * patch) and decode (one patch), and replays them at every step. Scaling,
 * the mixture head's nonlinearities and sampling run on the host in double. */
#ifndef PORTA_TOTO_H
#define PORTA_TOTO_H

#include <stdint.h>
#include "porta/porta.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct porta_toto_config {
    int patch_size;
    int stride;
    int embed_dim;
    int num_layers;
    int num_heads;
    int mlp_hidden_dim;
    double dropout;               /* inactive in inference; range-checked only */
    int spacewise_every_n_layers; /* -1: time-wise layers only */
    int spacewise_first;
    int k_components;             /* Student-T mixture components */
    int stabilize_with_global;
    double scale_factor_exponent;
} porta_toto_config;

/* Reads and validates a toto-ts config.json. Keys the Toto constructor lacks a
 * default for are required; unknown keys are reported on stderr and ignored. */
porta_status porta_toto_config_load(const char *path, porta_toto_config *cfg);

typedef struct porta_toto_model porta_toto_model;

/* Loads dir/config.json and dir/model.safetensors and uploads every weight
 * once into one buffer of be. Accepts fused (mlp.0.w12 / mlp.0.w3) and unfused
 * (mlp.0 / mlp.2) MLP names and f32, bf16 or f16 tensors. */
porta_status porta_toto_model_load(const char *dir, porta_backend *be, porta_toto_model **out);
void porta_toto_model_free(porta_toto_model *m);
const porta_toto_config *porta_toto_model_config(const porta_toto_model *m);

typedef struct porta_toto_forecast_desc {
    int series;      /* independent multivariate series (batch) */
    int variates;
    int context_len; /* time steps given per series; left-padded to whole patches */
    int horizon;     /* time steps to forecast */
    int samples;     /* 0: mean path (the mixture mean fed back); else sample paths */
    uint64_t seed;   /* sampling generator seed */
    /* Sample paths draw on the backend when it runs porta_mixture_sample
     * (porta_backend_can_sample: ref, cpu, cuda, vulkan with double
     * precision), inside the programs, so
     * that only the draws come back to the host; elsewhere, or when this is
     * nonzero, on the host from the mixture parameters read back, by the
     * same code: the same paths either way. */
    int host_sampler;
} porta_toto_forecast_desc;

typedef struct porta_toto_forecaster porta_toto_forecaster;

porta_status porta_toto_forecaster_new(porta_toto_model *m, const porta_toto_forecast_desc *d,
                                       porta_toto_forecaster **out);
void porta_toto_forecaster_free(porta_toto_forecaster *f);

/* Mixture parameters of one step for the forecast patch, each [rows, variates,
 * patch, k]: df = 2 + softplus, loc, scale = softplus (both clamped at float32
 * eps as toto-ts does), and the raw mixture logits. Model space: before the
 * scaler's loc/scale ([rows, variates]) are applied. rows = series for the
 * prefill and the mean path, series * samples (sample-major) when decoding
 * samples. */
typedef struct porta_toto_dist {
    int step;
    int rows, variates, patch, k;
    const double *df, *loc, *scale, *logits;
    const double *scaler_loc, *scaler_scale;
} porta_toto_dist;

typedef struct porta_toto_inputs {
    const float *series;       /* [series, variates, context_len] */
    const float *padding_mask; /* same shape, nonzero = observed; NULL: all observed */
    const int32_t *id_mask;    /* same shape, group ids for space-wise attention; NULL: one group */
    /* Called after every step with its mixture parameters (tests, tracing). */
    void (*on_step)(void *user, const porta_toto_dist *d);
    void *user;
    /* Nonzero: on_step is told the step and the sizes only (df, loc, scale
     * and logits NULL), so a timing hook leaves the forecast's host work as
     * without one; the mixture parameters of every value are otherwise
     * computed only for on_step. */
    int step_only;
} porta_toto_inputs;

typedef struct porta_toto_result {
    float *mean;    /* [series, variates, horizon]: the mean path, or the sample mean */
    float *samples; /* [series, variates, horizon, samples] (samples > 0), else unused */
} porta_toto_result;

/* Runs one forecast. Non-finite inputs at observed positions are refused. */
porta_status porta_toto_forecast(porta_toto_forecaster *f, const porta_toto_inputs *in, porta_toto_result *res);

/* Counters of the forecaster's two programs (compiles stay 1 each). */
porta_status porta_toto_forecaster_stats(const porta_toto_forecaster *f, porta_program_stats *prefill,
                                         porta_program_stats *decode);

/* Cross-backend tracing: compiles a twin of the forecaster's prefill program
 * with porta_compile_traced (nodes named as the model's parts:
 * "layer1.attn.wqkv", "layer1.mlp.swiglu", "head.df", ...) and runs it once on
 * in's context. *values gets one malloc'd array per output of *traced
 * (porta_program_output_numel floats each); the caller frees each array, the
 * array of them and the program. The forecaster's own programs are untouched;
 * its cache then holds this prefill. */
porta_status porta_toto_trace_prefill(porta_toto_forecaster *f, const porta_toto_inputs *in, porta_program **traced,
                                      float ***values);

/* The same for the first decode step of the mean path (samples 0, a horizon
 * over one patch): runs the forecaster's prefill of in's context (on_step is
 * not called), appends the first forecast patch as porta_toto_forecast does,
 * then runs a traced twin of the decode program (one patch, with the cache)
 * once on it. first_patch, when not NULL, replaces that patch
 * ([series, variates, patch], e.g. another backend's first forecast patch):
 * an error of the prefill then stays out of the decode's input, and a
 * comparison finds the decode's own first diverging node. The cache then holds
 * the context and that patch. */
porta_status porta_toto_trace_decode(porta_toto_forecaster *f, const porta_toto_inputs *in, const float *first_patch,
                                     porta_program **traced, float ***values);

/* Quantile q of n values, linear interpolation between order statistics
 * (torch.quantile's default); values is reordered. */
double porta_toto_quantile(float *values, int n, double q);

#ifdef __cplusplus
}
#endif
#endif
