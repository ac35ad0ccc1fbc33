/* ATTN_CACHED and ATTN.
 *
 * Two kernels share the online-softmax update (running max m, running sum l,
 * accumulator with lanes over head dims):
 *  - prefill: a block takes 16 query rows of one (batch, head) and walks the
 *    keys in tiles of 32 staged in shared memory; one lane scores one key.
 *    Used for masked attention and for cached attention with many new rows.
 *  - decode (flash-decoding): for a cached step of a few rows, the key range
 *    [0, max_len) is cut into a fixed number of splits, each a block. A block
 *    reads the row length from the step block and returns at once when its
 *    split holds no visible key; a combine kernel merges the splits. The grid
 *    is sized from max_len, never from the current length, so the captured
 *    graph serves every step. */
#include <string.h>
#include "common.cuh"

#define DPL (PC_MAX_HEAD_DIM / 32) /* head dims per lane */
#define KT 32                       /* keys per tile: one per lane */
#define PF_WARPS 4
#define PF_RPW 4                    /* query rows per warp */
#define PF_ROWS (PF_WARPS * PF_RPW)
#define DC_WARPS 4
#define DC_MAX_T 4                  /* cached steps up to this many rows decode */
#define DC_SPLIT_KEYS 128           /* keys per split, before capping the splits */
#define DC_MAX_SPLITS 32

typedef struct attn_args {
    float *out;                     /* dense [B,T,H,D] */
    const float *q, *k, *v, *mask;  /* mask may be NULL */
    int64_t qs[4], ks[4], vs[4];    /* strides: batch, row, head, dim */
    int64_t ms[3];                  /* mask strides: batch, query, key */
    int mask_div;                   /* query batch b reads mask batch b / mask_div */
    int B, T, H, D, Tk;             /* Tk: keys, or the cache's max_len */
    int rows;                       /* step block rows: n[b] is step[rows + b] */
    float scale;
    int causal;
    int kvec;                       /* K and V rows 16-byte aligned, unit stride: float4 loads */
    const int32_t *step;            /* cached: pos, n, src, shared [rows] (plan.h); NULL otherwise */
    int chunk, splits;              /* decode: keys per split, splits */
    int tk;                         /* decode: keys per staged tile */
    float *part;                    /* decode: [B,T,H,splits][D+2] = m, l, acc */
} attn_args;

/* Keys [0, end) visible to query row t; 0 for rows outside the step. */
static __device__ __forceinline__ int key_end(const attn_args &a, int pos, int cnt, int t)
{
    if (t >= a.T || t >= cnt) return 0;
    if (a.step) return min(pos + t + 1, a.Tk);
    return a.causal ? min(t + 1, a.Tk) : a.Tk;
}

/* Folds one tile of scores (lane = key, -inf = excluded) into (m, l, acc),
 * taking value rows from vrow(jj) for the tile's first nk keys. */
#define ONLINE_UPDATE(s, nk, m, l, acc, VROW, VSTRIDE) ONLINE_UPDATE_N(s, nk, m, l, acc, VROW, VSTRIDE, DPL)
/* The same with NC head dims per lane (D <= 32 NC); the value loop is
 * unrolled so that its shuffles and shared loads overlap. */
#define ONLINE_UPDATE_N(s, nk, m, l, acc, VROW, VSTRIDE, NC)                   \
    do {                                                                       \
        float mx_ = pc_warp_max(s);                                            \
        if (mx_ != -INFINITY) {                                                \
            float mn_ = fmaxf(m, mx_), corr_ = expf(m - mn_);                  \
            float p_ = expf((s) - mn_);                                        \
            l = l * corr_ + pc_warp_sum(p_);                                   \
            _Pragma("unroll") for (int c_ = 0; c_ < (NC); c_++) acc[c_] *= corr_; \
            _Pragma("unroll 4") for (int jj = 0; jj < (nk); jj++) {            \
                float pj_ = __shfl_sync(PC_FULL_MASK, p_, jj);                 \
                const float *vr_ = (VROW);                                     \
                _Pragma("unroll") for (int c_ = 0; c_ < (NC); c_++) {          \
                    int d_ = lane + 32 * c_;                                   \
                    if (d_ < D) acc[c_] += pj_ * vr_[d_ * (VSTRIDE)];          \
                }                                                              \
            }                                                                  \
            m = mn_;                                                           \
        }                                                                      \
    } while (0)

