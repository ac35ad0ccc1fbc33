/* eltwise: add, mul (b repeating over a's leading dims), silu, swiglu. */
#include "vk.h"

porta_status vk_enc_eltwise(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    int64_t numel = porta_ref_numel(&n->out), m = 1;
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (!s) s = vk_need_dense(be, n, &n->in[0], "input");
    if (s) return s;
    uint32_t op;
    switch (n->op) {
    case PORTA_OP_ADD:
    case PORTA_OP_MUL:
        op = n->op == PORTA_OP_ADD ? 0 : 1;
        s = vk_need_dense(be, n, &n->in[1], "second input");
        if (s) return s;
        m = porta_ref_numel(&n->in[1]);
        if (m < 1 || numel % m != 0 || porta_ref_numel(&n->in[0]) != numel)
            return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: %lld elements do not repeat %lld", n->name,
                                  (long long)numel, (long long)m);
        break;
    case PORTA_OP_SILU:
        op = 2;
        break;
    default:
        op = 3;
        m = n->out.shape[n->out.ndim - 1];
        if (porta_ref_numel(&n->in[0]) != 2 * numel)
            return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: swiglu input is not twice the output", n->name);
        break;
    }
    e->pipe = VK_PIPE_ELTWISE;
    e->p[VK_P_OP] = op;
    e->p[VK_P_OP + 1] = (uint32_t)numel;
    e->p[VK_P_OP + 2] = (uint32_t)m;
    e->groups[0] = vk_groups(numel, 256);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
