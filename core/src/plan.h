/* The contract between core and a backend: a planned program (nodes with
 * resolved memory references) and the vtable a backend fills.
 *
 * Backends see no core object: buffers are the backend's own handles, memory
 * references are (buffer or arena, element offset, shape, strides). A backend
 * built as a run-time module includes only this header and status.h. */
#ifndef PORTA_PLAN_H
#define PORTA_PLAN_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "porta/status.h"
#include "porta/backend.h"

#define PORTA_PLAN_MAX_DIMS 6
#define PORTA_PLAN_MAX_IN 5
#define PORTA_MODULE_ABI 6
#define PORTA_STEP_FIELDS 4 /* pos, n, src, shared: see the step block below */

typedef enum porta_op {
    PORTA_OP_COPY = 0,   /* in0 (strided) -> out (dense) */
    PORTA_OP_LINEAR,     /* in0 x[M,K], in1 w[N,K], in2 bias[N] or none -> out[M,N] */
    PORTA_OP_MATMUL,     /* in0 a[Bt,M,K], in1 b[Bt or 1,K,N] -> out[Bt,M,N] */
    PORTA_OP_ADD,        /* in0 a[numel], in1 b[numel_b] repeating -> out */
    PORTA_OP_MUL,
    PORTA_OP_RMSNORM,    /* in0 x[M,E], in1 scale[E] or none */
    PORTA_OP_LAYERNORM,  /* in0 x[M,E], in1 w or none, in2 b or none */
    PORTA_OP_SILU,
    PORTA_OP_SWIGLU,     /* in0 x[M,2F] -> out[M,F] */
    PORTA_OP_SOFTMAX,    /* in0 x[M,E] */
    PORTA_OP_ROPE,       /* in0 x[B,T,H,D] strided -> out dense [B,T,H,D] */
    PORTA_OP_KV_APPEND,  /* in0 x[B,T,H,D] strided, out = cache layer [B,H,L,D] */
    PORTA_OP_ATTN_CACHED,/* in0 q[B,T,H,D] strided, in1 K, in2 V [B,H,L,D] -> out[B,T,H,D] */
    PORTA_OP_ATTN,       /* in0 q[B,Tq,H,D], in1 k, in2 v [B,Tk,H,D] strided, in3 mask[Bm,Tq,Tk] or none */
    /* Made by core's fusion pass, only for backends whose vtable sets
     * PORTA_CAP_FUSED_LINEAR: in0 x (rows of K, leading dims collapse),
     * in1 w[N2,K], in2 bias[N2] or none, in3 residual (dense, numel of out) or
     * none, in4 RMSNorm scale[K] or none. y = rmsnorm(x) (p.lin.norm, eps
     * p.lin.eps, times in4 when present) w^T + bias; when p.lin.swiglu,
     * y = silu(y[:, :N2/2]) * y[:, N2/2:]; out = y + residual. */
    PORTA_OP_LINEAR_FUSED,
    /* Made by the fusion pass for PORTA_CAP_FUSED_ROPE_APPEND backends: a
     * cached ROPE whose only reader is a KV_APPEND. in0 x[B,T,H,D] strided,
     * out = cache layer [B,H,L,D] as KV_APPEND; the rows written are
     * rope(x) with p.rope, positions from the step block. */
    PORTA_OP_KV_APPEND_ROPE,
    /* Only for backends whose vtable sets PORTA_CAP_MIXTURE_SAMPLE: in0 df,
     * in1 loc, in2 scale, in3 logits, dense [n, K] each (raw outputs of
     * Toto's head), in4 key [4]; out [numel]: draw j from mixture j % n
     * (mixture_sample.h holds the draw every backend runs). */
    PORTA_OP_MIXTURE_SAMPLE,
    PORTA_OP_COUNT
} porta_op;

const char *porta_op_name(porta_op op);

/* Where a tensor's elements are. */
typedef enum porta_mem { PORTA_MEM_NONE = 0, PORTA_MEM_ARENA, PORTA_MEM_BUFFER } porta_mem;

typedef struct porta_ref {
    porta_mem mem;
    void *buf;             /* backend buffer handle when mem == BUFFER */
    int64_t offset;        /* in elements */
    int ndim;
    int64_t shape[PORTA_PLAN_MAX_DIMS];
    int64_t stride[PORTA_PLAN_MAX_DIMS]; /* in elements */
    porta_dtype dtype;
} porta_ref;