static __global__ void __launch_bounds__(PF_WARPS * 32) attn_prefill(attn_args a)
{
    pc_dep_wait();
    extern __shared__ float sh[];
    const int D = a.D;
    float *qsh = sh;                    /* [PF_ROWS][D], pre-scaled */
    float *ksh = qsh + PF_ROWS * D;     /* [KT][D + 1]: padded, lanes read rows */
    float *vsh = ksh + KT * (D + 1);    /* [KT][D] */
    int tiles = (a.T + PF_ROWS - 1) / PF_ROWS;
    int b = blockIdx.x / tiles, t0 = (blockIdx.x % tiles) * PF_ROWS, h = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int pos = 0, cnt = a.T, src = b, nsh = 0;
    if (a.step) {
        pos = a.step[b];
        cnt = a.step[a.rows + b];
        src = a.step[2 * a.rows + b];
        nsh = a.step[3 * a.rows + b];
    }
    /* Rows past the step or the chunk are never scored: only live rows load. */
    int live = min(PF_ROWS, min(a.T, cnt) - t0);
    const float *q = a.q + b * a.qs[0] + h * a.qs[2];
    for (int e = threadIdx.x; e < live * D; e += blockDim.x) {
        int rr = e / D, d = e - rr * D;
        qsh[e] = a.scale * q[(t0 + rr) * a.qs[1] + d * a.qs[3]];
    }
    /* Visible ranges grow with the row, so the block's last row bounds them all. */
    int kend = 0;
    for (int t = t0; t < t0 + PF_ROWS; t++) kend = max(kend, key_end(a, pos, cnt, t));

    float m[PF_RPW], l[PF_RPW], acc[PF_RPW][DPL];
    int end[PF_RPW];
#pragma unroll
    for (int i = 0; i < PF_RPW; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        end[i] = key_end(a, pos, cnt, t0 + warp * PF_RPW + i);
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[i][c] = 0.0f;
    }
    const float *k = a.k + b * a.ks[0] + h * a.ks[2], *v = a.v + b * a.vs[0] + h * a.vs[2];
    /* Keys below nsh: the shared prefix's row. */
    const float *kp = a.k + src * a.ks[0] + h * a.ks[2], *vp = a.v + src * a.vs[0] + h * a.vs[2];
    for (int k0 = 0; k0 < kend; k0 += KT) {
        __syncthreads();
        /* Keys past kend are never scored nor weighted: only visible ones load. */
        int nk = min(KT, kend - k0);
        for (int e = threadIdx.x; e < nk * D; e += blockDim.x) {
            int j = e / D, d = e - j * D, key = k0 + j;
            ksh[j * (D + 1) + d] = (key < nsh ? kp : k)[key * a.ks[1] + d * a.ks[3]];
            vsh[j * D + d] = (key < nsh ? vp : v)[key * a.vs[1] + d * a.vs[3]];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < PF_RPW; i++) {
            int t = t0 + warp * PF_RPW + i, key = k0 + lane;
            if (k0 >= end[i]) continue;
            float s = -INFINITY;
            if (key < end[i]) {
                const float *qr = qsh + (warp * PF_RPW + i) * D, *kr = ksh + lane * (D + 1);
                float dot = 0.0f;
                for (int d = 0; d < D; d++) dot += qr[d] * kr[d];
                s = dot;
                if (a.mask) s += a.mask[(b / a.mask_div) * a.ms[0] + t * a.ms[1] + key * a.ms[2]];
            }
            ONLINE_UPDATE(s, min(KT, end[i] - k0), m[i], l[i], acc[i], vsh + jj * D, 1);
        }
    }
#pragma unroll
    for (int i = 0; i < PF_RPW; i++) {
        int t = t0 + warp * PF_RPW + i;
        if (t >= a.T) continue;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        float *y = a.out + (((int64_t)b * a.T + t) * a.H + h) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < D) y[d] = acc[i][c] * inv;
        }
    }
}

/* Copies keys [0, nk) of a K and a V tile (rows rs apart) into shared memory
 * rows of D + 1 floats, issuing DC_LOADS loads per lane before the first
 * store, so a tile costs a couple of memory round trips, not one per key. */
