/* MIXTURE_SAMPLE: one thread per draw, running mixture_sample.h's draw (the
 * same code as ref and cpu, here in device double precision). */
#include "common.cuh"
#include "mixture_sample.h"

#define SAMPLE_THREADS 128

static __global__ void mixture_sample_draws(float *out, const float *df, const float *loc, const float *scale,
                                            const float *logits, const float *key, int64_t M, int K, int64_t N)
{
    pc_dep_wait();
    int64_t j = (int64_t)blockIdx.x * SAMPLE_THREADS + threadIdx.x;
    if (j >= N) return;
    int64_t o = j % M * K;
    pmx_rng rng = pmx_rng_init(key[0], key[1], key[2], key[3], (uint32_t)j);
    out[j] = (float)pmx_draw(&rng, df + o, loc + o, scale + o, logits + o, K);
}

extern "C" porta_status pc_sample(pc_rec *r, const porta_node *n)
{
    int64_t M, K, N = porta_ref_numel(&n->out);
    if (!porta_mixture_sample_ok(n, 0xffffffffLL, &M, &K))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: mixture_sample wants 4 dense [M, K] parameters, a key of 4 and a "
                       "dense output of a multiple of M draws", n->name);
    if (r->dry) return PORTA_OK;
    unsigned blocks = (unsigned)((N + SAMPLE_THREADS - 1) / SAMPLE_THREADS);
    PC_CK(r->be, pc_launch(r, mixture_sample_draws, dim3(blocks), dim3(SAMPLE_THREADS), 0, pc_ptr(r, &n->out),
                           pc_ptr(r, &n->in[0]), pc_ptr(r, &n->in[1]), pc_ptr(r, &n->in[2]), pc_ptr(r, &n->in[3]),
                           pc_ptr(r, &n->in[4]), M, (int)K, N));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}
