#include <math.h>
#include "ref.h"

void ref_rope(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *x = &n->in[0], *o = &n->out;
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3], half = D / 2;
    const double *X = ref_base(c, x);
    double *Y = ref_base(c, o);
    double theta = n->p.rope.theta, sb = n->p.rope.scale_base;
    for (int64_t b = 0; b < B; b++) {
        int64_t pos = 0, cnt = T;
        if (n->p.rope.cached) ref_step(c, b, T, &pos, &cnt);
        /* Toto centres the xPos scale on the chunk's largest position, halved. */
        double centre = floor((double)(pos + cnt - 1) / 2.0);
        for (int64_t i = 0; i < T; i++)
            for (int64_t h = 0; h < H; h++) {
                double *y = ref_at4(Y, o, b, i, h, 0);
                const double *xv = ref_at4((double *)X, x, b, i, h, 0);
                if (i >= cnt) {
                    for (int64_t d = 0; d < D; d++) y[d * o->stride[3]] = 0.0;
                    continue;
                }
                double p = (double)(pos + i);
                for (int64_t j = 0; j < half; j++) {
                    double a = p * pow(theta, -2.0 * (double)j / (double)D);
                    double s0 = 1.0, s1 = 1.0;
                    if (n->p.rope.xpos) {
                        double power = (p - centre) / sb;
                        if (n->p.rope.is_key) power = -power;
                        int64_t k0 = (2 * j) % half, k1 = (2 * j + 1) % half;
                        s0 = pow((2.0 * (double)k0 + 0.4 * (double)D) / (1.4 * (double)D), power);
                        s1 = pow((2.0 * (double)k1 + 0.4 * (double)D) / (1.4 * (double)D), power);
                    }
                    double x0 = xv[2 * j * x->stride[3]], x1 = xv[(2 * j + 1) * x->stride[3]];
                    y[2 * j * o->stride[3]] = (x0 * cos(a) - x1 * sin(a)) * s0;
                    y[(2 * j + 1) * o->stride[3]] = (x1 * cos(a) + x0 * sin(a)) * s1;
                }
            }
    }
}
