/* The CPU backend: buffers are 64-byte-aligned float arrays, a program is the
 * plan's nodes with resolved addresses, an arena and a step block, replayed
 * synchronously on the backend's thread pool. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

#define MAX_THREADS 1024

typedef struct cpu_backend {
    porta_host host;
    cpu_pool *pool;
    int threads;
    char device[160];
} cpu_backend;

typedef struct cpu_buf {
    int64_t n;
    float *data;
} cpu_buf;

typedef struct cpu_prog {
    cpu_backend *be;
    int n_nodes;
    cpu_node *nodes;
    float *arena;
    int n_inputs, n_outputs;
    float **in_ptr, **out_ptr;
    int64_t *in_numel, *out_numel;
    int32_t *step;
    cpu_exec ex;
} cpu_prog;

typedef void (*cpu_kernel)(const cpu_exec *ex, const cpu_node *nd);

static const cpu_kernel kernels[PORTA_OP_COUNT] = {
    [PORTA_OP_COPY] = cpu_copy,           [PORTA_OP_LINEAR] = cpu_linear,
    [PORTA_OP_MATMUL] = cpu_matmul,       [PORTA_OP_ADD] = cpu_add,
    [PORTA_OP_MUL] = cpu_mul,             [PORTA_OP_RMSNORM] = cpu_rmsnorm,
    [PORTA_OP_LAYERNORM] = cpu_layernorm, [PORTA_OP_SILU] = cpu_silu,
    [PORTA_OP_SWIGLU] = cpu_swiglu,       [PORTA_OP_SOFTMAX] = cpu_softmax,
    [PORTA_OP_ROPE] = cpu_rope,           [PORTA_OP_KV_APPEND] = cpu_kv_append,
    [PORTA_OP_ATTN_CACHED] = cpu_attn_cached, [PORTA_OP_ATTN] = cpu_attn,
    [PORTA_OP_MIXTURE_SAMPLE] = cpu_mixture_sample,
};

static void *alloc_floats(int64_t n)
{
    if ((uint64_t)n > SIZE_MAX / (2 * sizeof(float))) return NULL;
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

/* ---- buffers -------------------------------------------------------------- */

static porta_status buf_new(void *bep, porta_dtype dt, int64_t n, void **out)
{
    cpu_backend *be = bep;
    *out = NULL;
    if (dt != PORTA_F32) return be->host.fail(PORTA_ERR_UNSUPPORTED, "cpu: buffers hold f32 only (dtype %d asked)", (int)dt);
    if (n < 0) return be->host.fail(PORTA_ERR_ARG, "cpu: buffer of %lld elements", (long long)n);
    cpu_buf *b = malloc(sizeof *b);
    float *data = alloc_floats(n);
    if (!b || !data) {
        free(b);
        free(data);
        return be->host.fail(PORTA_ERR_NOMEM, "cpu: cannot allocate a buffer of %lld floats", (long long)n);
    }
    b->n = n;
    b->data = data;
    *out = b;
    return PORTA_OK;
}

static void buf_free(void *bep, void *bp)
{
    (void)bep;
    cpu_buf *b = bp;
    if (!b) return;
    free(b->data);
    free(b);
}

static porta_status span_ok(cpu_backend *be, const cpu_buf *b, int64_t off, int64_t n, const char *what)
{
    if (off < 0 || n < 0 || off > b->n || n > b->n - off)
        return be->host.fail(PORTA_ERR_ARG, "cpu: %s of [%lld, +%lld) outside a buffer of %lld", what,
                             (long long)off, (long long)n, (long long)b->n);
    return PORTA_OK;
}

static porta_status buf_write(void *bep, void *bp, int64_t off, int64_t n, const float *src)
{
    cpu_buf *b = bp;
    porta_status s = span_ok(bep, b, off, n, "write");
    if (s) return s;
    memcpy(b->data + off, src, (size_t)n * sizeof(float));
    return PORTA_OK;
}

