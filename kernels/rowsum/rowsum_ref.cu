// Reference row sum: one thread per row, double accumulation.
extern "C" __global__ void rowsum_ref(const float* x, float* y, int rows, int cols) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    double s = 0.0;
    for (int i = 0; i < cols; ++i) s += (double)x[(size_t)row * cols + i];
    y[row] = (float)s;
}
