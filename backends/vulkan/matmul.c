/* matmul: linear (x w^T + bias), the fused linear (RMSNorm prologue, SwiGLU,
 * residual; see shaders/matmul.comp) and batched matmul; a GEMV kernel for
 * few rows. Either kernel does every fused form in one dispatch; the tiled
 * one is built twice, with and without the fused parts. */
#include "vk.h"

#define GEMV_MAX_ROWS 8
#define GEMV_ROWS 4 /* weight rows per GEMV workgroup (R in the shader) */
#define TILE_SMALL 32
#define TILE 64
#define TILE_BIG 128
/* The largest tile that still gives every multiprocessor two workgroups
 * (128 x 128) or one (64 x 64), else 32 x 32: at 256 rows a 768-wide linear
 * has only 48 tiles of 64 x 64 for the H100's 132 multiprocessors. */
static int64_t pick_tile(const vk_be *be, int64_t M, int64_t N, int64_t batches)
{
    for (int64_t tile = TILE_BIG; tile > TILE_SMALL; tile /= 2) {
        int64_t want = tile == TILE_BIG ? 2 * vk_cores(be) : vk_cores(be);
        if ((M + tile - 1) / tile * ((N + tile - 1) / tile) * batches >= want) return tile;
    }
    return TILE_SMALL;
}

/* The f32 GEMM (shaders/gemm.comp) for a plain product whose operands are
 * both contiguous along k: 64 x 64 tiles, with K split over workgroups
 * (summed by a second dispatch in a fixed order) where a cost model says
 * it pays. (A 128 x 128 form ran a 4096^3 product at 2.2 TFLOP/s on an
 * H200, this one at 27.6 then and 32.5 now.)
 *
 * The model, in units of one tile's work over one k on one multiprocessor
 * (41 ns on an H200, from the 256 x 768 -> 6144 product's 95 us): the
 * multiprocessors share the workgroups evenly, so the busiest one has
 * ceil(workgroups / cores) of them, each kper long, and a lone workgroup
 * takes as long as two (it cannot hide its own latencies); a split adds the
 * reduce dispatch and its barrier (about 4 us, 97 units) and moves the
 * partial sums through memory (one unit per 100 KiB at the H200's 2.5 TB/s).
 * Against splitting as long as there were fewer than two tiles per
 * multiprocessor, this evens the load: at 256 rows a 3072 -> 768 linear
 * (48 tiles) goes from 6 splits (288 workgroups, three on some
 * multiprocessors, two on others) to 8 (384, three on each). */
#define GEMM_BK 16
#define GEMM_MIN_K_SPLIT (4 * GEMM_BK)
#define GEMM_MAX_SCRATCH ((int64_t)64 << 20)
#define GEMM_SPLIT_FIXED 97.0
#define GEMM_BYTES_PER_UNIT 102400.0

/* k per split (whole k tiles) for at most s splits of K. */
static int64_t split_k(int64_t K, int64_t s)
{
    int64_t kper = ((K + s - 1) / s + GEMM_BK - 1) / GEMM_BK * GEMM_BK;
    return kper < GEMM_BK ? GEMM_BK : kper;
}

static double split_cost(const vk_be *be, int64_t tiles, int64_t K, int64_t kper, int64_t outputs)
{
    const int64_t splits = (K + kper - 1) / kper, wgs = tiles * splits;
    int64_t per_core = (wgs + vk_cores(be) - 1) / vk_cores(be);
    if (per_core < 2) per_core = 2;
    double t = (double)per_core * (double)kper;
    if (splits > 1) t += GEMM_SPLIT_FIXED + (double)((splits + 1) * outputs * 4) / GEMM_BYTES_PER_UNIT;
    return t;
}

static void plan_gemm(const vk_be *be, int64_t M, int64_t N, int64_t K, int64_t batches, vk_enc *e)
{
    uint32_t *p = e->p + VK_P_OP;
    const int64_t tile = TILE;
    const int64_t tiles = (M + tile - 1) / tile * ((N + tile - 1) / tile) * batches;
    const int64_t outputs = M * N * batches;
    int64_t kper = split_k(K, 1);
    double best = split_cost(be, tiles, K, kper, outputs);
    /* A split must beat the best so far by 3%: ties keep fewer splits. */
    for (int64_t s = 2; s <= K / GEMM_MIN_K_SPLIT; s++) {
        int64_t kp = split_k(K, s);
        if ((K + kp - 1) / kp * outputs * 4 > GEMM_MAX_SCRATCH) break;
        double c = split_cost(be, tiles, K, kp, outputs);
        if (c < 0.97 * best) {
            best = c;
            kper = kp;
        }
    }
    int64_t splits = (K + kper - 1) / kper;
    p[18] = (uint32_t)splits;
    p[19] = (uint32_t)kper;
    e->pipe = VK_PIPE_GEMM;
    e->groups[0] = vk_groups(N, (uint32_t)tile);
    e->groups[1] = vk_groups(M, (uint32_t)tile);
    e->groups[2] = vk_groups(batches * splits, 1);
    if (splits > 1) {
        e->second_pass = 1;
        e->pipe2 = VK_PIPE_GEMM_REDUCE;
        e->groups2[0] = vk_groups(M * N * batches, 256);
        e->groups2[1] = e->groups2[2] = 1;
        e->scratch_bytes = (VkDeviceSize)(splits * M * N * batches) * 4;
    }
}

static int present(const porta_node *n, int i)
{
    return n->n_in > i && n->in[i].mem != PORTA_MEM_NONE;
}

