/* compile: dead-node removal, liveness-based memory planning, one hand-over
 * to the backend (which captures or records once). run: step block, overflow
 * checks, one replay. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define ARENA_ALIGN 64 /* elements: 256 bytes, enough for any vector load */

struct porta_program {
    porta_backend *be;
    void *impl;
    porta_kvcache *kv;
    int chunk;              /* T: the most rows a step may append */
    int batch;              /* cache rows 0..batch-1 are the program's */
    porta_plan plan;
    porta_node *nodes;
    porta_ref *io;          /* inputs then outputs */
    char *names;            /* node names, one block */
    int32_t *step;          /* pos, n, src, shared [rows] each: plan.h */
    porta_backend_counts counts;
    porta_program_stats stats;
    int n_traced;
    porta_node_info *traced;
    char *traced_names;
};

typedef struct span { int64_t off, len; } span;

/* First-fit allocator over the arena, free list sorted by offset. */
typedef struct arena {
    span *free;
    int n, cap;
    int64_t top;
} arena;

static int64_t round_up(int64_t n) { return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; }

static int64_t arena_alloc(arena *a, int64_t len)
{
    len = round_up(len);
    for (int i = 0; i < a->n; i++) {
        if (a->free[i].len >= len) {
            int64_t off = a->free[i].off;
            a->free[i].off += len;
            a->free[i].len -= len;
            if (a->free[i].len == 0) {
                memmove(&a->free[i], &a->free[i + 1], (size_t)(a->n - i - 1) * sizeof *a->free);
                a->n--;
            }
            return off;
        }
    }
    /* Grow the top, absorbing a free span that ends there. */
    if (a->n && a->free[a->n - 1].off + a->free[a->n - 1].len == a->top) {
        int64_t off = a->free[a->n - 1].off;
        a->n--;
        a->top = off + len;
        return off;
    }
    int64_t off = a->top;
    a->top += len;
    return off;
}

static int arena_free(arena *a, int64_t off, int64_t len)
{
    len = round_up(len);
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        span *f = realloc(a->free, (size_t)cap * sizeof *f);
        if (!f) return 0;
        a->free = f;
        a->cap = cap;
    }
    int i = 0;
    while (i < a->n && a->free[i].off < off) i++;
    memmove(&a->free[i + 1], &a->free[i], (size_t)(a->n - i) * sizeof *a->free);
    a->free[i] = (span){ off, len };
    a->n++;
    /* Coalesce with the right, then the left neighbour. */
    if (i + 1 < a->n && a->free[i].off + a->free[i].len == a->free[i + 1].off) {
        a->free[i].len += a->free[i + 1].len;
        memmove(&a->free[i + 1], &a->free[i + 2], (size_t)(a->n - i - 2) * sizeof *a->free);
        a->n--;
    }
    if (i > 0 && a->free[i - 1].off + a->free[i - 1].len == a->free[i].off) {
        a->free[i - 1].len += a->free[i].len;
        memmove(&a->free[i], &a->free[i + 1], (size_t)(a->n - i - 1) * sizeof *a->free);
        a->n--;
    }
    return 1;
}

/* Storage of roots that live in the arena: inputs and nodes without an
 * external buffer. */
static int in_arena(const porta_tensor *r) { return r->kind == PORTA_T_INPUT || (r->kind == PORTA_T_NODE && !r->ext); }

static porta_status make_ref(const porta_tensor *t, const int64_t *arena_off, porta_ref *ref)
{
    const porta_tensor *r = t->root;
    memset(ref, 0, sizeof *ref);
    ref->ndim = t->ndim;
    memcpy(ref->shape, t->shape, sizeof ref->shape);
    memcpy(ref->stride, t->stride, sizeof ref->stride);
    ref->dtype = PORTA_F32;
    if (in_arena(r)) {
        ref->mem = PORTA_MEM_ARENA;
        ref->offset = arena_off[r->id] + t->offset;
    } else if (r->kind == PORTA_T_PARAM) {
        ref->mem = PORTA_MEM_BUFFER;
        ref->buf = r->buf->impl;
        ref->dtype = r->buf->dtype;
        ref->offset = t->offset;
    } else {
        ref->mem = PORTA_MEM_BUFFER;
        ref->buf = r->ext->impl;
        ref->dtype = r->ext->dtype;
        ref->offset = t->offset;
    }
    return PORTA_OK;
}

