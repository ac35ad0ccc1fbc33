/* Graph builder: tensors, views and shape checks at build time. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"

porta_status porta_graph_new(porta_graph **out)
{
    if (!out) return porta_fail(PORTA_ERR_ARG, "porta_graph_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return porta_fail(PORTA_ERR_NOMEM, "porta_graph_new: out of memory");
    return PORTA_OK;
}

void porta_graph_free(porta_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++) free(g->t[i]);
    free(g->t);
    free(g->outputs);
    free(g);
}

porta_status porta_graph_status(const porta_graph *g)
{
    if (!g) return porta_fail(PORTA_ERR_ARG, "porta_graph_status: graph is NULL");
    if (g->err != PORTA_OK) porta_fail(g->err, "%s", g->errmsg);
    return g->err;
}

const char *porta_graph_error(const porta_graph *g) { return g ? g->errmsg : ""; }

/* Records the graph's first failure and sets the thread's message; returns NULL. */
static porta_tensor *gfail(porta_graph *g, porta_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static porta_tensor *gfail(porta_graph *g, porta_status s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g && g->err == PORTA_OK) {
        g->err = s;
        snprintf(g->errmsg, sizeof g->errmsg, "%s", msg);
    }
    porta_fail(s, "%s", msg);
    return NULL;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}
#define SHAPE(t) shape_buf_##t
#define DECL_SHAPE(t) char SHAPE(t)[96]; shape_str(SHAPE(t), sizeof SHAPE(t), (t)->ndim, (t)->shape)

static void dense_strides(porta_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

int porta_tensor_dense(const porta_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

static porta_tensor *new_tensor(porta_graph *g, porta_tkind kind, int ndim, const int64_t *shape, const char *what)
{
    if (ndim < 1 || ndim > PORTA_MAX_DIMS)
        return gfail(g, PORTA_ERR_SHAPE, "%s: %d dims (1..%d allowed)", what, ndim, PORTA_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || shape[i] > ((int64_t)1 << 40) / numel)
            return gfail(g, PORTA_ERR_SHAPE, "%s: dim %d of size %lld is not positive or too large", what, i,
                         (long long)shape[i]);
        numel *= shape[i];
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        porta_tensor **t = realloc(g->t, (size_t)cap * sizeof *t);
        if (!t) return gfail(g, PORTA_ERR_NOMEM, "%s: out of memory", what);
        g->t = t;
        g->cap = cap;
    }
    porta_tensor *t = calloc(1, sizeof *t);
    if (!t) return gfail(g, PORTA_ERR_NOMEM, "%s: out of memory", what);
    t->g = g;
    t->id = g->n;
    t->kind = kind;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    dense_strides(t);
    t->root = t;
    t->input_index = -1;
    g->t[g->n++] = t;
    return t;
}

/* Checks that every tensor argument belongs to g (NULL means an earlier failure). */
static int args_ok(porta_graph *g, const char *what, int n, porta_tensor *const *ts)
{
    if (!g) {
        porta_fail(PORTA_ERR_ARG, "%s: graph is NULL", what);
        return 0;
    }
    if (g->err != PORTA_OK) return 0;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) {
            gfail(g, PORTA_ERR_ARG, "%s: input %d is NULL", what, i);
            return 0;
        }
        if (ts[i]->g != g) {
            gfail(g, PORTA_ERR_ARG, "%s: input %d belongs to another graph", what, i);
            return 0;
        }
    }
    return 1;
}

int porta_tensor_ndim(const porta_tensor *t) { return t ? t->ndim : 0; }

int64_t porta_tensor_dim(const porta_tensor *t, int axis)
{
    if (!t) return 0;
    if (axis < 0) axis += t->ndim;
    return (axis >= 0 && axis < t->ndim) ? t->shape[axis] : 0;
}