static porta_status buf_read(void *bep, void *bp, int64_t off, int64_t n, float *dst)
{
    cpu_buf *b = bp;
    porta_status s = span_ok(bep, b, off, n, "read");
    if (s) return s;
    memcpy(dst, b->data + off, (size_t)n * sizeof(float));
    return PORTA_OK;
}

static porta_status buf_copy(void *bep, void *dp, int64_t doff, void *sp, int64_t soff, int64_t n)
{
    cpu_buf *d = dp, *s = sp;
    porta_status st = span_ok(bep, d, doff, n, "copy to");
    if (!st) st = span_ok(bep, s, soff, n, "copy from");
    if (st) return st;
    memmove(d->data + doff, s->data + soff, (size_t)n * sizeof(float));
    return PORTA_OK;
}

/* ---- programs ------------------------------------------------------------- */

/* Resolves r to an address after checking that every element it spans lies
 * inside its arena or buffer. */
static porta_status resolve(cpu_backend *be, const porta_ref *r, float *arena, int64_t arena_elems,
                            const char *node, float **out)
{
    *out = NULL;
    if (r->dtype != PORTA_F32) return be->host.fail(PORTA_ERR_UNSUPPORTED, "cpu: %s: non-f32 operand", node);
    if (r->ndim < 0 || r->ndim > PORTA_PLAN_MAX_DIMS)
        return be->host.fail(PORTA_ERR_ARG, "cpu: %s: operand of %d dims", node, r->ndim);
    float *base;
    int64_t size;
    if (r->mem == PORTA_MEM_ARENA) {
        base = arena;
        size = arena_elems;
    } else if (r->mem == PORTA_MEM_BUFFER && r->buf) {
        base = ((cpu_buf *)r->buf)->data;
        size = ((cpu_buf *)r->buf)->n;
    } else {
        return be->host.fail(PORTA_ERR_ARG, "cpu: %s: operand without memory", node);
    }
    for (int d = 0; d < r->ndim; d++)
        if (r->shape[d] < 0 || r->stride[d] < 0)
            return be->host.fail(PORTA_ERR_ARG, "cpu: %s: negative shape or stride", node);
    int64_t last = r->offset;
    if (porta_ref_numel(r) == 0) last = r->offset - 1;
    else
        for (int d = 0; d < r->ndim; d++) last += (r->shape[d] - 1) * r->stride[d];
    if (r->offset < 0 || r->offset > size || last >= size)
        return be->host.fail(PORTA_ERR_ARG, "cpu: %s: operand spans [%lld, %lld] past %lld elements", node,
                             (long long)r->offset, (long long)last, (long long)size);
    *out = base + r->offset;
    return PORTA_OK;
}

static int has_in(const porta_node *n, int i) { return i < n->n_in && n->in[i].mem != PORTA_MEM_NONE; }

static int64_t last_dim(const porta_ref *r) { return r->ndim ? r->shape[r->ndim - 1] : 1; }

