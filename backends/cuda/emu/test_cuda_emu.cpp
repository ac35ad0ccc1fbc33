/* The CUDA backend's op files run on the CPU (simt.h emulates the SIMT
 * machine; rewrite.py turns kernel launches into emulated ones) and are
 * compared with the ref backend's float64 op code on random inputs, outputs
 * poisoned with NaN first. This checks the kernels' indexing, step-block
 * handling, splits, tiles, barriers and shuffles where no GPU is; numerics
 * (CUDA's expf, cuBLAS) are checked on the GPU by test_ops.
 *
 * Tolerance: normwise relative error 2e-6, a few float32 roundings over the
 * reductions here (host libm, float accumulation over up to 4500 keys); data
 * movement must be exact. */
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <random>
#include <vector>
#include "cuda_backend.h"
extern "C" {
#include "ref.h"
}

porta_status pc_cuda_fail(const pc_backend *be, cudaError_t e, const char *what)
{
    return be->host->fail(PORTA_ERR_DEVICE, "cuda: %s failed (%d)", what, (int)e);
}

porta_status pc_blas_fail(const pc_backend *be, cublasStatus_t s, const char *what)
{
    return be->host->fail(PORTA_ERR_DEVICE, "cuda: %s failed (%d)", what, (int)s);
}

static porta_status report(porta_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("     ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return s;
}
static const porta_host host = { report };

/* One memory for every tensor, held twice: float for the kernels, double for
 * ref. Tensors are dense allocations; views are made from them. */
struct arena {
    std::vector<float> f;
    std::vector<double> d;
    std::mt19937 rng{ 7 };

    porta_ref alloc(std::vector<int64_t> shape, float scale = 1.0f)
    {
        porta_ref r{};
        r.mem = PORTA_MEM_ARENA;
        r.dtype = PORTA_F32;
        r.offset = (int64_t)f.size();
        r.ndim = (int)shape.size();
        int64_t n = 1;
        for (int i = r.ndim - 1; i >= 0; i--) {
            r.shape[i] = shape[i];
            r.stride[i] = n;
            n *= shape[i];
        }
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) set(r.offset + i, scale * u(rng));
        return r;
    }
    void set(int64_t at, float v)
    {
        if (at >= (int64_t)f.size()) {
            f.resize(at + 1);
            d.resize(at + 1);
        }
        f[at] = v;
        d[at] = v;
    }
    /* Shifts the next allocation so that vector paths see misaligned data too. */
    void pad(int n)
    {
        for (int i = 0; i < n; i++) set((int64_t)f.size(), 0.0f);
    }
};

static arena A;
static int failures;

static int64_t offset_of(const porta_ref &r, int64_t i)
{
    int64_t off = r.offset;
    for (int d = r.ndim - 1; d >= 0; d--) {
        off += (i % r.shape[d]) * r.stride[d];
        i /= r.shape[d];
    }
    return off;
}

static porta_ref permute(porta_ref r, std::vector<int> p)
{
    porta_ref o = r;
    for (size_t i = 0; i < p.size(); i++) {
        o.shape[i] = r.shape[p[i]];
        o.stride[i] = r.stride[p[i]];
    }
    return o;
}

static porta_ref slice(porta_ref r, int axis, int64_t start, int64_t len)
{
    r.offset += start * r.stride[axis];
    r.shape[axis] = len;
    return r;
}

/* Part k of a fused [B,T,3,H,D] projection as a strided [B,T,H,D] view. */
static porta_ref qkv_part(porta_ref qkv, int k)
{
    porta_ref s = slice(qkv, 2, k, 1), o = s;
    o.ndim = 4;
    const int keep[4] = { 0, 1, 3, 4 };
    for (int i = 0; i < 4; i++) {
        o.shape[i] = s.shape[keep[i]];
        o.stride[i] = s.stride[keep[i]];
    }
    return o;
}

