// Reference row softmax: one thread per row, double accumulation, no tricks.
extern "C" __global__ void softmax_ref(const float* x, float* y, int rows, int seq_k) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * seq_k;
    float* yr = y + (size_t)row * seq_k;
    double m = xr[0];
    for (int i = 1; i < seq_k; ++i) m = fmax(m, (double)xr[i]);
    double s = 0.0;
    for (int i = 0; i < seq_k; ++i) s += exp((double)xr[i] - m);
    for (int i = 0; i < seq_k; ++i) yr[i] = (float)(exp((double)xr[i] - m) / s);
}
