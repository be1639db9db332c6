/* The Fortran BLAS matrix products the kernels borrow from SciPy (scipy.linalg.cython_blas). */
#ifndef NNX_BLAS_H
#define NNX_BLAS_H

typedef void (*nnx_sgemm_t)(char* transa, char* transb, int* m, int* n, int* k, float* alpha,
                            float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                            int* ldc);
typedef void (*nnx_dgemm_t)(char* transa, char* transb, int* m, int* n, int* k, double* alpha,
                            double* a, int* lda, double* b, int* ldb, double* beta, double* c,
                            int* ldc);

#endif
