// Reference GEMM: one thread per element of C, double accumulation of the fp16 inputs.
#include <cuda_fp16.h>

extern "C" __global__ void gemm_ref(const half* A, const half* B, float* C, int m, int n, int k) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= m || col >= n) return;
    double s = 0.0;
    for (int kk = 0; kk < k; ++kk)
        s += (double)__half2float(A[(size_t)row * k + kk]) * (double)__half2float(B[(size_t)kk * n + col]);
    C[(size_t)row * n + col] = (float)s;
}
