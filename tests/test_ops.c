/* Every op on one backend (argv[1]) against the float64 ref backend, on fresh
 * random inputs (never zeros), outputs poisoned with NaN before each run.
 *
 * Tolerances are normwise relative errors against float64:
 *  - 2e-6 for data movement and elementwise arithmetic (a few float32 roundings);
 *  - 1e-5 for reductions (matmul, norms, softmax, attention): float32
 *    accumulation over up to a few thousand terms, and vector exp/sin with
 *    1-ulp error;
 *  - 5e-5 for RoPE: the angle p * theta^(-2j/D) is formed in float32, so its
 *    absolute error grows with the position p.
 * The same tolerances serve every backend; a backend that needs more fails. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define MAXP 8

typedef struct params {
    porta_backend *be;
    rng r;
    porta_buffer *bufs[MAXP];
    int n;
    porta_status refused; /* a builder's buffer the backend does not hold */
} params;

/* A parameter tensor on be, random from a seed shared by both backends. */
static porta_tensor *mkparam(porta_graph *g, params *P, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *h = malloc((size_t)n * sizeof *h);
    fill_random(&P->r, h, n, 0.5f);
    porta_buffer *b = NULL;
    CHECK_OK(porta_buffer_new(P->be, PORTA_F32, n, &b));
    CHECK_OK(porta_buffer_write(b, 0, n, h));
    free(h);
    P->bufs[P->n++] = b;
    return porta_param(g, b, 0, ndim, shape);
}

typedef struct opcase opcase;
typedef porta_tensor *(*build_fn)(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c);

struct opcase {
    const char *name;
    double tol;
    build_fn build;
    int64_t d[6];
    float f;      /* op-specific: eps, scale */
    int flag;     /* op-specific: bias, causal, xpos, is_key */
    int steps;    /* > 0: uses a KV cache and runs this many steps */
    float in_scale;
};

#define IN(g, name, ...) porta_input(g, name, sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t), (int64_t[]){ __VA_ARGS__ })

static porta_tensor *b_copy(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    porta_tensor *x = IN(g, "x", c->d[0], c->d[1], c->d[2], c->d[3]);
    porta_tensor *v = porta_permute(g, x, (int[]){ 2, 0, 3, 1 });
    if (c->flag) v = porta_slice(g, v, 1, 1, c->d[0] - 1);
    return porta_contiguous(g, v);
}

static porta_tensor *b_linear(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)kv;
    porta_tensor *x = IN(g, "x", c->d[0], c->d[1]);
    porta_tensor *w = mkparam(g, P, 2, (int64_t[]){ c->d[2], c->d[1] });
    porta_tensor *b = c->flag ? mkparam(g, P, 1, (int64_t[]){ c->d[2] }) : NULL;
    return porta_linear(g, x, w, b);
}

/* d = {M, K, N}: a linear whose weight is stored as f16 (flag 2) or bf16
 * (flag 4), flag 1: with an f32 bias. Both backends hold the same rounded
 * weights; the product accumulates in f32. */
static porta_tensor *b_linear_half(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)kv;
    const porta_dtype dt = c->flag & 2 ? PORTA_F16 : PORTA_BF16;
    const int64_t n = c->d[2] * c->d[1];
    porta_buffer *b = NULL;
    porta_status s = porta_buffer_new(P->be, dt, n, &b);
    if (s != PORTA_OK) {
        P->refused = s;
        return NULL;
    }
    float *h = malloc((size_t)n * sizeof *h);
    fill_random(&P->r, h, n, 0.5f);
    CHECK_OK(porta_buffer_write(b, 0, n, h));
    free(h);
    P->bufs[P->n++] = b;
    porta_tensor *x = IN(g, "x", c->d[0], c->d[1]);
    porta_tensor *w = porta_param(g, b, 0, 2, (int64_t[]){ c->d[2], c->d[1] });
    porta_tensor *bias = c->flag & 1 ? mkparam(g, P, 1, (int64_t[]){ c->d[2] }) : NULL;
    return porta_linear(g, x, w, bias);
}

/* d = {Bt, M, K, N}; flag 1: b batched, 2: b stored as [Bt, N, K] and
 * transposed (contiguous along K, as GEMV kernels take it). */
static porta_tensor *b_matmul(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    porta_tensor *a = IN(g, "a", c->d[0], c->d[1], c->d[2]);
    porta_tensor *b;
    if (c->flag & 2) b = porta_permute(g, IN(g, "b", c->d[0], c->d[3], c->d[2]), (int[]){ 0, 2, 1 });
    else b = c->flag & 1 ? IN(g, "b", c->d[0], c->d[2], c->d[3]) : IN(g, "b", c->d[2], c->d[3]);
    return porta_matmul(g, a, b);
}

static porta_tensor *b_binary(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    porta_tensor *a = IN(g, "a", c->d[0], c->d[1], c->d[2]);
    porta_tensor *b = c->d[3] ? IN(g, "b", c->d[2]) : IN(g, "b", c->d[1], c->d[2]);
    return c->flag ? porta_mul(g, a, b) : porta_add(g, a, b);
}

static porta_tensor *b_rmsnorm(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)kv;
    porta_tensor *x = IN(g, "x", c->d[0], c->d[1]);
    return porta_rmsnorm(g, x, c->flag ? mkparam(g, P, 1, (int64_t[]){ c->d[1] }) : NULL, c->f);
}

static porta_tensor *b_layernorm(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)kv;
    porta_tensor *x = IN(g, "x", c->d[0], c->d[1]);
    porta_tensor *w = c->flag ? mkparam(g, P, 1, (int64_t[]){ c->d[1] }) : NULL;
    porta_tensor *b = c->flag ? mkparam(g, P, 1, (int64_t[]){ c->d[1] }) : NULL;
    return porta_layernorm(g, x, w, b, c->f);
}

/* The chains core fuses into one linear for backends that take fused
 * linears: x -> rmsnorm -> linear -> add(x), or with flag 4 the MLP
 * x -> rmsnorm -> linear -> swiglu -> linear -> add(x). d = {B, M, E, F};
 * flag 1: biases, 2: a norm scale. */