/* Marks what the outputs and cache writes need; returns the live node count. */
static int mark_live(const porta_graph *g, char *live)
{
    for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i]->id] = 1;
    for (int i = 0; i < g->n; i++)
        if (g->t[i]->kind == PORTA_T_NODE && g->t[i]->op == PORTA_OP_KV_APPEND) live[i] = 1;
    int nodes = 0;
    for (int i = g->n - 1; i >= 0; i--) {
        const porta_tensor *t = g->t[i];
        if (!live[i]) continue;
        if (t->kind == PORTA_T_NODE) nodes++;
        live[t->root->id] = 1;
        for (int k = 0; k < t->n_in; k++)
            if (t->in[k]) live[t->in[k]->id] = 1;
    }
    return nodes;
}

static porta_status check_backends(const porta_graph *g, const porta_backend *be, const char *live)
{
    for (int i = 0; i < g->n; i++) {
        const porta_tensor *t = g->t[i];
        if (!live[i]) continue;
        if (t->kind == PORTA_T_PARAM && t->buf->be != be)
            return porta_fail(PORTA_ERR_ARG, "porta_compile: parameter '%s' lives on backend %s, program compiles for %s",
                              t->name, t->buf->be->vt->kind, be->vt->kind);
        if (t->kv && t->kv->be != be)
            return porta_fail(PORTA_ERR_ARG, "porta_compile: node '%s' uses a KV cache of backend %s, program compiles for %s",
                              t->name, t->kv->be->vt->kind, be->vt->kind);
        if (t->kind == PORTA_T_NODE && t->op == PORTA_OP_MIXTURE_SAMPLE && !(be->vt->caps & PORTA_CAP_MIXTURE_SAMPLE))
            return porta_fail(PORTA_ERR_UNSUPPORTED, "porta_compile: node '%s': backend %s does not run %s", t->name,
                              be->vt->kind, porta_op_name(t->op));
    }
    return PORTA_OK;
}

/* The chunk capacity T and batch B shared by every step-dependent node. */
static porta_status find_chunk(const porta_graph *g, const char *live, int *chunk, int *batch)
{
    *chunk = 0;
    *batch = 0;
    for (int i = 0; i < g->n; i++) {
        const porta_tensor *t = g->t[i];
        if (!live[i] || t->kind != PORTA_T_NODE || !t->kv) continue;
        int T = (int)t->in[0]->shape[1], B = (int)t->in[0]->shape[0];
        if ((*chunk && T != *chunk) || (*batch && B != *batch))
            return porta_fail(PORTA_ERR_SHAPE,
                              "porta_compile: node '%s' appends %d rows to %d sequences, another node %d to %d", t->name,
                              T, B, *chunk, *batch);
        *chunk = T;
        *batch = B;
    }
    return PORTA_OK;
}

static void free_program(porta_program *p)
{
    if (!p) return;
    free(p->traced);
    free(p->traced_names);
    free(p->nodes);
    free(p->io);
    free(p->names);
    free(p->step);
    free(p);
}

/* ---- fusion --------------------------------------------------------------
 * For backends with PORTA_CAP_FUSED_LINEAR, chains around a linear become one
 * PORTA_OP_LINEAR_FUSED node: rmsnorm -> linear, linear -> swiglu and
 * linear -> add (residual); with PORTA_CAP_FUSED_ROPE_APPEND a cached rope
 * into a KV_APPEND becomes one PORTA_OP_KV_APPEND_ROPE node. A node is absorbed only when its result has no
 * other reader and is no output (so traced programs, whose every node is an
 * output, are never fused); the fused node takes the place of the chain's
 * last node. PORTA_NO_FUSE=1 in the environment turns the pass off. */

/* What a planned node computes: the tensor's own op and inputs, or a fusion. */
typedef struct pnode {
    porta_op op;
    int n_in;
    porta_tensor *in[PORTA_PLAN_MAX_IN];
    porta_node params;
} pnode;