#define DC_LOADS 8
static __device__ __forceinline__ void stage_kv(float *ksh, float *vsh, const float *k, int64_t ks, int64_t kcs,
                                                const float *v, int64_t vs, int64_t vcs, int nk, int D, int vec,
                                                int lane)
{
    const int DP = D + 1;
    if (vec) { /* unit column strides, 16-byte aligned rows, D % 4 == 0 */
        int per = D / 4, total = nk * per;
        for (int e0 = 0; e0 < total; e0 += 32 * DC_LOADS) {
            float4 tk[DC_LOADS] = {}, tv[DC_LOADS] = {};
#pragma unroll
            for (int u = 0; u < DC_LOADS; u++) {
                int e = e0 + u * 32 + lane;
                if (e < total) {
                    int j = e / per, d4 = e - j * per;
                    tk[u] = __ldg(reinterpret_cast<const float4 *>(k + j * ks) + d4);
                    tv[u] = __ldg(reinterpret_cast<const float4 *>(v + j * vs) + d4);
                }
            }
#pragma unroll
            for (int u = 0; u < DC_LOADS; u++) {
                int e = e0 + u * 32 + lane;
                if (e < total) {
                    int j = e / per, d = 4 * (e - j * per);
                    float *kr = ksh + j * DP + d, *vr = vsh + j * DP + d;
                    kr[0] = tk[u].x, kr[1] = tk[u].y, kr[2] = tk[u].z, kr[3] = tk[u].w;
                    vr[0] = tv[u].x, vr[1] = tv[u].y, vr[2] = tv[u].z, vr[3] = tv[u].w;
                }
            }
        }
        return;
    }
    int total = nk * D;
    for (int e0 = 0; e0 < total; e0 += 32 * DC_LOADS) {
        float tk[DC_LOADS] = {}, tv[DC_LOADS] = {};
#pragma unroll
        for (int u = 0; u < DC_LOADS; u++) {
            int e = e0 + u * 32 + lane;
            if (e < total) {
                int j = e / D, d = e - j * D;
                tk[u] = k[j * ks + d * kcs];
                tv[u] = v[j * vs + d * vcs];
            }
        }
#pragma unroll
        for (int u = 0; u < DC_LOADS; u++) {
            int e = e0 + u * 32 + lane;
            if (e < total) {
                int j = e / D, d = e - j * D;
                ksh[j * DP + d] = tk[u];
                vsh[j * DP + d] = tv[u];
            }
        }
    }
}

/* Each warp stages tiles of a.tk keys and their values in its own shared
 * memory, scores them with one lane per key and folds them into its running
 * (m, l, acc); the block then merges its warps. With one split the block
 * writes the output itself; else its split's partial result, which
 * attn_combine merges. */