static porta_tensor *b_fused(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)kv;
    int64_t B = c->d[0], M = c->d[1], E = c->d[2], F = c->d[3];
    porta_tensor *x = IN(g, "x", B, M, E);
    porta_tensor *h = porta_rmsnorm(g, x, c->flag & 2 ? mkparam(g, P, 1, (int64_t[]){ E }) : NULL, c->f);
    porta_tensor *y;
    if (c->flag & 24) {
        /* Results read twice may not be fused away: 8, the linear's
         * (out = (x + y) + y); 16, the norm's (out = y + norm(x)). */
        y = porta_linear(g, h, mkparam(g, P, 2, (int64_t[]){ F, E }),
                         c->flag & 1 ? mkparam(g, P, 1, (int64_t[]){ F }) : NULL);
        return c->flag & 8 ? porta_add(g, porta_add(g, x, y), y) : porta_add(g, y, h);
    }
    if (c->flag & 4) {
        porta_tensor *u = porta_linear(g, h, mkparam(g, P, 2, (int64_t[]){ 2 * F, E }),
                                       c->flag & 1 ? mkparam(g, P, 1, (int64_t[]){ 2 * F }) : NULL);
        y = porta_linear(g, porta_swiglu(g, u), mkparam(g, P, 2, (int64_t[]){ E, F }),
                         c->flag & 1 ? mkparam(g, P, 1, (int64_t[]){ E }) : NULL);
    } else {
        y = porta_linear(g, porta_reshape(g, h, 2, (int64_t[]){ B * M, E }), mkparam(g, P, 2, (int64_t[]){ F, E }),
                         c->flag & 1 ? mkparam(g, P, 1, (int64_t[]){ F }) : NULL);
        y = porta_reshape(g, y, 3, (int64_t[]){ B, M, F });
    }
    return porta_add(g, E == F || (c->flag & 4) ? x : IN(g, "r", B, M, F), y);
}

static porta_tensor *b_silu(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    return porta_silu(g, IN(g, "x", c->d[0], c->d[1]));
}

static porta_tensor *b_swiglu(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    return porta_swiglu(g, IN(g, "x", c->d[0], c->d[1]));
}

static porta_tensor *b_softmax(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    return porta_softmax(g, IN(g, "x", c->d[0], c->d[1]));
}

static porta_tensor *b_rope(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P;
    /* x [B, T, H, D] viewed through a permute so that its strides are not dense. */
    porta_tensor *x = IN(g, "x", c->d[0], c->d[2], c->d[1], c->d[3]);
    porta_tensor *xv = porta_permute(g, x, (int[]){ 0, 2, 1, 3 });
    porta_rope_desc rd = { 10000.0f, c->flag & 1, 512.0f };
    return porta_rope(g, xv, &rd, c->steps ? kv : NULL, (c->flag >> 1) & 1);
}

/* q, k, v as strided views of one [B, T, 3, H, D] input, as a fused QKV
 * projection produces them. */
static porta_tensor *qkv_part(porta_graph *g, porta_tensor *qkv, int which)
{
    int64_t shp[4] = { porta_tensor_dim(qkv, 0), porta_tensor_dim(qkv, 1), porta_tensor_dim(qkv, 3),
                       porta_tensor_dim(qkv, 4) };
    return porta_reshape(g, porta_slice(g, qkv, 2, which, 1), 4, shp);
}

static porta_tensor *b_attn_cached(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P;
    porta_tensor *qkv = IN(g, "qkv", c->d[0], c->d[1], 3, c->d[2], c->d[3]);
    porta_tensor *q = qkv_part(g, qkv, 0), *k = qkv_part(g, qkv, 1);
    if (c->flag & 4) {
        /* flag 4: q and k through the cached xPos rope first, as in Toto (the
         * key's rope and its append become one node where a backend fuses them). */
        porta_rope_desc rd = { 10000.0f, 1, 512.0f };
        q = porta_rope(g, q, &rd, kv, 0);
        k = porta_rope(g, k, &rd, kv, 1);
    }
    porta_tensor *kc = porta_kv_append(g, kv, 1, PORTA_KV_K, k);
    porta_tensor *vc = porta_kv_append(g, kv, 1, PORTA_KV_V, qkv_part(g, qkv, 2));
    return porta_attention_cached(g, q, kc, vc, c->f);
}

/* d = {B, T, H, D, E}: a decoder layer's attention from x [B, T, E]: the QKV
 * linear (+bias), q and k through the cached xPos rope, k and v appended,
 * cached attention. The QKV output's columns are (qkv, head, dim), or with
 * flag 8 (qkv, dim, head) as in Toto; flag 16: an RMSNorm first. The
 * rotated pairs are adjacent columns in the first order and H columns apart
 * in the second. flag 2: rows share a prefix, as for b_attn_cached. */
static porta_tensor *b_qkv_attn(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    int64_t B = c->d[0], T = c->d[1], H = c->d[2], D = c->d[3], E = c->d[4];
    porta_tensor *x = IN(g, "x", B, T, E);
    if (c->flag & 16) x = porta_rmsnorm(g, x, mkparam(g, P, 1, (int64_t[]){ E }), 1e-6f);
    porta_tensor *w = mkparam(g, P, 2, (int64_t[]){ 3 * H * D, E }), *b = mkparam(g, P, 1, (int64_t[]){ 3 * H * D });
    porta_tensor *qkv = porta_linear(g, x, w, b), *part[3];
    for (int i = 0; i < 3; i++) {
        if (c->flag & 8) {
            porta_tensor *v = porta_reshape(g, qkv, 4, (int64_t[]){ B, T, 3 * D, H });
            part[i] = porta_permute(g, porta_slice(g, v, 2, i * D, D), (int[]){ 0, 1, 3, 2 });
        } else {
            part[i] = qkv_part(g, porta_reshape(g, qkv, 5, (int64_t[]){ B, T, 3, H, D }), i);
        }
    }
    porta_rope_desc rd = { 10000.0f, 1, 512.0f };
    porta_tensor *q = porta_rope(g, part[0], &rd, kv, 0), *k = porta_rope(g, part[1], &rd, kv, 1);
    porta_tensor *kc = porta_kv_append(g, kv, 0, PORTA_KV_K, k);
    porta_tensor *vc = porta_kv_append(g, kv, 0, PORTA_KV_V, part[2]);
    return porta_attention_cached(g, q, kc, vc, c->f);
}