/* A dense copy, for ref's dense ops fed a view the CUDA kernels take as is. */
static porta_ref densify(const porta_ref &r)
{
    porta_ref o = A.alloc(std::vector<int64_t>(r.shape, r.shape + r.ndim));
    for (int64_t i = 0; i < porta_ref_numel(&r); i++) {
        A.f[o.offset + i] = A.f[offset_of(r, i)];
        A.d[o.offset + i] = A.d[offset_of(r, i)];
    }
    return o;
}

typedef porta_status (*pc_fn)(pc_rec *, const porta_node *);

static pc_fn kernel_of(porta_op op)
{
    switch (op) {
    case PORTA_OP_COPY: return pc_copy;
    case PORTA_OP_LINEAR:
    case PORTA_OP_MATMUL: return pc_matmul;
    case PORTA_OP_ADD:
    case PORTA_OP_MUL:
    case PORTA_OP_SILU:
    case PORTA_OP_SWIGLU: return pc_eltwise;
    case PORTA_OP_RMSNORM:
    case PORTA_OP_LAYERNORM: return pc_norm;
    case PORTA_OP_SOFTMAX: return pc_softmax;
    case PORTA_OP_ROPE: return pc_rope;
    case PORTA_OP_KV_APPEND: return pc_kv_update;
    case PORTA_OP_MIXTURE_SAMPLE: return pc_sample;
    default: return pc_attention;
    }
}

static ref_kernel ref_of(porta_op op)
{
    switch (op) {
    case PORTA_OP_COPY: return ref_copy;
    case PORTA_OP_LINEAR: return ref_linear;
    case PORTA_OP_MATMUL: return ref_matmul;
    case PORTA_OP_ADD: return ref_add;
    case PORTA_OP_MUL: return ref_mul;
    case PORTA_OP_SILU: return ref_silu;
    case PORTA_OP_SWIGLU: return ref_swiglu;
    case PORTA_OP_RMSNORM: return ref_rmsnorm;
    case PORTA_OP_LAYERNORM: return ref_layernorm;
    case PORTA_OP_SOFTMAX: return ref_softmax;
    case PORTA_OP_ROPE: return ref_rope;
    case PORTA_OP_KV_APPEND: return ref_kv_append;
    case PORTA_OP_ATTN_CACHED: return ref_attention_cached;
    case PORTA_OP_MIXTURE_SAMPLE: return ref_mixture_sample;
    default: return ref_attention;
    }
}

static porta_node node(porta_op op, const char *name, porta_ref out, std::vector<porta_ref> in)
{
    porta_node n{};
    n.op = op;
    n.name = name;
    n.out = out;
    n.n_in = (int)in.size();
    for (size_t i = 0; i < in.size(); i++) n.in[i] = in[i];
    return n;
}

static porta_ref none()
{
    return porta_ref{};
}

/* Relative L2 error of out (float arena) against ref's values (double). */
static int check(const porta_ref &out, const char *name, double tol)
{
    double num = 0, den = 0, worst = 0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < porta_ref_numel(&out); i++) {
        double y = A.f[offset_of(out, i)], w = A.d[offset_of(out, i)];
        if (!std::isfinite(y) || !std::isfinite(w)) {
            nonfinite++;
            continue;
        }
        num += (y - w) * (y - w);
        den += w * w;
        worst = std::max(worst, std::fabs(y - w));
    }
    double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    int ok = nonfinite == 0 && rel <= tol;
    printf("%-4s %-56s rel_l2 %.2e  max_abs %.2e  (tol %.0e)%s\n", ok ? "ok" : "FAIL", name, rel, worst, tol,
           nonfinite ? "  NON-FINITE" : "");
    return !ok;
}

/* Runs n through the CUDA op file (dry, then live) and through ref, then
 * compares n.out. poison = 0 keeps the output's old contents (a KV cache). */
