/* MIXTURE_SAMPLE: the draw of mixture_sample.h on each output element, from
 * the parameters rounded to float (the op's inputs are float everywhere
 * else). */
#include "mixture_sample.h"
#include "ref.h"

void ref_mixture_sample(const ref_ctx *c, const porta_node *n)
{
    const int64_t K = n->in[0].shape[n->in[0].ndim - 1], M = porta_ref_numel(&n->in[0]) / K;
    const double *P[4], *key = ref_base(c, &n->in[4]);
    for (int i = 0; i < 4; i++) P[i] = ref_base(c, &n->in[i]);
    double *Y = ref_base(c, &n->out);
    float *row = (float *)c->scratch; /* 2 K doubles reserved by prog_new */
    int64_t N = porta_ref_numel(&n->out);
    for (int64_t j = 0; j < N; j++) {
        int64_t m = j % M;
        for (int i = 0; i < 4; i++)
            for (int64_t k = 0; k < K; k++) row[i * K + k] = (float)P[i][m * K + k];
        pmx_rng r = pmx_rng_init(key[0], key[1], key[2], key[3], (uint32_t)j);
        Y[j] = pmx_draw(&r, row, row + K, row + 2 * K, row + 3 * K, (int)K);
    }
}