static porta_tensor *b_attn(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    int64_t B = c->d[0], Tq = c->d[1], Tk = c->d[2], H = c->d[3], D = c->d[4], Bm = c->d[5];
    porta_tensor *q = porta_permute(g, IN(g, "q", B, H, Tq, D), (int[]){ 0, 2, 1, 3 });
    porta_tensor *k = porta_permute(g, IN(g, "k", B, H, Tk, D), (int[]){ 0, 2, 1, 3 });
    porta_tensor *v = IN(g, "v", B, Tk, H, D);
    porta_tensor *m = Bm ? IN(g, "mask", Bm, Tq, Tk) : NULL;
    return porta_attention(g, q, k, v, m, c->f, c->flag);
}

/* d = mixtures' shape [d0, d1, K], flag = repeat. Inputs df, loc, scale,
 * logits, then the key (set by make_inputs). */
static porta_tensor *b_sample(porta_graph *g, params *P, porta_kvcache *kv, const opcase *c)
{
    (void)P, (void)kv;
    porta_tensor *p[4];
    static const char *const names[4] = {"df", "loc", "scale", "logits"};
    for (int i = 0; i < 4; i++) p[i] = IN(g, names[i], c->d[0], c->d[1], c->d[2]);
    return porta_mixture_sample(g, p[0], p[1], p[2], p[3], IN(g, "key", 4), c->flag);
}

