/* rope: rotary embedding with Toto's xPos scaling; positions from the step
 * block. KV_APPEND_ROPE (rope of a cached key straight into the cache) is the
 * same shader writing the cache layer. */
#include <math.h>
#include "vk.h"

/* The pair frequency table starts at this parameter word (after VK_P_OP). */
#define ROPE_TABLE 17
#define ROPE_MAX_PAIRS ((VK_PARAM_WORDS - VK_P_OP - ROPE_TABLE) / 2)

porta_status vk_enc_rope(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    const porta_ref *x = &n->in[0], *c = &n->out;
    const int cache = n->op == PORTA_OP_KV_APPEND_ROPE;
    if (!cache) {
        porta_status s = vk_need_dense(be, n, &n->out, "output");
        if (s) return s;
    }
    if (x->ndim != 4 || x->shape[3] % 2 != 0)
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: rope needs [B, T, H, D] with D even", n->name);
    if (cache && (c->ndim != 4 || x->shape[0] > c->shape[0] || x->shape[2] != c->shape[1] || x->shape[3] != c->shape[3]))
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: kv_append_rope needs a cache layer [B, H, L, D]",
                              n->name);
    int64_t half = x->shape[3] / 2;
    if (half > ROPE_MAX_PAIRS)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: rope head dim %lld above %d", n->name,
                              (long long)x->shape[3], 2 * ROPE_MAX_PAIRS);
    if ((cache || n->p.rope.cached) && step_rows < x->shape[0])
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: %lld rows but a step block of %d", n->name,
                              (long long)x->shape[0], step_rows);
    e->pipe = VK_PIPE_ROPE;
    for (int k = 0; k < 4; k++) {
        e->p[VK_P_OP + k] = (uint32_t)x->shape[k];
        e->p[VK_P_OP + 4 + k] = (uint32_t)x->stride[k];
    }
    e->p[VK_P_OP + 8] = vk_f2u(n->p.rope.scale_base);
    e->p[VK_P_OP + 9] = (uint32_t)(n->p.rope.xpos != 0);
    e->p[VK_P_OP + 10] = (uint32_t)(n->p.rope.is_key != 0);
    e->p[VK_P_OP + 11] = (uint32_t)cache;
    if (cache) {
        for (int k = 0; k < 4; k++) e->p[VK_P_OP + 12 + k] = (uint32_t)c->stride[k];
        e->p[VK_P_OP + 16] = (uint32_t)c->shape[2];
    }
    for (int64_t j = 0; j < half; j++) {
        double f = pow((double)n->p.rope.theta, -2.0 * (double)j / (double)x->shape[3]);
        float hi = (float)f;
        e->p[VK_P_OP + ROPE_TABLE + 2 * j] = vk_f2u(hi);
        e->p[VK_P_OP + ROPE_TABLE + 2 * j + 1] = vk_f2u((float)(f - (double)hi));
    }
    e->groups[0] = vk_groups(porta_ref_numel(x) / 2, 256);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