template <int NC>
static __global__ void __launch_bounds__(DC_WARPS * 32) attn_decode(attn_args a)
{
    pc_dep_wait();
    extern __shared__ float sh[];
    const int D = a.D, DP = D + 1, TK = a.tk, W = D + 2;
    /* Every query row of the step has its own q and merge slots, so no shared
     * memory is reused from one row to the next. */
    float *qsh = sh;                        /* [DC_MAX_T][D], pre-scaled */
    float *wsh = sh + DC_MAX_T * D;         /* [DC_MAX_T][DC_WARPS][D + 2]: each warp's m, l, acc */
    int s = blockIdx.x % a.splits, b = blockIdx.x / a.splits, h = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *ksh = wsh + DC_MAX_T * DC_WARPS * W + warp * 2 * TK * DP, *vsh = ksh + TK * DP;
    int pos = a.step[b], cnt = a.step[a.rows + b], src = a.step[2 * a.rows + b], nsh = a.step[3 * a.rows + b];
    const float *k = a.k + b * a.ks[0] + h * a.ks[2], *v = a.v + b * a.vs[0] + h * a.vs[2];
    /* Keys below nsh: the shared prefix's row. */
    const float *kp = a.k + src * a.ks[0] + h * a.ks[2], *vp = a.v + src * a.vs[0] + h * a.vs[2];
    for (int e = threadIdx.x; e < a.T * D; e += blockDim.x) {
        int t = e / D, d = e - t * D;
        if (t < cnt) qsh[e] = a.scale * a.q[b * a.qs[0] + t * a.qs[1] + h * a.qs[2] + d * a.qs[3]];
    }
    __syncthreads();
    for (int t = 0; t < a.T; t++) {
        float *y = a.out + (((int64_t)b * a.T + t) * a.H + h) * D;
        if (t >= cnt) { /* no query this step: a zero row, as the other kernels */
            if (a.splits == 1)
                for (int d = threadIdx.x; d < D; d += blockDim.x) y[d] = 0.0f;
            continue;
        }
        int k0 = s * a.chunk, k1 = min(k0 + a.chunk, min(pos + t + 1, a.Tk));
        if (k0 >= k1) continue;
        const float *qt = qsh + t * D;
        float *wt = wsh + t * DC_WARPS * W;
        float m = -INFINITY, l = 0.0f, acc[NC];
#pragma unroll
        for (int c = 0; c < NC; c++) acc[c] = 0.0f;
        for (int base = k0 + warp * TK; base < k1; base += DC_WARPS * TK) {
            int nk = min(TK, k1 - base), np = min(nk, max(nsh - base, 0)); /* np keys of the prefix */
            __syncwarp();
            if (np > 0)
                stage_kv(ksh, vsh, kp + base * a.ks[1], a.ks[1], a.ks[3], vp + base * a.vs[1], a.vs[1], a.vs[3], np,
                         D, a.kvec, lane);
            if (nk > np)
                stage_kv(ksh + np * DP, vsh + np * DP, k + (base + np) * a.ks[1], a.ks[1], a.ks[3],
                         v + (base + np) * a.vs[1], a.vs[1], a.vs[3], nk - np, D, a.kvec, lane);
            __syncwarp();
            float sc = -INFINITY;
            if (lane < nk) {
                /* Four partial sums: a quarter of the dependent chain. */
                const float *kr = ksh + lane * DP;
                float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
                int d = 0;
#pragma unroll 4
                for (; d + 4 <= D; d += 4) {
                    d0 += qt[d] * kr[d];
                    d1 += qt[d + 1] * kr[d + 1];
                    d2 += qt[d + 2] * kr[d + 2];
                    d3 += qt[d + 3] * kr[d + 3];
                }
                for (; d < D; d++) d0 += qt[d] * kr[d];
                sc = (d0 + d1) + (d2 + d3);
            }
            ONLINE_UPDATE_N(sc, nk, m, l, acc, vsh + jj * DP, 1, NC);
        }
        float *w = wt + warp * W;
        if (lane == 0) {
            w[0] = m;
            w[1] = l;
        }
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int d = lane + 32 * c;
            if (d < D) w[2 + d] = acc[c];
        }
        __syncthreads();
        float M = -INFINITY;
        for (int i = 0; i < DC_WARPS; i++) M = fmaxf(M, wt[i * W]);
        if (a.splits == 1) {
            float L = 0.0f;
            for (int i = 0; i < DC_WARPS; i++) L += expf(wt[i * W] - M) * wt[i * W + 1];
            float inv = 1.0f / L;
            for (int d = threadIdx.x; d < D; d += blockDim.x) {
                float sum = 0.0f;
                for (int i = 0; i < DC_WARPS; i++) sum += expf(wt[i * W] - M) * wt[i * W + 2 + d];
                y[d] = sum * inv;
            }
            continue;
        }
        float *part = a.part + ((((int64_t)b * a.T + t) * a.H + h) * a.splits + s) * W;
        for (int e = threadIdx.x; e < W; e += blockDim.x) {
            float sum = 0.0f;
            for (int i = 0; i < DC_WARPS; i++) sum += expf(wt[i * W] - M) * wt[i * W + e];
            part[e] = e == 0 ? M : sum;
        }
    }
}

/* One warp per (batch, row, head): merges the splits that held visible keys. */
static __global__ void __launch_bounds__(DC_WARPS * 32) attn_combine(attn_args a)
{
    pc_dep_wait();
    int64_t idx = (int64_t)blockIdx.x * DC_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (idx >= (int64_t)a.B * a.T * a.H) return;
    int t = (int)(idx / a.H % a.T), b = (int)(idx / a.H / a.T);
    const int D = a.D, W = D + 2;
    float *y = a.out + idx * D;
    int pos = a.step[b], cnt = a.step[a.rows + b];
    if (t >= cnt) {
        for (int d = lane; d < D; d += 32) y[d] = 0.0f;
        return;
    }
    int ns = (min(pos + t + 1, a.Tk) + a.chunk - 1) / a.chunk;
    const float *part = a.part + idx * a.splits * W;
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < ns; s++) M = fmaxf(M, part[s * W]);
    for (int s = 0; s < ns; s++) L += expf(part[s * W] - M) * part[s * W + 1];
    float inv = 1.0f / L;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int s = 0; s < ns; s++) acc += expf(part[s * W] - M) * part[s * W + 2 + d];
        y[d] = acc * inv;
    }
}

