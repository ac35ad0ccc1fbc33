/* The CPU backend's private types and the kernels of each op file. */
#ifndef PORTA_CPU_H
#define PORTA_CPU_H

#include <stdint.h>
#include "plan.h"
#include "threadpool.h"

/* A planned node with its memory references resolved to addresses. Absent
 * optional inputs (bias, scale, mask) have in[i] == NULL. */
typedef struct cpu_node {
    porta_node n;
    float *out;
    const float *in[PORTA_PLAN_MAX_IN];
} cpu_node;

/* What a kernel sees at run time besides its node. */
typedef struct cpu_exec {
    cpu_pool *pool;
    int threads;
    const int32_t *step; /* pos, n, src, shared [step_rows] each (plan.h) */
    int step_rows;
    float *scratch;      /* threads * scratch_stride floats, 64-byte aligned */
    int64_t scratch_stride;
} cpu_exec;

/* Position and new-row count of cache row b for a position-dependent node
 * whose chunk holds T rows (program creation checked b < step_rows). An
 * uncached node starts at position 0 with every row live. */
static inline void cpu_step_row(const cpu_exec *ex, int cached, int64_t b, int64_t T, int64_t *pos, int64_t *n)
{
    if (!cached) {
        *pos = 0;
        *n = T;
        return;
    }
    *pos = ex->step[b];
    int64_t nb = ex->step[ex->step_rows + b];
    *n = nb < 0 ? 0 : nb > T ? T : nb;
}

/* Cache row b's shared prefix: keys and values below *len are row *src's. */
static inline void cpu_step_shared(const cpu_exec *ex, int64_t b, int64_t *src, int64_t *len)
{
    *src = ex->step[2 * ex->step_rows + b];
    *len = ex->step[3 * ex->step_rows + b];
}

static inline float *cpu_scratch(const cpu_exec *ex, int tid)
{
    return ex->scratch + (int64_t)tid * ex->scratch_stride;
}

/* Floats of per-thread scratch a node needs (0 for most). */
int64_t cpu_rope_scratch(const porta_node *n);
int64_t cpu_attention_scratch(const porta_node *n);

void cpu_copy(const cpu_exec *ex, const cpu_node *nd);
void cpu_linear(const cpu_exec *ex, const cpu_node *nd);
void cpu_matmul(const cpu_exec *ex, const cpu_node *nd);
void cpu_add(const cpu_exec *ex, const cpu_node *nd);
void cpu_mul(const cpu_exec *ex, const cpu_node *nd);
void cpu_silu(const cpu_exec *ex, const cpu_node *nd);
void cpu_swiglu(const cpu_exec *ex, const cpu_node *nd);
void cpu_rmsnorm(const cpu_exec *ex, const cpu_node *nd);
void cpu_layernorm(const cpu_exec *ex, const cpu_node *nd);
void cpu_softmax(const cpu_exec *ex, const cpu_node *nd);
void cpu_rope(const cpu_exec *ex, const cpu_node *nd);
void cpu_kv_append(const cpu_exec *ex, const cpu_node *nd);
void cpu_attn_cached(const cpu_exec *ex, const cpu_node *nd);
void cpu_attn(const cpu_exec *ex, const cpu_node *nd);
void cpu_mixture_sample(const cpu_exec *ex, const cpu_node *nd);

/* Matrix products on plain pointers, shared by LINEAR, MATMUL and the
 * benchmarks: c[M,N] = a[M,K] b^T with b = w[N,K] (linear), or a[M,K] b[K,N].
 * use_blas: -1 chooses by size, 0 forces the AVX2 path, 1 forces sgemm. */
void cpu_gemm_nt(const cpu_exec *ex, int64_t M, int64_t N, int64_t K, const float *a,
                 const float *w, const float *bias, float *c, int use_blas);
void cpu_gemm_nn(const cpu_exec *ex, int64_t M, int64_t N, int64_t K, const float *a,
                 const float *b, float *c, int use_blas);

#endif
