/* The CUDA backend: module entry, vtable, buffers and programs.
 *
 * A program is one CUDA graph captured once. Each replay goes through a ring of
 * pinned, mapped host slots: the host writes the step block and inputs into
 * slot k and launches the graph, whose first kernel (stage.cu) copies them from
 * the slot to the device and whose last kernel copies the outputs the caller
 * asked for back into the slot; they reach the caller's pointers at prog_wait
 * (or when the slot is reused). The graph thus always reads the step block of
 * its own replay, and a replay costs the host one graph launch and one event.
 * Slot k is rewritten only after the event recorded behind its last replay has
 * fired. PORTA_CUDA_STAGE=0 at open moves the same bytes with one
 * cudaMemcpyAsync per step block, input and output instead (for comparison).
 *
 * PORTA_CUDA_EAGER=1 at open gives a backend whose replays launch the same
 * kernels one by one instead of the graph (nothing is captured): the figure a
 * benchmark compares graph replays with. PORTA_CUDA_PROFILE=1 also times each
 * node (replays then wait for the GPU) and prints the times when a program is
 * freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_backend.h"

#define PC_RING 8
#define PC_BLAS_WORKSPACE (32u << 20) /* cuBLAS' recommended size on Hopper */

#if defined(__GNUC__)
#define PC_EXPORT __attribute__((visibility("default")))
#else
#define PC_EXPORT
#endif

typedef struct pc_slot {
    unsigned char *host;  /* in the ring: output flags, step block, inputs, outputs */
    cudaEvent_t done;     /* recorded behind the slot's last replay */
    int pending;          /* outputs not yet handed to the caller */
    float **dst;          /* the caller's output pointers of that replay */
} pc_slot;

typedef struct pc_prog {
    pc_backend *be;
    float *arena, *scratch;
    int32_t *step;        /* device step block */
    size_t step_bytes;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    pc_rec rec;           /* eager backends: what each replay launches with */
    int launches;         /* the replay being launched or captured: kernels so far (pc_rec.launches) */
    porta_node *nodes;    /* eager backends: the plan's nodes */
    int n_nodes;
    void **written;       /* buffers the nodes write (pc_rec.written) */
    int n_written;
    int n_in, n_out;
    float **in_dev, **out_dev;
    int64_t *in_n, *out_n;
    size_t step_off;      /* byte offsets inside a slot; the output flags come first */
    size_t *in_off, *out_off;
    unsigned char *ring;  /* pinned and mapped: PC_RING slots of slot_bytes */
    size_t slot_bytes;
    int staged;           /* stage kernels move the slot's data (pc_stage) */
    pc_stage stage;
    pc_stage_job *jobs;   /* device: stage.jobs */
    uint32_t *seq;        /* device: stage.seq */
    pc_slot slot[PC_RING];
    int next;             /* slot of the next replay; the oldest one in use */
    cudaEvent_t *prof_ev; /* profiling backends: one event before each node and one after the last */
    double *prof_us;      /* per node, summed over the profiled replays */
    int prof_runs;
    int prof_skip;        /* 0 until the first profiled replay is done */
    pc_l2_list *pf;       /* L2 prefetches (pc_l2_plan): fork k launches pf[k] */
    int *pf_node;         /* the node fork k comes before, ascending */
    int n_pf, pf_next;    /* forks; the next one of the walk under way */
    cudaEvent_t pf_fork, pf_join;
} pc_prog;

