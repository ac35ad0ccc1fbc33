/* Device helpers shared by the op files. */
#ifndef PORTA_CUDA_COMMON_CUH
#define PORTA_CUDA_COMMON_CUH

#include "cuda_backend.h"

#define PC_FULL_MASK 0xffffffffu

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
