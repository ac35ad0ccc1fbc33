/* attention: cached (keys from the KV cache, causal, counts from the step
 * block) and masked (k, v given, optional additive mask and causal flag). */
#include "vk.h"

#define ATTN_MAX_D 256

porta_status vk_enc_attention(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    const porta_ref *q = &n->in[0], *k = &n->in[1], *v = &n->in[2];
    int cached = n->op == PORTA_OP_ATTN_CACHED;
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (s) return s;
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: attention needs 4-d q, k, v", n->name);
    if (q->shape[3] > ATTN_MAX_D)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: head dim %lld above %d", n->name,
                              (long long)q->shape[3], ATTN_MAX_D);
    if (cached && step_rows < q->shape[0])
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: %lld query rows but a step block of %d", n->name,
                              (long long)q->shape[0], step_rows);
    e->pipe = VK_PIPE_ATTENTION;
    uint32_t *p = e->p + VK_P_OP;
    for (int i = 0; i < 4; i++) p[i] = (uint32_t)q->shape[i];
    /* Keys are indexed (batch, key, head, dim); the cache stores [B, H, L, D]. */
    const int kd[4] = { 0, cached ? 2 : 1, cached ? 1 : 2, 3 };
    p[4] = (uint32_t)k->shape[kd[1]];
    p[5] = (uint32_t)cached;
    p[6] = (uint32_t)(!cached && n->p.attn.causal);
    p[8] = vk_f2u(n->p.attn.scale);
    for (int i = 0; i < 4; i++) {
        p[9 + i] = (uint32_t)q->stride[i];
        p[13 + i] = (uint32_t)k->stride[kd[i]];
        p[17 + i] = (uint32_t)v->stride[kd[i]];
    }
    if (!cached && n->n_in > 3 && n->in[3].mem != PORTA_MEM_NONE) {
        const porta_ref *m = &n->in[3];
        if (m->ndim != 3 || m->shape[0] < 1 || q->shape[0] % m->shape[0] != 0)
            return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: mask must be [Bm, Tq, Tk] with B %% Bm == 0",
                                  n->name);
        p[7] = 1;
        for (int i = 0; i < 3; i++) p[21 + i] = (uint32_t)m->stride[i];
        p[24] = (uint32_t)m->shape[0];
    }
    e->groups[0] = vk_groups(q->shape[0] * q->shape[1] * q->shape[2], 1);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
