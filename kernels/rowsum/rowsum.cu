// Row sum, one CTA of BLOCK threads per row, loads of VEC floats.
#ifndef BLOCK
#define BLOCK 64
#endif
#ifndef VEC
#define VEC 1
#endif
#include "reduce.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
rowsum(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    typedef VecT<VEC>::T vt;
    __shared__ float red[32];
    const size_t row = blockIdx.x;
    if (row >= (size_t)rows) return;
    const vt* xv = reinterpret_cast<const vt*>(x + row * cols);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols / VEC; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) s += e[k];
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) y[row] = s;
}
