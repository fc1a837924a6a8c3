// Small-N matrix product: one warp per row of A, each lane accumulating n dot products
// over a strided slice of k, then a warp reduction per output.
#ifndef WARPS
#define WARPS 1
#endif
#ifndef VEC
#define VEC 1
#endif
#ifndef NSPEC
#define NSPEC 0
#endif
#include "vec.cuh"

#define NMAX 16
#if NSPEC > 0
#define NACC NSPEC
#else
#define NACC NMAX
#endif

extern "C" __global__ void __launch_bounds__(WARPS * 32)
gemv_smalln(const float* __restrict__ A, const float* __restrict__ X, float* __restrict__ Y, int m, int k, int n_arg) {
    typedef VecT<VEC>::T vt;
#if NSPEC > 0
    const int n = NSPEC;
#else
    const int n = n_arg;
#endif
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= m) return;
    float acc[NACC];
#pragma unroll
    for (int j = 0; j < NACC; ++j) acc[j] = 0.0f;
    const float* a = A + (size_t)row * k;
    for (int kk = lane * VEC; kk < k; kk += 32 * VEC) {
        float av[VEC];
        unpack(*reinterpret_cast<const vt*>(a + kk), av);
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
            const float* xr = X + (size_t)(kk + v) * n;
#pragma unroll
            for (int j = 0; j < NACC; ++j)
                if (j < n) acc[j] += av[v] * xr[j];
        }
    }
#pragma unroll
    for (int j = 0; j < NACC; ++j) {
        const float s = warp_sum(acc[j]);
        if (lane == 0 && j < n) Y[(size_t)row * n + j] = s;
    }
}
