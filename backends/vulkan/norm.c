/* norm: rmsnorm and layernorm over the last dim, one workgroup per row. */
#include "vk.h"

static int present(const porta_node *n, int i)
{
    return n->n_in > i && n->in[i].mem != PORTA_MEM_NONE;
}

porta_status vk_enc_norm(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (!s) s = vk_need_dense(be, n, &n->in[0], "input");
    if (s) return s;
    int64_t width = n->in[0].shape[n->in[0].ndim - 1];
    int64_t rows = width ? porta_ref_numel(&n->in[0]) / width : 0;
    e->pipe = VK_PIPE_NORM;
    e->p[VK_P_OP] = n->op == PORTA_OP_LAYERNORM;
    e->p[VK_P_OP + 1] = (uint32_t)rows;
    e->p[VK_P_OP + 2] = (uint32_t)width;
    e->p[VK_P_OP + 3] = vk_f2u(n->p.eps);
    e->p[VK_P_OP + 4] = (uint32_t)present(n, 1);
    e->p[VK_P_OP + 5] = (uint32_t)(n->op == PORTA_OP_LAYERNORM && present(n, 2));
    e->groups[0] = vk_groups(rows, 1);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
