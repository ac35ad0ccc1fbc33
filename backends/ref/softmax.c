#include <math.h>
#include "ref.h"

void ref_softmax(const ref_ctx *c, const porta_node *n)
{
    int64_t E = n->in[0].shape[n->in[0].ndim - 1], M = porta_ref_numel(&n->in[0]) / E;
    const double *X = ref_base(c, &n->in[0]);
    double *Y = ref_base(c, &n->out);
    for (int64_t m = 0; m < M; m++) {
        double mx = -INFINITY, s = 0.0;
        for (int64_t e = 0; e < E; e++) mx = fmax(mx, X[m * E + e]);
        for (int64_t e = 0; e < E; e++) s += exp(X[m * E + e] - mx);
        for (int64_t e = 0; e < E; e++) Y[m * E + e] = exp(X[m * E + e] - mx) / s;
    }
}
