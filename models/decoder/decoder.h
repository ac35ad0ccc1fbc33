/* A generic pre-norm decoder stack (RMSNorm, fused QKV, RoPE, cached causal
 * attention, SwiGLU MLP) on the porta graph API. The example, the program
 * tests and the benchmarks build it; Toto has its own builder. */
#ifndef PORTA_DECODER_H
#define PORTA_DECODER_H

#include <stdint.h>
#include "porta/porta.h"

typedef struct dec_config {
    int layers, embed, heads, mlp; /* mlp: SwiGLU hidden width */
    int xpos;                      /* Toto's xPos RoPE instead of plain RoPE */
} dec_config;

typedef struct dec_weights {
    dec_config c;
    porta_buffer *buf; /* every weight, one buffer */
    int64_t n;
} dec_weights;

/* Weights drawn from a seeded generator, scaled by 1/sqrt(fan_in). */
porta_status dec_weights_new(porta_backend *be, const dec_config *c, uint64_t seed, dec_weights **out);
void dec_weights_free(dec_weights *w);
int64_t dec_param_count(const dec_config *c);

/* x [B, T, E] -> [B, T, E]. With kv: each layer appends to cache layer l and
 * attends over the cache (positions from the step block). Without: causal
 * attention within x, positions 0..T-1 (the full recompute). */
porta_tensor *dec_build(porta_graph *g, const dec_weights *w, porta_kvcache *kv, porta_tensor *x);

#endif
