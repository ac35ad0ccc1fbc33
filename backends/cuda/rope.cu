/* ROPE with Toto's xPos scaling (see porta_rope in graph.h), KV_APPEND_ROPE
 * and KV_APPEND, as jobs of one kernel: a node is one job, and consecutive
 * independent nodes of these ops (a layer's rope of q, rotated append of k and
 * append of v) run as one launch (pc_rope_group_len).
 *
 * Angles: positions reach thousands, so theta^(-2j/D) and its product with
 * the position are formed in double and reduced to [-pi, pi] there; float
 * sin/cos of the reduced angle then err by an ulp. xPos scales
 * u^((p - centre) / scale_base) are float exp(e log u): the exponent is small
 * (Toto centres each chunk), and double pow would make this latency-bound
 * kernel several times slower. Positions and row counts come from the device
 * step block, so the captured kernel is the same at every step. */
#include <math.h>
#include <string.h>
#include "common.cuh"

enum { RJ_DENSE, RJ_CACHE, RJ_COPY };

typedef struct rope_job {
    float *out;          /* RJ_DENSE: dense [B,T,H,D]; else the cache layer [B,H,L,D] */
    const float *x;      /* [B,T,H,D] */
    int64_t xs[4];       /* x strides b, t, h, d */
    int64_t cs[4];       /* cache strides b, h, l, d */
    int64_t items;       /* rotated pairs (RJ_DENSE, RJ_CACHE) or copied elements (RJ_COPY) */
    int B, T, H, D, L;
    int kind, per;       /* per: items per (b, t, h) row, D / 2 or D */
    int cached;          /* positions from the step block; else pos 0, n T */
    int xpos, is_key;
    double log2_theta;
    float scale_base;
} rope_job;

typedef struct rope_jobs {
    rope_job j[PC_ROPE_GROUP];
    int n;
    int rows;            /* step block rows: n[b] is step[rows + b] */
    int early;           /* the step block may be read before the launch wait */
    const int32_t *step;
} rope_jobs;

static __device__ __forceinline__ float xpos_scale(int k, int D, float e)
{
    return expf(e * logf((2.0f * k + 0.4f * D) / (1.4f * D)));
}

/* What item i of the group needs besides x: its job, place, position and
 * (for rotations) the rotation and xPos factors. Reads only the step block. */
typedef struct rope_item {
    int k, b, t, h, e, pos, live;
    float cs, sn, s0, s1;
} rope_item;

static __device__ __forceinline__ rope_item rope_prep(const rope_jobs &g, int64_t i)
{
    rope_item it;
    it.k = 0;
    int64_t w = i;
    while (w >= g.j[it.k].items) w -= g.j[it.k++].items;
    const rope_job &a = g.j[it.k];
    it.e = (int)(w % a.per);
    int64_t r = w / a.per;
    it.h = (int)(r % a.H);
    r /= a.H;
    it.t = (int)(r % a.T);
    it.b = (int)(r / a.T);
    int cnt = a.T;
    it.pos = 0;
    if (a.cached) {
        it.pos = g.step[it.b];
        cnt = g.step[g.rows + it.b];
    }
    /* The host refuses steps that overflow; the bound keeps a bad step
     * block from writing outside the cache. */
    it.live = !(it.t >= cnt || (a.kind != RJ_DENSE && it.pos + it.t >= a.L));
    it.cs = 1.0f;
    it.sn = 0.0f;
    it.s0 = it.s1 = 1.0f;
    if (!it.live || a.kind == RJ_COPY) return it;
    int j = it.e, half = a.D / 2;
    double ang = (double)(it.pos + it.t) * exp2(-2.0 * j / a.D * a.log2_theta);
    ang -= rint(ang * 0.15915494309189535) * 6.283185307179586;
    sincosf((float)ang, &it.sn, &it.cs);
    if (a.xpos) {
        int centre = (it.pos + cnt - 1) / 2;
        float ex = (float)(it.pos + it.t - centre) / a.scale_base;
        if (a.is_key) ex = -ex;
        it.s0 = xpos_scale((2 * j) % half, a.D, ex);
        it.s1 = xpos_scale((2 * j + 1) % half, a.D, ex);
    }
    return it;
}

static __device__ __forceinline__ void rope_item_run(const rope_jobs &g, const rope_item &it)
{
    const rope_job &a = g.j[it.k];
    const int b = it.b, t = it.t, h = it.h, e = it.e;
    if (!it.live) {
        if (a.kind == RJ_DENSE) {
            float *y = a.out + (((int64_t)b * a.T + t) * a.H + h) * a.D + 2 * e;
            y[0] = y[1] = 0.0f;
        }
        return;
    }
    const float *x = a.x + b * a.xs[0] + t * a.xs[1] + h * a.xs[2];
    float *c = a.out + b * a.cs[0] + h * a.cs[1] + (int64_t)(it.pos + t) * a.cs[2];
    if (a.kind == RJ_COPY) {
        c[e * a.cs[3]] = x[e * a.xs[3]];
        return;
    }
    int j = e;
    double x0 = x[2 * j * a.xs[3]], x1 = x[(2 * j + 1) * a.xs[3]];
    double y0 = x0 * it.cs - x1 * it.sn, y1 = x1 * it.cs + x0 * it.sn;
    if (a.xpos) {
        y0 *= it.s0;
        y1 *= it.s1;
    }
    if (a.kind == RJ_DENSE) {
        float *y = a.out + (((int64_t)b * a.T + t) * a.H + h) * a.D + 2 * j;
        y[0] = (float)y0;
        y[1] = (float)y1;
    } else {
        c[2 * j * a.cs[3]] = (float)y0;
        c[(2 * j + 1) * a.cs[3]] = (float)y1;
    }
}