static void run(porta_node n, const int32_t *step, int rows, double tol, int poison = 1)
{
    if (poison)
        for (int64_t i = 0; i < porta_ref_numel(&n.out); i++) {
            A.f[offset_of(n.out, i)] = NAN;
            A.d[offset_of(n.out, i)] = NAN;
        }
    porta_node rn = n;
    if (n.op == PORTA_OP_LINEAR || n.op == PORTA_OP_MATMUL || n.op == PORTA_OP_SILU)
        for (int i = 0; i < n.n_in; i++)
            if (n.in[i].mem) rn.in[i] = densify(n.in[i]);

    pc_backend be{};
    be.host = &host;
    be.smem_optin = 227 * 1024;
    pc_rec r{};
    r.be = &be;
    r.dry = 1;
    r.arena = A.f.data();
    r.step = step;
    r.step_rows = rows;
    std::vector<float> scratch;
    porta_status st = kernel_of(n.op)(&r, &n);
    if (!st) {
        scratch.assign(r.scratch_elems + 1, NAN);
        r.scratch = scratch.data();
        r.dry = 0;
        st = kernel_of(n.op)(&r, &n);
    }
    if (st) {
        printf("FAIL %s: status %d\n", n.name, (int)st);
        failures++;
        return;
    }
    std::vector<double> ref_scratch(1 << 14);
    ref_ctx c = { &host, A.d.data(), step, rows, ref_scratch.data() };
    ref_of(n.op)(&c, &rn);

    failures += check(n.out, n.name, tol);
    /* Later ops read this output: both memories carry ref's values. */
    for (size_t i = 0; i < A.f.size(); i++) A.f[i] = (float)A.d[i];
}

static char *label(const char *fmt, ...)
{
    static char names[64][128]; /* test program only: nodes keep their name */
    static int next;
    char *s = names[next++ % 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, 128, fmt, ap);
    va_end(ap);
    return s;
}

static void t_copy()
{
    porta_ref x = A.alloc({ 3, 5, 7, 2 });
    porta_ref v = slice(permute(x, { 2, 0, 3, 1 }), 1, 1, 2);
    A.pad(1);
    run(node(PORTA_OP_COPY, "copy permute+slice", A.alloc({ 7, 2, 2, 5 }), { v }), nullptr, 0, 0);
    run(node(PORTA_OP_COPY, "copy dense", A.alloc({ 3, 5, 7, 2 }), { x }), nullptr, 0, 0);
}

static void t_linear(int64_t M, int64_t K, int64_t N, int bias, int xt, int wt)
{
    porta_ref x = xt ? permute(A.alloc({ K, M }), { 1, 0 }) : A.alloc({ M, K });
    porta_ref w = wt ? permute(A.alloc({ K, N }), { 1, 0 }) : A.alloc({ N, K });
    porta_ref b = bias ? A.alloc({ N }) : none();
    A.pad(3);
    run(node(PORTA_OP_LINEAR,
             label("linear %lldx%lld -> %lld%s%s%s", (long long)M, (long long)K, (long long)N, bias ? " +bias" : "",
                   xt ? " x^T view" : "", wt ? " w^T view" : ""),
             A.alloc({ M, N }), { x, w, b }),
        nullptr, 0, 2e-6);
}

static void t_matmul(int64_t Bt, int64_t M, int64_t K, int64_t N, int batched_b, int at, int bt)
{
    porta_ref a = at ? permute(A.alloc({ Bt, K, M }), { 0, 2, 1 }) : A.alloc({ Bt, M, K });
    porta_ref b = batched_b ? (bt ? permute(A.alloc({ Bt, N, K }), { 0, 2, 1 }) : A.alloc({ Bt, K, N }))
                            : (bt ? permute(A.alloc({ N, K }), { 1, 0 }) : A.alloc({ K, N }));
    run(node(PORTA_OP_MATMUL,
             label("matmul [%lld,%lld,%lld] @ %s[%lld,%lld]%s%s", (long long)Bt, (long long)M, (long long)K,
                   batched_b ? "batched " : "", (long long)K, (long long)N, at ? " a^T view" : "",
                   bt ? " b^T view" : ""),
             A.alloc({ Bt, M, N }), { a, b }),
        nullptr, 0, 2e-6);
}

