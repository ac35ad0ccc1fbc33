/* Staging: a replay's step block and inputs move from its pinned host slot to
 * the device, and its outputs back, inside the replay itself, by two kernels
 * (the first and the last of the graph) that read and write the slots through
 * their mapped device address. The slot a replay uses is found on the device:
 * a counter the last kernel advances picks it, in the order replays were
 * submitted, which is the order the host fills the slots in (backend.c). The
 * host thus submits one graph launch per replay instead of a copy per input,
 * output and step block. */
#include "common.cuh"

/* One kernel block row per job: blockIdx.y picks the job, x strides over its
 * words. */
static __global__ void stage_in(pc_stage s, int n_ring)
{
    pc_dep_wait();
    uint32_t seq = s.seq[0];
    const pc_stage_job &j = s.jobs[blockIdx.y];
    const uint32_t *src = (const uint32_t *)(s.ring + (int64_t)(seq % (uint32_t)n_ring) * s.slot_bytes + j.off);
    uint32_t *dst = (uint32_t *)j.dev;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < j.words; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
    /* Read by stage_out; nothing in this kernel reads it. */
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) s.seq[1] = seq;
}

static __global__ void stage_out(pc_stage s, int n_ring)
{
    pc_dep_wait();
    uint32_t seq = s.seq[1];
    unsigned char *slot = s.ring + (int64_t)(seq % (uint32_t)n_ring) * s.slot_bytes;
    const pc_stage_job &j = s.jobs[s.n_in + blockIdx.y];
    /* The host asks for each output per replay (a flag in the slot). */
    if (((const int32_t *)slot)[blockIdx.y]) {
        const uint32_t *src = (const uint32_t *)j.dev;
        uint32_t *dst = (uint32_t *)(slot + j.off);
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < j.words;
             i += (int64_t)gridDim.x * blockDim.x)
            dst[i] = src[i];
    }
    /* The next replay's stage_in reads it once this kernel has completed. */
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) s.seq[0] = seq + 1;
}

#define PC_STAGE_THREADS 256

static unsigned stage_blocks(int64_t words)
{
    int64_t b = (words + PC_STAGE_THREADS - 1) / PC_STAGE_THREADS;
    return b < 1 ? 1u : b > 64 ? 64u : (unsigned)b;
}

/* Launches with one block row per job; a stage with no jobs of its kind
 * still runs one block (stage_in records the replay's slot, stage_out
 * advances the counter). */
extern "C" cudaError_t pc_stage_launch(const pc_rec *r, const pc_stage *s, int out, int n_ring)
{
    int n = out ? s->n_out : s->n_in;
    pc_stage tmp = *s;
    if (n == 0) {
        /* A job of no words: the kernels index jobs[0] or jobs[n_in]. */
        tmp.jobs = s->empty;
        tmp.n_in = 0;
        n = 1;
    }
    dim3 grid(stage_blocks(out ? s->out_words : s->in_words), (unsigned)n);
    cudaError_t e = out ? pc_launch(r, stage_out, grid, dim3(PC_STAGE_THREADS), 0, tmp, n_ring)
                        : pc_launch(r, stage_in, grid, dim3(PC_STAGE_THREADS), 0, tmp, n_ring);
    return e != cudaSuccess ? e : cudaGetLastError();
}

/* The regions are cut into chunks (16 KB for a bulk prefetch, 4 KB of line
 * prefetches); thread t of the grid takes chunks t, t + threads, ... A bulk
 * prefetch takes a 16-byte aligned start and a multiple of 16 bytes: the
 * partial pieces at a region's two ends are left out. */
static __global__ void l2_prefetch(pc_l2_list l, int mode, int64_t chunk)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, nt = (int64_t)gridDim.x * blockDim.x, base = 0;
    for (int i = 0; i < l.n; i++) {
        uintptr_t a = ((uintptr_t)l.p[i] + 15) & ~(uintptr_t)15, e = ((uintptr_t)l.p[i] + l.bytes[i]) & ~(uintptr_t)15;
        int64_t len = e > a ? (int64_t)(e - a) : 0, n = (len + chunk - 1) / chunk;
        for (int64_t c = ((t - base) % nt + nt) % nt; c < n; c += nt) {
            uintptr_t p = a + (uintptr_t)(c * chunk);
            int64_t m = len - c * chunk < chunk ? len - c * chunk : chunk;
            if (mode == PC_L2_BULK) {
                asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"((unsigned)m) : "memory");
            } else {
                for (int64_t o = 0; o < m; o += 128) {
                    if (mode == PC_L2_LINES_LAST) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p + o));
                    else asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
                }
            }
        }
        base += n;
    }
#else
    (void)l;
    (void)mode;
    (void)chunk;
#endif
}

extern "C" cudaError_t pc_l2_prefetch_launch(cudaStream_t s, const pc_l2_list *l, int mode, int max_blocks)
{
    int64_t chunk = mode == PC_L2_BULK ? 16384 : 4096, chunks = 0;
    for (int i = 0; i < l->n; i++) chunks += (l->bytes[i] + chunk - 1) / chunk;
    int64_t blocks = (chunks + 127) / 128;
    if (blocks < 1) blocks = 1;
    if (blocks > max_blocks) blocks = max_blocks;
    l2_prefetch<<<dim3((unsigned)blocks), dim3(128), 0, s>>>(*l, mode, chunk);
    return cudaGetLastError();
}
