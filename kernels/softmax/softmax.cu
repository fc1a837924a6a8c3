// Row softmax over x[rows, seq_k], numerically stable (max subtraction), in two
// variants chosen at compile time by VARIANT:
//   0 "block": one CTA of BLOCK threads per row, block-wide reductions through shared
//              memory, three passes over the row (the baseline);
//   1 "vec":   one warp per row, BLOCK / 32 rows per CTA, warp-shuffle reductions only,
//              an online max-and-sum pass then the write pass.
// Which is faster depends on seq_k: a warp per row leaves no thread idle on short rows;
// a block per row has more loads in flight on long ones.
// Tunables arrive as -DVARIANT=... -DBLOCK=... -DVEC=...; the defaults are the baseline.
// The helpers are written out here rather than taken from ../include: the GPU tests
// generate broken variants by patching this file's text (the block path comes first).
#ifndef VARIANT
#define VARIANT 0
#endif
#ifndef BLOCK
#define BLOCK 128
#endif
#ifndef VEC
#define VEC 1
#endif

template <int V> struct VecT;
template <> struct VecT<1> { typedef float T; };
template <> struct VecT<2> { typedef float2 T; };
template <> struct VecT<4> { typedef float4 T; };

__device__ __forceinline__ void unpack(float v, float* o) { o[0] = v; }
__device__ __forceinline__ void unpack(float2 v, float* o) { o[0] = v.x; o[1] = v.y; }
__device__ __forceinline__ void unpack(float4 v, float* o) { o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w; }
__device__ __forceinline__ void pack(const float* o, float* v) { *v = o[0]; }
__device__ __forceinline__ void pack(const float* o, float2* v) { v->x = o[0]; v->y = o[1]; }
__device__ __forceinline__ void pack(const float* o, float4* v) { v->x = o[0]; v->y = o[1]; v->z = o[2]; v->w = o[3]; }

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Every thread gets the block-wide result. BLOCK is a multiple of 32.
__device__ float block_max(float v, float* red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int i = 1; i < BLOCK / 32; ++i) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}
__device__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < BLOCK / 32; ++i) r += red[i];
    __syncthreads();
    return r;
}

__device__ __forceinline__ void
softmax_block(const float* __restrict__ x, float* __restrict__ y, int rows, int seq_k) {
    typedef VecT<VEC>::T vt;
    __shared__ float red[32];
    const size_t row = blockIdx.x;
    if (row >= (size_t)rows) return;
    const vt* xv = reinterpret_cast<const vt*>(x + row * seq_k);
    vt* yv = reinterpret_cast<vt*>(y + row * seq_k);
    const int n = seq_k / VEC;

    float m = __int_as_float(0xff800000);  // -inf
    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) m = fmaxf(m, e[k]);
    }
    m = block_max(m, red);

    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) s += expf(e[k] - m);
    }
    const float inv = 1.0f / block_sum(s, red);

    for (int i = threadIdx.x; i < n; i += BLOCK) {
        float e[VEC];
        unpack(xv[i], e);
        for (int k = 0; k < VEC; ++k) e[k] = expf(e[k] - m) * inv;
        vt o;
        pack(e, &o);
        yv[i] = o;
    }
}

__device__ __forceinline__ void
softmax_warp(const float* __restrict__ x, float* __restrict__ y, int rows, int seq_k) {
    typedef VecT<VEC>::T vt;
    const size_t r = (size_t)blockIdx.x * (BLOCK / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (size_t)rows) return;  // the whole warp leaves together; no block barriers here
    const vt* xr = reinterpret_cast<const vt*>(x + r * seq_k);
    vt* yr = reinterpret_cast<vt*>(y + r * seq_k);
    const int nv = seq_k / VEC;

    // Online: a running max and a sum rescaled whenever the max grows.
    float mx = __int_as_float(0xff800000);  // -inf
    float sum = 0.0f;
    for (int j = lane; j < nv; j += 32) {
        float v[VEC];
        unpack(xr[j], v);
        for (int q = 0; q < VEC; ++q) {
            const float nm = fmaxf(mx, v[q]);
            sum = sum * expf(mx - nm) + expf(v[q] - nm);
            mx = nm;
        }
    }
    const float wmx = warp_max(mx);
    // Lanes that saw no element hold mx = -inf and sum = 0: their share is 0 * 0.
    const float scale = 1.0f / warp_sum(sum * expf(mx - wmx));

    for (int j = lane; j < nv; j += 32) {
        float v[VEC];
        unpack(xr[j], v);
        for (int q = 0; q < VEC; ++q) v[q] = expf(v[q] - wmx) * scale;
        vt o;
        pack(v, &o);
        yr[j] = o;
    }
}

extern "C" __global__ void __launch_bounds__(BLOCK)
softmax_rows(const float* __restrict__ x, float* __restrict__ y, int rows, int seq_k) {
#if VARIANT == 0
    softmax_block(x, y, rows, seq_k);
#else
    softmax_warp(x, y, rows, seq_k);
#endif
}
