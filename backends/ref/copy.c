#include "ref.h"

void ref_copy(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *x = &n->in[0];
    const double *src = ref_base(c, x);
    double *dst = ref_base(c, &n->out);
    int64_t total = porta_ref_numel(x), idx[PORTA_PLAN_MAX_DIMS] = { 0 };
    for (int64_t e = 0; e < total; e++) {
        int64_t off = 0;
        for (int d = 0; d < x->ndim; d++) off += idx[d] * x->stride[d];
        dst[e] = src[off];
        for (int d = x->ndim - 1; d >= 0; d--) {
            if (++idx[d] < x->shape[d]) break;
            idx[d] = 0;
        }
    }
}