static void t_eltwise()
{
    porta_ref a = A.alloc({ 4, 7, 33 }), b = A.alloc({ 33 });
    run(node(PORTA_OP_ADD, "add [4,7,33] + [33]", A.alloc({ 4, 7, 33 }), { a, b }), nullptr, 0, 2e-6);
    A.pad((int)(4 - A.f.size() % 4));
    porta_ref a2 = A.alloc({ 2, 5, 64 }), b2 = A.alloc({ 5, 64 });
    run(node(PORTA_OP_MUL, "mul [2,5,64] * [5,64] (float4)", A.alloc({ 2, 5, 64 }), { a2, b2 }), nullptr, 0, 2e-6);
    run(node(PORTA_OP_SILU, "silu [13,77]", A.alloc({ 13, 77 }), { A.alloc({ 13, 77 }, 12) }), nullptr, 0, 2e-6);
    A.pad((int)(4 - A.f.size() % 4));
    porta_ref s = A.alloc({ 8, 64 }, 12);
    run(node(PORTA_OP_SILU, "silu [8,64] (float4)", A.alloc({ 8, 64 }), { s }), nullptr, 0, 2e-6);
    porta_ref p = permute(A.alloc({ 64, 8 }, 12), { 1, 0 });
    run(node(PORTA_OP_SILU, "silu [8,64] transposed view", A.alloc({ 8, 64 }), { p }), nullptr, 0, 2e-6);
    run(node(PORTA_OP_SWIGLU, "swiglu [7,258]", A.alloc({ 7, 129 }), { A.alloc({ 7, 258 }, 6) }), nullptr, 0, 2e-6);
}

static void t_norm()
{
    porta_ref x = A.alloc({ 5, 768 }), s = A.alloc({ 768 });
    porta_node n = node(PORTA_OP_RMSNORM, "rmsnorm [5,768] scale", A.alloc({ 5, 768 }), { x, s });
    n.p.eps = 1e-8f;
    run(n, nullptr, 0, 2e-6);
    porta_ref x2 = A.alloc({ 7, 33 }, 3), w = A.alloc({ 33 }), b = A.alloc({ 33 });
    n = node(PORTA_OP_LAYERNORM, "layernorm [7,33] w,b", A.alloc({ 7, 33 }), { x2, w, b });
    n.p.eps = 1e-5f;
    run(n, nullptr, 0, 2e-6);
    n = node(PORTA_OP_LAYERNORM, "layernorm [3,768]", A.alloc({ 3, 768 }), { A.alloc({ 3, 768 }), none(), none() });
    n.p.eps = 1e-6f;
    run(n, nullptr, 0, 2e-6);
    run(node(PORTA_OP_SOFTMAX, "softmax [9,1031]", A.alloc({ 9, 1031 }), { A.alloc({ 9, 1031 }, 20) }), nullptr, 0,
        2e-6);
}

/* Draws are a function of the key and the draw index: the same values as
 * ref's, up to the output's rounding to float. */
static void t_sample()
{
    porta_ref P[4];
    for (int i = 0; i < 4; i++) P[i] = A.alloc({ 3, 5, 24 }, 3);
    porta_ref key = A.alloc({ 4 });
    const float kv[4] = { 12345, 678, 9, 4 };
    for (int i = 0; i < 4; i++) {
        A.f[key.offset + i] = kv[i];
        A.d[key.offset + i] = kv[i];
    }
    run(node(PORTA_OP_MIXTURE_SAMPLE, "mixture_sample [2,3,5] from [3,5,24]", A.alloc({ 2, 3, 5 }),
             { P[0], P[1], P[2], P[3], key }),
        nullptr, 0, 1e-6);
}