static const opcase cases[] = {
    { "copy permute [3,5,7,2]", 2e-6, b_copy, { 3, 5, 7, 2 }, 0, 0, 0, 1 },
    { "copy permute+slice [4,3,9,5]", 2e-6, b_copy, { 4, 3, 9, 5 }, 0, 1, 0, 1 },
    { "linear 1x768 -> 768 +bias", 1e-5, b_linear, { 1, 768, 768 }, 0, 1, 0, 1 },
    { "linear 4x768 -> 3072 +bias", 1e-5, b_linear, { 4, 768, 3072 }, 0, 1, 0, 1 },
    { "linear 3x3072 -> 768", 1e-5, b_linear, { 3, 3072, 768 }, 0, 0, 0, 1 },
    { "linear 7x33 -> 17 +bias", 1e-5, b_linear, { 7, 33, 17 }, 0, 1, 0, 1 },
    { "linear 131x96 -> 200 +bias", 1e-5, b_linear, { 131, 96, 200 }, 0, 1, 0, 1 },
    { "linear 448x64 -> 192 +bias", 1e-5, b_linear, { 448, 64, 192 }, 0, 1, 0, 1 },
    { "linear 1x1001 -> 77 (odd K and N)", 1e-5, b_linear, { 1, 1001, 77 }, 0, 1, 0, 1 },
    { "linear 2x200 -> 3000 +bias", 1e-5, b_linear, { 2, 200, 3000 }, 0, 1, 0, 1 },
    { "linear 8x3072 -> 768 +bias", 1e-5, b_linear, { 8, 3072, 768 }, 0, 1, 0, 1 },
    /* Weights stored as f16 and bf16: decode rows and tiled products. */
    { "linear f16 weights 1x768 -> 768 +bias", 1e-5, b_linear_half, { 1, 768, 768 }, 0, 3, 0, 1 },
    { "linear bf16 weights 4x768 -> 3072", 1e-5, b_linear_half, { 4, 768, 3072 }, 0, 4, 0, 1 },
    { "linear f16 weights 40x96 -> 130", 1e-5, b_linear_half, { 40, 96, 130 }, 0, 2, 0, 1 },
    { "linear bf16 weights 300x64 -> 200 +bias", 1e-5, b_linear_half, { 300, 64, 200 }, 0, 5, 0, 1 },
    { "linear 17x768 -> 768", 1e-5, b_linear, { 17, 768, 768 }, 0, 0, 0, 1 },
    { "linear 64x768 -> 3072 +bias", 1e-5, b_linear, { 64, 768, 3072 }, 0, 1, 0, 1 },
    /* GPU GEMM forms: many tiles with a short partial k tile; K split
     * over workgroups with unaligned (odd) K. */
    { "linear 2100x20 -> 2000 +bias", 1e-5, b_linear, { 2100, 20, 2000 }, 0, 1, 0, 1 },
    { "linear 300x257 -> 130 +bias (odd K)", 1e-5, b_linear, { 300, 257, 130 }, 0, 1, 0, 1 },
    { "rmsnorm+linear+add [1,1,768] -> 768 +bias", 1e-5, b_fused, { 1, 1, 768, 768 }, 1e-6f, 3, 0, 1 },
    { "rmsnorm+linear+add [2,3,64] -> 200 +bias", 1e-5, b_fused, { 2, 3, 64, 200 }, 1e-5f, 3, 0, 1 },
    { "rmsnorm+linear+add [1,8,96] -> 96", 1e-5, b_fused, { 1, 8, 96, 96 }, 1e-6f, 0, 0, 1 },
    { "rmsnorm+linear+add [5,9,64] -> 64 +bias", 1e-5, b_fused, { 5, 9, 64, 64 }, 1e-6f, 3, 0, 1 },
    { "rmsnorm+linear+add [1,2,30] -> 30 (odd K)", 1e-5, b_fused, { 1, 2, 30, 30 }, 1e-6f, 3, 0, 1 },
    { "rmsnorm+linear, result read twice [1,3,64] -> 64", 1e-5, b_fused, { 1, 3, 64, 64 }, 1e-6f, 11, 0, 1 },
    { "rmsnorm+linear, result read twice [1,20,64] -> 64", 1e-5, b_fused, { 1, 20, 64, 64 }, 1e-6f, 11, 0, 1 },
    { "rmsnorm read twice +linear+add [2,3,64] -> 64", 1e-5, b_fused, { 2, 3, 64, 64 }, 1e-6f, 19, 0, 1 },
    { "rmsnorm read twice +linear+add [1,17,32] -> 32", 1e-5, b_fused, { 1, 17, 32, 32 }, 1e-6f, 19, 0, 1 },
    { "mlp [1,1,768] F 3072 +bias", 1e-5, b_fused, { 1, 1, 768, 3072 }, 1e-6f, 7, 0, 1 },
    { "mlp [1,7,128] F 256 +bias", 1e-5, b_fused, { 1, 7, 128, 256 }, 1e-6f, 7, 0, 1 },
    { "mlp [2,2,64] F 96 no bias, no scale", 1e-5, b_fused, { 2, 2, 64, 96 }, 1e-6f, 4, 0, 1 },
    { "mlp [4,16,64] F 160 +bias", 1e-5, b_fused, { 4, 16, 64, 160 }, 1e-6f, 7, 0, 1 },
    { "mlp [1,3,62] F 33 +bias (odd K)", 1e-5, b_fused, { 1, 3, 62, 33 }, 1e-6f, 7, 0, 1 },
    /* Few rows, K a multiple of 4, odd output counts: vector loads with a
     * ragged last group of weight rows. */
    { "rmsnorm+linear+add [1,4,128] -> 130 +bias", 1e-5, b_fused, { 1, 4, 128, 130 }, 1e-6f, 3, 0, 1 },
    { "mlp [1,5,64] F 45 +bias", 1e-5, b_fused, { 1, 5, 64, 45 }, 1e-6f, 7, 0, 1 },
    /* Enough rows and columns for the larger GEMM tiles a GPU backend picks. */
    { "rmsnorm+linear+add [1,300,48] -> 2200 +bias", 1e-5, b_fused, { 1, 300, 48, 2200 }, 1e-6f, 3, 0, 1 },
    { "mlp [1,256,64] F 1056 +bias", 1e-5, b_fused, { 1, 256, 64, 1056 }, 1e-6f, 7, 0, 1 },
    { "mlp [2,256,32] F 4224 +bias", 1e-5, b_fused, { 2, 256, 32, 4224 }, 1e-6f, 7, 0, 1 },
    /* Long K over few output tiles (the Vulkan GEMM splits K, in scalar
     * loads for odd K): the norm, bias, SwiGLU and residual around it. */
    { "rmsnorm+linear+add [1,40,1024] -> 96 +bias, K split", 1e-5, b_fused, { 1, 40, 1024, 96 }, 1e-6f, 3, 0, 1 },
    { "rmsnorm+linear+add [1,33,130] -> 70 +bias, odd K split", 1e-5, b_fused, { 1, 33, 130, 70 }, 1e-6f, 3, 0, 1 },
    { "mlp [1,12,1024] F 48 +bias, K split", 1e-5, b_fused, { 1, 12, 1024, 48 }, 1e-6f, 7, 0, 1 },
    { "mlp [1,70,512] F 24 no bias, no scale, K split", 1e-5, b_fused, { 1, 70, 512, 24 }, 1e-6f, 4, 0, 1 },
    { "matmul [6,17,19]@[19,5]", 1e-5, b_matmul, { 6, 17, 19, 5 }, 0, 0, 0, 1 },
    { "matmul [5,33,70]@[5,70,9] batched", 1e-5, b_matmul, { 5, 33, 70, 9 }, 0, 1, 0, 1 },
    { "matmul [1,1,100]@[100,37]", 1e-5, b_matmul, { 1, 1, 100, 37 }, 0, 0, 0, 1 },
    { "matmul [2,64,256]@[2,256,96] batched", 1e-5, b_matmul, { 2, 64, 256, 96 }, 0, 1, 0, 1 },
    { "matmul [3,5,64]@[3,64,37] batched, b k-contiguous", 1e-5, b_matmul, { 3, 5, 64, 37 }, 0, 3, 0, 1 },
    { "matmul [2,3,30]@[2,30,7] batched, b k-contiguous", 1e-5, b_matmul, { 2, 3, 30, 7 }, 0, 3, 0, 1 },
    { "matmul [3,20,520]@[3,520,37] batched, b k-contiguous", 1e-5, b_matmul, { 3, 20, 520, 37 }, 0, 3, 0, 1 },
    { "add [4,7,33] + [33]", 2e-6, b_binary, { 4, 7, 33, 1 }, 0, 0, 0, 1 },
    { "add [2,5,67] + [5,67]", 2e-6, b_binary, { 2, 5, 67, 0 }, 0, 0, 0, 1 },
    { "mul [3,9,131] * [131]", 2e-6, b_binary, { 3, 9, 131, 1 }, 0, 1, 0, 1 },
    { "mul [2,4,8] * [4,8]", 2e-6, b_binary, { 2, 4, 8, 0 }, 0, 1, 0, 1 },
    { "rmsnorm [5,768] scale eps 1e-8", 1e-5, b_rmsnorm, { 5, 768 }, 1e-8f, 1, 0, 1 },
    { "rmsnorm [9,37] eps 1e-5", 1e-5, b_rmsnorm, { 9, 37 }, 1e-5f, 0, 0, 1 },
    { "layernorm [7,33] w,b", 1e-5, b_layernorm, { 7, 33 }, 1e-5f, 1, 0, 1 },
    { "layernorm [3,768]", 1e-5, b_layernorm, { 3, 768 }, 1e-6f, 0, 0, 1 },
    { "silu [13,77] wide range", 1e-5, b_silu, { 13, 77 }, 0, 0, 0, 12 },
    { "swiglu [7,258]", 1e-5, b_swiglu, { 7, 258 }, 0, 0, 0, 6 },
    { "swiglu [3,6144]", 1e-5, b_swiglu, { 3, 6144 }, 0, 0, 0, 3 },
    { "softmax [9,1031] wide range", 1e-5, b_softmax, { 9, 1031 }, 0, 0, 0, 20 },
    { "softmax [5,7]", 1e-5, b_softmax, { 5, 7 }, 0, 0, 0, 4 },
    { "rope plain, no cache [2,5,3,16]", 5e-5, b_rope, { 2, 5, 3, 16 }, 0, 0, 0, 1 },
    { "rope xpos query, no cache [2,6,3,64]", 5e-5, b_rope, { 2, 6, 3, 64 }, 0, 1, 0, 1 },
    { "rope plain, cached [3,4,2,16] 40 steps", 5e-5, b_rope, { 3, 4, 2, 16 }, 0, 0, 40, 1 },
    { "rope xpos query, cached [3,4,2,64] 40 steps", 5e-5, b_rope, { 3, 4, 2, 64 }, 0, 1, 40, 1 },
    { "rope xpos key, cached [3,4,2,64] 40 steps", 5e-5, b_rope, { 3, 4, 2, 64 }, 0, 3, 40, 1 },
    { "rope xpos query, cached [2,3,3,10] 25 steps", 5e-5, b_rope, { 2, 3, 3, 10 }, 0, 1, 25, 1 },
    { "kv_append+attention_cached [3,4,2,16] 30 steps", 1e-5, b_attn_cached, { 3, 4, 2, 16 }, 0.25f, 0, 30, 1 },
    { "kv_append+attention_cached [2,1,4,64] 70 steps", 1e-5, b_attn_cached, { 2, 1, 4, 64 }, 0.125f, 0, 70, 1 },
    { "kv_append+attention_cached [2,8,3,32] 12 steps", 1e-5, b_attn_cached, { 2, 8, 3, 32 }, 0.17f, 0, 12, 1 },
    { "kv_append+attention_cached [2,3,2,16] of a 4-row cache", 1e-5, b_attn_cached, { 2, 3, 2, 16 }, 0.2f, 1, 15, 1 },
    /* Rows reading a prefix they share with row 0, decode and prefill kernels. */
    { "kv_append+attention_cached [4,1,2,64] shared prefix 90 steps", 1e-5, b_attn_cached, { 4, 1, 2, 64 }, 0.125f, 2, 90, 1 },
    { "kv_append+attention_cached [3,4,2,32] shared prefix 30 steps", 1e-5, b_attn_cached, { 3, 4, 2, 32 }, 0.17f, 2, 30, 1 },
    { "kv_append+attention_cached [3,9,2,16] shared prefix 9 steps", 1e-5, b_attn_cached, { 3, 9, 2, 16 }, 0.25f, 2, 9, 1 },
    /* A long cache: decode kernels that split the key range see many splits. */
    { "kv_append+attention_cached [2,1,2,64] 600 steps", 1e-5, b_attn_cached, { 2, 1, 2, 64 }, 0.125f, 0, 600, 1 },
    /* Many new rows of a wide head: prefill kernels tile the rows. */
    { "kv_append+attention_cached [2,40,2,128] 5 steps", 1e-5, b_attn_cached, { 2, 40, 2, 128 }, 0.09f, 0, 5, 1 },
    { "kv_append+attention_cached [2,3,2,13] 20 steps", 1e-5, b_attn_cached, { 2, 3, 2, 13 }, 0.28f, 0, 20, 1 },
    { "kv_append+attention_cached [2,21,2,64] 14 steps", 1e-5, b_attn_cached, { 2, 21, 2, 64 }, 0.125f, 0, 14, 1 },
    /* Roped q and k, the key's rope and append fused on CUDA and Vulkan. */
    { "rope+kv_append+attention_cached [3,1,4,64] 50 steps", 1e-5, b_attn_cached, { 3, 1, 4, 64 }, 0.125f, 4, 50, 1 },
    { "rope+kv_append+attention_cached [2,5,2,32] 12 steps", 1e-5, b_attn_cached, { 2, 5, 2, 32 }, 0.17f, 4, 12, 1 },
    /* One new row with both ropes, as in a decode step: a longer cache than
     * a GPU split holds, a shared prefix, many rows, a cache with more rows. */
    { "rope+kv_append+attention_cached [2,1,2,64] 300 steps", 1e-5, b_attn_cached, { 2, 1, 2, 64 }, 0.125f, 4, 300, 1 },
    { "rope+kv_append+attention_cached [4,1,2,32] shared prefix 60 steps", 1e-5, b_attn_cached, { 4, 1, 2, 32 }, 0.17f, 6, 60, 1 },
    { "rope+kv_append+attention_cached [24,1,12,64] 40 steps, many rows", 1e-5, b_attn_cached, { 24, 1, 12, 64 }, 0.125f, 4, 40, 1 },
    { "rope+kv_append+attention_cached [2,1,3,16] of a 4-row cache", 1e-5, b_attn_cached, { 2, 1, 3, 16 }, 0.25f, 5, 15, 1 },
    /* The QKV linear with the ropes and appends after it: decode rows, both
     * column orders, rows that share a step, and a GEMM. */
    { "linear+rope+kv_append+attention_cached [2,1,4,16] E 48 (qkv h d) 20 steps", 1e-5, b_qkv_attn, { 2, 1, 4, 16, 48 }, 0.25f, 0, 20, 1 },
    { "rmsnorm+linear+rope+kv_append+attention_cached [3,1,4,16] E 64 (qkv d h) 20 steps", 1e-5, b_qkv_attn, { 3, 1, 4, 16, 64 }, 0.25f, 24, 20, 1 },
    { "linear+rope+kv_append+attention_cached [1,2,3,64] E 96 (qkv d h) 12 steps", 1e-5, b_qkv_attn, { 1, 2, 3, 64, 96 }, 0.125f, 8, 12, 1 },
    { "linear+rope+kv_append+attention_cached [1,8,2,32] E 40 (qkv h d) 6 steps", 1e-5, b_qkv_attn, { 1, 8, 2, 32, 40 }, 0.17f, 0, 6, 1 },
    { "linear+rope+kv_append+attention_cached [2,6,2,16] E 32 (qkv d h) 5 steps", 1e-5, b_qkv_attn, { 2, 6, 2, 16, 32 }, 0.25f, 8, 5, 1 },
    { "rmsnorm+linear+rope+kv_append+attention_cached [4,1,2,32] E 48 (qkv d h) shared prefix 24 steps", 1e-5, b_qkv_attn, { 4, 1, 2, 32, 48 }, 0.17f, 26, 24, 1 },
    { "linear+rope+kv_append+attention_cached [16,1,4,32] E 64 (qkv h d) 10 steps, many rows", 1e-5, b_qkv_attn, { 16, 1, 4, 32, 64 }, 0.17f, 0, 10, 1 },
    /* The widest head: kernels that stage keys in shared memory take few per tile. */
    { "kv_append+attention_cached [2,2,2,256] 40 steps", 1e-5, b_attn_cached, { 2, 2, 2, 256 }, 0.0625f, 0, 40, 1 },
    /* More query rows x heads than twice an H100's multiprocessors: GPU
     * backends take their many-rows kernels (no key split), with contexts
     * past 128 keys. */
    { "kv_append+attention_cached [24,1,12,64] 150 steps, many rows", 1e-5, b_attn_cached, { 24, 1, 12, 64 }, 0.125f, 0, 150, 1 },
    { "kv_append+attention_cached [20,2,8,13] 70 steps, many rows", 1e-5, b_attn_cached, { 20, 2, 8, 13 }, 0.28f, 0, 70, 1 },
    { "kv_append+attention_cached [36,1,8,32] shared prefix 40 steps, many rows", 1e-5, b_attn_cached, { 36, 1, 8, 32 }, 0.17f, 2, 40, 1 },
    { "kv_append+attention_cached [18,1,16,256] 20 steps, many rows", 1e-5, b_attn_cached, { 18, 1, 16, 256 }, 0.0625f, 0, 20, 1 },
    { "attention masked [6,5,7,3,8] mask [2,5,7]", 1e-5, b_attn, { 6, 5, 7, 3, 8, 2 }, 0.35f, 0, 0, 1 },
    { "attention causal [2,9,9,2,16]", 1e-5, b_attn, { 2, 9, 9, 2, 16, 0 }, 0.25f, 1, 0, 1 },
    { "attention causal+mask [4,6,6,3,64] mask [4,6,6]", 1e-5, b_attn, { 4, 6, 6, 3, 64, 4 }, 0.125f, 1, 0, 1 },
    { "attention plain [3,1,40,12,64]", 1e-5, b_attn, { 3, 1, 40, 12, 64, 0 }, 0.125f, 0, 0, 1 },
    { "attention masked [2,37,50,3,128] mask [1,37,50]", 1e-5, b_attn, { 2, 37, 50, 3, 128, 1 }, 0.09f, 0, 0, 1 },
    { "attention masked [2,3,21,2,13] mask [1,3,21]", 1e-5, b_attn, { 2, 3, 21, 2, 13, 1 }, 0.28f, 0, 0, 1 },
    { "attention causal [1,300,300,2,32]", 1e-5, b_attn, { 1, 300, 300, 2, 32, 0 }, 0.18f, 1, 0, 1 },
    { "attention masked [2,19,290,3,16] mask [2,19,290]", 1e-5, b_attn, { 2, 19, 290, 3, 16, 2 }, 0.25f, 0, 0, 1 },
    /* Draws: the same values on every backend that samples (one Philox
     * counter per draw), up to float rounding of the result. */
    { "mixture_sample [3,64] of K 24, 2 draws each", 2e-6, b_sample, { 3, 64, 24 }, 0, 2, 0, 3 },
    { "mixture_sample [5,7] of K 3", 2e-6, b_sample, { 5, 7, 3 }, 0, 1, 0, 4 },
    { "mixture_sample [1,9] of K 1, 5 draws each", 2e-6, b_sample, { 1, 9, 1 }, 0, 5, 0, 2 },
};

