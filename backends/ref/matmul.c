#include "ref.h"

void ref_linear(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *x = &n->in[0], *w = &n->in[1], *b = &n->in[2];
    int64_t K = w->shape[1], N = w->shape[0], M = porta_ref_numel(x) / K;
    const double *X = ref_base(c, x), *W = ref_base(c, w), *B = b->mem ? ref_base(c, b) : NULL;
    double *Y = ref_base(c, &n->out);
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) {
            double s = B ? B[j] : 0.0;
            for (int64_t k = 0; k < K; k++) s += X[m * K + k] * W[j * K + k];
            Y[m * N + j] = s;
        }
}

void ref_matmul(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *a = &n->in[0], *b = &n->in[1];
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    int64_t batch = porta_ref_numel(a) / (M * K);
    int64_t bstep = b->ndim == 2 ? 0 : K * N;
    const double *A = ref_base(c, a), *B = ref_base(c, b);
    double *Y = ref_base(c, &n->out);
    for (int64_t t = 0; t < batch; t++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < K; k++) s += A[t * M * K + i * K + k] * B[t * bstep + k * N + j];
                Y[t * M * N + i * N + j] = s;
            }
}