int64_t porta_tensor_numel(const porta_tensor *t)
{
    if (!t) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

porta_tensor *porta_name(porta_tensor *t, const char *name)
{
    if (t && name) snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

porta_tensor *porta_input(porta_graph *g, const char *name, int ndim, const int64_t *shape)
{
    if (!args_ok(g, "porta_input", 0, NULL)) return NULL;
    if (!shape) return gfail(g, PORTA_ERR_ARG, "porta_input: shape is NULL");
    porta_tensor *t = new_tensor(g, PORTA_T_INPUT, ndim, shape, "porta_input");
    if (!t) return NULL;
    t->input_index = g->n_inputs++;
    porta_name(t, name ? name : "input");
    return t;
}

porta_tensor *porta_param(porta_graph *g, porta_buffer *buf, int64_t offset, int ndim, const int64_t *shape)
{
    if (!args_ok(g, "porta_param", 0, NULL)) return NULL;
    if (!buf || !shape) return gfail(g, PORTA_ERR_ARG, "porta_param: NULL buffer or shape");
    porta_tensor *t = new_tensor(g, PORTA_T_PARAM, ndim, shape, "porta_param");
    if (!t) return NULL;
    int64_t n = porta_tensor_numel(t);
    if (offset < 0 || offset > buf->n || n > buf->n - offset)
        return gfail(g, PORTA_ERR_SHAPE, "porta_param: %lld elements at offset %lld exceed the buffer's %lld",
                     (long long)n, (long long)offset, (long long)buf->n);
    t->buf = buf;
    t->offset = offset;
    porta_name(t, "param");
    return t;
}

static porta_tensor *new_view(porta_graph *g, porta_tensor *x, int ndim, const int64_t *shape, const char *what)
{
    porta_tensor *v = new_tensor(g, PORTA_T_VIEW, ndim, shape, what);
    if (!v) return NULL;
    v->root = x->root;
    v->offset = x->offset;
    v->n_in = 1;
    v->in[0] = x;
    snprintf(v->name, sizeof v->name, "%s", x->name);
    return v;
}

static porta_tensor *new_node(porta_graph *g, porta_op op, int ndim, const int64_t *shape, int n_in,
                              porta_tensor *const *in)
{
    porta_tensor *t = new_tensor(g, PORTA_T_NODE, ndim, shape, porta_op_name(op));
    if (!t) return NULL;
    t->op = op;
    t->n_in = n_in;
    for (int i = 0; i < n_in; i++) t->in[i] = in[i];
    snprintf(t->name, sizeof t->name, "%s.%d", porta_op_name(op), t->id);
    return t;
}

porta_tensor *porta_contiguous(porta_graph *g, porta_tensor *x)
{
    if (!args_ok(g, "porta_contiguous", 1, &x)) return NULL;
    return new_node(g, PORTA_OP_COPY, x->ndim, x->shape, 1, &x);
}

/* x itself when its elements are dense in row-major order, else a copy. */
static porta_tensor *dense(porta_graph *g, porta_tensor *x)
{
    if (!x || porta_tensor_dense(x)) return x;
    return porta_contiguous(g, x);
}

porta_tensor *porta_reshape(porta_graph *g, porta_tensor *x, int ndim, const int64_t *shape)
{
    if (!args_ok(g, "porta_reshape", 1, &x)) return NULL;
    if (!shape || ndim < 1 || ndim > PORTA_MAX_DIMS)
        return gfail(g, PORTA_ERR_SHAPE, "porta_reshape: bad target rank %d", ndim);
    int64_t s[PORTA_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) {
            infer = i;
        } else if (s[i] <= 0) {
            return gfail(g, PORTA_ERR_SHAPE, "porta_reshape: bad size %lld at dim %d", (long long)s[i], i);
        } else {
            known *= s[i];
        }
    }
    int64_t n = porta_tensor_numel(x);
    if (infer >= 0) {
        if (n % known) return gfail(g, PORTA_ERR_SHAPE, "porta_reshape: %lld elements do not divide by %lld",
                                    (long long)n, (long long)known);
        s[infer] = n / known;
        known = n;
    }
    if (known != n) {
        DECL_SHAPE(x);
        return gfail(g, PORTA_ERR_SHAPE, "porta_reshape: %s has %lld elements, target has %lld", SHAPE(x),
                     (long long)n, (long long)known);
    }
    /* Adding or removing unit dims keeps any strides: still a view. */
    int64_t st[PORTA_MAX_DIMS];
    int j = 0, same = 1;
    for (int i = 0; i < ndim && same; i++) {
        if (s[i] == 1) {
            st[i] = 1;
            continue;
        }
        while (j < x->ndim && x->shape[j] == 1) j++;
        if (j == x->ndim || x->shape[j] != s[i]) same = 0;
        else st[i] = x->stride[j++];
    }
    while (same && j < x->ndim && x->shape[j] == 1) j++;
    if (same && j == x->ndim && !porta_tensor_dense(x)) {
        porta_tensor *v = new_view(g, x, ndim, s, "porta_reshape");
        if (v) memcpy(v->stride, st, sizeof st);
        return v;
    }
    x = dense(g, x);
    if (!x) return NULL;
    return new_view(g, x, ndim, s, "porta_reshape");
}

porta_tensor *porta_permute(porta_graph *g, porta_tensor *x, const int *perm)
{
    if (!args_ok(g, "porta_permute", 1, &x)) return NULL;
    if (!perm) return gfail(g, PORTA_ERR_ARG, "porta_permute: perm is NULL");
    int seen[PORTA_MAX_DIMS] = { 0 };
    int64_t s[PORTA_MAX_DIMS], st[PORTA_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]++)
            return gfail(g, PORTA_ERR_ARG, "porta_permute: perm is not a permutation of 0..%d", x->ndim - 1);
        s[i] = x->shape[perm[i]];
        st[i] = x->stride[perm[i]];
    }
    porta_tensor *v = new_view(g, x, x->ndim, s, "porta_permute");
    if (v) memcpy(v->stride, st, sizeof st);
    return v;
}

