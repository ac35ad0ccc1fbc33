/* A CPU stand-in for the two cuBLAS calls the op files make: a column-major
 * GEMM with cuBLAS' argument conventions and leading-dimension checks. */
#pragma once

typedef void *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;

inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                                int k, const float *alpha, const float *A, int lda, long long sa,
                                                const float *B, int ldb, long long sb, const float *beta, float *C,
                                                int ldc, long long sc, int batch)
{
    if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    for (int t = 0; t < batch; t++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int l = 0; l < k; l++) {
                    float a = ta ? A[t * sa + l + (long long)i * lda] : A[t * sa + i + (long long)l * lda];
                    float b = tb ? B[t * sb + j + (long long)l * ldb] : B[t * sb + l + (long long)j * ldb];
                    acc += (double)a * b;
                }
                float *c = &C[t * sc + i + (long long)j * ldc];
                /* beta == 0: C is not read, as in cuBLAS. */
                *c = (float)(*alpha * acc + (*beta != 0.0f ? *beta * *c : 0.0f));
            }
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float *alpha, const float *A, int lda, const float *B, int ldb,
                                  const float *beta, float *C, int ldc)
{
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
