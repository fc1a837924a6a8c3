// Shared block-reduction helpers for the bundled kernels. BLOCK (threads per block,
// a multiple of 32) must be defined before this header is included.
#pragma once

#include "vec.cuh"

// Every thread gets the block-wide sum.
__device__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < BLOCK / 32; ++i) r += red[i];
    __syncthreads();
    return r;
}
