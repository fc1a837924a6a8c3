// Reference row softmax: one thread per row, double accumulation, no tricks.
extern "C" __global__ void softmax_ref(const float* x, float* y, int rows, int cols) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    double m = xr[0];
    for (int i = 1; i < cols; ++i) m = fmax(m, (double)xr[i]);
    double s = 0.0;
    for (int i = 0; i < cols; ++i) s += exp((double)xr[i] - m);
    for (int i = 0; i < cols; ++i) yr[i] = (float)(exp((double)xr[i] - m) / s);
}