static void t_rope()
{
    for (int xpos = 0; xpos < 2; xpos++)
        for (int key = 0; key < 2; key++)
            for (int cached = 0; cached < 2; cached++) {
                porta_ref x = permute(A.alloc({ 2, 3, 6, 64 }), { 0, 2, 1, 3 });
                porta_node n = node(PORTA_OP_ROPE, label("rope xpos %d key %d cached %d", xpos, key, cached),
                                    A.alloc({ 2, 6, 3, 64 }), { x });
                n.p.rope.theta = 10000.0f;
                n.p.rope.scale_base = 512.0f;
                n.p.rope.xpos = xpos;
                n.p.rope.is_key = key;
                n.p.rope.cached = cached;
                const int32_t step[8] = { 1000, 37, 4, 6, 0, 1, 0, 0 }; /* pos, n, src, shared */
                run(n, cached ? step : nullptr, cached ? 2 : 0, 2e-6);
            }
}

/* A layer's rope of q, rotated append of k and append of v from one fused
 * projection, launched as one kernel (pc_rope_group), against ref's rope
 * and kv_append node by node; nodes that depend on one another are not
 * grouped. */
static void t_rope_group(int B, int T, int H, int D, int L, std::vector<int32_t> pos, std::vector<int32_t> cnt)
{
    int rows = (int)pos.size();
    std::vector<int32_t> step(PORTA_STEP_FIELDS * rows);
    for (int b = 0; b < rows; b++) {
        step[b] = pos[b];
        step[rows + b] = cnt[b];
        step[2 * rows + b] = b;
    }
    porta_ref qkv = A.alloc({ B, T, 3, H, D });
    porta_ref kc = A.alloc({ rows, H, L, D }), vc = A.alloc({ rows, H, L, D });
    porta_ref q = A.alloc({ B, T, H, D }), kr = A.alloc({ B, T, H, D });
    porta_node n[3] = { node(PORTA_OP_ROPE, "group: rope q", q, { qkv_part(qkv, 0) }),
                        node(PORTA_OP_KV_APPEND_ROPE, "group: rope + append k", kc, { qkv_part(qkv, 1) }),
                        node(PORTA_OP_KV_APPEND, "group: append v", vc, { qkv_part(qkv, 2) }) };
    for (int k = 0; k < 2; k++) {
        n[k].p.rope = { 10000.0f, 512.0f, 1, k, 1 };
    }
    pc_backend be{};
    be.host = &host;
    be.group = 1;
    int len = pc_rope_group_len(&be, n, 3);
    porta_node dep[2] = { n[0], node(PORTA_OP_ROPE, "rope of the rotated q", kr, { q }) };
    int len_dep = pc_rope_group_len(&be, dep, 2);
    be.group = 0;
    int len_off = pc_rope_group_len(&be, n, 3);
    int ok = len == 3 && len_dep == 1 && len_off == 1;
    printf("%-4s group lengths: independent %d (want 3), dependent %d (want 1), grouping off %d (want 1)\n",
           ok ? "ok" : "FAIL", len, len_dep, len_off);
    failures += !ok;
    for (int64_t i = 0; i < porta_ref_numel(&q); i++) A.f[q.offset + i] = A.d[q.offset + i] = NAN;
    pc_rec r{};
    r.be = &be;
    r.dry = 1;
    r.arena = A.f.data();
    r.step = step.data();
    r.step_rows = rows;
    porta_status st = pc_rope_group(&r, n, 3);
    r.dry = 0;
    if (!st) st = pc_rope_group(&r, n, 3);
    if (st) {
        printf("FAIL rope group: status %d\n", (int)st);
        failures++;
        return;
    }
    std::vector<double> ref_scratch(1 << 14);
    ref_ctx c = { &host, A.d.data(), step.data(), rows, ref_scratch.data() };
    ref_rope(&c, &n[0]);
    porta_node rk = node(PORTA_OP_ROPE, "k", kr, { qkv_part(qkv, 1) });
    rk.p.rope = n[1].p.rope;
    ref_rope(&c, &rk);
    porta_node ak = node(PORTA_OP_KV_APPEND, "k", kc, { kr });
    ref_kv_append(&c, &ak);
    ref_kv_append(&c, &n[2]);
    const char *shape = label("[%d,%d,%d,%d] L %d, pos %d.., n %d..", B, T, H, D, L, pos[0], cnt[0]);
    failures += check(q, label("rope group q %s", shape), 2e-6);
    failures += check(kc, label("rope group k cache %s", shape), 2e-6);
    failures += check(vc, label("rope group v cache %s", shape), 0);
    for (size_t i = 0; i < A.f.size(); i++) A.f[i] = (float)A.d[i];
}