static pnode own_node(const porta_tensor *t)
{
    pnode d;
    memset(&d, 0, sizeof d);
    d.op = t->op;
    d.n_in = t->n_in;
    memcpy(d.in, t->in, sizeof d.in);
    d.params = t->params;
    return d;
}

/* Rows of a unit-stride last dim whose leading dims collapse to one stride. */
static int row_major_rows(const porta_tensor *t)
{
    if (t->ndim < 1 || (t->shape[t->ndim - 1] != 1 && t->stride[t->ndim - 1] != 1)) return 0;
    int64_t n = 1, st = 0;
    int have = 0;
    for (int i = t->ndim - 2; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (!have) st = t->stride[i], have = 1;
        else if (t->stride[i] != st * n) return 0;
        n *= t->shape[i];
    }
    return 1;
}

/* A plain (non-fused-away) linear node that only `reader` reads, directly. */
static int sole_linear(const porta_tensor *t, const int *uses, const char *emit, const pnode *d)
{
    return t && t->kind == PORTA_T_NODE && t->root == t && !t->ext && emit[t->id] && uses[t->id] == 1 &&
           (d[t->id].op == PORTA_OP_LINEAR || d[t->id].op == PORTA_OP_LINEAR_FUSED);
}

static void as_fused(pnode *n)
{
    if (n->op == PORTA_OP_LINEAR_FUSED) return;
    n->op = PORTA_OP_LINEAR_FUSED;
    n->n_in = 5;
    memset(&n->params.p, 0, sizeof n->params.p);
}

/* Rows of a linear's result (its leading dims). */
static int64_t linear_rows(const porta_tensor *t)
{
    int64_t n = t->shape[t->ndim - 1];
    return n > 0 ? porta_tensor_numel(t) / n : 0;
}

static void fuse(const porta_graph *g, const porta_backend_vt *vt, char *emit, pnode *d, int *uses)
{
    unsigned caps = vt->caps;
    int64_t max_rows = vt->fuse_max_rows > 0 ? vt->fuse_max_rows : INT64_MAX;
    for (int i = 0; i < g->n; i++) {
        const porta_tensor *t = g->t[i];
        if (!emit[i]) continue;
        for (int k = 0; k < t->n_in; k++)
            if (t->in[k]) uses[t->in[k]->root->id]++;
    }
    for (int i = 0; i < g->n_outputs; i++) uses[g->outputs[i]->root->id] += 1 << 20;
    for (int i = 0; i < g->n; i++) {
        const porta_tensor *t = g->t[i];
        if (!emit[i]) continue;
        pnode *n = &d[i];
        if (t->op == PORTA_OP_KV_APPEND) {
            /* A cached rope -> the cache: the rope's result is read by this node alone. */
            const porta_tensor *r = t->in[0];
            if ((caps & PORTA_CAP_FUSED_ROPE_APPEND) && r->kind == PORTA_T_NODE && r->root == r &&
                r->op == PORTA_OP_ROPE && r->params.p.rope.cached && !r->ext && emit[r->id] && uses[r->id] == 1) {
                n->op = PORTA_OP_KV_APPEND_ROPE;
                n->in[0] = r->in[0];
                n->params.p.rope = r->params.p.rope;
                emit[r->id] = 0;
            }
            continue;
        }
        if (!(caps & PORTA_CAP_FUSED_LINEAR)) continue;
        if (t->op == PORTA_OP_LINEAR && linear_rows(t) <= max_rows) {
            /* rmsnorm -> linear, the norm's result read whole, maybe reshaped. */
            const porta_tensor *v = t->in[0], *r = v->root;
            if (r->kind == PORTA_T_NODE && r->op == PORTA_OP_RMSNORM && emit[r->id] && uses[r->id] == 1 && !r->ext &&
                v->offset == 0 && porta_tensor_dense(v) && porta_tensor_numel(v) == porta_tensor_numel(r) &&
                v->shape[v->ndim - 1] == r->shape[r->ndim - 1] && row_major_rows(r->in[0])) {
                as_fused(n);
                n->in[0] = r->in[0];
                n->in[4] = r->in[1];
                n->params.p.lin.norm = 1;
                n->params.p.lin.eps = r->params.p.eps;
                emit[r->id] = 0;
            }
        } else if (t->op == PORTA_OP_SWIGLU && sole_linear(t->in[0], uses, emit, d) &&
                   linear_rows(t->in[0]) <= max_rows && !d[t->in[0]->id].params.p.lin.swiglu &&
                   !(d[t->in[0]->id].op == PORTA_OP_LINEAR_FUSED && d[t->in[0]->id].in[3])) {
            *n = d[t->in[0]->id];
            as_fused(n);
            n->params.p.lin.swiglu = 1;
            emit[t->in[0]->id] = 0;
        } else if (t->op == PORTA_OP_ADD) {
            for (int k = 0; k < 2; k++) {
                /* The linear's result, maybe through a reshape that keeps its rows. */
                const porta_tensor *v = t->in[k], *l = v->root, *res = t->in[1 - k];
                if (v != l && (v->offset || !porta_tensor_dense(v) || v->shape[v->ndim - 1] != l->shape[l->ndim - 1]))
                    continue;
                if (!sole_linear(l, uses, emit, d) || (!vt->fuse_res_any_rows && linear_rows(l) > max_rows) ||
                    (d[l->id].op == PORTA_OP_LINEAR_FUSED && d[l->id].in[3]) ||
                    porta_tensor_numel(l) != porta_tensor_numel(t) || porta_tensor_numel(res) != porta_tensor_numel(t) ||
                    !porta_tensor_dense(res) || res->root->kind == PORTA_T_PARAM)
                    continue;
                *n = d[l->id];
                as_fused(n);
                n->in[3] = t->in[1 - k];
                emit[l->id] = 0;
                break;
            }
        }
    }
}

