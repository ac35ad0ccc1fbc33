/* The float64 oracle: every op's meaning in plain scalar C. Storage is double
 * everywhere (buffers, arena, cache), so a whole model runs in float64. */
#ifndef PORTA_REF_H
#define PORTA_REF_H

#include "plan.h"

typedef struct ref_backend {
    const porta_host *host;
} ref_backend;

typedef struct ref_buffer {
    double *d;
    int64_t n;
    porta_dtype dtype;
} ref_buffer;

typedef struct ref_ctx {
    const porta_host *host;
    double *arena;
    const int32_t *step; /* pos, n, src, shared [rows] each (plan.h); NULL without a cache */
    int rows;
    double *scratch;     /* one attention row of scores (the most keys of any node), or a
                          * sampled mixture's parameters */
} ref_ctx;

/* Base address of a ref (element 0 of its view). */
static inline double *ref_base(const ref_ctx *c, const porta_ref *r)
{
    double *b = r->mem == PORTA_MEM_ARENA ? c->arena : ((ref_buffer *)r->buf)->d;
    return b + r->offset;
}

/* Address of element (i0, i1, i2, i3) of a 4-D ref. */
static inline double *ref_at4(double *base, const porta_ref *r, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    return base + i0 * r->stride[0] + i1 * r->stride[1] + i2 * r->stride[2] + i3 * r->stride[3];
}

/* Cache row b's shared prefix: keys and values below *len come from row *src. */
static inline void ref_shared(const ref_ctx *c, int64_t b, int64_t *src, int64_t *len)
{
    *src = c->step ? c->step[2 * c->rows + b] : b;
    *len = c->step ? c->step[3 * c->rows + b] : 0;
}

/* Rows appended this step by cache row b, and its length before the step. */
static inline void ref_step(const ref_ctx *c, int64_t b, int64_t T, int64_t *pos, int64_t *n)
{
    if (c->step) {
        *pos = c->step[b];
        *n = c->step[c->rows + b];
    } else {
        *pos = 0;
        *n = T;
    }
}

typedef void (*ref_kernel)(const ref_ctx *c, const porta_node *n);
void ref_copy(const ref_ctx *c, const porta_node *n);
void ref_linear(const ref_ctx *c, const porta_node *n);
void ref_matmul(const ref_ctx *c, const porta_node *n);
void ref_add(const ref_ctx *c, const porta_node *n);
void ref_mul(const ref_ctx *c, const porta_node *n);
void ref_silu(const ref_ctx *c, const porta_node *n);
void ref_swiglu(const ref_ctx *c, const porta_node *n);
void ref_rmsnorm(const ref_ctx *c, const porta_node *n);
void ref_layernorm(const ref_ctx *c, const porta_node *n);
void ref_softmax(const ref_ctx *c, const porta_node *n);
void ref_rope(const ref_ctx *c, const porta_node *n);
void ref_kv_append(const ref_ctx *c, const porta_node *n);
void ref_attention_cached(const ref_ctx *c, const porta_node *n);
void ref_attention(const ref_ctx *c, const porta_node *n);
void ref_mixture_sample(const ref_ctx *c, const porta_node *n);

#endif
