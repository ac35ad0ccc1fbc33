#include <math.h>
#include "ref.h"

void ref_rmsnorm(const ref_ctx *c, const porta_node *n)
{
    int64_t E = n->in[0].shape[n->in[0].ndim - 1], M = porta_ref_numel(&n->in[0]) / E;
    const double *X = ref_base(c, &n->in[0]), *S = n->in[1].mem ? ref_base(c, &n->in[1]) : NULL;
    double *Y = ref_base(c, &n->out);
    for (int64_t m = 0; m < M; m++) {
        double ss = 0.0;
        for (int64_t e = 0; e < E; e++) ss += X[m * E + e] * X[m * E + e];
        double inv = 1.0 / sqrt(ss / (double)E + (double)n->p.eps);
        for (int64_t e = 0; e < E; e++) Y[m * E + e] = X[m * E + e] * inv * (S ? S[e] : 1.0);
    }
}

void ref_layernorm(const ref_ctx *c, const porta_node *n)
{
    int64_t E = n->in[0].shape[n->in[0].ndim - 1], M = porta_ref_numel(&n->in[0]) / E;
    const double *X = ref_base(c, &n->in[0]);
    const double *W = n->in[1].mem ? ref_base(c, &n->in[1]) : NULL, *B = n->in[2].mem ? ref_base(c, &n->in[2]) : NULL;
    double *Y = ref_base(c, &n->out);
    for (int64_t m = 0; m < M; m++) {
        double mean = 0.0, var = 0.0;
        for (int64_t e = 0; e < E; e++) mean += X[m * E + e];
        mean /= (double)E;
        for (int64_t e = 0; e < E; e++) var += (X[m * E + e] - mean) * (X[m * E + e] - mean);
        double inv = 1.0 / sqrt(var / (double)E + (double)n->p.eps);
        for (int64_t e = 0; e < E; e++)
            Y[m * E + e] = (X[m * E + e] - mean) * inv * (W ? W[e] : 1.0) + (B ? B[e] : 0.0);
    }
}
