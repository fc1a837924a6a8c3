// 2D convolution of an H x W fp32 image with a 7 x 7 filter, "same" size with zero
// padding: out[y, x] = sum_{i, j < 7} f[i, j] * in[y + i - 3, x + j - 3] (0 outside).
//
// A CTA of BX x BY threads computes a tile of (BX * TX) x (BY * TY) outputs; each thread
// computes TX x TY of them, strided by the block's size so that a warp's loads stay
// coalesced. SHMEM = 0 reads the input through the read-only cache; SHMEM = 1 first
// stages the tile and its 3-pixel halo in shared memory (rows of BX * TX + 6 floats,
// plus PAD floats to move rows off each other's banks).
#ifndef BX
#define BX 32
#endif
#ifndef BY
#define BY 4
#endif
#ifndef TX
#define TX 1
#endif
#ifndef TY
#define TY 1
#endif
#ifndef SHMEM
#define SHMEM 0
#endif
#ifndef PAD
#define PAD 0
#endif

#define R 3
#define FW (2 * R + 1)

extern "C" __global__ void __launch_bounds__(BX * BY)
conv2d(const float* __restrict__ in, const float* __restrict__ f, float* __restrict__ out,
       int H, int W) {
    const int x0 = blockIdx.x * (BX * TX) + threadIdx.x;
    const int y0 = blockIdx.y * (BY * TY) + threadIdx.y;
    float acc[TY][TX];
#pragma unroll
    for (int b = 0; b < TY; ++b)
#pragma unroll
        for (int a = 0; a < TX; ++a) acc[b][a] = 0.0f;

#if SHMEM
    extern __shared__ float tile[];
    const int TW = BX * TX + 2 * R;
    const int TH = BY * TY + 2 * R;
    const int STRIDE = TW + PAD;
    const int gx = blockIdx.x * (BX * TX) - R;
    const int gy = blockIdx.y * (BY * TY) - R;
    for (int t = threadIdx.y * BX + threadIdx.x; t < TW * TH; t += BX * BY) {
        const int ty = t / TW, tx = t % TW;
        const int y = gy + ty, x = gx + tx;
        tile[ty * STRIDE + tx] =
            (y >= 0 && y < H && x >= 0 && x < W) ? __ldg(&in[(size_t)y * W + x]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < FW; ++i)
#pragma unroll
        for (int j = 0; j < FW; ++j) {
            const float w = __ldg(&f[i * FW + j]);
#pragma unroll
            for (int b = 0; b < TY; ++b)
#pragma unroll
                for (int a = 0; a < TX; ++a)
                    acc[b][a] += w * tile[(threadIdx.y + b * BY + i) * STRIDE + threadIdx.x +
                                          a * BX + j];
        }
#else
#pragma unroll
    for (int i = 0; i < FW; ++i)
#pragma unroll
        for (int j = 0; j < FW; ++j) {
            const float w = __ldg(&f[i * FW + j]);
#pragma unroll
            for (int b = 0; b < TY; ++b) {
                const int y = y0 + b * BY + i - R;
#pragma unroll
                for (int a = 0; a < TX; ++a) {
                    const int x = x0 + a * BX + j - R;
                    const float v =
                        (y >= 0 && y < H && x >= 0 && x < W) ? __ldg(&in[(size_t)y * W + x]) : 0.0f;
                    acc[b][a] += w * v;
                }
            }
        }
#endif

#pragma unroll
    for (int b = 0; b < TY; ++b)
#pragma unroll
        for (int a = 0; a < TX; ++a) {
            const int y = y0 + b * BY, x = x0 + a * BX;
            if (y < H && x < W) out[(size_t)y * W + x] = acc[b][a];
        }
}
