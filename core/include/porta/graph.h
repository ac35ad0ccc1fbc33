/* Graph builder: tensors, shapes and the ops every backend implements.
 *
 * Shapes are listed outermost first (PyTorch order). A graph is built once with
 * fixed shapes; nothing in it depends on a cache position. Builder functions
 * return NULL on failure and record the first failure in the graph (see
 * porta_graph_status); they accept NULL inputs and then return NULL, so a model
 * can be built in one go and checked once.
 *
 * Step semantics. Ops that take a KV cache (rope, kv_append,
 * attention_cached) read, at each run, two int32 values per cache row b from the
 * program's step block: pos[b], the row's length before the step, and n[b], the
 * number of rows appended this step (0..T, T the chunk capacity: the second
 * dimension of their inputs). Row i < n[b] of sequence b sits at position
 * pos[b] + i. Rows i >= n[b] of their outputs are written as zeros. Without a
 * cache, rope uses pos = 0 and n = T.
 *
 * A program's batch B may be smaller than the cache's rows: it then covers
 * rows 0..B-1 (a prefill of a few sequences whose cache rows are later copied
 * to many with porta_kvcache_copy_row), and every step-dependent node of one
 * program has the same B. */
#ifndef PORTA_GRAPH_H
#define PORTA_GRAPH_H

#include <stdint.h>
#include "porta/backend.h"
#include "porta/kvcache.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PORTA_MAX_DIMS 6

typedef struct porta_graph porta_graph;
typedef struct porta_tensor porta_tensor;

porta_status porta_graph_new(porta_graph **out);
void porta_graph_free(porta_graph *g);
/* PORTA_OK, or the first failure of a builder call (message in porta_last_error
 * at the time of that call; repeated here). */
porta_status porta_graph_status(const porta_graph *g);
const char *porta_graph_error(const porta_graph *g);

/* Tensor facts. */
int porta_tensor_ndim(const porta_tensor *t);
int64_t porta_tensor_dim(const porta_tensor *t, int axis); /* axis < 0 counts from the end */
int64_t porta_tensor_numel(const porta_tensor *t);
/* Names a tensor (for traces and error messages); returns t. */
porta_tensor *porta_name(porta_tensor *t, const char *name);

/* Leaves. An input is written by the host at every run (porta_step.inputs, in
 * declaration order). A param lives in a buffer the caller owns and fills
 * (weights): n elements starting at offset, read as the given shape. */
porta_tensor *porta_input(porta_graph *g, const char *name, int ndim, const int64_t *shape);
porta_tensor *porta_param(porta_graph *g, porta_buffer *buf, int64_t offset, int ndim, const int64_t *shape);
/* Marks t as an output, read back into porta_step.outputs in marking order. */
porta_status porta_output(porta_graph *g, porta_tensor *t);

/* ---- Views (no data movement when the source allows it) ---------------- */
/* Same elements, new shape; a non-contiguous source is copied first. One entry
 * may be -1 (inferred). */
porta_tensor *porta_reshape(porta_graph *g, porta_tensor *x, int ndim, const int64_t *shape);
/* out.shape[i] = x.shape[perm[i]]. */
porta_tensor *porta_permute(porta_graph *g, porta_tensor *x, const int *perm);
/* Elements start .. start+len-1 of one axis. */
porta_tensor *porta_slice(porta_graph *g, porta_tensor *x, int axis, int64_t start, int64_t len);
/* A dense copy of x (row-major). */
porta_tensor *porta_contiguous(porta_graph *g, porta_tensor *x);

/* ---- Dense ops (inputs made contiguous where needed) ------------------- */
/* y[..., n] = sum_k x[..., k] w[n, k] + bias[n]; w is [N, K] (PyTorch Linear),
 * bias [N] or NULL. */
porta_tensor *porta_linear(porta_graph *g, porta_tensor *x, porta_tensor *w, porta_tensor *bias);
/* Batched a[..., M, K] @ b[..., K, N]; b's batch dims equal a's, or b is 2-D. */
porta_tensor *porta_matmul(porta_graph *g, porta_tensor *a, porta_tensor *b);
/* Elementwise a + b, a * b. b's shape equals a's or a suffix of it (b then
 * repeats over a's leading dims). */
porta_tensor *porta_add(porta_graph *g, porta_tensor *a, porta_tensor *b);
porta_tensor *porta_mul(porta_graph *g, porta_tensor *a, porta_tensor *b);
/* Over the last dim E: y = x / sqrt(mean(x^2) + eps) * scale; scale [E] or NULL. */
porta_tensor *porta_rmsnorm(porta_graph *g, porta_tensor *x, porta_tensor *scale, float eps);
/* Over the last dim: y = (x - mean) / sqrt(var + eps) * w + b (biased var);
 * w, b [E] or NULL. */