typedef struct runner {
    params P;
    porta_kvcache *kv;
    porta_graph *g;
    porta_program *p;
    float **in;
    int64_t *in_n;
    int n_in;
    float *out;
    int64_t out_n;
} runner;

static porta_status setup(runner *R, porta_backend *be, const opcase *c)
{
    memset(R, 0, sizeof *R);
    R->P.be = be;
    R->P.r.s = 1234;
    if (c->steps) {
        int64_t B = c->d[0], T = c->d[1], H = c->d[2], D = c->d[3];
        /* flag 1 on a cached attention case: the cache has more rows than the
         * program covers. */
        int extra = c->build == b_attn_cached && (c->flag & 1) ? 2 : 0;
        porta_kvcache_desc kd = { 2, (int)B + extra, (int)H, (int)(c->steps * T), (int)D, PORTA_F32 };
        CHECK_OK(porta_kvcache_new(be, &kd, &R->kv));
    }
    CHECK_OK(porta_graph_new(&R->g));
    porta_tensor *y = c->build(R->g, &R->P, R->kv, c);
    if (!y && R->P.refused) return R->P.refused;
    if (porta_output(R->g, y) != PORTA_OK) return porta_graph_status(R->g);
    porta_status s = porta_compile(R->g, be, &R->p);
    if (s != PORTA_OK) return s;
    R->n_in = porta_program_n_inputs(R->p);
    R->in = calloc((size_t)R->n_in, sizeof *R->in);
    R->in_n = calloc((size_t)R->n_in, sizeof *R->in_n);
    for (int i = 0; i < R->n_in; i++) {
        R->in_n[i] = porta_program_input_numel(R->p, i);
        R->in[i] = malloc((size_t)R->in_n[i] * sizeof(float));
    }
    R->out_n = porta_program_output_numel(R->p, 0);
    R->out = malloc((size_t)R->out_n * sizeof(float));
    return PORTA_OK;
}

