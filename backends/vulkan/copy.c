/* copy: a strided view gathered into a dense tensor. */
#include "vk.h"

porta_status vk_enc_copy(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    const porta_ref *x = &n->in[0];
    int64_t numel = porta_ref_numel(&n->out);
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (s) return s;
    if (porta_ref_numel(x) != numel || x->ndim > 6)
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: copy between different shapes", n->name);
    e->pipe = VK_PIPE_COPY;
    e->p[VK_P_OP] = (uint32_t)numel;
    int pad = 6 - x->ndim;
    for (int k = 0; k < 6; k++) {
        int64_t shape = k < pad ? 1 : x->shape[k - pad], stride = k < pad ? 0 : x->stride[k - pad];
        if (stride < 0)
            return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: negative strides", n->name);
        e->p[VK_P_OP + 1 + k] = (uint32_t)shape;
        e->p[VK_P_OP + 7 + k] = (uint32_t)stride;
    }
    e->groups[0] = vk_groups(numel, 256);
    e->groups[1] = e->groups[2] = 1;
    return PORTA_OK;
}