porta_status pc_cuda_fail(const pc_backend *be, cudaError_t e, const char *what)
{
    porta_status st = e == cudaErrorMemoryAllocation ? PORTA_ERR_NOMEM : PORTA_ERR_DEVICE;
    return be->host->fail(st, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

porta_status pc_blas_fail(const pc_backend *be, cublasStatus_t s, const char *what)
{
    porta_status st = s == CUBLAS_STATUS_ALLOC_FAILED ? PORTA_ERR_NOMEM : PORTA_ERR_DEVICE;
    return be->host->fail(st, "cuda: %s failed: %s", what, cublasGetStatusString(s));
}

/* Teardown cannot return a status; a failure still leaves its message. */
static void pc_quiet(const pc_backend *be, cudaError_t e, const char *what)
{
    if (e != cudaSuccess) pc_cuda_fail(be, e, what);
}

/* ---- backend ------------------------------------------------------------ */

static void pc_close(void *impl)
{
    pc_backend *be = impl;
    if (!be) return;
    pc_quiet(be, cudaSetDevice(be->device), "cudaSetDevice");
    if (be->stream) pc_quiet(be, cudaStreamSynchronize(be->stream), "cudaStreamSynchronize");
    if (be->blas) {
        cublasStatus_t s = cublasDestroy(be->blas);
        if (s != CUBLAS_STATUS_SUCCESS) pc_blas_fail(be, s, "cublasDestroy");
    }
    pc_tuner_free(be);
    if (be->blas_ws) pc_quiet(be, cudaFree(be->blas_ws), "cudaFree");
    if (be->stream) pc_quiet(be, cudaStreamDestroy(be->stream), "cudaStreamDestroy");
    if (be->side) pc_quiet(be, cudaStreamDestroy(be->side), "cudaStreamDestroy");
    free(be);
}

static const char *pc_device_name(void *impl)
{
    return ((pc_backend *)impl)->name;
}

/* ---- buffers ------------------------------------------------------------ */

static porta_status pc_buf_new(void *impl, porta_dtype dt, int64_t n, void **out)
{
    pc_backend *be = impl;
    if (dt != PORTA_F32) return be->host->fail(PORTA_ERR_UNSUPPORTED, "cuda: buffers hold f32 only (dtype %d)", dt);
    if (n < 0) return be->host->fail(PORTA_ERR_ARG, "cuda: buffer of %lld elements", (long long)n);
    PC_CK(be, cudaSetDevice(be->device));
    pc_buf *b = calloc(1, sizeof *b);
    if (!b) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a buffer");
    cudaError_t e = cudaMalloc((void **)&b->ptr, (size_t)(n > 0 ? n : 1) * sizeof(float));
    if (e != cudaSuccess) {
        free(b);
        return pc_cuda_fail(be, e, "cudaMalloc (buffer)");
    }
    b->n = n;
    *out = b;
    return PORTA_OK;
}

static void pc_buf_free(void *impl, void *buf)
{
    pc_backend *be = impl;
    pc_buf *b = buf;
    if (!b) return;
    pc_quiet(be, cudaSetDevice(be->device), "cudaSetDevice");
    /* Replays in flight may still read it. */
    pc_quiet(be, cudaStreamSynchronize(be->stream), "cudaStreamSynchronize");
    pc_quiet(be, cudaFree(b->ptr), "cudaFree");
    free(b);
}

static porta_status pc_range(const pc_backend *be, const pc_buf *b, int64_t off, int64_t n)
{
    if (off < 0 || n < 0 || off > b->n || n > b->n - off)
        return be->host->fail(PORTA_ERR_ARG, "cuda: elements [%lld, %lld) outside a buffer of %lld", (long long)off,
                              (long long)(off + n), (long long)b->n);
    return PORTA_OK;
}

/* Host transfers are stream ordered (after replays already submitted) and
 * synchronous for the caller: the host pointer is free on return. */
static porta_status pc_buf_write(void *impl, void *buf, int64_t off, int64_t n, const float *src)
{
    pc_backend *be = impl;
    pc_buf *b = buf;
    porta_status st = pc_range(be, b, off, n);
    if (st || n == 0) return st;
    PC_CK(be, cudaSetDevice(be->device));
    PC_CK(be, cudaMemcpyAsync(b->ptr + off, src, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, be->stream));
    PC_CK(be, cudaStreamSynchronize(be->stream));
    return PORTA_OK;
}

static porta_status pc_buf_read(void *impl, void *buf, int64_t off, int64_t n, float *dst)
{
    pc_backend *be = impl;
    pc_buf *b = buf;
    porta_status st = pc_range(be, b, off, n);
    if (st || n == 0) return st;
    PC_CK(be, cudaSetDevice(be->device));
    PC_CK(be, cudaMemcpyAsync(dst, b->ptr + off, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, be->stream));
    PC_CK(be, cudaStreamSynchronize(be->stream));
    return PORTA_OK;
}

static porta_status pc_buf_copy(void *impl, void *dst, int64_t doff, void *src, int64_t soff, int64_t n)
{
    pc_backend *be = impl;
    pc_buf *d = dst, *s = src;
    porta_status st = pc_range(be, d, doff, n);
    if (!st) st = pc_range(be, s, soff, n);
    if (st || n == 0) return st;
    PC_CK(be, cudaSetDevice(be->device));
    PC_CK(be, cudaMemcpyAsync(d->ptr + doff, s->ptr + soff, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice,
                              be->stream));
    return PORTA_OK;
}

static porta_status pc_sync(void *impl)
{
    pc_backend *be = impl;
    PC_CK(be, cudaSetDevice(be->device));
    PC_CK(be, cudaStreamSynchronize(be->stream));
    return PORTA_OK;
}

/* ---- programs ----------------------------------------------------------- */

static porta_status pc_node(pc_rec *r, const porta_node *n)
{
    switch (n->op) {
    case PORTA_OP_COPY: return pc_copy(r, n);
    case PORTA_OP_LINEAR:
    case PORTA_OP_LINEAR_FUSED:
    case PORTA_OP_MATMUL: return pc_matmul(r, n);
    case PORTA_OP_ADD:
    case PORTA_OP_MUL:
    case PORTA_OP_SILU:
    case PORTA_OP_SWIGLU: return pc_eltwise(r, n);
    case PORTA_OP_RMSNORM:
    case PORTA_OP_LAYERNORM: return pc_norm(r, n);
    case PORTA_OP_SOFTMAX: return pc_softmax(r, n);
    case PORTA_OP_ROPE:
    case PORTA_OP_KV_APPEND_ROPE: return pc_rope(r, n);
    case PORTA_OP_KV_APPEND: return pc_kv_update(r, n);
    case PORTA_OP_ATTN_CACHED:
    case PORTA_OP_ATTN: return pc_attention(r, n);
    case PORTA_OP_MIXTURE_SAMPLE: return pc_sample(r, n);
    default: return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: unknown op %d", n->name, (int)n->op);
    }
}

/* Launches nodes[0], or the nodes[0..*used) that run as one launch. The
 * dry pass, the capture and eager replays walk the nodes the same way. */
static porta_status pc_step(pc_rec *r, const porta_node *nodes, int n_left, int *used)
{
    *used = pc_rope_group_len(r->be, nodes, n_left);
    return *used > 1 ? pc_rope_group(r, nodes, *used) : pc_node(r, nodes);
}

static porta_status pc_check_refs(const pc_backend *be, const porta_node *n)
{
    int bad = n->out.mem != PORTA_MEM_NONE && n->out.dtype != PORTA_F32;
    for (int i = 0; i < n->n_in; i++)
        bad |= n->in[i].mem != PORTA_MEM_NONE && n->in[i].dtype != PORTA_F32;
    if (bad) return be->host->fail(PORTA_ERR_UNSUPPORTED, "cuda %s: kernels take f32 tensors only", n->name);
    if (n->out.mem == PORTA_MEM_NONE || (n->n_in > 0 && n->in[0].mem == PORTA_MEM_NONE))
        return be->host->fail(PORTA_ERR_ARG, "cuda %s: node without output or first input", n->name);
    return PORTA_OK;
}

/* PORTA_CUDA_PROFILE=1: the time of each node, on stderr when the program is
 * freed (programs replayed at least 3 times). */
static void pc_prof_report(const pc_prog *p)
{
    porta_profile_report(stderr, "cuda", p->nodes, p->n_nodes, p->prof_us, p->prof_runs,
                         "nodes launched together are timed on the first");
}

static void pc_prog_free(void *prog)
{
    pc_prog *p = prog;
    if (!p) return;
    pc_backend *be = p->be;
    pc_quiet(be, cudaSetDevice(be->device), "cudaSetDevice");
    pc_quiet(be, cudaStreamSynchronize(be->stream), "cudaStreamSynchronize");
    if (p->exec) pc_quiet(be, cudaGraphExecDestroy(p->exec), "cudaGraphExecDestroy");
    if (p->graph) pc_quiet(be, cudaGraphDestroy(p->graph), "cudaGraphDestroy");
    if (p->ring) pc_quiet(be, cudaFreeHost(p->ring), "cudaFreeHost");
    if (p->jobs) pc_quiet(be, cudaFree(p->jobs), "cudaFree");
    if (p->seq) pc_quiet(be, cudaFree(p->seq), "cudaFree");
    for (int k = 0; k < PC_RING; k++) {
        if (p->slot[k].done) pc_quiet(be, cudaEventDestroy(p->slot[k].done), "cudaEventDestroy");
        free(p->slot[k].dst);
    }
    if (p->prof_ev) {
        pc_prof_report(p);
        for (int i = 0; i <= p->n_nodes; i++)
            if (p->prof_ev[i]) pc_quiet(be, cudaEventDestroy(p->prof_ev[i]), "cudaEventDestroy");
    }
    free(p->prof_ev);
    free(p->prof_us);
    if (p->pf_fork) pc_quiet(be, cudaEventDestroy(p->pf_fork), "cudaEventDestroy");
    if (p->pf_join) pc_quiet(be, cudaEventDestroy(p->pf_join), "cudaEventDestroy");
    free(p->pf);
    free(p->pf_node);
    if (p->arena) pc_quiet(be, cudaFree(p->arena), "cudaFree");
    if (p->scratch) pc_quiet(be, cudaFree(p->scratch), "cudaFree");
    if (p->step) pc_quiet(be, cudaFree(p->step), "cudaFree");
    free(p->nodes);
    free(p->written);
    free(p->in_dev);
    free(p->out_dev);
    free(p->in_n);
    free(p->out_n);
    free(p->in_off);
    free(p->out_off);
    free(p);
}

static size_t pc_align16(size_t x)
{
    return (x + 15) & ~(size_t)15;
}

/* The stage kernels' job table and replay counter, on the device. */
static porta_status pc_stage_setup(pc_prog *p)
{
    pc_backend *be = p->be;
    int n_in = (p->step_bytes > 0) + p->n_in, n = n_in + p->n_out + 1;
    pc_stage_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!jobs) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    pc_stage *st = &p->stage;
    int k = 0;
    if (p->step_bytes > 0)
        jobs[k++] = (pc_stage_job){ p->step, (int64_t)p->step_off, (int64_t)(p->step_bytes / sizeof(int32_t)) };
    for (int i = 0; i < p->n_in; i++) jobs[k++] = (pc_stage_job){ p->in_dev[i], (int64_t)p->in_off[i], p->in_n[i] };
    for (int i = 0; i < p->n_out; i++)
        jobs[k++] = (pc_stage_job){ p->out_dev[i], (int64_t)p->out_off[i], p->out_n[i] };
    for (int i = 0; i < k; i++) {
        if (i < n_in && st->in_words < jobs[i].words) st->in_words = jobs[i].words;
        if (i >= n_in && st->out_words < jobs[i].words) st->out_words = jobs[i].words;
    }
    cudaError_t e = cudaMalloc((void **)&p->jobs, (size_t)n * sizeof *jobs);
    if (e == cudaSuccess) e = cudaMemcpyAsync(p->jobs, jobs, (size_t)n * sizeof *jobs, cudaMemcpyHostToDevice, be->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(be->stream);
    free(jobs);
    if (e != cudaSuccess) return pc_cuda_fail(be, e, "staging table upload");
    const uint32_t zero[2] = { 0, 0 };
    PC_CK(be, cudaMalloc((void **)&p->seq, sizeof zero));
    PC_CK(be, cudaMemcpyAsync(p->seq, zero, sizeof zero, cudaMemcpyHostToDevice, be->stream));
    PC_CK(be, cudaStreamSynchronize(be->stream));
    PC_CK(be, cudaHostGetDevicePointer((void **)&st->ring, p->ring, 0));
    st->slot_bytes = (int64_t)p->slot_bytes;
    st->jobs = p->jobs;
    st->empty = p->jobs + n - 1;
    st->n_in = n_in;
    st->n_out = p->n_out;
    st->seq = p->seq;
    return PORTA_OK;
}

/* Host-side tables and the pinned slots. */
static porta_status pc_prog_io(pc_prog *p, const porta_plan *plan, const pc_rec *r)
{
    pc_backend *be = p->be;
    p->n_in = plan->n_inputs;
    p->n_out = plan->n_outputs;
    int ni = p->n_in > 0 ? p->n_in : 1, no = p->n_out > 0 ? p->n_out : 1;
    p->in_dev = calloc((size_t)ni, sizeof *p->in_dev);
    p->out_dev = calloc((size_t)no, sizeof *p->out_dev);
    p->in_n = calloc((size_t)ni, sizeof *p->in_n);
    p->out_n = calloc((size_t)no, sizeof *p->out_n);
    p->in_off = calloc((size_t)ni, sizeof *p->in_off);
    p->out_off = calloc((size_t)no, sizeof *p->out_off);
    if (!p->in_dev || !p->out_dev || !p->in_n || !p->out_n || !p->in_off || !p->out_off)
        return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    /* Output flags, step block, inputs, outputs. */
    p->step_off = pc_align16((size_t)no * sizeof(int32_t));
    size_t at = pc_align16(p->step_off + p->step_bytes);
    for (int i = 0; i < p->n_in; i++) {
        const porta_ref *ref = &plan->inputs[i];
        if (ref->mem != PORTA_MEM_ARENA || !porta_ref_dense(ref))
            return be->host->fail(PORTA_ERR_ARG, "cuda: input %d is not a dense arena region", i);
        p->in_dev[i] = pc_ptr(r, ref);
        p->in_n[i] = porta_ref_numel(ref);
        p->in_off[i] = at;
        at = pc_align16(at + (size_t)p->in_n[i] * sizeof(float));
    }
    for (int i = 0; i < p->n_out; i++) {
        const porta_ref *ref = &plan->outputs[i];
        if (ref->mem == PORTA_MEM_NONE || !porta_ref_dense(ref))
            return be->host->fail(PORTA_ERR_ARG, "cuda: output %d is not a dense region", i);
        p->out_dev[i] = pc_ptr(r, ref);
        p->out_n[i] = porta_ref_numel(ref);
        p->out_off[i] = at;
        at = pc_align16(at + (size_t)p->out_n[i] * sizeof(float));
    }
    p->slot_bytes = at;
    PC_CK(be, cudaHostAlloc((void **)&p->ring, PC_RING * at, cudaHostAllocMapped));
    memset(p->ring, 0, PC_RING * at);
    for (int k = 0; k < PC_RING; k++) {
        p->slot[k].dst = calloc((size_t)no, sizeof *p->slot[k].dst);
        if (!p->slot[k].dst) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
        p->slot[k].host = p->ring + (size_t)k * at;
        PC_CK(be, cudaEventCreateWithFlags(&p->slot[k].done, cudaEventDisableTiming));
    }
    p->staged = be->stage && (p->step_bytes > 0 || p->n_in > 0 || p->n_out > 0);
    return p->staged ? pc_stage_setup(p) : PORTA_OK;
}

static porta_status pc_stage_run(const pc_prog *p, const pc_rec *r, int out)
{
    cudaError_t e = pc_stage_launch(r, &p->stage, out, PC_RING);
    return e == cudaSuccess ? PORTA_OK : pc_cuda_fail(p->be, e, out ? "stage_out launch" : "stage_in launch");
}

/* The L2 prefetch branch. The weights of the linears that read a buffer no
 * kernel of the program writes are asked into L2 ahead of their use, while
 * the kernels before them run: just before linear j is launched, a fork of
 * the replay (waiting for the node before j) prefetches the next linears not
 * yet asked for, as far as j's weights and theirs fit in the window
 * (be->l2pf_bytes). The fork's kernel issues the prefetches and ends; the
 * replay's last node waits for the branch. At batch 1 the latency-bound
 * kernels (rope, attention, norms) then run while HBM streams the next
 * weights, and the linears read them from L2. */
static porta_status pc_l2_plan(pc_prog *p, const porta_plan *plan, const pc_rec *r)
{
    pc_backend *be = p->be;
    if (!be->l2pf) return PORTA_OK;
    const size_t nn = (size_t)(plan->n_nodes > 0 ? plan->n_nodes : 1);
    int m = 0, *idx = malloc(nn * sizeof *idx);
    int64_t *bytes = malloc(nn * sizeof *bytes);
    p->pf = calloc(nn, sizeof *p->pf);
    p->pf_node = malloc(nn * sizeof *p->pf_node);
    if (!idx || !bytes || !p->pf || !p->pf_node) {
        free(idx);
        free(bytes);
        return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    }
    for (int i = 0; i < plan->n_nodes; i++) {
        const porta_node *n = &plan->nodes[i];
        if ((n->op != PORTA_OP_LINEAR && n->op != PORTA_OP_LINEAR_FUSED) || !pc_has(n, 1) ||
            !porta_ref_dense(&n->in[1]) || !pc_unwritten(r, &n->in[1]))
            continue;
        int64_t b = porta_ref_numel(&n->in[1]) * (int64_t)sizeof(float);
        idx[m] = i;
        bytes[m++] = b;
    }
    for (int j = 0, next = 0; j < m; j++) {
        int64_t sum = bytes[j];
        int k = j;
        while (k + 1 < m && sum + bytes[k + 1] <= be->l2pf_bytes) sum += bytes[++k];
        for (int t = next > j + 1 ? next : j + 1; t <= k; t++) {
            pc_l2_list *l = &p->pf[p->n_pf];
            if (p->n_pf == 0 || p->pf_node[p->n_pf - 1] != idx[j] || p->pf[p->n_pf - 1].n == PC_L2_MAX) {
                p->pf_node[p->n_pf++] = idx[j];
            } else {
                l = &p->pf[p->n_pf - 1];
            }
            const porta_ref *w = &plan->nodes[idx[t]].in[1];
            l->p[l->n] = pc_ptr(r, w);
            l->bytes[l->n++] = bytes[t];
        }
        if (k + 1 > next) next = k + 1;
    }
    free(idx);
    free(bytes);
    if (p->n_pf > 0) {
        PC_CK(be, cudaEventCreateWithFlags(&p->pf_fork, cudaEventDisableTiming));
        PC_CK(be, cudaEventCreateWithFlags(&p->pf_join, cudaEventDisableTiming));
    }
    return PORTA_OK;
}

/* Before the launch that starts at node i of a walk: the forks planned for
 * it or for a node before it (a linear never sits inside a launch group). */
static porta_status pc_l2_fork(pc_prog *p, int i)
{
    pc_backend *be = p->be;
    int forked = 0;
    for (; p->pf_next < p->n_pf && p->pf_node[p->pf_next] <= i; p->pf_next++) {
        if (!forked) {
            PC_CK(be, cudaEventRecord(p->pf_fork, be->stream));
            PC_CK(be, cudaStreamWaitEvent(be->side, p->pf_fork, 0));
            forked = 1;
        }
        PC_CK(be, pc_l2_prefetch_launch(be->side, &p->pf[p->pf_next], be->l2pf, be->sms));
    }
    return PORTA_OK;
}

/* After the walk's last node: the replay waits for the branch. */
static porta_status pc_l2_join(pc_prog *p)
{
    pc_backend *be = p->be;
    if (p->n_pf == 0) return PORTA_OK;
    PC_CK(be, cudaEventRecord(p->pf_join, be->side));
    PC_CK(be, cudaStreamWaitEvent(be->stream, p->pf_join, 0));
    return PORTA_OK;
}

static porta_status pc_capture(pc_prog *p, const porta_plan *plan, pc_rec *r)
{
    pc_backend *be = p->be;
    PC_CK(be, cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeThreadLocal));
    porta_status st = PORTA_OK;
    p->launches = 0;
    if (p->staged) st = pc_stage_run(p, r, 0);
    p->pf_next = 0;
    for (int i = 0, g = 1; i < plan->n_nodes && !st; i += g) {
        st = pc_l2_fork(p, i);
        if (!st) st = pc_step(r, &plan->nodes[i], plan->n_nodes - i, &g);
    }
    if (!st) st = pc_l2_join(p);
    if (p->staged && !st) st = pc_stage_run(p, r, 1);
    cudaError_t e = cudaStreamEndCapture(be->stream, &p->graph);
    if (st) return st;
    if (e != cudaSuccess) return pc_cuda_fail(be, e, "cudaStreamEndCapture");
    PC_CK(be, cudaGraphInstantiate(&p->exec, p->graph, 0));
    PC_CK(be, cudaGraphUpload(p->exec, be->stream));
    return PORTA_OK;
}

static porta_status pc_prog_build(pc_prog *p, const porta_plan *plan)
{
    pc_backend *be = p->be;
    for (int i = 0; i < plan->n_nodes; i++) {
        porta_status st = pc_check_refs(be, &plan->nodes[i]);
        if (st) return st;
    }
    if (plan->step_rows < 0) return be->host->fail(PORTA_ERR_ARG, "cuda: step block of %d rows", plan->step_rows);
    p->step_bytes = (size_t)plan->step_rows * PORTA_STEP_FIELDS * sizeof(int32_t);
    PC_CK(be, cudaMalloc((void **)&p->arena, (size_t)(plan->arena_elems > 0 ? plan->arena_elems : 1) * sizeof(float)));
    PC_CK(be, cudaMalloc((void **)&p->step, p->step_bytes > 0 ? p->step_bytes : sizeof(int32_t)));
    p->written = malloc((size_t)(plan->n_nodes > 0 ? plan->n_nodes : 1) * sizeof *p->written);
    if (!p->written) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    for (int i = 0; i < plan->n_nodes; i++) {
        const porta_ref *o = &plan->nodes[i].out;
        int seen = o->mem != PORTA_MEM_BUFFER;
        for (int k = 0; k < p->n_written && !seen; k++) seen = p->written[k] == o->buf;
        if (!seen) p->written[p->n_written++] = o->buf;
    }
    pc_rec r = {.be = be, .dry = 1, .arena = p->arena, .step = p->step, .step_rows = plan->step_rows,
                .written = p->written, .n_written = p->n_written, .launches = &p->launches};
    for (int i = 0, g = 1; i < plan->n_nodes; i += g) {
        porta_status st = pc_step(&r, &plan->nodes[i], plan->n_nodes - i, &g);
        if (st) return st;
    }
    if (r.scratch_elems > 0) PC_CK(be, cudaMalloc((void **)&p->scratch, (size_t)r.scratch_elems * sizeof(float)));
    r.scratch = p->scratch;
    r.dry = 0;
    porta_status st = pc_prog_io(p, plan, &r);
    if (!st) st = pc_l2_plan(p, plan, &r);
    if (st) return st;
    if (!be->eager) return pc_capture(p, plan, &r);
    p->rec = r;
    p->n_nodes = plan->n_nodes;
    p->nodes = malloc((size_t)(plan->n_nodes > 0 ? plan->n_nodes : 1) * sizeof *p->nodes);
    if (!p->nodes) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    memcpy(p->nodes, plan->nodes, (size_t)plan->n_nodes * sizeof *p->nodes);
    if (be->profile) {
        p->prof_ev = calloc((size_t)plan->n_nodes + 1, sizeof *p->prof_ev);
        p->prof_us = calloc((size_t)plan->n_nodes + 1, sizeof *p->prof_us);
        if (!p->prof_ev || !p->prof_us)
            return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
        for (int i = 0; i <= plan->n_nodes; i++) PC_CK(be, cudaEventCreate(&p->prof_ev[i]));
    }
    return PORTA_OK;
}

static porta_status pc_prog_new(void *impl, const porta_plan *plan, porta_backend_counts *counts, void **out)
{
    pc_backend *be = impl;
    PC_CK(be, cudaSetDevice(be->device));
    pc_prog *p = calloc(1, sizeof *p);
    if (!p) return be->host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for a program");
    p->be = be;
    porta_status st = pc_prog_build(p, plan);
    if (st) {
        pc_prog_free(p);
        return st;
    }
    if (!be->eager) counts->captures++;
    counts->prefetches = (uint64_t)p->n_pf;
    *out = p;
    return PORTA_OK;
}

static void pc_deliver(pc_prog *p, pc_slot *s)
{
    for (int i = 0; i < p->n_out; i++)
        if (s->dst[i]) memcpy(s->dst[i], s->host + p->out_off[i], (size_t)p->out_n[i] * sizeof(float));
    s->pending = 0;
}

static porta_status pc_prog_run(void *prog, const int32_t *step_block, const float *const *inputs,
                                float *const *outputs)
{
    pc_prog *p = prog;
    pc_backend *be = p->be;
    cudaStream_t st = be->stream;
    if (p->step_bytes > 0 && !step_block) return be->host->fail(PORTA_ERR_ARG, "cuda: replay without a step block");
    for (int i = 0; i < p->n_in; i++)
        if (!inputs || !inputs[i]) return be->host->fail(PORTA_ERR_ARG, "cuda: input %d missing", i);
    PC_CK(be, cudaSetDevice(be->device));
    pc_slot *s = &p->slot[p->next];
    PC_CK(be, cudaEventSynchronize(s->done));
    if (s->pending) pc_deliver(p, s);

    if (p->step_bytes > 0) memcpy(s->host + p->step_off, step_block, p->step_bytes);
    for (int i = 0; i < p->n_in; i++) memcpy(s->host + p->in_off[i], inputs[i], (size_t)p->in_n[i] * sizeof(float));
    int32_t *want = (int32_t *)s->host;
    for (int i = 0; i < p->n_out; i++) {
        s->dst[i] = outputs ? outputs[i] : NULL;
        want[i] = s->dst[i] != NULL;
        s->pending |= want[i];
    }
    if (!p->staged) {
        if (p->step_bytes > 0)
            PC_CK(be, cudaMemcpyAsync(p->step, s->host + p->step_off, p->step_bytes, cudaMemcpyHostToDevice, st));
        for (int i = 0; i < p->n_in; i++)
            PC_CK(be, cudaMemcpyAsync(p->in_dev[i], s->host + p->in_off[i], (size_t)p->in_n[i] * sizeof(float),
                                      cudaMemcpyHostToDevice, st));
    }
    if (be->eager) {
        /* Profiling: the GPU waits while the host launches every node, so
         * the events time the kernels back to back, not the launches. */
        if (p->prof_ev) PC_CK(be, pc_spin(st, 20000LL * (p->n_nodes + 1)));
        p->launches = 0;
        if (p->staged) {
            porta_status e = pc_stage_run(p, &p->rec, 0);
            if (e) return e;
        }
        p->pf_next = 0;
        for (int i = 0, g = 1; i < p->n_nodes; i += g) {
            if (p->prof_ev) PC_CK(be, cudaEventRecord(p->prof_ev[i], st));
            porta_status e = pc_l2_fork(p, i);
            if (!e) e = pc_step(&p->rec, &p->nodes[i], p->n_nodes - i, &g);
            if (e) return e;
            /* Nodes launched together: the first carries their time. */
            for (int k = 1; k < g && p->prof_ev; k++) PC_CK(be, cudaEventRecord(p->prof_ev[i + k], st));
        }
        if (p->prof_ev) PC_CK(be, cudaEventRecord(p->prof_ev[p->n_nodes], st));
        porta_status j = pc_l2_join(p);
        if (j) return j;
        if (p->staged) {
            porta_status e = pc_stage_run(p, &p->rec, 1);
            if (e) return e;
        }
        if (p->prof_ev) {
            PC_CK(be, cudaEventSynchronize(p->prof_ev[p->n_nodes]));
            for (int i = 0; i < p->n_nodes && p->prof_skip; i++) {
                float ms = 0;
                PC_CK(be, cudaEventElapsedTime(&ms, p->prof_ev[i], p->prof_ev[i + 1]));
                p->prof_us[i] += 1e3 * ms;
            }
            p->prof_runs += p->prof_skip;
            p->prof_skip = 1;
        }
    } else {
        PC_CK(be, cudaGraphLaunch(p->exec, st));
    }
    /* The device's replay counter has moved on with this replay (stage_out):
     * so does the host's, whatever happens next. */
    p->next = (p->next + 1) % PC_RING;
    for (int i = 0; i < p->n_out && !p->staged; i++)
        if (s->dst[i])
            PC_CK(be, cudaMemcpyAsync(s->host + p->out_off[i], p->out_dev[i], (size_t)p->out_n[i] * sizeof(float),
                                      cudaMemcpyDeviceToHost, st));
    PC_CK(be, cudaEventRecord(s->done, st));
    return PORTA_OK;
}

static porta_status pc_prog_wait(void *prog)
{
    pc_prog *p = prog;
    pc_backend *be = p->be;
    PC_CK(be, cudaSetDevice(be->device));
    PC_CK(be, cudaStreamSynchronize(be->stream));
    /* Oldest first, so a pointer shared by several replays ends with the last. */
    for (int k = 0; k < PC_RING; k++) {
        pc_slot *s = &p->slot[(p->next + k) % PC_RING];
        if (s->pending) pc_deliver(p, s);
    }
    return PORTA_OK;
}

static const porta_backend_vt pc_vt = {
    .abi = PORTA_MODULE_ABI,
    .kind = "cuda",
    .caps = PORTA_CAP_FUSED_LINEAR | PORTA_CAP_FUSED_ROPE_APPEND | PORTA_CAP_MIXTURE_SAMPLE,
    .close = pc_close,
    .device_name = pc_device_name,
    .buf_new = pc_buf_new,
    .buf_free = pc_buf_free,
    .buf_write = pc_buf_write,
    .buf_read = pc_buf_read,
    .buf_copy = pc_buf_copy,
    .sync = pc_sync,
    .prog_new = pc_prog_new,
    .prog_run = pc_prog_run,
    .prog_wait = pc_prog_wait,
    .prog_free = pc_prog_free,
};

/* ---- module entry ------------------------------------------------------- */

/* "" and "discrete" take device 0, the fastest under CUDA's default device
 * order (CUDA devices other than embedded boards are discrete; those are
 * refused for "discrete" in pc_setup); "N" takes device N. */
static porta_status pc_parse_spec(const porta_host *host, const char *spec, int *dev, int *discrete)
{
    *dev = 0;
    *discrete = spec && strcmp(spec, "discrete") == 0;
    if (!spec || !*spec || *discrete) return PORTA_OK;
    char *end;
    long v = strtol(spec, &end, 10);
    if (*end || v < 0 || v > 1024 || end == spec)
        return host->fail(PORTA_ERR_ARG, "cuda: bad device '%s' (want a device number)", spec);
    *dev = (int)v;
    return PORTA_OK;
}

static porta_status pc_setup(pc_backend *be, int discrete)
{
    PC_CK(be, cudaSetDevice(be->device));
    struct cudaDeviceProp prop;
    PC_CK(be, cudaGetDeviceProperties(&prop, be->device));
    if (discrete && prop.integrated)
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "cuda: device %d (%s) is integrated, not discrete", be->device,
                              prop.name);
    cudaError_t e = pc_probe_kernels();
    if (e != cudaSuccess)
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "cuda: no kernel in this build runs on device %d (%s, sm_%d%d): %s",
                              be->device, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
    be->smem_optin = (int)prop.sharedMemPerBlockOptin;
    const char *pdl = getenv("PORTA_CUDA_PDL");
    be->pdl = prop.major >= 9 && !(pdl && strcmp(pdl, "0") == 0);
    const char *no_fuse = getenv("PORTA_NO_FUSE");
    be->group = !(no_fuse && strcmp(no_fuse, "1") == 0);
    const char *stage = getenv("PORTA_CUDA_STAGE");
    be->stage = !(stage && strcmp(stage, "0") == 0);
    const char *prefetch = getenv("PORTA_CUDA_PREFETCH");
    be->prefetch = be->pdl && !(prefetch && strcmp(prefetch, "0") == 0);
    snprintf(be->name, sizeof be->name, "%s (cuda:%d, sm_%d%d)", prop.name, be->device, prop.major, prop.minor);
    PC_CK(be, cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking));
    PC_BLAS(be, cublasCreate(&be->blas));
    PC_BLAS(be, cublasSetStream(be->blas, be->stream));
    /* After cublasSetStream, which resets the workspace to cuBLAS' pool: the
     * pool cannot be used under stream capture. */
    be->blas_ws_bytes = PC_BLAS_WORKSPACE;
    PC_CK(be, cudaMalloc(&be->blas_ws, be->blas_ws_bytes));
    PC_BLAS(be, cublasSetWorkspace(be->blas, be->blas_ws, be->blas_ws_bytes));
    const char *eager = getenv("PORTA_CUDA_EAGER");
    const char *profile = getenv("PORTA_CUDA_PROFILE");
    be->profile = profile && strcmp(profile, "1") == 0;
    be->eager = (eager && strcmp(eager, "1") == 0) || be->profile;
    const char *tf32 = getenv("PORTA_CUDA_TF32");
    be->tf32 = tf32 && strcmp(tf32, "1") == 0;
    /* L2 prefetch of weights (sm_90+, pc_l2_plan): PORTA_CUDA_L2PF=1 bulk,
     * 2 line prefetches, 3 line prefetches kept last, 0 off (the default
     * until it is measured); a window of PORTA_CUDA_L2PF_PCT percent of L2
     * (default 60). Not while profiling. */
    int mode = 0, pc = 60;
    porta_status s = porta_env_int(be->host, "cuda", "PORTA_CUDA_L2PF", 0, 0, PC_L2_LINES_LAST, &mode);
    if (!s) s = porta_env_int(be->host, "cuda", "PORTA_CUDA_L2PF_PCT", 60, 1, 100, &pc);
    if (s) return s;
    if (prop.major >= 9 && prop.l2CacheSize > 0 && !be->profile && mode) {
        be->l2pf = mode;
        be->l2pf_bytes = (int64_t)prop.l2CacheSize * pc / 100;
        be->sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
        PC_CK(be, cudaStreamCreateWithFlags(&be->side, cudaStreamNonBlocking));
    }
    PC_BLAS(be, cublasSetMathMode(be->blas, be->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return PORTA_OK;
}

PC_EXPORT porta_status porta_module_open(const porta_host *host, const char *spec, const porta_backend_vt **vt,
                                         void **out)
{
    int dev, discrete, count = 0;
    porta_status st = pc_parse_spec(host, spec, &dev, &discrete);
    if (st) return st;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return host->fail(PORTA_ERR_UNAVAILABLE, "cuda: no usable CUDA driver or device (cudaGetDeviceCount: %s)",
                          cudaGetErrorString(e));
    if (dev >= count)
        return host->fail(PORTA_ERR_UNAVAILABLE, "cuda: device %d absent (%d device%s)", dev, count,
                          count == 1 ? "" : "s");
    pc_backend *be = calloc(1, sizeof *be);
    if (!be) return host->fail(PORTA_ERR_NOMEM, "cuda: out of host memory for the backend");
    be->host = host;
    be->device = dev;
    st = pc_setup(be, discrete);
    if (st) {
        pc_close(be);
        return st;
    }
    *vt = &pc_vt;
    *out = be;
    return PORTA_OK;
}