static porta_status plan_program(porta_graph *g, porta_program *p, const char *live)
{
    int64_t *arena_off = calloc((size_t)g->n, sizeof *arena_off);
    int *last_use = calloc((size_t)g->n, sizeof *last_use);
    int *uses = calloc((size_t)g->n, sizeof *uses);
    char *emit = calloc((size_t)g->n, 1);
    pnode *d = calloc((size_t)g->n, sizeof *d);
    if (!uses || !emit || !d) {
        free(arena_off);
        free(last_use);
        free(uses);
        free(emit);
        free(d);
        return porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
    }
    for (int i = 0; i < g->n; i++) {
        emit[i] = live[i] && g->t[i]->kind == PORTA_T_NODE;
        if (emit[i]) d[i] = own_node(g->t[i]);
    }
    const char *no_fuse = getenv("PORTA_NO_FUSE");
    unsigned fusions = PORTA_CAP_FUSED_LINEAR | PORTA_CAP_FUSED_ROPE_APPEND;
    if ((p->be->vt->caps & fusions) && !(no_fuse && strcmp(no_fuse, "1") == 0)) fuse(g, p->be->vt, emit, d, uses);
    int n_nodes = 0;
    for (int i = 0; i < g->n; i++) n_nodes += emit[i];
    p->stats.nodes = (uint64_t)n_nodes;
    p->nodes = calloc((size_t)(n_nodes ? n_nodes : 1), sizeof *p->nodes);
    p->io = calloc((size_t)(g->n_inputs + g->n_outputs + 1), sizeof *p->io);
    p->names = calloc((size_t)(n_nodes ? n_nodes : 1), sizeof(((porta_tensor *)0)->name));
    arena a = { 0 };
    porta_status s = PORTA_OK;
    if (!arena_off || !last_use || !p->nodes || !p->io || !p->names) {
        s = porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
        goto done;
    }
    /* Last use of every arena root, through any view. Outputs never die. */
    enum { FOREVER = 0x7fffffff };
    for (int i = 0; i < g->n; i++) {
        if (!emit[i]) continue;
        for (int k = 0; k < d[i].n_in; k++)
            if (d[i].in[k] && last_use[d[i].in[k]->root->id] < i) last_use[d[i].in[k]->root->id] = i;
    }
    for (int i = 0; i < g->n_outputs; i++) last_use[g->outputs[i]->root->id] = FOREVER;
    /* Inputs are rewritten at every run, so they hold their place throughout. */
    for (int i = 0; i < g->n; i++)
        if (live[i] && g->t[i]->kind == PORTA_T_INPUT) {
            arena_off[i] = arena_alloc(&a, porta_tensor_numel(g->t[i]));
            last_use[i] = FOREVER;
        }
    int64_t naive = 0;
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        const porta_tensor *t = g->t[i];
        if (!emit[i]) continue;
        const pnode *dn = &d[i];
        if (in_arena(t)) {
            arena_off[i] = arena_alloc(&a, porta_tensor_numel(t));
            naive += round_up(porta_tensor_numel(t));
            if (last_use[i] == 0) last_use[i] = i; /* unused result (a cache write): free at once */
        }
        porta_node *n = &p->nodes[k];
        char *name = p->names + (size_t)k * sizeof t->name;
        memcpy(name, t->name, sizeof t->name);
        n->op = dn->op;
        n->name = name;
        n->p = dn->params.p;
        make_ref(t, arena_off, &n->out);
        n->n_in = dn->n_in;
        for (int j = 0; j < dn->n_in; j++)
            if (dn->in[j]) make_ref(dn->in[j], arena_off, &n->in[j]);
        k++;
        /* Free every arena root whose last reader is this node (after its own
         * output was placed, so a node never reads and writes one span). */
        for (int j = 0; j < dn->n_in; j++) {
            const porta_tensor *r = dn->in[j] ? dn->in[j]->root : NULL;
            if (r && in_arena(r) && last_use[r->id] == i) {
                last_use[r->id] = -1;
                if (!arena_free(&a, arena_off[r->id], porta_tensor_numel(r))) {
                    s = porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
                    goto done;
                }
            }
        }
        if (in_arena(t) && last_use[i] == i) {
            last_use[i] = -1;
            if (!arena_free(&a, arena_off[i], porta_tensor_numel(t))) {
                s = porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
                goto done;
            }
        }
    }
    int n_io = 0;
    for (int i = 0; i < g->n; i++)
        if (live[i] && g->t[i]->kind == PORTA_T_INPUT) make_ref(g->t[i], arena_off, &p->io[g->t[i]->input_index]);
    n_io = g->n_inputs;
    for (int i = 0; i < g->n_outputs; i++) make_ref(g->outputs[i], arena_off, &p->io[n_io + i]);
    p->plan.n_nodes = k;
    p->plan.nodes = p->nodes;
    p->plan.arena_elems = a.top;
    p->plan.n_inputs = g->n_inputs;
    p->plan.n_outputs = g->n_outputs;
    p->plan.inputs = p->io;
    p->plan.outputs = p->io + n_io;
    p->plan.step_rows = p->kv ? p->kv->d.rows : 0;
    p->stats.arena_bytes = (uint64_t)a.top * 4;
    p->stats.naive_bytes = (uint64_t)naive * 4;