/* The shape facts the kernels rely on beyond each operand's own bounds. */
static porta_status check_node(cpu_backend *be, const porta_node *n)
{
    const porta_ref *o = &n->out, *x = &n->in[0];
    const int64_t on = porta_ref_numel(o), xn = n->n_in ? porta_ref_numel(x) : 0;
    int ok = n->n_in >= 1 && has_in(n, 0) && porta_ref_dense(o);
    if (ok && n->op != PORTA_OP_COPY && n->op != PORTA_OP_ROPE && n->op != PORTA_OP_KV_APPEND &&
        n->op != PORTA_OP_ATTN_CACHED && n->op != PORTA_OP_ATTN)
        ok = porta_ref_dense(x);
    switch (ok ? n->op : PORTA_OP_COUNT) {
    case PORTA_OP_COPY:
    case PORTA_OP_SILU:
        ok = on == xn;
        break;
    case PORTA_OP_ADD:
    case PORTA_OP_MUL: {
        const int64_t bn = has_in(n, 1) ? porta_ref_numel(&n->in[1]) : 0;
        ok = on == xn && bn > 0 && xn % bn == 0 && porta_ref_dense(&n->in[1]);
        break;
    }
    case PORTA_OP_LINEAR: {
        const porta_ref *w = &n->in[1];
        const int64_t K = last_dim(x);
        ok = has_in(n, 1) && w->ndim == 2 && w->shape[1] == K && K > 0 && porta_ref_dense(w) &&
             on == xn / K * w->shape[0] && w->shape[0] <= INT32_MAX && K <= INT32_MAX && xn / K <= INT32_MAX &&
             (!has_in(n, 2) || (porta_ref_numel(&n->in[2]) == w->shape[0] && porta_ref_dense(&n->in[2])));
        break;
    }
    case PORTA_OP_MATMUL: {
        const porta_ref *b = &n->in[1];
        ok = has_in(n, 1) && x->ndim >= 2 && b->ndim >= 2 && porta_ref_dense(b);
        if (!ok) break;
        const int64_t M = x->shape[x->ndim - 2], K = x->shape[x->ndim - 1], N = b->shape[b->ndim - 1];
        ok = M > 0 && K > 0 && N > 0 && b->shape[b->ndim - 2] == K && xn % (M * K) == 0 &&
             (porta_ref_numel(b) == K * N || porta_ref_numel(b) == xn / M * N) && on == xn / K * N &&
             xn / K <= INT32_MAX && K <= INT32_MAX && N <= INT32_MAX;
        break;
    }
    case PORTA_OP_RMSNORM:
    case PORTA_OP_LAYERNORM: {
        const int64_t E = last_dim(x);
        ok = on == xn;
        for (int i = 1; i < 3 && ok; i++)
            if (has_in(n, i)) ok = porta_ref_numel(&n->in[i]) == E && porta_ref_dense(&n->in[i]);
        break;
    }
    case PORTA_OP_SOFTMAX:
        ok = on == xn;
        break;
    case PORTA_OP_SWIGLU:
        ok = last_dim(x) % 2 == 0 && last_dim(x) > 0 && on * 2 == xn;
        break;
    case PORTA_OP_ROPE:
        ok = x->ndim == 4 && x->shape[3] % 2 == 0 && on == xn;
        break;
    case PORTA_OP_KV_APPEND:
        ok = x->ndim == 4 && o->ndim == 4 && o->shape[0] >= x->shape[0] && o->shape[1] == x->shape[2] &&
             o->shape[3] == x->shape[3];
        break;
    case PORTA_OP_ATTN_CACHED: {
        const porta_ref *K = &n->in[1], *V = &n->in[2];
        ok = x->ndim == 4 && has_in(n, 1) && has_in(n, 2) && K->ndim == 4 && V->ndim == 4 && on == xn;
        for (int i = 0; i < 4 && ok; i++) ok = K->shape[i] == V->shape[i];
        ok = ok && K->shape[0] >= x->shape[0] && K->shape[1] == x->shape[2] && K->shape[3] == x->shape[3];
        break;
    }
    case PORTA_OP_MIXTURE_SAMPLE: {
        int64_t M, K;
        ok = porta_mixture_sample_ok(n, UINT32_MAX, &M, &K);
        break;
    }
    case PORTA_OP_ATTN: {
        const porta_ref *k = &n->in[1], *v = &n->in[2];
        ok = x->ndim == 4 && has_in(n, 1) && has_in(n, 2) && k->ndim == 4 && v->ndim == 4 && on == xn;
        for (int i = 0; i < 4 && ok; i++) ok = k->shape[i] == v->shape[i];
        ok = ok && k->shape[0] == x->shape[0] && k->shape[2] == x->shape[2] && k->shape[3] == x->shape[3];
        ok = ok && (!n->p.attn.causal || k->shape[1] == x->shape[1]);
        if (ok && has_in(n, 3)) {
            const porta_ref *m = &n->in[3];
            ok = m->ndim == 3 && m->shape[0] > 0 && x->shape[0] % m->shape[0] == 0 && m->shape[1] == x->shape[1] &&
                 m->shape[2] == k->shape[1] && porta_ref_dense(m);
        }
        break;
    }
    default:
        ok = 0;
        break;
    }
    if (!ok)
        return be->host.fail((unsigned)n->op < PORTA_OP_COUNT ? PORTA_ERR_SHAPE : PORTA_ERR_UNSUPPORTED,
                             "cpu: node %s (%s): operands do not fit the op", n->name,
                             (unsigned)n->op < PORTA_OP_COUNT ? porta_op_name(n->op) : "unknown op");
    return PORTA_OK;
}