/* kv_append of K and V from a fused projection, then cached attention. A
 * program may cover the first B of more cache rows: rows beyond pos.size()
 * sit in the step block only. Row b > 0 reads its first shared[b] keys from
 * row 0 (a shared prefix) when `shared` is given. */
static void t_cached(int B, int T, int H, int D, int L, std::vector<int32_t> pos, std::vector<int32_t> cnt,
                     std::vector<int32_t> shared = {})
{
    int rows = (int)pos.size();
    std::vector<int32_t> step(PORTA_STEP_FIELDS * rows);
    for (int b = 0; b < rows; b++) {
        step[b] = pos[b];
        step[rows + b] = cnt[b];
        step[3 * rows + b] = shared.empty() ? 0 : shared[b];
        step[2 * rows + b] = step[3 * rows + b] ? 0 : b;
    }
    porta_ref qkv = A.alloc({ B, T, 3, H, D });
    /* Even batches get a 16-byte aligned cache (float4 key loads), odd ones not. */
    A.pad((int)((B % 2 ? 5 : 4) - A.f.size() % 4) % 4);
    porta_ref kc = A.alloc({ rows, H, L, D }), vc = A.alloc({ rows, H, L, D });
    const char *shape = label("[%d,%d,%d,%d] L %d, rows %d, pos %d..%d, n %d..%d%s", B, T, H, D, L, rows, pos[0],
                              pos[B - 1], cnt[0], cnt[B - 1], shared.empty() ? "" : ", shared prefixes");
    run(node(PORTA_OP_KV_APPEND, label("kv_append K %s", shape), kc, { qkv_part(qkv, 1) }), step.data(), rows, 0, 0);
    run(node(PORTA_OP_KV_APPEND, label("kv_append V %s", shape), vc, { qkv_part(qkv, 2) }), step.data(), rows, 0, 0);
    porta_node n = node(PORTA_OP_ATTN_CACHED, label("attention_cached %s", shape), A.alloc({ B, T, H, D }),
                        { qkv_part(qkv, 0), kc, vc });
    n.p.attn.scale = 1.0f / std::sqrt((float)D);
    run(n, step.data(), rows, 2e-6);
}

/* Masks hold -inf at random and on the whole first query row of batch 0. */
static void t_attention(int B, int Tq, int Tk, int H, int D, int Bm, int causal)
{
    porta_ref q = permute(A.alloc({ B, H, Tq, D }), { 0, 2, 1, 3 });
    porta_ref k = permute(A.alloc({ B, H, Tk, D }), { 0, 2, 1, 3 });
    porta_ref v = A.alloc({ B, Tk, H, D });
    porta_ref m = none();
    if (Bm) {
        m = A.alloc({ Bm, Tq, Tk });
        std::mt19937 g(3);
        for (int64_t i = 0; i < (int64_t)Bm * Tq * Tk; i++)
            if (g() % 4 == 0 || i < Tk) A.set(m.offset + i, -INFINITY);
    }
    porta_node n = node(PORTA_OP_ATTN, label("attention [%d,%d,%d,%d,%d] mask %d causal %d", B, Tq, Tk, H, D, Bm, causal),
                        A.alloc({ B, Tq, H, D }), { q, k, v, m });
    n.p.attn.scale = 1.0f / std::sqrt((float)D);
    n.p.attn.causal = causal;
    run(n, nullptr, 0, 2e-6);
}

