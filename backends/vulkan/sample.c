/* mixture_sample: one invocation per draw (shaders/sample.comp), on devices
 * with double precision (the backend declares the op only there). */
#include "vk.h"

porta_status vk_enc_sample(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    if (!be->fp64)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: mixture_sample needs shaderFloat64", n->name);
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    for (int i = 0; i < 5 && !s; i++) s = vk_need_dense(be, n, &n->in[i], "input");
    if (s) return s;
    const porta_ref *x = &n->in[0];
    int64_t K = x->ndim ? x->shape[x->ndim - 1] : 0, M = K > 0 ? porta_ref_numel(x) / K : 0;
    int64_t N = porta_ref_numel(&n->out);
    /* Below 2^31 draws the shader's grid-stride index cannot wrap. */
    int ok = n->n_in == 5 && M > 0 && N % M == 0 && N < ((int64_t)1 << 31) && K <= UINT32_MAX &&
             porta_ref_numel(&n->in[4]) == 4;
    for (int i = 1; i < 4 && ok; i++) ok = porta_ref_numel(&n->in[i]) == porta_ref_numel(x);
    if (!ok)
        return be->host->fail(PORTA_ERR_SHAPE,
                              "vulkan: node %s: mixture_sample wants 4 [M, K] parameters, a key of 4 and a multiple "
                              "of M draws, fewer than 2^31",
                              n->name);
    e->pipe = VK_PIPE_SAMPLE;
    e->p[VK_P_OP] = (uint32_t)N;
    e->p[VK_P_OP + 1] = (uint32_t)M;
    e->p[VK_P_OP + 2] = (uint32_t)K;
    e->groups[0] = vk_groups(N, 64);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