done:
    free(a.free);
    free(arena_off);
    free(last_use);
    free(uses);
    free(emit);
    free(d);
    return s;
}

/* Results a trace reads back: nodes in the arena (a cache write's result is
 * the whole cache). */
static int traceable(const porta_tensor *t) { return t->kind == PORTA_T_NODE && !t->ext; }

/* The producing node of a tensor, through views and cache writes. */
static const porta_tensor *producer(const porta_tensor *t)
{
    t = t->root;
    while (t->kind == PORTA_T_NODE && t->ext && t->n_in) t = t->in[0]->root;
    return t;
}

/* Adds every live node as an output and records what each trace slot is. */
static porta_status add_trace_outputs(porta_graph *g, porta_program *p, const char *live)
{
    int n = 0;
    for (int i = 0; i < g->n; i++) n += live[i] && traceable(g->t[i]);
    int *slot = malloc((size_t)g->n * sizeof *slot);
    p->traced = calloc((size_t)(n ? n : 1), sizeof *p->traced);
    p->traced_names = calloc((size_t)(n ? n : 1), sizeof(((porta_tensor *)0)->name));
    if (!slot || !p->traced || !p->traced_names) {
        free(slot);
        return porta_fail(PORTA_ERR_NOMEM, "porta_compile_traced: out of memory");
    }
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        slot[i] = -1;
        const porta_tensor *t = g->t[i];
        if (!live[i] || !traceable(t)) continue;
        porta_node_info *ni = &p->traced[k];
        char *name = p->traced_names + (size_t)k * sizeof t->name;
        memcpy(name, t->name, sizeof t->name);
        ni->name = name;
        ni->op = porta_op_name(t->op);
        ni->output = g->n_outputs;
        ni->ndim = t->ndim;
        memcpy(ni->shape, t->shape, sizeof ni->shape);
        ni->n_inputs = t->n_in;
        for (int j = 0; j < t->n_in; j++) ni->inputs[j] = t->in[j] ? slot[producer(t->in[j])->id] : -1;
        slot[i] = k++;
        if (porta_output(g, g->t[i]) != PORTA_OK) {
            free(slot);
            return g->err;
        }
    }
    p->n_traced = k;
    free(slot);
    return PORTA_OK;
}