porta_tensor *porta_slice(porta_graph *g, porta_tensor *x, int axis, int64_t start, int64_t len)
{
    if (!args_ok(g, "porta_slice", 1, &x)) return NULL;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return gfail(g, PORTA_ERR_ARG, "porta_slice: axis out of range");
    if (start < 0 || len <= 0 || start > x->shape[axis] || len > x->shape[axis] - start)
        return gfail(g, PORTA_ERR_SHAPE, "porta_slice: [%lld, %lld) outside dim %d of size %lld", (long long)start,
                     (long long)(start + len), axis, (long long)x->shape[axis]);
    int64_t s[PORTA_MAX_DIMS];
    memcpy(s, x->shape, sizeof s);
    s[axis] = len;
    porta_tensor *v = new_view(g, x, x->ndim, s, "porta_slice");
    if (!v) return NULL;
    memcpy(v->stride, x->stride, sizeof v->stride);
    v->offset = x->offset + start * x->stride[axis];
    return v;
}

porta_status porta_output(porta_graph *g, porta_tensor *t)
{
    if (!args_ok(g, "porta_output", 1, &t)) return g ? (g->err ? g->err : PORTA_ERR_ARG) : PORTA_ERR_ARG;
    /* Outputs are read back whole: an input or a strided view is copied. */
    if (t->kind == PORTA_T_INPUT || !porta_tensor_dense(t)) t = porta_contiguous(g, t);
    if (!t) return g->err;
    if (g->n_outputs == g->cap_outputs) {
        int cap = g->cap_outputs ? 2 * g->cap_outputs : 8;
        porta_tensor **o = realloc(g->outputs, (size_t)cap * sizeof *o);
        if (!o) {
            gfail(g, PORTA_ERR_NOMEM, "porta_output: out of memory");
            return g->err;
        }
        g->outputs = o;
        g->cap_outputs = cap;
    }
    g->outputs[g->n_outputs++] = t;
    return PORTA_OK;
}

/* ---- dense ops ----------------------------------------------------------- */

porta_tensor *porta_linear(porta_graph *g, porta_tensor *x, porta_tensor *w, porta_tensor *bias)
{
    porta_tensor *a[3] = { x, w, bias };
    if (!args_ok(g, "porta_linear", bias ? 3 : 2, a)) return NULL;
    int64_t K = x->shape[x->ndim - 1];
    if (w->ndim != 2 || w->shape[1] != K) {
        DECL_SHAPE(x);
        DECL_SHAPE(w);
        return gfail(g, PORTA_ERR_SHAPE, "porta_linear: x %s needs w [N, %lld], got %s", SHAPE(x), (long long)K,
                     SHAPE(w));
    }
    int64_t N = w->shape[0];
    if (bias && (bias->ndim != 1 || bias->shape[0] != N)) {
        DECL_SHAPE(bias);
        return gfail(g, PORTA_ERR_SHAPE, "porta_linear: bias %s, expected [%lld]", SHAPE(bias), (long long)N);
    }
    int64_t s[PORTA_MAX_DIMS];
    memcpy(s, x->shape, sizeof s);
    s[x->ndim - 1] = N;
    porta_tensor *in[3] = { dense(g, x), dense(g, w), dense(g, bias) };
    if (!in[0] || !in[1] || (bias && !in[2])) return NULL;
    return new_node(g, PORTA_OP_LINEAR, x->ndim, s, 3, in);
}

