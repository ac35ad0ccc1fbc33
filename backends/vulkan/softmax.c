/* softmax over the last dim, one workgroup per row. */
#include "vk.h"

porta_status vk_enc_softmax(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (!s) s = vk_need_dense(be, n, &n->in[0], "input");
    if (s) return s;
    int64_t width = n->in[0].shape[n->in[0].ndim - 1];
    int64_t rows = width ? porta_ref_numel(&n->in[0]) / width : 0;
    e->pipe = VK_PIPE_SOFTMAX;
    e->p[VK_P_OP] = (uint32_t)rows;
    e->p[VK_P_OP + 1] = (uint32_t)width;
    e->groups[0] = vk_groups(rows, 1);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