static void teardown(runner *R)
{
    porta_program_free(R->p);
    porta_graph_free(R->g);
    porta_kvcache_free(R->kv);
    for (int i = 0; i < R->P.n; i++) porta_buffer_free(R->P.bufs[i]);
    for (int i = 0; i < R->n_in; i++) free(R->in[i]);
    free(R->in);
    free(R->in_n);
    free(R->out);
}

/* Fills inputs for step s: random, and for masks a mix of 0, -inf and finite
 * values (one fully masked query row in the first batch). */
static void make_inputs(runner *R, const opcase *c, int s)
{
    rng r = { 99u + (uint64_t)s * 7919u };
    for (int i = 0; i < R->n_in; i++) {
        fill_random(&r, R->in[i], R->in_n[i], c->in_scale);
        if (c->build == b_attn && c->d[5] && i == 3) {
            for (int64_t k = 0; k < R->in_n[i]; k++)
                if (rng_next(&r) % 4 == 0) R->in[i][k] = -INFINITY;
            for (int64_t k = 0; k < c->d[2]; k++) R->in[i][k] = -INFINITY;
        }
        if (c->build == b_sample && i == 4) {
            const float key[4] = {(float)(rng_next(&r) % 16777216), (float)(rng_next(&r) % 16777216),
                                  (float)(rng_next(&r) % 65536), (float)s};
            memcpy(R->in[i], key, sizeof key);
        }
    }
}