typedef struct porta_node {
    porta_op op;
    const char *name;      /* node name for traces; never NULL */
    porta_ref out;
    int n_in;              /* the op's arity; an absent optional input has mem NONE */
    porta_ref in[PORTA_PLAN_MAX_IN];
    union {
        float eps;                                   /* norms */
        /* cached: positions from the step block; else pos 0, n = T */
        struct { float theta, scale_base; int xpos, is_key, cached; } rope;
        struct { float scale; int causal; } attn;
        struct { float eps; int norm, swiglu; } lin;  /* LINEAR_FUSED */
    } p;
} porta_node;

/* Per-node timing report of a profiling backend (PORTA_CUDA_PROFILE=1,
 * PORTA_VULKAN_PROFILE=1): time per op kind, then the 12 slowest nodes.
 * us_sum[i] is node i's time summed over `runs` replays; nothing is printed
 * for fewer than 3. */
void porta_profile_report(FILE *f, const char *backend, const porta_node *nodes, int n_nodes, const double *us_sum,
                          int runs, const char *note);

typedef struct porta_plan {
    int n_nodes;
    const porta_node *nodes;
    int64_t arena_elems;       /* intermediate memory, f32 elements */
    int n_inputs, n_outputs;
    const porta_ref *inputs;   /* dense arena regions the host writes */
    const porta_ref *outputs;  /* dense regions the host reads (arena or buffer) */
    int step_rows;             /* rows of the step block (PORTA_STEP_FIELDS int32 each) */
} porta_plan;

/* Counters a backend advances (core counts compiles and replays). */
typedef struct porta_backend_counts {
    uint64_t captures, records;
    uint64_t prefetches; /* weight prefetch launches in each replay */
    uint64_t chained;    /* dependent dispatches that wait in-shader, not behind a barrier */
} porta_backend_counts;

/* The step block, as the host hands it to a backend before each replay:
 * pos[rows], n[rows], src[rows] then shared[rows], int32 (NULL when
 * plan->step_rows is 0). Row b's cached keys and values at positions below
 * shared[b] are those of row src[b] (a prefix it shares,
 * porta_kvcache_share_rows); the others are its own. Without sharing
 * src[b] = b and shared[b] = 0. Backends copy
 * it into device memory in stream order, into a slot that no replay in flight
 * still reads.
 *
 * Ordering: all work a backend object is given (every program's replays,
 * buf_write/buf_copy) executes in submission order, as if on one stream or
 * queue: a prefill program and a decode program share one KV cache, and a
 * replay must see the cache writes of the replays submitted before it. */

/* Capabilities a backend declares in its vtable. */
#define PORTA_CAP_FUSED_LINEAR 1u      /* takes PORTA_OP_LINEAR_FUSED nodes */
#define PORTA_CAP_FUSED_ROPE_APPEND 2u /* takes PORTA_OP_KV_APPEND_ROPE nodes */
#define PORTA_CAP_MIXTURE_SAMPLE 4u    /* runs PORTA_OP_MIXTURE_SAMPLE nodes */

typedef struct porta_backend_vt {
    int abi;
    const char *kind;
    unsigned caps;         /* PORTA_CAP_* */
    int fuse_max_rows;     /* fused linears only up to this many rows (0: any) */
    int fuse_res_any_rows; /* and yet a linear -> add (residual) at any row count */
    void (*close)(void *be);
    const char *(*device_name)(void *be);
    porta_status (*buf_new)(void *be, porta_dtype dt, int64_t n, void **buf);
    void (*buf_free)(void *be, void *buf);
    porta_status (*buf_write)(void *be, void *buf, int64_t off, int64_t n, const float *src);
    porta_status (*buf_read)(void *be, void *buf, int64_t off, int64_t n, float *dst);
    /* Device-side copy of n elements, ordered after work already submitted. */
    porta_status (*buf_copy)(void *be, void *dst, int64_t doff, void *src, int64_t soff, int64_t n);
    /* Waits for all submitted work (NULL: the backend runs synchronously). */
    porta_status (*sync)(void *be);
    porta_status (*prog_new)(void *be, const porta_plan *plan, porta_backend_counts *counts, void **prog);
    porta_status (*prog_run)(void *prog, const int32_t *step_block, const float *const *inputs,
                             float *const *outputs);
    porta_status (*prog_wait)(void *prog);
    void (*prog_free)(void *prog);
} porta_backend_vt;