static void prog_free(void *pp)
{
    cpu_prog *p = pp;
    if (!p) return;
    free(p->nodes);
    free(p->arena);
    free(p->in_ptr);
    free(p->out_ptr);
    free(p->in_numel);
    free(p->out_numel);
    free(p->step);
    free(p->ex.scratch);
    free(p);
}

static porta_status resolve_io(cpu_backend *be, int n, const porta_ref *refs, float *arena, int64_t arena_elems,
                               float **ptr, int64_t *numel)
{
    for (int i = 0; i < n; i++) {
        porta_status s = resolve(be, &refs[i], arena, arena_elems, "program input/output", &ptr[i]);
        if (s) return s;
        if (!porta_ref_dense(&refs[i]))
            return be->host.fail(PORTA_ERR_ARG, "cpu: program input/output %d is not dense", i);
        numel[i] = porta_ref_numel(&refs[i]);
    }
    return PORTA_OK;
}

static porta_status prog_new(void *bep, const porta_plan *plan, porta_backend_counts *counts, void **out)
{
    cpu_backend *be = bep;
    (void)counts; /* nothing is captured or recorded on the CPU */
    *out = NULL;
    if (plan->n_nodes < 0 || plan->n_inputs < 0 || plan->n_outputs < 0 || plan->step_rows < 0 || plan->arena_elems < 0)
        return be->host.fail(PORTA_ERR_ARG, "cpu: malformed plan");
    cpu_prog *p = calloc(1, sizeof *p);
    if (!p) return be->host.fail(PORTA_ERR_NOMEM, "cpu: out of memory for a program");
    p->be = be;
    p->n_nodes = plan->n_nodes;
    p->n_inputs = plan->n_inputs;
    p->n_outputs = plan->n_outputs;
    p->nodes = calloc((size_t)plan->n_nodes + 1, sizeof *p->nodes);
    p->arena = alloc_floats(plan->arena_elems);
    p->in_ptr = calloc((size_t)plan->n_inputs + 1, sizeof *p->in_ptr);
    p->out_ptr = calloc((size_t)plan->n_outputs + 1, sizeof *p->out_ptr);
    p->in_numel = calloc((size_t)plan->n_inputs + 1, sizeof *p->in_numel);
    p->out_numel = calloc((size_t)plan->n_outputs + 1, sizeof *p->out_numel);
    p->step = calloc(PORTA_STEP_FIELDS * (size_t)plan->step_rows + 1, sizeof *p->step);
    if (!p->nodes || !p->arena || !p->in_ptr || !p->out_ptr || !p->in_numel || !p->out_numel || !p->step) {
        prog_free(p);
        return be->host.fail(PORTA_ERR_NOMEM, "cpu: cannot allocate a program (arena of %lld floats)",
                             (long long)plan->arena_elems);
    }
    porta_status s = PORTA_OK;
    int64_t scratch = 0;
    for (int i = 0; i < plan->n_nodes && !s; i++) {
        const porta_node *n = &plan->nodes[i];
        cpu_node *c = &p->nodes[i];
        c->n = *n;
        if (n->n_in < 0 || n->n_in > PORTA_PLAN_MAX_IN) {
            s = be->host.fail(PORTA_ERR_ARG, "cpu: node %s has %d inputs", n->name, n->n_in);
            break;
        }
        s = check_node(be, n);
        const int stepped = n->op == PORTA_OP_KV_APPEND || n->op == PORTA_OP_ATTN_CACHED ||
                            (n->op == PORTA_OP_ROPE && n->p.rope.cached);
        if (!s && stepped && n->in[0].shape[0] > plan->step_rows)
            s = be->host.fail(PORTA_ERR_ARG, "cpu: node %s reads %lld cache rows of a step block of %d", n->name,
                              (long long)n->in[0].shape[0], plan->step_rows);
        if (!s) s = resolve(be, &n->out, p->arena, plan->arena_elems, n->name, &c->out);
        for (int k = 0; k < n->n_in && !s; k++) {
            float *a = NULL;
            if (has_in(n, k)) s = resolve(be, &n->in[k], p->arena, plan->arena_elems, n->name, &a);
            c->in[k] = a;
        }
        int64_t need = n->op == PORTA_OP_ROPE                                        ? cpu_rope_scratch(n)
                       : n->op == PORTA_OP_ATTN || n->op == PORTA_OP_ATTN_CACHED ? cpu_attention_scratch(n)
                                                                                   : 0;
        if (need > scratch) scratch = need;
    }
    if (!s) s = resolve_io(be, plan->n_inputs, plan->inputs, p->arena, plan->arena_elems, p->in_ptr, p->in_numel);
    if (!s) s = resolve_io(be, plan->n_outputs, plan->outputs, p->arena, plan->arena_elems, p->out_ptr, p->out_numel);
    if (s) {
        prog_free(p);
        return s;
    }
    p->ex.pool = be->pool;
    p->ex.threads = be->threads;
    p->ex.step = p->step;
    p->ex.step_rows = plan->step_rows;
    p->ex.scratch_stride = (scratch + 15) / 16 * 16;
    p->ex.scratch = alloc_floats(p->ex.scratch_stride * be->threads);
    if (!p->ex.scratch) {
        prog_free(p);
        return be->host.fail(PORTA_ERR_NOMEM, "cpu: cannot allocate kernel scratch");
    }
    *out = p;
    return PORTA_OK;
}