static porta_status compile(porta_graph *g, porta_backend *be, int trace, porta_program **out);

porta_status porta_compile(porta_graph *g, porta_backend *be, porta_program **out)
{
    return compile(g, be, 0, out);
}

porta_status porta_compile_traced(porta_graph *g, porta_backend *be, porta_program **out)
{
    return compile(g, be, 1, out);
}

static porta_status compile(porta_graph *g, porta_backend *be, int trace, porta_program **out)
{
    if (!out) return porta_fail(PORTA_ERR_ARG, "porta_compile: out is NULL");
    *out = NULL;
    if (!g || !be) return porta_fail(PORTA_ERR_ARG, "porta_compile: NULL graph or backend");
    if (g->err != PORTA_OK) return porta_fail(g->err, "porta_compile: the graph failed to build: %s", g->errmsg);
    char *live = calloc((size_t)(g->n ? g->n : 1), 1);
    porta_program *p = calloc(1, sizeof *p);
    if (!live || !p) {
        free(live);
        free(p);
        return porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
    }
    p->be = be;
    p->kv = g->kv;
    p->stats.nodes = (uint64_t)mark_live(g, live);
    int user_outputs = g->n_outputs;
    if (trace) {
        porta_status ts = add_trace_outputs(g, p, live);
        if (ts != PORTA_OK) {
            g->n_outputs = user_outputs;
            free(live);
            free_program(p);
            return ts;
        }
    }
    porta_status s = PORTA_OK;
    if (p->stats.nodes == 0 && g->n_outputs == 0)
        s = porta_fail(PORTA_ERR_ARG, "porta_compile: the graph has no outputs and writes no cache");
    for (int i = 0; s == PORTA_OK && i < g->n; i++)
        if (g->t[i]->kind == PORTA_T_INPUT && !live[i])
            s = porta_fail(PORTA_ERR_ARG, "porta_compile: input '%s' is not used by any output", g->t[i]->name);
    if (s == PORTA_OK) s = check_backends(g, be, live);
    if (s == PORTA_OK) s = find_chunk(g, live, &p->chunk, &p->batch);
    if (s == PORTA_OK && p->kv) {
        p->step = calloc((size_t)p->kv->d.rows * PORTA_STEP_FIELDS, sizeof *p->step);
        if (!p->step) s = porta_fail(PORTA_ERR_NOMEM, "porta_compile: out of memory");
    }
    if (s == PORTA_OK) s = plan_program(g, p, live);
    g->n_outputs = user_outputs; /* the graph stays as the caller built it */
    free(live);
    if (s == PORTA_OK) s = be->vt->prog_new(be->impl, &p->plan, &p->counts, &p->impl);
    if (s != PORTA_OK) {
        free_program(p);
        return s;
    }
    p->stats.compiles = 1;
    *out = p;
    return PORTA_OK;
}

void porta_program_free(porta_program *p)
{
    if (!p) return;
    if (p->impl) p->be->vt->prog_free(p->impl);
    free_program(p);
}