porta_tensor *porta_matmul(porta_graph *g, porta_tensor *a, porta_tensor *b)
{
    porta_tensor *ab[2] = { a, b };
    if (!args_ok(g, "porta_matmul", 2, ab)) return NULL;
    DECL_SHAPE(a);
    DECL_SHAPE(b);
    if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return gfail(g, PORTA_ERR_SHAPE, "porta_matmul: %s @ %s: inner dims differ", SHAPE(a), SHAPE(b));
    if (b->ndim != 2) {
        if (b->ndim != a->ndim)
            return gfail(g, PORTA_ERR_SHAPE, "porta_matmul: %s @ %s: b must be 2-D or have a's batch dims", SHAPE(a),
                         SHAPE(b));
        for (int i = 0; i < a->ndim - 2; i++)
            if (a->shape[i] != b->shape[i])
                return gfail(g, PORTA_ERR_SHAPE, "porta_matmul: %s @ %s: batch dims differ", SHAPE(a), SHAPE(b));
    }
    int64_t s[PORTA_MAX_DIMS];
    memcpy(s, a->shape, sizeof s);
    s[a->ndim - 1] = b->shape[b->ndim - 1];
    porta_tensor *in[2] = { dense(g, a), dense(g, b) };
    if (!in[0] || !in[1]) return NULL;
    return new_node(g, PORTA_OP_MATMUL, a->ndim, s, 2, in);
}

static porta_tensor *binary(porta_graph *g, porta_op op, porta_tensor *a, porta_tensor *b)
{
    porta_tensor *ab[2] = { a, b };
    if (!args_ok(g, porta_op_name(op), 2, ab)) return NULL;
    int ok = b->ndim <= a->ndim;
    for (int i = 0; ok && i < b->ndim; i++) ok = b->shape[b->ndim - 1 - i] == a->shape[a->ndim - 1 - i];
    if (!ok) {
        DECL_SHAPE(a);
        DECL_SHAPE(b);
        return gfail(g, PORTA_ERR_SHAPE, "porta_%s: b %s must equal a %s or a suffix of it", porta_op_name(op),
                     SHAPE(b), SHAPE(a));
    }
    porta_tensor *in[2] = { dense(g, a), dense(g, b) };
    if (!in[0] || !in[1]) return NULL;
    return new_node(g, op, a->ndim, a->shape, 2, in);
}

porta_tensor *porta_add(porta_graph *g, porta_tensor *a, porta_tensor *b) { return binary(g, PORTA_OP_ADD, a, b); }
porta_tensor *porta_mul(porta_graph *g, porta_tensor *a, porta_tensor *b) { return binary(g, PORTA_OP_MUL, a, b); }

static int vec_ok(porta_graph *g, const char *what, porta_tensor *v, int64_t E)
{
    if (!v) return 1;
    if (v->ndim != 1 || v->shape[0] != E) {
        DECL_SHAPE(v);
        gfail(g, PORTA_ERR_SHAPE, "%s: parameter %s, expected [%lld]", what, SHAPE(v), (long long)E);
        return 0;
    }
    return 1;
}

static int eps_ok(porta_graph *g, const char *what, float eps)
{
    if (!(eps >= 0.0f) || isinf(eps)) {
        gfail(g, PORTA_ERR_ARG, "%s: eps must be finite and >= 0", what);
        return 0;
    }
    return 1;
}

porta_tensor *porta_rmsnorm(porta_graph *g, porta_tensor *x, porta_tensor *scale, float eps)
{
    porta_tensor *a[2] = { x, scale };
    if (!args_ok(g, "porta_rmsnorm", scale ? 2 : 1, a)) return NULL;
    if (!vec_ok(g, "porta_rmsnorm", scale, x->shape[x->ndim - 1]) || !eps_ok(g, "porta_rmsnorm", eps)) return NULL;
    porta_tensor *in[2] = { dense(g, x), dense(g, scale) };
    porta_tensor *t = new_node(g, PORTA_OP_RMSNORM, x->ndim, x->shape, 2, in);
    if (t) t->params.p.eps = eps;
    return t;
}