/* With g.early (pc_early) a thread reads the step block and forms its first
 * item's angles before the launch wait; only x and the stores wait. */
static __global__ void rope_kernel(rope_jobs g)
{
    int64_t total = 0;
    for (int k = 0; k < g.n; k++) total += g.j[k].items;
    const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
    rope_item it = {};
    if (g.early && first < total) it = rope_prep(g, first);
    pc_dep_wait();
    for (int64_t i = first; i < total; i += stride) {
        if (!g.early || i != first) it = rope_prep(g, i);
        rope_item_run(g, it);
    }
}

/* Checks node n and describes it as a job (pointers only when live).
 * ROPE writes a dense [B,T,H,D]; KV_APPEND_ROPE and KV_APPEND write the
 * step's rows into the cache layer [B,H,L,D] at pos[b] + t. */
static porta_status rope_job_of(const pc_rec *r, const porta_node *n, rope_job *a)
{
    const porta_ref *x = &n->in[0], *o = &n->out;
    int copy = n->op == PORTA_OP_KV_APPEND, cache = copy || n->op == PORTA_OP_KV_APPEND_ROPE;
    if (x->ndim != 4 || o->ndim != 4 || (!copy && x->shape[3] % 2 != 0))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: %s wants x[B,T,H,D]%s", n->name, copy ? "kv_append" : "rope",
                       copy ? "" : " with D even");
    for (int i = 0; i < 4; i++)
        if (x->shape[i] > 0x7fffffff || o->shape[i] > 0x7fffffff)
            return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: dims past 2^31", n->name);
    if (cache ? x->shape[0] > o->shape[0] || x->shape[2] != o->shape[1] || x->shape[3] != o->shape[3]
              : x->shape[0] != o->shape[0] || x->shape[1] != o->shape[1] || x->shape[2] != o->shape[2] ||
                    x->shape[3] != o->shape[3])
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: x[B,T,H,D] into %s", n->name,
                       cache ? "a cache layer [B,H,L,D]" : "an output of its shape");
    if (!cache && !porta_ref_dense(o))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: rope into a strided output", n->name);
    memset(a, 0, sizeof *a);
    a->B = (int)x->shape[0];
    a->T = (int)x->shape[1];
    a->H = (int)x->shape[2];
    a->D = (int)x->shape[3];
    a->L = cache ? (int)o->shape[2] : 0;
    a->kind = copy ? RJ_COPY : cache ? RJ_CACHE : RJ_DENSE;
    a->per = copy ? a->D : a->D / 2;
    a->cached = cache || n->p.rope.cached;
    if (a->cached && a->B > r->step_rows)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: batch %d but the step block has %d rows", n->name, a->B,
                       r->step_rows);
    a->items = (int64_t)a->B * a->T * a->H * a->per;
    if (!copy) {
        a->log2_theta = log2((double)n->p.rope.theta);
        a->scale_base = n->p.rope.scale_base;
        a->xpos = n->p.rope.xpos;
        a->is_key = n->p.rope.is_key;
    }
    if (r->dry) return PORTA_OK;
    a->out = pc_ptr(r, o);
    a->x = pc_ptr(r, x);
    for (int i = 0; i < 4; i++) {
        a->xs[i] = x->stride[i];
        a->cs[i] = cache ? o->stride[i] : 0;
    }
    return PORTA_OK;
}

static int rope_op(const porta_node *n)
{
    return n->op == PORTA_OP_ROPE || n->op == PORTA_OP_KV_APPEND_ROPE || n->op == PORTA_OP_KV_APPEND;
}

extern "C" int pc_rope_group_len(const pc_backend *be, const porta_node *nodes, int n_left)
{
    if (!be->group || n_left < 1 || !rope_op(&nodes[0])) return 1;
    int g = 1;
    for (; g < n_left && g < PC_ROPE_GROUP && rope_op(&nodes[g]); g++) {
        /* Nodes of one launch run in no order: none may write what another
         * reads or writes. */
        int clash = 0;
        for (int k = 0; k < g && !clash; k++)
            clash = porta_ref_overlap(&nodes[g].out, &nodes[k].out) ||
                    porta_ref_overlap(&nodes[g].out, &nodes[k].in[0]) ||
                    porta_ref_overlap(&nodes[k].out, &nodes[g].in[0]);
        if (clash) break;
    }
    return g;
}

extern "C" porta_status pc_rope_group(pc_rec *r, const porta_node *nodes, int g)
{
    if (g < 1 || g > PC_ROPE_GROUP)
        return PC_FAIL(r, PORTA_ERR_ARG, "cuda %s: a group of %d rope nodes", nodes[0].name, g);
    rope_jobs jobs;
    memset(&jobs, 0, sizeof jobs);
    int64_t total = 0;
    for (int k = 0; k < g; k++) {
        rope_job a;
        porta_status st = rope_job_of(r, &nodes[k], &a);
        if (st) return st;
        if (a.items > 0) jobs.j[jobs.n++] = a;
        total += a.items;
    }
    if (r->dry || total == 0) return PORTA_OK;
    jobs.step = r->step;
    jobs.rows = r->step_rows;
    jobs.early = pc_early(r);
    PC_CK(r->be, pc_launch(r, rope_kernel, dim3(pc_blocks(total, PC_THREADS)), dim3(PC_THREADS), 0, jobs));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

extern "C" porta_status pc_rope(pc_rec *r, const porta_node *n)
{
    return pc_rope_group(r, n, 1);
}

extern "C" porta_status pc_kv_update(pc_rec *r, const porta_node *n)
{
    return pc_rope_group(r, n, 1);
}