#ifdef PORTA_PERTURB_OP
/* Test-only build (porta_perturbed): every node of op PORTA_PERTURB_OP comes
 * out 1e-3 too large, an error a cross-backend trace must find and name. */
static void perturb(const cpu_node *nd)
{
    if (strcmp(porta_op_name(nd->n.op), PORTA_PERTURB_OP) || !porta_ref_dense(&nd->n.out)) return;
    for (int64_t i = 0, n = porta_ref_numel(&nd->n.out); i < n; i++) nd->out[i] *= 1.001f;
}
#endif

static porta_status prog_run(void *pp, const int32_t *step_block, const float *const *inputs, float *const *outputs)
{
    cpu_prog *p = pp;
    if (p->ex.step_rows) {
        if (!step_block) return p->be->host.fail(PORTA_ERR_ARG, "cpu: program needs a step block");
        memcpy(p->step, step_block, PORTA_STEP_FIELDS * (size_t)p->ex.step_rows * sizeof *p->step);
    }
    for (int i = 0; i < p->n_inputs; i++) {
        if (!inputs || !inputs[i]) return p->be->host.fail(PORTA_ERR_ARG, "cpu: input %d has no data", i);
        memcpy(p->in_ptr[i], inputs[i], (size_t)p->in_numel[i] * sizeof(float));
    }
    for (int i = 0; i < p->n_nodes; i++) {
        kernels[p->nodes[i].n.op](&p->ex, &p->nodes[i]);
#ifdef PORTA_PERTURB_OP
        perturb(&p->nodes[i]);
#endif
    }
    for (int i = 0; i < p->n_outputs; i++)
        if (outputs && outputs[i]) memcpy(outputs[i], p->out_ptr[i], (size_t)p->out_numel[i] * sizeof(float));
    return PORTA_OK;
}