porta_tensor *porta_layernorm(porta_graph *g, porta_tensor *x, porta_tensor *w, porta_tensor *b, float eps)
{
    porta_tensor *a[1] = { x };
    if (!args_ok(g, "porta_layernorm", 1, a)) return NULL;
    if ((w && w->g != g) || (b && b->g != g)) return gfail(g, PORTA_ERR_ARG, "porta_layernorm: foreign parameter");
    int64_t E = x->shape[x->ndim - 1];
    if (!vec_ok(g, "porta_layernorm", w, E) || !vec_ok(g, "porta_layernorm", b, E) ||
        !eps_ok(g, "porta_layernorm", eps))
        return NULL;
    porta_tensor *in[3] = { dense(g, x), dense(g, w), dense(g, b) };
    porta_tensor *t = new_node(g, PORTA_OP_LAYERNORM, x->ndim, x->shape, 3, in);
    if (t) t->params.p.eps = eps;
    return t;
}

static porta_tensor *unary(porta_graph *g, porta_op op, porta_tensor *x)
{
    if (!args_ok(g, porta_op_name(op), 1, &x)) return NULL;
    porta_tensor *in[1] = { dense(g, x) };
    return new_node(g, op, x->ndim, x->shape, 1, in);
}

porta_tensor *porta_silu(porta_graph *g, porta_tensor *x) { return unary(g, PORTA_OP_SILU, x); }
porta_tensor *porta_softmax(porta_graph *g, porta_tensor *x) { return unary(g, PORTA_OP_SOFTMAX, x); }

porta_tensor *porta_swiglu(porta_graph *g, porta_tensor *x)
{
    if (!args_ok(g, "porta_swiglu", 1, &x)) return NULL;
    if (x->shape[x->ndim - 1] % 2)
        return gfail(g, PORTA_ERR_SHAPE, "porta_swiglu: last dim %lld is odd", (long long)x->shape[x->ndim - 1]);
    int64_t s[PORTA_MAX_DIMS];
    memcpy(s, x->shape, sizeof s);
    s[x->ndim - 1] /= 2;
    porta_tensor *in[1] = { dense(g, x) };
    return new_node(g, PORTA_OP_SWIGLU, x->ndim, s, 1, in);
}

/* ---- position-dependent ops -------------------------------------------- */

static int use_cache(porta_graph *g, porta_kvcache *kv, const char *what)
{
    if (g->kv && g->kv != kv) {
        gfail(g, PORTA_ERR_ARG, "%s: a graph may use one KV cache only", what);
        return 0;
    }
    g->kv = kv;
    return 1;
}

static int bthd_ok(porta_graph *g, const char *what, const porta_tensor *x)
{
    if (x->ndim != 4) {
        DECL_SHAPE(x);
        gfail(g, PORTA_ERR_SHAPE, "%s: %s must be [B, T, H, D]", what, SHAPE(x));
        return 0;
    }
    return 1;
}

porta_tensor *porta_rope(porta_graph *g, porta_tensor *x, const porta_rope_desc *rd, porta_kvcache *kv, int is_key)
{
    if (!args_ok(g, "porta_rope", 1, &x)) return NULL;
    if (!rd) return gfail(g, PORTA_ERR_ARG, "porta_rope: descriptor is NULL");
    if (!bthd_ok(g, "porta_rope", x)) return NULL;
    if (x->shape[3] % 2) return gfail(g, PORTA_ERR_SHAPE, "porta_rope: head dim %lld is odd", (long long)x->shape[3]);
    if (!(rd->theta > 1.0f) || isinf(rd->theta) || (rd->xpos && (!(rd->scale_base > 0.0f) || isinf(rd->scale_base))))
        return gfail(g, PORTA_ERR_ARG, "porta_rope: theta must be > 1 and scale_base > 0");
    if (kv) {
        if (!use_cache(g, kv, "porta_rope")) return NULL;
        if (x->shape[0] > kv->d.rows)
            return gfail(g, PORTA_ERR_SHAPE, "porta_rope: batch %lld exceeds the cache's %d rows",
                         (long long)x->shape[0], kv->d.rows);
    }
    porta_tensor *t = new_node(g, PORTA_OP_ROPE, 4, x->shape, 1, &x);
    if (!t) return NULL;
    t->params.p.rope.theta = rd->theta;
    t->params.p.rope.scale_base = rd->scale_base;
    t->params.p.rope.xpos = rd->xpos != 0;
    t->params.p.rope.is_key = is_key != 0;
    t->params.p.rope.cached = kv != NULL;
    t->kv = kv;
    return t;
}

