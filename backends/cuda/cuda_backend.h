/* The CUDA backend's private objects, shared by backend.c and the op files.
 *
 * Each op file exposes one entry per op family. It is called twice per node
 * while a program is built: first dry (validate shapes and strides, size the
 * scratch memory, set kernel attributes; nothing is launched), then live inside
 * the stream capture (launch). Failing in the dry pass keeps errors out of the
 * capture, where a failure would invalidate the whole graph. */
#ifndef PORTA_CUDA_BACKEND_H
#define PORTA_CUDA_BACKEND_H

#include <stdint.h>
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest head dimension the attention kernels hold in registers (8 per lane). */
#define PC_MAX_HEAD_DIM 256

typedef struct pc_tuner pc_tuner;

typedef struct pc_backend {
    const porta_host *host;
    int device;
    int smem_optin;           /* bytes of shared memory a block may opt into */
    int eager;                /* replays launch kernels one by one (PORTA_CUDA_EAGER=1) */
    int profile;              /* eager, and each node timed (PORTA_CUDA_PROFILE=1) */
    int pdl;                  /* programmatic dependent launch (sm_90+, unless PORTA_CUDA_PDL=0) */
    int stage;                /* replays' data moved by stage kernels (unless PORTA_CUDA_STAGE=0) */
    int group;                /* consecutive rope and cache-append nodes run as one launch (unless PORTA_NO_FUSE=1) */
    int prefetch;             /* with pdl: weights prefetched before the launch wait (unless PORTA_CUDA_PREFETCH=0) */
    int l2pf;                 /* linears' weights prefetched into L2 on a side branch: 0 off, else PC_L2_* mode */
    int64_t l2pf_bytes;       /* the prefetch window: weight bytes in L2 at once (PORTA_CUDA_L2PF_PCT of L2) */
    int sms;                  /* multiprocessors: a prefetch launch takes at most one block on each */
    /* One stream for every program and buffer operation of this backend, so
     * that buffer copies, cache row copies and replays of different programs
     * sharing a KV cache are ordered by submission with no cross-stream events. */
    cudaStream_t stream;
    cudaStream_t side;        /* only inside a program's capture or eager replay: its L2 prefetch branch */
    cublasHandle_t blas;
    void *blas_ws;            /* cuBLAS workspace, required under stream capture */
    size_t blas_ws_bytes;
    int tf32;                 /* PORTA_CUDA_TF32=1 */
    pc_tuner *tuner;          /* GEMM algorithms chosen per shape (matmul.cu) */
    char name[320];
} pc_backend;

typedef struct pc_buf {
    float *ptr;
    int64_t n;
} pc_buf;

/* What an op entry sees while a program is built. */
typedef struct pc_rec {
    pc_backend *be;
    int dry;                  /* nonzero: validate and size, launch nothing */
    float *arena;
    const int32_t *step;      /* device step block: pos, n, src, shared [step_rows] each (plan.h) */
    int step_rows;
    float *scratch;           /* shared by all nodes: nodes run one after another */
    int64_t scratch_elems;    /* dry pass: the largest request so far */
    void *const *written;     /* the buffers some node of the program writes (the KV cache) */
    int n_written;
    int *launches;            /* kernels launched so far in this replay (pc_launch counts them) */
} pc_rec;

/* Nonzero when the kernel launched next may read, before its launch wait,
 * what the replay's staging wrote (the step block). With programmatic dependent
 * launch a kernel starts once the kernel before it has passed its own wait,
 * that is once the kernel two launches back has completed: so the next
 * kernel needs two launches of this replay ahead of it. Without it every
 * kernel starts after its predecessor completes. PORTA_CUDA_PREFETCH=0 turns
 * these reads off with the weight prefetch. */
static inline int pc_early(const pc_rec *r)
{
    return !r->be->pdl || (r->be->prefetch && r->launches && *r->launches >= 2);
}

/* Staging (stage.cu): what moves between a replay's mapped host slot and the
 * device. Job k < n_in copies words from slot offset off to dev; job n_in + i
 * copies output i from dev to slot offset off, when the slot's int32 flag i
 * (at offset 4 i) is set. */
