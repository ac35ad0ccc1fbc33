#include "ref.h"

void ref_kv_append(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *x = &n->in[0], *o = &n->out; /* x [B,T,H,D], cache [B,H,L,D] */
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3];
    const double *X = ref_base(c, x);
    double *C = ref_base(c, o);
    for (int64_t b = 0; b < B; b++) {
        int64_t pos, cnt;
        ref_step(c, b, T, &pos, &cnt);
        for (int64_t i = 0; i < cnt; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++)
                    *ref_at4(C, o, b, h, pos + i, d) = *ref_at4((double *)X, x, b, i, h, d);
    }
}
