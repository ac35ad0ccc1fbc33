/* kv_update (kv_append): rows t < n[b] scattered into the cache at pos[b] + t. */
#include "vk.h"

porta_status vk_enc_kv_update(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    const porta_ref *x = &n->in[0], *c = &n->out;
    if (x->ndim != 4 || c->ndim != 4 || x->shape[0] > c->shape[0] || x->shape[2] != c->shape[1] ||
        x->shape[3] != c->shape[3])
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: kv_append needs x [B, T, H, D], cache [B, H, L, D]",
                              n->name);
    if (step_rows < x->shape[0])
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: %lld cache rows but a step block of %d", n->name,
                              (long long)x->shape[0], step_rows);
    e->pipe = VK_PIPE_KV_UPDATE;
    for (int k = 0; k < 4; k++) {
        e->p[VK_P_OP + k] = (uint32_t)x->shape[k];
        e->p[VK_P_OP + 4 + k] = (uint32_t)x->stride[k];
        e->p[VK_P_OP + 8 + k] = (uint32_t)c->stride[k];
    }
    e->p[VK_P_OP + 12] = (uint32_t)c->shape[2];
    e->groups[0] = vk_groups(porta_ref_numel(x), 256);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