/* Replays finish before prog_run returns. */
static porta_status prog_wait(void *pp)
{
    (void)pp;
    return PORTA_OK;
}

/* ---- backend -------------------------------------------------------------- */

static void be_close(void *bep)
{
    cpu_backend *be = bep;
    if (!be) return;
    cpu_pool_free(be->pool);
    free(be);
}

static const char *be_device(void *bep) { return ((cpu_backend *)bep)->device; }

static const porta_backend_vt cpu_vt = {
    .abi = PORTA_MODULE_ABI,
    .kind = "cpu",
    .caps = PORTA_CAP_MIXTURE_SAMPLE,
    .close = be_close,
    .device_name = be_device,
    .buf_new = buf_new,
    .buf_free = buf_free,
    .buf_write = buf_write,
    .buf_read = buf_read,
    .buf_copy = buf_copy,
    .prog_new = prog_new,
    .prog_run = prog_run,
    .prog_wait = prog_wait,
    .prog_free = prog_free,
};

/* Parses a thread count: decimal digits, 1 .. MAX_THREADS; 0 when invalid. */
static int parse_threads(const char *s)
{
    if (!s || !*s) return 0;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (*s - '0');
        if (v > MAX_THREADS) return 0;
    }
    return (int)v;
}

static void cpu_model(char *dst, size_t cap)
{
    snprintf(dst, cap, "x86-64");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c += 1 + (c[1] == ' ');
        c[strcspn(c, "\n")] = 0;
        snprintf(dst, cap, "%s", c);
        break;
    }
    fclose(f);
}

static porta_status __attribute__((noinline))
open_checked(const porta_host *host, const char *spec, const porta_backend_vt **vt, void **out)
{
    int threads;
    if (spec && *spec) {
        threads = parse_threads(spec);
        if (!threads)
            return host->fail(PORTA_ERR_ARG, "cpu: \"%s\" is not a thread count (1..%d)", spec, MAX_THREADS);
    } else if (getenv("PORTA_THREADS")) {
        threads = parse_threads(getenv("PORTA_THREADS"));
        if (!threads)
            return host->fail(PORTA_ERR_ARG, "cpu: PORTA_THREADS=\"%s\" is not a thread count (1..%d)",
                              getenv("PORTA_THREADS"), MAX_THREADS);
    } else {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
    }
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return host->fail(PORTA_ERR_NOMEM, "cpu: out of memory");
    be->host = *host;
    be->threads = threads;
    int rc = cpu_pool_new(threads, &be->pool);
    if (rc) {
        free(be);
        return host->fail(PORTA_ERR_NOMEM, "cpu: cannot start %d threads (%s)", threads, strerror(rc));
    }
    char model[128];
    cpu_model(model, sizeof model);
    snprintf(be->device, sizeof be->device, "%s, %d thread%s", model, threads, threads == 1 ? "" : "s");
    *vt = &cpu_vt;
    *out = be;
    return PORTA_OK;
}

/* Everything in this backend is compiled for AVX2 and FMA, so the entry point
 * alone is built for the baseline x86-64 and checks the processor before any
 * other code of the backend runs. */
__attribute__((target("arch=x86-64"))) porta_status porta_cpu_open(const porta_host *host, const char *spec,
                                                                   const porta_backend_vt **vt, void **out)
{
    *out = NULL;
    *vt = NULL;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return host->fail(PORTA_ERR_UNAVAILABLE, "cpu: this processor lacks AVX2 or FMA");
    return open_checked(host, spec, vt, out);
}
