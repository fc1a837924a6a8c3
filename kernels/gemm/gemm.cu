// fp16 GEMM on the tensor cores through WMMA. Each CTA computes a BM x BN tile of C
// with WM x WN warps; each warp owns (BM/WM) x (BN/WN) in 16x16 fragments. A and B
// tiles are staged through shared memory with bounds checks (zero fill), so any
// shape works; C goes through shared memory so edges are stored with bounds checks.
#include <mma.h>
#include <cuda_fp16.h>
using namespace nvcuda;

#ifndef BM
#define BM 32
#endif
#ifndef BN
#define BN 32
#endif
#ifndef BK
#define BK 16
#endif
#ifndef WM
#define WM 1
#endif
#ifndef WN
#define WN 1
#endif
#define FM (BM / WM / 16)
#define FN (BN / WN / 16)
#define THREADS (WM * WN * 32)

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_wmma(const half* __restrict__ A, const half* __restrict__ B, float* __restrict__ C, int m, int n, int k) {
    extern __shared__ __align__(128) unsigned char smem[];
    half* As = reinterpret_cast<half*>(smem);  // BM x BK, row-major
    half* Bs = As + BM * BK;                   // BK x BN, row-major
    float* Cs = reinterpret_cast<float*>(smem); // BM x BN, after the k loop
    const int tid = threadIdx.x;
    const int warp = tid / 32, wm = warp / WN, wn = warp % WN;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < k; k0 += BK) {
        for (int i = tid; i < BM * BK; i += THREADS) {
            const int r = i / BK, c = i % BK, gm = m0 + r, gk = k0 + c;
            As[i] = (gm < m && gk < k) ? A[(size_t)gm * k + gk] : __float2half(0.0f);
        }
        for (int i = tid; i < BK * BN; i += THREADS) {
            const int r = i / BN, c = i % BN, gk = k0 + r, gn = n0 + c;
            Bs[i] = (gk < k && gn < n) ? B[(size_t)gk * n + gn] : __float2half(0.0f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> af[FM];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> bf[FN];
#pragma unroll
            for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(af[i], As + (wm * FM * 16 + i * 16) * BK + kk, BK);
#pragma unroll
            for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(bf[j], Bs + kk * BN + wn * FN * 16 + j * 16, BN);
#pragma unroll
            for (int i = 0; i < FM; ++i)
#pragma unroll
                for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j)
            wmma::store_matrix_sync(Cs + (wm * FM * 16 + i * 16) * BN + wn * FN * 16 + j * 16, acc[i][j], BN, wmma::mem_row_major);
    __syncthreads();
    for (int i = tid; i < BM * BN; i += THREADS) {
        const int r = i / BN, c = i % BN, gm = m0 + r, gn = n0 + c;
        if (gm < m && gn < n) C[(size_t)gm * n + gn] = Cs[i];
    }
}