/* What a backend's fusion pass does, as the node counts expect: nothing
 * with PORTA_NO_FUSE=1; on CUDA and Vulkan a key's rope joins its cache
 * append, and linears join their norm, SwiGLU and residual (on Vulkan up to
 * 8 rows). */
typedef struct fusion {
    int on, gpu, vk;
} fusion;

static fusion fusion_of(porta_backend *be)
{
    const char *nf = getenv("PORTA_NO_FUSE"), *kind = porta_backend_kind(be);
    fusion f = { !(nf && !strcmp(nf, "1")), 0, !strcmp(kind, "vulkan") };
    f.gpu = f.vk || !strcmp(kind, "cuda");
    return f;
}

static int fuses_linear(fusion f, int64_t rows) { return f.on && f.gpu && (!f.vk || rows <= 8); }

static void check_nodes(checker *ck, const runner *X, const opcase *c, uint64_t want)
{
    porta_program_stats ps;
    CHECK_OK(porta_program_stats_get(X->p, &ps));
    if (ps.nodes != want) {
        printf("FAIL %s: %llu nodes, want %llu\n", c->name, (unsigned long long)ps.nodes, (unsigned long long)want);
        ck->failed++;
    }
}

static int run_case(checker *ck, porta_backend *be, porta_backend *ref, const opcase *c)
{
    if (c->build == b_sample && !porta_backend_can_sample(be)) {
        /* A backend without the op refuses the program, with a message. */
        runner X;
        porta_status s = setup(&X, be, c);
        char what[200];
        snprintf(what, sizeof what, "%s: refused at compile by %s (%s)", c->name, porta_backend_kind(be),
                 porta_last_error());
        check_true(ck, what, s == PORTA_ERR_UNSUPPORTED && !X.p);
        teardown(&X);
        return 1;
    }
    if (c->build == b_linear_half &&
        (!strcmp(porta_backend_kind(be), "cpu") || !strcmp(porta_backend_kind(be), "cuda"))) {
        /* These backends hold f32 tensors only: they refuse, with a message. */
        runner X;
        porta_status s = setup(&X, be, c);
        char what[240];
        snprintf(what, sizeof what, "%s: refused by %s (%s)", c->name, porta_backend_kind(be), porta_last_error());
        check_true(ck, what, s == PORTA_ERR_UNSUPPORTED && !X.p && porta_last_error()[0]);
        teardown(&X);
        return 1;
    }
    runner X, Rf;
    porta_status s1 = setup(&X, be, c);
    porta_status s2 = setup(&Rf, ref, c);
    if (s1 != PORTA_OK || s2 != PORTA_OK) {
        printf("FAIL %s: setup: %s\n", c->name, porta_last_error());
        ck->failed++;
        teardown(&X);
        teardown(&Rf);
        return 0;
    }
    const fusion f = fusion_of(be);
    if (c->build == b_fused) {
        /* The CUDA and Vulkan backends take fused linears: the chain is one
         * node (two for the MLP). Vulkan fuses a residual add at any row
         * count. */
        const int fused = fuses_linear(f, c->d[0] * c->d[1]), res_only = f.on && f.vk && !fused;
        check_nodes(ck, &X, c,
                    c->flag & 4    ? (fused ? 2 : res_only ? 4 : 5)
                    : c->flag & 8  ? (fused ? 3 : 4)
                    : c->flag & 16 ? (fused || res_only ? 2 : 3)
                                   : (fused ? 1 : res_only ? 2 : 3));
    }
    if ((c->build == b_attn_cached && (c->flag & 4)) || c->build == b_qkv_attn) {
        /* rope q, rope k, two appends, attention: the key's rope and append
         * are one node on backends that fuse them. The QKV linear before it
         * is one node (the norm fused in where the backend fuses linears of
         * that many rows) or two. */
        uint64_t want = f.on && f.gpu ? 4 : 5;
        if (c->build == b_qkv_attn) want += (c->flag & 16) && !fuses_linear(f, c->d[0] * c->d[1]) ? 2 : 1;
        check_nodes(ck, &X, c, want);
    }
    int steps = c->steps ? c->steps : 1, ok = 1;
    int B = (int)c->d[0], T = (int)c->d[1];
    int32_t *row_new = calloc((size_t)B + 2, sizeof *row_new); /* rows past B stay 0 */
    double worst = 0;
    for (int s = 0; s < steps && ok; s++) {
        make_inputs(&X, c, s);
        make_inputs(&Rf, c, s);
        /* Rows advance by different amounts, some not at all, so that rows sit
         * at different positions and chunks of every size occur. */
        for (int b = 0; b < B; b++) row_new[b] = (s + 3 * b) % (T + 2) > T ? 0 : 1 + (s + 3 * b) % T;
        if (s == 0) row_new[0] = T;
        /* flag 2: a third of the way in, rows 1.. start sharing row 0's
         * prefix (every key it holds), then go on appending their own. */
        if ((c->build == b_attn_cached || c->build == b_qkv_attn) && (c->flag & 2) && s == steps / 3) {
            CHECK_OK(porta_kvcache_share_rows(X.kv, 0, 1, 1, B - 1));
            CHECK_OK(porta_kvcache_share_rows(Rf.kv, 0, 1, 1, B - 1));
        }
        porta_step st = { .n_new = 1, .row_new = c->steps ? row_new : NULL, .inputs = (const float *const *)X.in,
                          .outputs = &X.out };
        fill_nan(X.out, X.out_n);
        fill_nan(Rf.out, Rf.out_n);
        CHECK_OK(porta_run(X.p, &st));
        CHECK_OK(porta_program_wait(X.p));
        st.inputs = (const float *const *)Rf.in;
        st.outputs = &Rf.out;
        CHECK_OK(porta_run(Rf.p, &st));
        CHECK_OK(porta_program_wait(Rf.p));
        errstat e = compare(X.out, Rf.out, X.out_n);
        if (e.rel_l2 > worst) worst = e.rel_l2;
        if (s == steps - 1 || e.nonfinite || e.rel_l2 > c->tol) {
            char what[160];
            snprintf(what, sizeof what, "%s%s", c->name, steps > 1 ? " (worst step)" : "");
            if (steps > 1 && !(e.nonfinite || e.rel_l2 > c->tol)) {
                /* Report the worst step's figure on the final line. */
                printf("ok   %-52s rel_l2 %.2e  worst of %d steps  (tol %.0e)\n", what, worst, steps, c->tol);
                ck->passed++;
            } else {
                ok = check_close(ck, what, X.out, Rf.out, X.out_n, c->tol);
                if (!ok) printf("     at step %d\n", s);
            }
        }
    }
    free(row_new);
    teardown(&X);
    teardown(&Rf);
    return ok;
}