int main()
{
    A.f.reserve(1 << 23);
    A.d.reserve(1 << 23);
    t_copy();
    t_linear(7, 33, 17, 1, 0, 0);
    t_linear(1, 768, 64, 1, 0, 0);
    t_linear(3, 3080, 20, 1, 0, 0); /* GEMV pieces past the two read before the launch wait */
    t_linear(5, 40, 24, 0, 1, 0);
    t_linear(6, 20, 9, 1, 1, 1);
    t_matmul(6, 17, 19, 5, 0, 0, 0);
    t_matmul(5, 33, 70, 9, 1, 0, 0);
    t_matmul(3, 8, 12, 10, 1, 1, 1);
    t_matmul(3, 8, 12, 10, 0, 0, 1);
    t_eltwise();
    t_norm();
    t_rope();
    t_rope_group(2, 1, 3, 64, 40, { 17, 39 }, { 1, 1 });
    t_rope_group(3, 4, 2, 16, 30, { 0, 28, 9 }, { 4, 2, 0 });
    t_sample();
    /* Decode (T <= 4): one or several splits, rows at split boundaries, idle rows. */
    t_cached(2, 1, 2, 64, 300, { 150, 37 }, { 1, 1 });
    t_cached(3, 1, 2, 64, 300, { 0, 299, 256 }, { 1, 1, 0 });
    t_cached(3, 4, 2, 16, 120, { 10, 0, 116 }, { 4, 2, 3 });
    t_cached(2, 2, 3, 32, 512, { 127, 254 }, { 2, 2 });
    t_cached(2, 3, 1, 256, 4500, { 4000, 1 }, { 2, 3 });
    t_cached(2, 1, 2, 32, 300, { 140, 7, 250 }, { 1, 1, 1 });
    /* Shared prefixes of row 0: ending inside a staged tile, on a tile
     * boundary, across splits, covering every key; rows 1.. append past them. */
    t_cached(4, 1, 2, 64, 300, { 200, 13, 201, 250 }, { 1, 1, 1, 1 }, { 0, 13, 200, 150 });
    t_cached(3, 2, 2, 32, 300, { 260, 130, 260 }, { 2, 2, 1 }, { 0, 128, 7 });
    t_cached(3, 1, 2, 62, 100, { 40, 45, 60 }, { 1, 1, 1 }, { 0, 33, 40 });
    /* Prefill (T > 4): several row tiles, wide heads (opt-in shared memory). */
    t_cached(3, 9, 2, 64, 200, { 100, 20, 50 }, { 9, 9, 4 }, { 0, 20, 37 });
    t_cached(2, 20, 2, 64, 200, { 5, 100 }, { 20, 7 });
    t_cached(2, 40, 2, 128, 200, { 0, 150 }, { 33, 0 });
    t_cached(1, 24, 1, 256, 64, { 3 }, { 24 });
    t_cached(1, 17, 2, 16, 40, { 23 }, { 17 });
    t_cached(2, 9, 2, 32, 40, { 3, 11, 30, 0 }, { 9, 5, 2, 9 });
    t_attention(6, 5, 7, 3, 8, 2, 0);
    t_attention(2, 9, 9, 2, 16, 0, 1);
    t_attention(4, 6, 6, 3, 64, 4, 1);
    t_attention(3, 1, 40, 12, 64, 0, 0);
    t_attention(2, 37, 50, 3, 128, 1, 0);
    t_attention(2, 20, 33, 2, 256, 0, 0);
    t_attention(1, 40, 40, 1, 32, 0, 1);
    printf("%d failed\n", failures);
    return failures != 0;
}