porta_tensor *porta_kv_append(porta_graph *g, porta_kvcache *kv, int layer, porta_kv_which which, porta_tensor *x)
{
    if (!args_ok(g, "porta_kv_append", 1, &x)) return NULL;
    if (!kv) return gfail(g, PORTA_ERR_ARG, "porta_kv_append: cache is NULL");
    if (!use_cache(g, kv, "porta_kv_append") || !bthd_ok(g, "porta_kv_append", x)) return NULL;
    if (layer < 0 || layer >= kv->d.layers)
        return gfail(g, PORTA_ERR_ARG, "porta_kv_append: layer %d outside 0..%d", layer, kv->d.layers - 1);
    if (which != PORTA_KV_K && which != PORTA_KV_V) return gfail(g, PORTA_ERR_ARG, "porta_kv_append: bad K/V selector");
    if (x->shape[0] > kv->d.rows || x->shape[2] != kv->d.heads || x->shape[3] != kv->d.head_dim ||
        x->shape[1] > kv->d.max_len) {
        DECL_SHAPE(x);
        return gfail(g, PORTA_ERR_SHAPE, "porta_kv_append: x %s does not fit a cache of %d rows, %d heads, head dim %d, "
                     "max_len %d", SHAPE(x), kv->d.rows, kv->d.heads, kv->d.head_dim, kv->d.max_len);
    }
    int64_t s[4] = { kv->d.rows, kv->d.heads, kv->d.max_len, kv->d.head_dim };
    porta_tensor *t = new_node(g, PORTA_OP_KV_APPEND, 4, s, 1, &x);
    if (!t) return NULL;
    t->ext = kv->store;
    t->offset = porta_kvcache_offset(kv, layer, which);
    t->kv = kv;
    t->kv_layer = layer;
    t->kv_which = (int)which;
    return t;
}

porta_tensor *porta_attention_cached(porta_graph *g, porta_tensor *q, porta_tensor *kc, porta_tensor *vc, float scale)
{
    porta_tensor *a[3] = { q, kc, vc };
    if (!args_ok(g, "porta_attention_cached", 3, a)) return NULL;
    if (!bthd_ok(g, "porta_attention_cached", q)) return NULL;
    if (kc->kind != PORTA_T_NODE || kc->op != PORTA_OP_KV_APPEND || vc->kind != PORTA_T_NODE ||
        vc->op != PORTA_OP_KV_APPEND || kc->kv_which != PORTA_KV_K || vc->kv_which != PORTA_KV_V ||
        kc->kv_layer != vc->kv_layer)
        return gfail(g, PORTA_ERR_ARG, "porta_attention_cached: kc and vc must be the K and V of one layer from porta_kv_append");
    porta_kvcache *kv = kc->kv;
    if (q->shape[0] != kc->in[0]->shape[0] || q->shape[2] != kv->d.heads || q->shape[3] != kv->d.head_dim ||
        q->shape[1] != kc->in[0]->shape[1]) {
        DECL_SHAPE(q);
        return gfail(g, PORTA_ERR_SHAPE, "porta_attention_cached: q %s does not match the cache or the appended rows", SHAPE(q));
    }
    if (!(scale > 0.0f) || isinf(scale)) return gfail(g, PORTA_ERR_ARG, "porta_attention_cached: scale must be > 0");
    porta_tensor *t = new_node(g, PORTA_OP_ATTN_CACHED, 4, q->shape, 3, a);
    if (!t) return NULL;
    t->params.p.attn.scale = scale;
    t->params.p.attn.causal = 1;
    t->kv = kv;
    return t;
}

