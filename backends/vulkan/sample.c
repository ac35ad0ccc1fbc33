/* mixture_sample: one invocation per draw (shaders/sample.comp), on devices
 * with double precision (the backend declares the op only there). */
#include "vk.h"

porta_status vk_enc_sample(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    if (!be->fp64)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: mixture_sample needs shaderFloat64", n->name);
    int64_t M, K, N = porta_ref_numel(&n->out);
    /* Below 2^31 draws the shader's grid-stride index cannot wrap. */
    if (!porta_mixture_sample_ok(n, ((int64_t)1 << 31) - 1, &M, &K))
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
