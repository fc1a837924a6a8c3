// Reference 2D convolution (7 x 7 filter, same size, zero padding): one thread per
// output, double accumulation.
extern "C" __global__ void conv2d_ref(const float* in, const float* f, float* out, int H, int W) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    double s = 0.0;
    for (int i = 0; i < 7; ++i)
        for (int j = 0; j < 7; ++j) {
            const int yy = y + i - 3, xx = x + j - 3;
            if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                s += (double)f[i * 7 + j] * (double)in[(size_t)yy * W + xx];
        }
    out[(size_t)y * W + x] = (float)s;
}