typedef struct pc_stage_job {
    void *dev;
    int64_t off;              /* bytes into a slot, 16-byte aligned */
    int64_t words;            /* 4-byte words */
} pc_stage_job;

typedef struct pc_stage {
    unsigned char *ring;      /* device address of the mapped slots, slot k at k * slot_bytes */
    int64_t slot_bytes;
    const pc_stage_job *jobs; /* device: n_in, then n_out jobs */
    const pc_stage_job *empty;/* device: a job of no words */
    int n_in, n_out;
    int64_t in_words, out_words; /* the largest job of each kind */
    uint32_t *seq;            /* device: [0] replays staged out so far, [1] the replay in flight */
} pc_stage;

/* A strided view with up to PORTA_PLAN_MAX_DIMS dims, passed to kernels by value. */
typedef struct pc_strided {
    int ndim;
    int64_t shape[PORTA_PLAN_MAX_DIMS];
    int64_t stride[PORTA_PLAN_MAX_DIMS];
} pc_strided;

/* Turns a failed CUDA call into a status with a message. */
porta_status pc_cuda_fail(const pc_backend *be, cudaError_t e, const char *what);
porta_status pc_blas_fail(const pc_backend *be, cublasStatus_t s, const char *what);

#define PC_CK(be, call)                                                        \
    do {                                                                       \
        cudaError_t pc_e_ = (call);                                            \
        if (pc_e_ != cudaSuccess) return pc_cuda_fail((be), pc_e_, #call);     \
    } while (0)

#define PC_BLAS(be, call)                                                      \
    do {                                                                       \
        cublasStatus_t pc_s_ = (call);                                         \
        if (pc_s_ != CUBLAS_STATUS_SUCCESS) return pc_blas_fail((be), pc_s_, #call); \
    } while (0)

#define PC_FAIL(r, st, ...) ((r)->be->host->fail((st), __VA_ARGS__))

/* Device address of a reference's first element. */
static inline float *pc_ptr(const pc_rec *r, const porta_ref *ref)
{
    if (ref->mem == PORTA_MEM_ARENA) return r->arena + ref->offset;
    if (ref->mem == PORTA_MEM_BUFFER) return ((pc_buf *)ref->buf)->ptr + ref->offset;
    return NULL;
}

/* Nonzero when ref lies in a buffer no kernel of the program writes (a
 * weight). pc_stable: and kernels may read it before waiting for the kernel
 * ahead of them (programmatic launch with PORTA_CUDA_PREFETCH). */
static inline int pc_unwritten(const pc_rec *r, const porta_ref *ref)
{
    if (ref->mem != PORTA_MEM_BUFFER) return 0;
    for (int i = 0; i < r->n_written; i++)
        if (r->written[i] == ref->buf) return 0;
    return 1;
}

static inline int pc_stable(const pc_rec *r, const porta_ref *ref)
{
    return r->be->prefetch && pc_unwritten(r, ref);
}

static inline int pc_has(const porta_node *n, int i)
{
    return i < n->n_in && n->in[i].mem != PORTA_MEM_NONE;
}

static inline pc_strided pc_view(const porta_ref *ref)
{
    pc_strided s;
    s.ndim = ref->ndim;
    for (int i = 0; i < PORTA_PLAN_MAX_DIMS; i++) {
        s.shape[i] = i < ref->ndim ? ref->shape[i] : 1;
        s.stride[i] = i < ref->ndim ? ref->stride[i] : 0;
    }
    return s;
}

/* Collapses dims [lo, hi) of ref into one (count, stride) pair. Returns 0 when
 * they are not evenly strided. Size-1 dims are ignored. */
static inline int pc_collapse(const porta_ref *ref, int lo, int hi, int64_t *count, int64_t *stride)
{
    int64_t n = 1, s = 0;
    int have = 0;
    for (int i = hi - 1; i >= lo; i--) {
        if (ref->shape[i] == 1) continue;
        if (!have) {
            s = ref->stride[i];
            have = 1;
        } else if (ref->stride[i] != s * n) {
            return 0;
        }
        n *= ref->shape[i];
    }
    *count = n;
    *stride = have ? s : 0;
    return 1;
}

/* Views ref as a rows x cols matrix (cols = last dim, leading dims collapsed).
 * Returns 0 when the leading dims do not collapse. */
static inline int pc_matrix(const porta_ref *ref, int64_t *rows, int64_t *cols, int64_t *rs, int64_t *cs)
{
    if (ref->ndim == 0) {
        *rows = *cols = *rs = *cs = 1;
        return 1;
    }
    *cols = ref->shape[ref->ndim - 1];
    *cs = *cols == 1 ? 1 : ref->stride[ref->ndim - 1];
    if (!pc_collapse(ref, 0, ref->ndim - 1, rows, rs)) return 0;
    if (*rows == 1) *rs = *cols * *cs;
    return 1;
}

/* Threads per block and a capped block count for grid-stride loops. */
#define PC_THREADS 256
static inline unsigned pc_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return b > (1 << 20) ? (1u << 20) : (unsigned)b;
}

/* Op families, one per file stem. */
porta_status pc_copy(pc_rec *r, const porta_node *n);
porta_status pc_matmul(pc_rec *r, const porta_node *n);      /* LINEAR, MATMUL */
porta_status pc_eltwise(pc_rec *r, const porta_node *n);     /* ADD, MUL, SILU, SWIGLU */
porta_status pc_norm(pc_rec *r, const porta_node *n);        /* RMSNORM, LAYERNORM */
/* RMSNorm of M rows of K (row stride xrs, column stride xcs) into dense out,
 * times g (stride gs) when not NULL. */
porta_status pc_rmsnorm_rows(pc_rec *r, float *out, const float *x, int64_t M, int64_t K, int64_t xrs, int64_t xcs,
                             const float *g, int64_t gs, float eps);
porta_status pc_softmax(pc_rec *r, const porta_node *n);
porta_status pc_rope(pc_rec *r, const porta_node *n);        /* ROPE, KV_APPEND_ROPE */
porta_status pc_kv_update(pc_rec *r, const porta_node *n);   /* KV_APPEND (rope.cu) */
/* Most nodes of one rope launch. */
#define PC_ROPE_GROUP 4
/* How many nodes from nodes[0] (of n_left) run as one launch of pc_rope_group:
 * consecutive ROPE, KV_APPEND_ROPE and KV_APPEND nodes none of which writes
 * what another reads or writes; 1 for any other node. */
int pc_rope_group_len(const pc_backend *be, const porta_node *nodes, int n_left);
porta_status pc_rope_group(pc_rec *r, const porta_node *nodes, int g);
porta_status pc_attention(pc_rec *r, const porta_node *n);   /* ATTN_CACHED, ATTN */
porta_status pc_sample(pc_rec *r, const porta_node *n);      /* MIXTURE_SAMPLE */

/* Launches stage_in (out 0) or stage_out (out 1) for a ring of n_ring slots. */
cudaError_t pc_stage_launch(const pc_rec *r, const pc_stage *s, int out, int n_ring);

/* L2 prefetch (stage.cu): regions of weights asked into L2 by one launch on
 * a side branch of the program, so that a linear's weights stream from HBM
 * while the latency-bound kernels before it run. The regions are hints:
 * nothing reads what the kernel does, and results never depend on it. */
#define PC_L2_BULK 1              /* cp.async.bulk.prefetch.L2, 16 KB a thread */
#define PC_L2_LINES 2             /* prefetch.global.L2, one 128-byte line at a time */
#define PC_L2_LINES_LAST 3        /* prefetch.global.L2::evict_last */
#define PC_L2_MAX 8
typedef struct pc_l2_list {
    const void *p[PC_L2_MAX];
    int64_t bytes[PC_L2_MAX];
    int n;
} pc_l2_list;
cudaError_t pc_l2_prefetch_launch(cudaStream_t s, const pc_l2_list *l, int mode, int max_blocks);

/* Frees the GEMM choices made for this backend. */
void pc_tuner_free(pc_backend *be);

/* Keeps the stream busy for about `cycles` GPU clocks. */
cudaError_t pc_spin(cudaStream_t s, long long cycles);

/* Fails unless this module carries kernel code the current device can run. */
cudaError_t pc_probe_kernels(void);

#ifdef __cplusplus
}
#endif
#endif
