/* The ref backend: buffers, programs and dispatch. Runs synchronously. */
#include <stdlib.h>
#include <string.h>
#include "half.h"
#include "ref.h"

typedef struct ref_program {
    ref_ctx ctx;
    const porta_node *nodes; /* owned by core's program, which outlives this */
    int n_nodes;
    const porta_ref *inputs, *outputs;
    int n_inputs, n_outputs;
    int32_t *step;
} ref_program;

static const ref_kernel kernels[PORTA_OP_COUNT] = {
    [PORTA_OP_COPY] = ref_copy,           [PORTA_OP_LINEAR] = ref_linear,
    [PORTA_OP_MATMUL] = ref_matmul,       [PORTA_OP_ADD] = ref_add,
    [PORTA_OP_MUL] = ref_mul,             [PORTA_OP_RMSNORM] = ref_rmsnorm,
    [PORTA_OP_LAYERNORM] = ref_layernorm, [PORTA_OP_SILU] = ref_silu,
    [PORTA_OP_SWIGLU] = ref_swiglu,       [PORTA_OP_SOFTMAX] = ref_softmax,
    [PORTA_OP_ROPE] = ref_rope,           [PORTA_OP_KV_APPEND] = ref_kv_append,
    [PORTA_OP_ATTN_CACHED] = ref_attention_cached, [PORTA_OP_ATTN] = ref_attention,
    [PORTA_OP_MIXTURE_SAMPLE] = ref_mixture_sample,
};

static void be_close(void *be) { free(be); }
static const char *be_device(void *be)
{
    (void)be;
    return "float64 reference (scalar C)";
}

static porta_status buf_new(void *be, porta_dtype dt, int64_t n, void **out)
{
    ref_backend *r = be;
    ref_buffer *b = calloc(1, sizeof *b);
    double *d = b ? calloc((size_t)n, sizeof *d) : NULL;
    if (!d) {
        free(b);
        return r->host->fail(PORTA_ERR_NOMEM, "ref: cannot allocate %lld elements", (long long)n);
    }
    b->d = d;
    b->n = n;
    b->dtype = dt;
    *out = b;
    return PORTA_OK;
}

static void buf_free(void *be, void *buf)
{
    (void)be;
    ref_buffer *b = buf;
    if (b) free(b->d);
    free(b);
}

/* Values are rounded to the buffer's storage type, then held as double. */
static double stored(porta_dtype dt, float v)
{
    if (dt == PORTA_BF16) return porta_bf16_to_f32(porta_f32_to_bf16(v));
    if (dt == PORTA_F16) return porta_f16_to_f32(porta_f32_to_f16(v));
    return v;
}

static porta_status buf_write(void *be, void *buf, int64_t off, int64_t n, const float *src)
{
    (void)be;
    ref_buffer *b = buf;
    for (int64_t i = 0; i < n; i++) b->d[off + i] = stored(b->dtype, src[i]);
    return PORTA_OK;
}

static porta_status buf_read(void *be, void *buf, int64_t off, int64_t n, float *dst)
{
    (void)be;
    ref_buffer *b = buf;
    for (int64_t i = 0; i < n; i++) dst[i] = (float)b->d[off + i];
    return PORTA_OK;
}

static porta_status buf_copy(void *be, void *dst, int64_t doff, void *src, int64_t soff, int64_t n)
{
    (void)be;
    memmove(((ref_buffer *)dst)->d + doff, ((ref_buffer *)src)->d + soff, (size_t)n * sizeof(double));
    return PORTA_OK;
}

static porta_status prog_new(void *be, const porta_plan *plan, porta_backend_counts *counts, void **out)
{
    ref_backend *r = be;
    (void)counts;
    int64_t keys = 1;
    for (int i = 0; i < plan->n_nodes; i++) {
        const porta_node *n = &plan->nodes[i];
        if (n->op == PORTA_OP_ATTN_CACHED && n->in[1].shape[2] > keys) keys = n->in[1].shape[2];
        if (n->op == PORTA_OP_ATTN && n->in[1].shape[1] > keys) keys = n->in[1].shape[1];
        /* a mixture's 4 x K parameters as float */
        if (n->op == PORTA_OP_MIXTURE_SAMPLE && 2 * n->in[0].shape[n->in[0].ndim - 1] > keys)
            keys = 2 * n->in[0].shape[n->in[0].ndim - 1];
    }
    ref_program *p = calloc(1, sizeof *p);
    if (p) {
        p->ctx.arena = calloc((size_t)(plan->arena_elems ? plan->arena_elems : 1), sizeof(double));
        p->ctx.scratch = malloc((size_t)keys * sizeof(double));
        p->step = calloc((size_t)(PORTA_STEP_FIELDS * plan->step_rows + 1), sizeof(int32_t));
    }
    if (!p || !p->ctx.arena || !p->ctx.scratch || !p->step) {
        if (p) {
            free(p->ctx.arena);
            free(p->ctx.scratch);
            free(p->step);
        }
        free(p);
        return r->host->fail(PORTA_ERR_NOMEM, "ref: cannot allocate a program arena of %lld elements",
                             (long long)plan->arena_elems);
    }
    p->ctx.host = r->host;
    p->ctx.rows = plan->step_rows;
    p->ctx.step = plan->step_rows ? p->step : NULL;
    p->nodes = plan->nodes;
    p->n_nodes = plan->n_nodes;
    p->inputs = plan->inputs;
    p->outputs = plan->outputs;
    p->n_inputs = plan->n_inputs;
    p->n_outputs = plan->n_outputs;
    *out = p;
    return PORTA_OK;
}

static porta_status prog_run(void *prog, const int32_t *step, const float *const *inputs, float *const *outputs)
{
    ref_program *p = prog;
    if (step) memcpy(p->step, step, (size_t)(PORTA_STEP_FIELDS * p->ctx.rows) * sizeof *step);
    for (int i = 0; i < p->n_inputs; i++) {
        double *d = ref_base(&p->ctx, &p->inputs[i]);
        int64_t n = porta_ref_numel(&p->inputs[i]);
        for (int64_t k = 0; k < n; k++) d[k] = inputs[i][k];
    }
    for (int i = 0; i < p->n_nodes; i++) kernels[p->nodes[i].op](&p->ctx, &p->nodes[i]);
    for (int i = 0; outputs && i < p->n_outputs; i++) {
        if (!outputs[i]) continue;
        const double *d = ref_base(&p->ctx, &p->outputs[i]);
        int64_t n = porta_ref_numel(&p->outputs[i]);
        for (int64_t k = 0; k < n; k++) outputs[i][k] = (float)d[k];
    }
    return PORTA_OK;
}

static porta_status prog_wait(void *prog)
{
    (void)prog;
    return PORTA_OK;
}

static void prog_free(void *prog)
{
    ref_program *p = prog;
    if (!p) return;
    free(p->ctx.arena);
    free(p->ctx.scratch);
    free(p->step);
    free(p);
}

static const porta_backend_vt ref_vt = {
    .abi = PORTA_MODULE_ABI,
    .kind = "ref",
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

porta_status porta_ref_open(const porta_host *host, const char *spec, const porta_backend_vt **vt, void **be)
{
    if (spec && spec[0]) return host->fail(PORTA_ERR_ARG, "ref: takes no device spec, got '%s'", spec);
    ref_backend *r = calloc(1, sizeof *r);
    if (!r) return host->fail(PORTA_ERR_NOMEM, "ref: out of memory");
    r->host = host;
    *vt = &ref_vt;
    *be = r;
    return PORTA_OK;
}
