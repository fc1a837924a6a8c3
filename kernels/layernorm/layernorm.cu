// LayerNorm, one CTA of BLOCK threads per row, loads of VEC floats. A deliberately
// plain baseline: three passes over the row (mean, variance, normalize).
#ifndef BLOCK
#define BLOCK 64
#endif
#ifndef VEC
#define VEC 1
#endif
#include "reduce.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
layernorm(const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
          float* __restrict__ y, int rows, int cols, float eps) {
    typedef VecT<VEC>::T vt;
    __shared__ float red[32];
    const size_t row = blockIdx.x;
    if (row >= (size_t)rows) return;
    const vt* xv = reinterpret_cast<const vt*>(x + row * cols);
    const vt* gv = reinterpret_cast<const vt*>(gamma);
    const vt* bv = reinterpret_cast<const vt*>(beta);
    vt* yv = reinterpret_cast<vt*>(y + row * cols);
    const int n = cols / VEC;

    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) s += e[k];
    }
    const float mean = block_sum(s, red) / cols;

    float q = 0.0f;
    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) q += (e[k] - mean) * (e[k] - mean);
    }
    const float rstd = rsqrtf(block_sum(q, red) / cols + eps);

    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC], g[VEC], b[VEC];
        unpack(xv[i], e);
        unpack(gv[i], g);
        unpack(bv[i], b);
        for (int k = 0; k < VEC; ++k) e[k] = (e[k] - mean) * rstd * g[k] + b[k];
        vt o;
        pack(e, &o);
        yv[i] = o;
    }
}