/* porta_buffer_copy: a sub-range at unaligned offsets lands bit for bit
 * (quiet NaN payloads too) and nothing outside it is touched; f32 ranges of
 * millions of elements and f16 ranges at odd offsets. */
static void buffer_copy_case(checker *ck, porta_backend *be, porta_dtype dt, int64_t n, int64_t soff, int64_t doff)
{
    const int64_t len = n + soff + doff + 7;
    float *src = malloc((size_t)len * sizeof *src), *dst = malloc((size_t)len * sizeof *dst);
    rng r = { 0x5eed + (uint64_t)n };
    for (int64_t i = 0; i < len; i++) {
        if (dt == PORTA_F32) {
            uint32_t bits = (uint32_t)rng_next(&r);
            if (i % 97 == 0) bits = 0x7fc00000u | (uint32_t)(i & 0x3fffff); /* NaN with a payload */
            memcpy(&src[i], &bits, 4);
        } else {
            src[i] = (float)((int64_t)(rng_next(&r) % 2001) - 1000) / 64.0f; /* exact in f16 */
        }
    }
    porta_buffer *a = NULL, *b = NULL;
    if (dt != PORTA_F32 && porta_buffer_new(be, dt, len, &a) == PORTA_ERR_UNSUPPORTED) {
        printf("skip buffer copy f16: %s\n", porta_last_error());
        free(src);
        free(dst);
        return;
    }
    if (!a) CHECK_OK(porta_buffer_new(be, dt, len, &a));
    CHECK_OK(porta_buffer_new(be, dt, len, &b));
    CHECK_OK(porta_buffer_write(a, 0, len, src));
    /* What the source holds as read back (a backend may store f32 wider,
     * which quiets signalling NaNs): the copy must match it exactly. */
    CHECK_OK(porta_buffer_read(a, 0, len, src));
    float *poison = malloc((size_t)len * sizeof *poison);
    for (int64_t i = 0; i < len; i++) poison[i] = -7.25f;
    CHECK_OK(porta_buffer_write(b, 0, len, poison));
    CHECK_OK(porta_buffer_copy(b, doff, a, soff, n));
    CHECK_OK(porta_backend_sync(be));
    CHECK_OK(porta_buffer_read(b, 0, len, dst));
    int64_t bad = 0;
    for (int64_t i = 0; i < len; i++) {
        const float *want = i >= doff && i < doff + n ? &src[i - doff + soff] : &poison[i];
        if (memcmp(&dst[i], want, 4) != 0) bad++;
    }
    char what[160];
    snprintf(what, sizeof what, "buffer copy %s: %lld elements from %lld to %lld, bit for bit, the rest untouched",
             dt == PORTA_F32 ? "f32" : "f16", (long long)n, (long long)soff, (long long)doff);
    check_true(ck, what, bad == 0);
    if (bad) printf("     %lld elements differ\n", (long long)bad);
    porta_buffer_free(a);
    porta_buffer_free(b);
    free(src);
    free(dst);
    free(poison);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: test_ops BACKEND [FILTER]\n  runs every op on BACKEND against the float64 ref backend;\n"
               "  FILTER selects cases whose name contains it\n");
        return argc < 2 ? 2 : 0;
    }
    porta_backend *be = open_or_skip(argv[1]);
    porta_backend *ref = open_or_skip("ref");
    checker ck = { 0, 0 };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 3 || strstr(cases[i].name, argv[2])) run_case(&ck, be, ref, &cases[i]);
    if (argc < 3 || strstr("buffer copy", argv[2])) {
        buffer_copy_case(&ck, be, PORTA_F32, 2500007, 3, 5);
        buffer_copy_case(&ck, be, PORTA_F32, 1, 0, 1);
        buffer_copy_case(&ck, be, PORTA_F16, 1001, 3, 6);
    }
    porta_backend_close(ref);
    porta_backend_close(be);
    return checker_exit(&ck);
}