/* What core lends a backend: error reporting into core's thread-local message. */
typedef struct porta_host {
    porta_status (*fail)(porta_status s, const char *fmt, ...);
} porta_host;

/* An integer setting of a backend from the environment: *out = def when
 * name is unset; PORTA_ERR_ARG, with a message naming it, when its value is
 * not a whole number from lo to hi. who: the backend's kind. */
static inline porta_status porta_env_int(const porta_host *h, const char *who, const char *name, int def, int lo,
                                         int hi, int *out)
{
    const char *v = getenv(name);
    char *end;
    long x = v ? strtol(v, &end, 10) : def;
    if ((v && (end == v || *end)) || x < lo || x > hi)
        return h->fail(PORTA_ERR_ARG, "%s: %s=%s is not a whole number from %d to %d", who, name, v ? v : "(unset)",
                       lo, hi);
    *out = (int)x;
    return PORTA_OK;
}

/* Entry point a run-time module exports under the name "porta_module_open".
 * spec: the text after "kind:" ("" = the best device, "0", "1", ... = that
 * device index; "discrete" = the best discrete GPU only, used by "auto"). Returns
 * PORTA_ERR_UNAVAILABLE with a message when the device is absent. */
typedef porta_status (*porta_module_open_fn)(const porta_host *host, const char *spec,
                                             const porta_backend_vt **vt, void **be);

/* Built-in backends. */
porta_status porta_ref_open(const porta_host *host, const char *spec, const porta_backend_vt **vt, void **be);
porta_status porta_cpu_open(const porta_host *host, const char *spec, const porta_backend_vt **vt, void **be);

/* Helpers for backends and core. */
static inline int64_t porta_ref_numel(const porta_ref *r)
{
    int64_t n = 1;
    for (int i = 0; i < r->ndim; i++) n *= r->shape[i];
    return n;
}
/* Nonzero when r's strides are row-major dense. */
static inline int porta_ref_dense(const porta_ref *r)
{
    int64_t s = 1;
    for (int i = r->ndim - 1; i >= 0; i--) {
        if (r->shape[i] != 1 && r->stride[i] != s) return 0;
        s *= r->shape[i];
    }
    return 1;
}

/* The elements [lo, hi) a ref may touch (strides of either sign). */
static inline void porta_ref_span(const porta_ref *r, int64_t *lo, int64_t *hi)
{
    *lo = *hi = r->offset;
    for (int i = 0; i < r->ndim; i++) {
        if (r->shape[i] == 0) {
            *hi = *lo;
            return;
        }
        int64_t d = (r->shape[i] - 1) * r->stride[i];
        if (d < 0) *lo += d;
        else *hi += d;
    }
    *hi += 1;
}
/* Nonzero when two refs may touch a common element (same arena or buffer,
 * overlapping spans); refs to nothing overlap nothing. */
static inline int porta_ref_overlap(const porta_ref *a, const porta_ref *b)
{
    if (a->mem == PORTA_MEM_NONE || a->mem != b->mem || (a->mem == PORTA_MEM_BUFFER && a->buf != b->buf)) return 0;
    int64_t al, ah, bl, bh;
    porta_ref_span(a, &al, &ah);
    porta_ref_span(b, &bl, &bh);
    return al < bh && bl < ah;
}

/* The shape facts a MIXTURE_SAMPLE node's kernels rely on: dense
 * parameters [M, K], a key of 4, a dense output of a multiple of M draws,
 * fewer than max_draws + 1 (the backend's index range). *M and *K are set
 * when it holds. */
static inline int porta_mixture_sample_ok(const porta_node *n, int64_t max_draws, int64_t *M, int64_t *K)
{
    const porta_ref *x = &n->in[0];
    if (n->n_in != 5 || x->ndim < 1) return 0;
    for (int i = 0; i < 5; i++)
        if (n->in[i].mem == PORTA_MEM_NONE || !porta_ref_dense(&n->in[i])) return 0;
    int64_t k = x->shape[x->ndim - 1], m = k > 0 ? porta_ref_numel(x) / k : 0, draws = porta_ref_numel(&n->out);
    int ok = m > 0 && k <= INT32_MAX && draws % m == 0 && draws <= max_draws && porta_ref_dense(&n->out) &&
             porta_ref_numel(&n->in[4]) == 4;
    for (int i = 1; i < 4 && ok; i++) ok = porta_ref_numel(&n->in[i]) == porta_ref_numel(x);
    if (ok) *M = m, *K = k;
    return ok;
}

#endif