porta_status vk_enc_matmul(vk_be *be, const porta_node *n, int step_rows, vk_enc *e)
{
    (void)step_rows;
    const porta_ref *a = &n->in[0], *b = &n->in[1];
    const int fused = n->op == PORTA_OP_LINEAR_FUSED, linear = n->op == PORTA_OP_LINEAR || fused;
    porta_status s = vk_need_dense(be, n, &n->out, "output");
    if (s) return s;
    int64_t M, N, K, batches = 1, sa_b = 0, sb_b = 0, sa_m, sa_k, sb_k, sb_n;
    if (a->ndim < 2 || b->ndim < 2)
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: matmul operands need 2 dims", n->name);
    sa_k = a->stride[a->ndim - 1];
    K = a->shape[a->ndim - 1];
    if (linear) {
        if (!vk_collapse(a, a->ndim - 1, &M, &sa_m))
            return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: rows of x are not evenly strided", n->name);
        N = b->shape[0];
        sb_n = b->stride[0];
        sb_k = b->stride[1];
    } else {
        M = a->shape[a->ndim - 2];
        sa_m = a->stride[a->ndim - 2];
        N = b->shape[b->ndim - 1];
        sb_k = b->stride[b->ndim - 2];
        sb_n = b->stride[b->ndim - 1];
        int64_t bb = 1;
        if (!vk_collapse(a, a->ndim - 2, &batches, &sa_b) ||
            (b->ndim > 2 && !vk_collapse(b, b->ndim - 2, &bb, &sb_b)))
            return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: batch dims are not evenly strided", n->name);
        if (b->ndim == 2 || bb == 1) sb_b = 0;
        else if (bb != batches)
            return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: batch counts differ", n->name);
    }
    const int bias = linear && present(n, 2), res = fused && present(n, 3), scale = fused && present(n, 4);
    const int norm = fused && n->p.lin.norm, swiglu = fused && n->p.lin.swiglu;
    const int64_t Nout = swiglu ? N / 2 : N;
    if (fused && ((swiglu && N % 2) || porta_ref_numel(&n->out) != M * Nout ||
                  (bias && porta_ref_numel(&n->in[2]) != N) ||
                  (res && (porta_ref_numel(&n->in[3]) != M * Nout || !porta_ref_dense(&n->in[3]))) ||
                  (scale && porta_ref_numel(&n->in[4]) != K)))
        return be->host->fail(PORTA_ERR_SHAPE, "vulkan: node %s: fused linear of x[%lld,%lld], w[%lld,%lld]", n->name,
                              (long long)M, (long long)K, (long long)N, (long long)b->shape[1]);
    const int64_t bs = bias ? n->in[2].stride[n->in[2].ndim - 1] : 0;
    const int64_t gs = scale ? n->in[4].stride[n->in[4].ndim - 1] : 0;
    uint32_t *p = e->p + VK_P_OP;
    const int64_t v[18] = { M, N, K, batches, sa_b, sb_b, M * Nout, sa_m, sa_k, sb_k, sb_n, bias, 0, Nout, bs,
                            norm | swiglu << 1 | res << 2 | scale << 3, 0, gs };
    for (int i = 0; i < 18; i++) {
        if (v[i] < 0)
            return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: negative strides", n->name);
        p[i] = (uint32_t)v[i];
    }
    p[16] = vk_f2u(fused ? n->p.lin.eps : 0.0f);
    if (M <= GEMV_MAX_ROWS && sb_k == 1) {
        e->pipe = M == 1 ? VK_PIPE_MATMUL_GEMV1 : M == 2 ? VK_PIPE_MATMUL_GEMV2 : M <= 4 ? VK_PIPE_MATMUL_GEMV4
                                                                                  : VK_PIPE_MATMUL_GEMV;
        p[VK_MM_VEC] = a->dtype == PORTA_F32 && b->dtype == PORTA_F32 && sa_k == 1 && K % 4 == 0 && sa_m % 4 == 0 &&
                sa_b % 4 == 0 && sb_n % 4 == 0 && sb_b % 4 == 0 &&
                (!scale || (n->in[4].dtype == PORTA_F32 && gs == 1));
        e->groups[0] = vk_groups(Nout, swiglu ? GEMV_ROWS / 2 : GEMV_ROWS);
        e->groups[1] = vk_groups(batches, 1);
        e->groups[2] = 1;
    } else if ((!fused || (res && !norm && !swiglu && !scale)) && sa_k == 1 && sb_k == 1 && !be->gemm_off) {
        /* Plain products, and linears with a residual only (gemm.comp adds
         * it in its stores or its reduce dispatch). */
        p[VK_MM_VEC] = a->dtype == PORTA_F32 && b->dtype == PORTA_F32 && K % 4 == 0 && sa_m % 4 == 0 && sb_n % 4 == 0 &&
                sa_b % 4 == 0 && sb_b % 4 == 0;
        plan_gemm(be, M, N, K, batches, e);
    } else {
        /* The FUSED tile build for any fused part or a strided bias; the plain
         * one, free of both, for the rest. */
        const int plain = !(norm || swiglu || res || scale) && (!bias || bs == 1);
        int64_t tile = pick_tile(be, M, N, batches);
        e->pipe = tile == TILE_BIG ? (plain ? VK_PIPE_MATMUL_BIG : VK_PIPE_MATMUL_BIG_FUSED)
                  : tile == TILE   ? (plain ? VK_PIPE_MATMUL : VK_PIPE_MATMUL_FUSED)
                                   : (plain ? VK_PIPE_MATMUL_SMALL : VK_PIPE_MATMUL_SMALL_FUSED);
        e->groups[0] = vk_groups(Nout, (uint32_t)(swiglu ? tile / 2 : tile));
        e->groups[1] = vk_groups(M, (uint32_t)tile);
        e->groups[2] = vk_groups(batches, 1);
    }
    return PORTA_OK;
}