porta_tensor *porta_layernorm(porta_graph *g, porta_tensor *x, porta_tensor *w, porta_tensor *b, float eps);
/* y = x * sigmoid(x). */
porta_tensor *porta_silu(porta_graph *g, porta_tensor *x);
/* x [..., 2F] -> [..., F]: gate = x[..., :F], up = x[..., F:], y = silu(gate) * up
 * (Toto's "gate, x = h.chunk(2); silu(gate) * x"). */
porta_tensor *porta_swiglu(porta_graph *g, porta_tensor *x);
/* Softmax over the last dim. */
porta_tensor *porta_softmax(porta_graph *g, porta_tensor *x);

/* ---- Position-dependent ops -------------------------------------------- */
typedef struct porta_rope_desc {
    float theta;      /* 10000 */
    int xpos;         /* nonzero: xPos scaling as Toto applies it */
    float scale_base; /* 512 */
} porta_rope_desc;

/* x [B, T, H, D] (any strides), D even. For row i < n[b] at p = pos[b] + i and
 * pair j < D/2, a = p * theta^(-2j/D):
 *   y[2j]   = (x[2j] cos a - x[2j+1] sin a) * s[2j]
 *   y[2j+1] = (x[2j+1] cos a + x[2j] sin a) * s[2j+1]
 * Without xpos s = 1. With xpos, c = floor((pos[b] + n[b] - 1) / 2) (the largest
 * position of the chunk, halved: Toto centres the scale per chunk),
 * u_k = (2k + 0.4 D) / (1.4 D) for k < D/2, and s[m] = u_{m mod D/2}^((p - c)/scale_base)
 * for queries, its inverse for keys (is_key). kv may be NULL (pos 0, n = T). */
porta_tensor *porta_rope(porta_graph *g, porta_tensor *x, const porta_rope_desc *rd, porta_kvcache *kv, int is_key);

typedef enum porta_kv_which { PORTA_KV_K = 0, PORTA_KV_V = 1 } porta_kv_which;
/* Writes x [B, T, H, D] (any strides; B <= rows, H, D the cache's) rows i < n[b]
 * into the cache at positions pos[b] + i of layer `layer`, and returns the
 * layer's K or V as a [B, H, max_len, D] tensor for attention_cached. */
porta_tensor *porta_kv_append(porta_graph *g, porta_kvcache *kv, int layer, porta_kv_which which, porta_tensor *x);

/* q [B, T, H, D] (any strides), kc and vc from porta_kv_append of one layer.
 * Row i < n[b] attends to cache positions 0 .. pos[b] + i (causal over the cache
 * and among the step's own rows): y = softmax(scale * q k^T) v. -> [B, T, H, D]. */
porta_tensor *porta_attention_cached(porta_graph *g, porta_tensor *q, porta_tensor *kc, porta_tensor *vc, float scale);

/* q [B, Tq, H, D], k and v [B, Tk, H, D] (any strides). mask NULL or additive
 * float [Bm, Tq, Tk] with B % Bm == 0, query batch b using mask b / (B / Bm)
 * (-inf entries exclude a key). causal: key j > query i excluded (Tq == Tk).
 * A query row with every key excluded yields zeros. -> [B, Tq, H, D]. */
porta_tensor *porta_attention(porta_graph *g, porta_tensor *q, porta_tensor *k, porta_tensor *v,
                              porta_tensor *mask, float scale, int causal);

/* ---- Sampling ------------------------------------------------------------ */
/* One draw from each mixture of K Student-t components whose raw parameters
 * are df, loc, scale and logits [..., K] (one shape; the outputs of Toto's
 * head, distribution.py's MixtureOfStudentTsOutput): weights softmax(logits),
 * degrees of freedom 2 + max(softplus(df), eps), scale max(softplus(scale),
 * eps), eps = FLT_EPSILON. -> [repeat, ...] (the mixtures' shape without K,
 * behind a leading repeat): draw j of the flattened output comes from mixture
 * j mod (number of mixtures).
 *
 * key: an input of 4 elements, integers in [0, 2^24) that the host writes at
 * each run: the seed's bits 0-23, 24-47 and 48-63, then a stream number (a
 * forecast's step). A draw is a function of (seed, stream, j) and the
 * parameters alone (a Philox4x32-10 counter per draw), so every backend
 * running the op draws the same values up to rounding, and a replay with a new
 * stream draws afresh. Backends without the op refuse the program at compile;
 * porta_backend_can_sample tells beforehand. */
porta_tensor *porta_mixture_sample(porta_graph *g, porta_tensor *df, porta_tensor *loc, porta_tensor *scale,
                                   porta_tensor *logits, porta_tensor *key, int repeat);

#ifdef __cplusplus
}
#endif
#endif
