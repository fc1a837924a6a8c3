// Reference: one thread per output element, double accumulation.
extern "C" __global__ void gemv_ref(const float* A, const float* X, float* Y, int m, int k, int n) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)m * n) return;
    const int row = (int)(i / n), j = (int)(i % n);
    double s = 0.0;
    for (int kk = 0; kk < k; ++kk) s += (double)A[(size_t)row * k + kk] * (double)X[(size_t)kk * n + j];
    Y[i] = (float)s;
}
