/* Device helpers shared by the op files. */
#ifndef PORTA_CUDA_COMMON_CUH
#define PORTA_CUDA_COMMON_CUH

#include "cuda_backend.h"

#define PC_FULL_MASK 0xffffffffu

#ifndef PORTA_SIMT
/* Programmatic dependent launch (sm_90+): every kernel is launched allowed to
 * start while the kernel before it in the stream drains, and waits at its
 * top (pc_dep_wait) until that kernel's memory operations are complete and
 * visible; it then lets its own successor launch. The launch latency of each
 * kernel thus overlaps the tail of the previous one, in graphs and eager
 * launches alike. Kernels before or after a non-PDL operation (cuBLAS, a
 * copy) keep full stream ordering. */
static __device__ __forceinline__ void pc_dep_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <class... P, class... A>
static cudaError_t pc_launch(const pc_rec *r, void (*k)(P...), dim3 g, dim3 b, size_t smem, A... args)
{
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = g;
    cfg.blockDim = b;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = r->be->stream;
    cfg.attrs = at;
    cfg.numAttrs = r->be->pdl ? 1 : 0;
    if (r->launches) ++*r->launches;
    return cudaLaunchKernelEx(&cfg, k, args...);
}
#endif

/* Offset in elements of the i-th element (row-major order) of a strided view. */
static __device__ __forceinline__ int64_t pc_offset(const pc_strided &s, int64_t i)
{
    int64_t off = 0;
    for (int d = s.ndim - 1; d >= 0; d--) {
        int64_t q = i / s.shape[d];
        off += (i - q * s.shape[d]) * s.stride[d];
        i = q;
    }
    return off;
}

static __device__ __forceinline__ float pc_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(PC_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float pc_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(PC_FULL_MASK, v, o));
    return v;
}

#define PC_GRID_STRIDE(i, n)                                                   \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);  \
         i += (int64_t)gridDim.x * blockDim.x)

#endif
