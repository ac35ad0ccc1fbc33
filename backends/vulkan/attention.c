/* attention: cached (keys from the KV cache, causal, counts from the step
 * block) and masked (k, v given, optional additive mask and causal flag). */
#include "vk.h"

#define ATTN_MAX_D 256
#define ATTN_TILE 64
#define ATTN_KV_FLOATS 4224 /* KV_FLOATS in the shader */
/* Rows below ATTN_SPLIT_BELOW workgroups per multiprocessor split their
 * keys, so that decode at one row and a handful of heads reads the cache
 * from every multiprocessor instead of one per head. Slices are sized for
 * ATTN_SLICES_PER_CORE workgroups over the whole of max_len: only slices
 * below the current length do work, so a context at a quarter of max_len
 * still gives each multiprocessor a few. */
#define ATTN_SPLIT_BELOW 2
#define ATTN_SLICES_PER_CORE 16
/* Caches of up to two of the rows variant's key blocks are not split at all:
 * a second dispatch (and its barrier) would cost more than it saves. */
#define ATTN_SPLIT_ABOVE 256

/* Cached attention with few query rows splits each row's key range
 * [0, max_len) into fixed slices of whole tiles (flash-decoding); the split
 * count depends on shapes only, never on positions. */
static void plan_split(const vk_be *be, const porta_node *n, int64_t rows, int64_t max_len, int64_t D, vk_enc *e)
{
    const int64_t target = ATTN_SLICES_PER_CORE * vk_cores(be);
    int64_t tiles = (max_len + ATTN_TILE - 1) / ATTN_TILE;
    int64_t splits = (target + rows - 1) / rows;
    if (n->op != PORTA_OP_ATTN_CACHED || rows > ATTN_SPLIT_BELOW * vk_cores(be) || max_len <= ATTN_SPLIT_ABOVE) return;
    if (splits > tiles) splits = tiles;
    int64_t chunk = (tiles + splits - 1) / splits * ATTN_TILE;
    splits = (max_len + chunk - 1) / chunk;
    if (splits < 2) return;
    uint32_t *p = e->p + VK_P_OP;
    p[25] = (uint32_t)splits;
    p[26] = (uint32_t)chunk;
    e->pipe = VK_PIPE_ATTN_SPLIT;
    e->groups[0] = vk_groups(rows, 1);
    e->groups[1] = (uint32_t)splits;
    e->second_pass = 1;
    e->pipe2 = VK_PIPE_ATTN_COMBINE;
    e->groups2[0] = vk_groups(rows, 1);
    e->groups2[1] = e->groups2[2] = 1;
    e->scratch_bytes = (VkDeviceSize)(rows * splits * (D + 2)) * 4;
}

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
    p[27] = k->dtype == PORTA_F32 && v->dtype == PORTA_F32 && p[16] == 1 && p[20] == 1 && q->shape[3] % 4 == 0 &&
            p[13] % 4 == 0 && p[14] % 4 == 0 && p[15] % 4 == 0 && p[17] % 4 == 0 && p[18] % 4 == 0 && p[19] % 4 == 0;
    /* Keys per staged tile: a K and a V tile of rows of D + 1 floats fit the
     * shader's ATTN_KV_FLOATS. */
    int64_t tk = ATTN_TILE;
    while (tk > 1 && 2 * tk * (q->shape[3] + 1) > ATTN_KV_FLOATS) tk /= 2;
    p[28] = (uint32_t)tk;
    if (!cached && n->n_in > 3 && n->in[3].mem != PORTA_MEM_NONE) {
        const porta_ref *m = &n->in[3];
        if (m->ndim != 3 || m->shape[0] < 1 || q->shape[0] % m->shape[0] != 0)
            return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: mask must be [Bm, Tq, Tk] with B %% Bm == 0",
                                  n->name);
        p[7] = 1;
        for (int i = 0; i < 3; i++) p[21 + i] = (uint32_t)m->stride[i];
        p[24] = (uint32_t)m->shape[0];
    }
    const int64_t rows = q->shape[0] * q->shape[1] * q->shape[2];
    e->groups[0] = vk_groups(rows, 1);
    e->groups[1] = e->groups[2] = 1;
    plan_split(be, n, rows, p[4], q->shape[3], e);
    /* Cached rows that do not split take the rows variant: keys and values
     * read straight from the cache (at 256 rows x 12 heads x 64 keys on an
     * H200, 44 us against 116 us for the staged tiles). */
    if (cached && e->pipe == VK_PIPE_ATTENTION) e->pipe = VK_PIPE_ATTN_ROWS;
    return PORTA_OK;
}