porta_tensor *porta_attention(porta_graph *g, porta_tensor *q, porta_tensor *k, porta_tensor *v, porta_tensor *mask,
                              float scale, int causal)
{
    porta_tensor *a[4] = { q, k, v, mask };
    if (!args_ok(g, "porta_attention", mask ? 4 : 3, a)) return NULL;
    if (!bthd_ok(g, "porta_attention", q) || !bthd_ok(g, "porta_attention", k) || !bthd_ok(g, "porta_attention", v))
        return NULL;
    DECL_SHAPE(q);
    DECL_SHAPE(k);
    DECL_SHAPE(v);
    if (k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2] || k->shape[3] != q->shape[3] ||
        v->shape[0] != k->shape[0] || v->shape[1] != k->shape[1] || v->shape[2] != k->shape[2] ||
        v->shape[3] != k->shape[3])
        return gfail(g, PORTA_ERR_SHAPE, "porta_attention: q %s, k %s, v %s do not agree", SHAPE(q), SHAPE(k), SHAPE(v));
    if (causal && q->shape[1] != k->shape[1])
        return gfail(g, PORTA_ERR_SHAPE, "porta_attention: causal needs as many queries as keys (q %s, k %s)", SHAPE(q),
                     SHAPE(k));
    if (mask) {
        DECL_SHAPE(mask);
        if (mask->ndim != 3 || mask->shape[1] != q->shape[1] || mask->shape[2] != k->shape[1] ||
            q->shape[0] % mask->shape[0])
            return gfail(g, PORTA_ERR_SHAPE, "porta_attention: mask %s, expected [Bm, %lld, %lld] with %lld %% Bm == 0",
                         SHAPE(mask), (long long)q->shape[1], (long long)k->shape[1], (long long)q->shape[0]);
        a[3] = dense(g, mask);
        if (!a[3]) return NULL;
    }
    if (!(scale > 0.0f) || isinf(scale)) return gfail(g, PORTA_ERR_ARG, "porta_attention: scale must be > 0");
    porta_tensor *t = new_node(g, PORTA_OP_ATTN, 4, q->shape, 4, a);
    if (!t) return NULL;
    t->params.p.attn.scale = scale;
    t->params.p.attn.causal = causal != 0;
    return t;
}

porta_tensor *porta_mixture_sample(porta_graph *g, porta_tensor *df, porta_tensor *loc, porta_tensor *scale,
                                   porta_tensor *logits, porta_tensor *key, int repeat)
{
    porta_tensor *a[5] = { df, loc, scale, logits, key };
    if (!args_ok(g, "porta_mixture_sample", 5, a)) return NULL;
    for (int i = 1; i < 4; i++) {
        int same = a[i]->ndim == df->ndim;
        for (int d = 0; same && d < df->ndim; d++) same = a[i]->shape[d] == df->shape[d];
        if (!same) {
            const porta_tensor *bad = a[i];
            DECL_SHAPE(df);
            DECL_SHAPE(bad);
            return gfail(g, PORTA_ERR_SHAPE, "porta_mixture_sample: parameter %d is %s, df is %s", i, SHAPE(bad),
                         SHAPE(df));
        }
    }
    if (porta_tensor_numel(key) != 4) {
        DECL_SHAPE(key);
        return gfail(g, PORTA_ERR_SHAPE, "porta_mixture_sample: key %s, expected 4 elements", SHAPE(key));
    }
    int64_t n = porta_tensor_numel(df) / df->shape[df->ndim - 1];
    if (repeat < 1 || (uint64_t)n * (uint64_t)repeat > UINT32_MAX)
        return gfail(g, PORTA_ERR_SHAPE, "porta_mixture_sample: repeat %d of %lld mixtures (1 .. 2^32 draws allowed)",
                     repeat, (long long)n);
    /* [repeat, leading dims of the mixtures] */
    int64_t s[PORTA_MAX_DIMS];
    int nd = df->ndim;
    s[0] = repeat;
    for (int d = 0; d + 1 < df->ndim; d++) s[d + 1] = df->shape[d];
    porta_tensor *in[5];
    for (int i = 0; i < 5; i++)
        if (!(in[i] = dense(g, a[i]))) return NULL;
    return new_node(g, PORTA_OP_MIXTURE_SAMPLE, nd, s, 5, in);
}
