/* COPY: a strided view into a dense region. */
#include "common.cuh"

static __global__ void copy_strided(float *out, const float *in, pc_strided s, int64_t n)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, n) out[i] = in[pc_offset(s, i)];
}

static __global__ void spin(long long cycles)
{
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}

extern "C" cudaError_t pc_spin(cudaStream_t s, long long cycles)
{
    spin<<<1, 1, 0, s>>>(cycles);
    return cudaGetLastError();
}

extern "C" cudaError_t pc_probe_kernels(void)
{
    cudaFuncAttributes fa;
    return cudaFuncGetAttributes(&fa, copy_strided);
}

extern "C" porta_status pc_copy(pc_rec *r, const porta_node *n)
{
    const porta_ref *in = &n->in[0], *out = &n->out;
    int64_t numel = porta_ref_numel(out);
    if (porta_ref_numel(in) != numel)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: copy of %lld elements into %lld", n->name,
                       (long long)porta_ref_numel(in), (long long)numel);
    if (!porta_ref_dense(out))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: copy into a strided output", n->name);
    if (r->dry || numel == 0) return PORTA_OK;
    float *dst = pc_ptr(r, out);
    const float *src = pc_ptr(r, in);
    if (porta_ref_dense(in)) {
        PC_CK(r->be, cudaMemcpyAsync(dst, src, (size_t)numel * sizeof(float), cudaMemcpyDeviceToDevice,
                                     r->be->stream));
        return PORTA_OK;
    }
    PC_CK(r->be, pc_launch(r, copy_strided, dim3(pc_blocks(numel, PC_THREADS)), dim3(PC_THREADS), 0, dst, src,
                           pc_view(in), numel));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}
