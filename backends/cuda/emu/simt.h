/* SIMT emulation for the emulated builds: every CUDA thread of a block is a
 * std::thread, __syncthreads is a block barrier and a warp shuffle is an
 * exchange between two warp barriers. Blocks run one after another; a launch
 * runs at once or is recorded on a captured stream (include/). Lanes that
 * leave a kernel drop out of their barriers. Slow, but it runs the kernels'
 * own code (indexing, synchronisation, online softmax) where no GPU is. */
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
using std::max;
using std::min;

struct simt_block {
    std::vector<float> shared;
    std::unique_ptr<std::barrier<>> bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
    std::vector<float> lanes; /* 32 exchange slots per warp */
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
inline thread_local simt_block *simt_cur;

inline float *simt_shared() { return simt_cur->shared.data(); }
inline void __syncthreads() { simt_cur->bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { simt_cur->warp_bar[threadIdx.x / 32]->arrive_and_wait(); }

inline float simt_exchange(float v, int src)
{
    unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
    std::barrier<> &b = *simt_cur->warp_bar[w];
    simt_cur->lanes[w * 32 + lane] = v;
    b.arrive_and_wait();
    float r = simt_cur->lanes[w * 32 + (unsigned)src];
    b.arrive_and_wait();
    return r;
}
template <class T> inline T __ldg(const T *p) { return *p; }
inline long long clock64() { static thread_local long long t = 0; return t += 1000000000LL; }
template <class T> inline T __ldcs(const T *p) { return *p; }
inline float __shfl_sync(unsigned, float v, int src) { return simt_exchange(v, src & 31); }
inline float __shfl_xor_sync(unsigned, float v, int m) { return simt_exchange(v, (int)(threadIdx.x % 32) ^ m); }

namespace simt {

struct config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
inline config cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr) { return { g, b, smem, s }; }

template <class K, class... A> void run_grid(const config &c, K kernel, A... args)
{
    unsigned nt = c.block.x * c.block.y * c.block.z, nw = (nt + 31) / 32;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                simt_block blk;
                /* NaN-filled: a read before a write shows in the results. */
                blk.shared.assign(c.smem / sizeof(float) + 1, NAN);
                blk.bar = std::make_unique<std::barrier<>>(nt);
                for (unsigned w = 0; w < nw; w++)
                    blk.warp_bar.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
                blk.lanes.assign(nw * 32, 0.0f);
                std::vector<std::thread> threads;
                for (unsigned t = 0; t < nt; t++)
                    threads.emplace_back([&, t, x, y, z] {
                        threadIdx = dim3(t);
                        blockIdx = dim3(x, y, z);
                        blockDim = c.block;
                        gridDim = c.grid;
                        simt_cur = &blk;
                        kernel(args...);
                        blk.bar->arrive_and_drop();
                        blk.warp_bar[t / 32]->arrive_and_drop();
                    });
                for (std::thread &th : threads) th.join();
            }
}

template <class K> struct launcher {
    config c;
    K kernel;
    /* Arguments are taken by value now, as a kernel launch does. */
    template <class... A> void operator()(A... args)
    {
        config cc = c;
        K k = kernel;
        emu_enqueue(c.stream, [=] { run_grid(cc, k, args...); });
    }
};
template <class K> launcher<K> launch(config c, K k) { return { c, k }; }

} // namespace simt

/* Emulated launches run one after another: no programmatic overlap. */
#define PORTA_SIMT 1
inline void pc_dep_wait() {}
template <class R, class K, class... A> cudaError_t pc_launch(const R *r, K k, dim3 g, dim3 b, size_t smem, A... args)
{
    if (r->launches) ++*r->launches;
    simt::launch(simt::cfg(g, b, smem, r->be->stream), k)(args...);
    return cudaSuccess;
}