porta_status porta_run(porta_program *p, const porta_step *st)
{
    if (!p || !st) return porta_fail(PORTA_ERR_ARG, "porta_run: NULL program or step");
    if (p->plan.n_inputs && !st->inputs)
        return porta_fail(PORTA_ERR_ARG, "porta_run: the program has %d inputs and step.inputs is NULL", p->plan.n_inputs);
    for (int i = 0; i < p->plan.n_inputs; i++)
        if (!st->inputs[i]) return porta_fail(PORTA_ERR_ARG, "porta_run: input %d is NULL", i);
    porta_kvcache *kv = p->kv;
    if (kv) {
        int rows = kv->d.rows;
        if (!st->row_new && (st->n_new < 1 || st->n_new > p->chunk))
            return porta_fail(PORTA_ERR_ARG, "porta_run: n_new %d outside 1..%d (the program's chunk)", st->n_new, p->chunk);
        for (int b = 0; b < rows; b++) {
            int n = st->row_new ? st->row_new[b] : (b < p->batch ? st->n_new : 0);
            if (n && b >= p->batch)
                return porta_fail(PORTA_ERR_ARG, "porta_run: row %d appends %d rows, but the program covers rows 0..%d",
                                  b, n, p->batch - 1);
            if (n < 0 || n > p->chunk)
                return porta_fail(PORTA_ERR_ARG, "porta_run: row %d appends %d rows, outside 0..%d", b, n, p->chunk);
            if (n > kv->d.max_len - kv->len[b])
                return porta_fail(PORTA_ERR_OVERFLOW,
                                  "porta_run: row %d holds %d of %d positions; appending %d would overflow the cache",
                                  b, kv->len[b], kv->d.max_len, n);
            /* A program sees the cache rows it covers, and no others. */
            if (b < p->batch && kv->shared[b] && kv->src[b] >= p->batch)
                return porta_fail(PORTA_ERR_ARG,
                                  "porta_run: row %d reads the prefix it shares from row %d, outside the program's "
                                  "rows 0..%d",
                                  b, kv->src[b], p->batch - 1);
            if (n && kv->len[b] < kv->keep[b])
                return porta_fail(PORTA_ERR_ARG,
                                  "porta_run: row %d would append at position %d, inside the prefix of %d positions "
                                  "other rows share",
                                  b, kv->len[b], kv->keep[b]);
            p->step[b] = kv->len[b];
            p->step[rows + b] = n;
            p->step[2 * rows + b] = kv->src[b];
            p->step[3 * rows + b] = kv->shared[b];
        }
    }
    porta_status s = p->be->vt->prog_run(p->impl, p->step, st->inputs, st->outputs);
    if (s != PORTA_OK) return s;
    if (kv)
        for (int b = 0; b < kv->d.rows; b++) kv->len[b] += p->step[kv->d.rows + b];
    p->stats.replays++;
    return PORTA_OK;
}

porta_status porta_program_wait(porta_program *p)
{
    if (!p) return porta_fail(PORTA_ERR_ARG, "porta_program_wait: program is NULL");
    return p->be->vt->prog_wait(p->impl);
}

porta_status porta_program_stats_get(const porta_program *p, porta_program_stats *st)
{
    if (!p || !st) return porta_fail(PORTA_ERR_ARG, "porta_program_stats_get: NULL argument");
    *st = p->stats;
    st->captures = p->counts.captures;
    st->records = p->counts.records;
    st->prefetches = p->counts.prefetches;
    st->chained = p->counts.chained;
    return PORTA_OK;
}

int porta_program_n_inputs(const porta_program *p) { return p ? p->plan.n_inputs : 0; }
int porta_program_n_outputs(const porta_program *p) { return p ? p->plan.n_outputs : 0; }

int64_t porta_program_input_numel(const porta_program *p, int i)
{
    return (p && i >= 0 && i < p->plan.n_inputs) ? porta_ref_numel(&p->plan.inputs[i]) : 0;
}

int64_t porta_program_output_numel(const porta_program *p, int i)
{
    return (p && i >= 0 && i < p->plan.n_outputs) ? porta_ref_numel(&p->plan.outputs[i]) : 0;
}

int porta_program_n_traced(const porta_program *p) { return p ? p->n_traced : 0; }

porta_status porta_program_node_info(const porta_program *p, int i, porta_node_info *info)
{
    if (!p || !info) return porta_fail(PORTA_ERR_ARG, "porta_program_node_info: NULL argument");
    if (i < 0 || i >= p->n_traced)
        return porta_fail(PORTA_ERR_ARG, "porta_program_node_info: node %d outside 0..%d (compile with porta_compile_traced)",
                          i, p->n_traced - 1);
    *info = p->traced[i];
    return PORTA_OK;
}
