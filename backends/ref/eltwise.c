#include <math.h>
#include "ref.h"

static void binary(const ref_ctx *c, const porta_node *n, int mul)
{
    int64_t na = porta_ref_numel(&n->in[0]), nb = porta_ref_numel(&n->in[1]);
    const double *A = ref_base(c, &n->in[0]), *B = ref_base(c, &n->in[1]);
    double *Y = ref_base(c, &n->out);
    for (int64_t i = 0; i < na; i++) Y[i] = mul ? A[i] * B[i % nb] : A[i] + B[i % nb];
}

void ref_add(const ref_ctx *c, const porta_node *n) { binary(c, n, 0); }
void ref_mul(const ref_ctx *c, const porta_node *n) { binary(c, n, 1); }

static double silu(double x) { return x / (1.0 + exp(-x)); }

void ref_silu(const ref_ctx *c, const porta_node *n)
{
    int64_t N = porta_ref_numel(&n->in[0]);
    const double *X = ref_base(c, &n->in[0]);
    double *Y = ref_base(c, &n->out);
    for (int64_t i = 0; i < N; i++) Y[i] = silu(X[i]);
}

void ref_swiglu(const ref_ctx *c, const porta_node *n)
{
    int64_t F = n->out.shape[n->out.ndim - 1], M = porta_ref_numel(&n->out) / F;
    const double *X = ref_base(c, &n->in[0]);
    double *Y = ref_base(c, &n->out);
    for (int64_t m = 0; m < M; m++)
        for (int64_t f = 0; f < F; f++) Y[m * F + f] = silu(X[m * 2 * F + f]) * X[m * 2 * F + F + f];
}