static porta_status launch_check(pc_rec *r)
{
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

static porta_status decode(pc_rec *r, attn_args *a)
{
    /* Splits depend on max_len alone: fewer than DC_SPLIT_KEYS keys each only
     * when max_len needs more than DC_MAX_SPLITS of them. */
    int splits = (a->Tk + DC_SPLIT_KEYS - 1) / DC_SPLIT_KEYS;
    if (splits > DC_MAX_SPLITS) splits = DC_MAX_SPLITS;
    if (splits < 1) splits = 1;
    int chunk = (a->Tk + splits - 1) / splits;
    chunk = (chunk + KT - 1) / KT * KT;
    a->chunk = chunk;
    a->splits = (a->Tk + chunk - 1) / chunk;
    if (a->splits < 1) a->splits = 1;
    /* Staged tiles of 16 keys up to head dim 64, fewer for larger heads: a
     * block's shared memory stays near 38 KB at head dim 64, so five blocks
     * fit a multiprocessor (with 32-key tiles, three: at 256 rows of short
     * context the kernel waited on blocks, not on memory). */
    a->tk = a->D <= 64 ? KT / 2 : a->D <= 128 ? KT / 4 : KT / 8;
    size_t smem = (size_t)(DC_MAX_T * a->D + DC_MAX_T * DC_WARPS * (a->D + 2) + DC_WARPS * 2 * a->tk * (a->D + 1)) *
                  sizeof(float);
    int64_t need = a->splits > 1 ? (int64_t)a->B * a->T * a->H * a->splits * (a->D + 2) : 0;
    int64_t blocks = (int64_t)a->B * a->splits;
    if (blocks > 0x7fffffff) return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda: attention grid too large");
    if (smem > (size_t)r->be->smem_optin)
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda: attention head dim %d needs %zu bytes of shared memory",
                       a->D, smem);
    /* Head dims per lane: 2, 4 or 8 (D up to 64, 128, 256). */
    void (*kern)(attn_args) = a->D <= 64 ? attn_decode<2> : a->D <= 128 ? attn_decode<4> : attn_decode<8>;
    if (r->dry) {
        if (need > r->scratch_elems) r->scratch_elems = need;
        /* The limit, not this node's size: programs of other shapes launch
         * the same function. */
        if (smem > 48 * 1024)
            PC_CK(r->be, cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, r->be->smem_optin));
        return PORTA_OK;
    }
    a->part = r->scratch;
    PC_CK(r->be, pc_launch(r, kern, dim3((unsigned)blocks, a->H), dim3(DC_WARPS * 32), smem, *a));
    porta_status st = launch_check(r);
    if (st || a->splits == 1) return st;
    int64_t rows = (int64_t)a->B * a->T * a->H;
    PC_CK(r->be, pc_launch(r, attn_combine, dim3((unsigned)((rows + DC_WARPS - 1) / DC_WARPS)), dim3(DC_WARPS * 32),
                           0, *a));
    return launch_check(r);
}

static porta_status prefill(pc_rec *r, attn_args *a)
{
    int64_t tiles = (a->T + PF_ROWS - 1) / PF_ROWS, blocks = (int64_t)a->B * tiles;
    size_t smem = (size_t)(PF_ROWS * a->D + KT * (a->D + 1) + KT * a->D) * sizeof(float);
    if (blocks > 0x7fffffff) return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda: attention grid too large");
    if (smem > (size_t)r->be->smem_optin)
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda: attention head dim %d needs %zu bytes of shared memory",
                       a->D, smem);
    if (r->dry) {
        if (smem > 48 * 1024)
            PC_CK(r->be, cudaFuncSetAttribute(attn_prefill, cudaFuncAttributeMaxDynamicSharedMemorySize, r->be->smem_optin));
        return PORTA_OK;
    }
    if (blocks == 0) return PORTA_OK;
    PC_CK(r->be, pc_launch(r, attn_prefill, dim3((unsigned)blocks, a->H), dim3(PF_WARPS * 32), smem, *a));
    return launch_check(r);
}

static int dims4(const porta_ref *x, int64_t lim)
{
    if (x->ndim != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (x->shape[i] > lim) return 0;
    return 1;
}

extern "C" porta_status pc_attention(pc_rec *r, const porta_node *n)
{
    const porta_ref *q = &n->in[0], *k = &n->in[1], *v = &n->in[2], *o = &n->out;
    int cached = n->op == PORTA_OP_ATTN_CACHED;
    if (!dims4(q, 0x7fffffff) || !dims4(k, 0x7fffffff) || !dims4(v, 0x7fffffff) || !dims4(o, 0x7fffffff))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: attention wants 4-d q, k, v", n->name);
    attn_args a;
    memset(&a, 0, sizeof a);
    a.B = (int)q->shape[0];
    a.T = (int)q->shape[1];
    a.H = (int)q->shape[2];
    a.D = (int)q->shape[3];
    /* Cached K and V are [B,H,L,D]; ask for them as (batch, row, head, dim). */
    int kr = cached ? 2 : 1, kh = cached ? 1 : 2;
    a.Tk = (int)k->shape[kr];
    for (int i = 0; i < 4; i++)
        if (o->shape[i] != q->shape[i])
            return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: attention output shape differs from q", n->name);
    for (int i = 0; i < 4; i++)
        if (v->shape[i] != k->shape[i])
            return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: attention k and v shapes differ", n->name);
    /* A cached program may cover the first B rows of a larger cache. */
    if ((cached ? k->shape[0] < a.B : k->shape[0] != a.B) || k->shape[kh] != a.H || k->shape[3] != a.D)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: attention k/v do not match q[%d,%d,%d,%d]", n->name, a.B, a.T,
                       a.H, a.D);
    if (a.D < 1 || a.D > PC_MAX_HEAD_DIM || a.H > 65535)
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: attention head dim %d (max %d), %d heads (max 65535)",
                       n->name, a.D, PC_MAX_HEAD_DIM, a.H);
    if (!porta_ref_dense(o))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: attention into a strided output", n->name);
    if (cached && a.B > r->step_rows)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: attention batch %d exceeds the step block's %d rows", n->name,
                       a.B, r->step_rows);
    if (pc_has(n, 3)) {
        const porta_ref *mk = &n->in[3];
        if (cached || mk->ndim != 3 || mk->shape[0] < 1 || a.B % mk->shape[0] != 0 || mk->shape[1] != a.T ||
            mk->shape[2] != a.Tk)
            return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: mask must be [Bm,%d,%d] with %d %% Bm == 0", n->name, a.T,
                           a.Tk, a.B);
        a.mask_div = a.B / (int)mk->shape[0];
        for (int i = 0; i < 3; i++) a.ms[i] = mk->stride[i];
        a.mask = pc_ptr(r, mk);
    }
    int perm[4] = {0, kr, kh, 3};
    for (int i = 0; i < 4; i++) {
        a.qs[i] = q->stride[i];
        a.ks[i] = k->stride[perm[i]];
        a.vs[i] = v->stride[perm[i]];
    }
    a.scale = n->p.attn.scale;
    a.causal = !cached && n->p.attn.causal;
    a.step = cached ? r->step : NULL;
    a.rows = r->step_rows;
    a.q = pc_ptr(r, q);
    a.k = pc_ptr(r, k);
    a.v = pc_ptr(r, v);
    a.kvec = a.ks[3] == 1 && a.vs[3] == 1 && a.D % 4 == 0 && a.ks[0] % 4 == 0 && a.ks[1] % 4 == 0 &&
             a.ks[2] % 4 == 0 && a.vs[0] % 4 == 0 && a.vs[1] % 4 == 0 && a.vs[2] % 4 == 0 &&
             ((uintptr_t)a.k & 15) == 0 && ((uintptr_t)a.v & 15) == 0;
    a.out = pc_ptr(r, o);
    if (!r->dry && (int64_t)a.B * a.T * a.H == 0) return PORTA_OK;
    return cached && a.T <= DC_MAX_T ? decode(r, &a) : prefill(r, &a);
}
