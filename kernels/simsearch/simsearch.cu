// Cosine-similarity search with exact top-k: for each of Q query vectors, the k corpus
// rows (of N, each dim floats) with the highest cosine similarity, best first, ties
// broken by the lower index. Every CTA takes QB queries and 1/SPLIT of the corpus; one
// warp per corpus row computes the row's norm and its QB dot products, then keeps a
// running top-KMAX list per query. With SPLIT > 1, each CTA leaves its lists in the
// part_* workspace and the last CTA of a query group to finish (an atomic counter it
// resets to zero afterwards) merges them.
//
// Tunables (-DNAME=...): BLOCK threads per CTA, QB queries per CTA, SPLIT CTAs per query
// group, SELECT the top-k method: 0 = each lane keeps one query's sorted list in
// registers, 1 = a sorted list spread over the warp's lanes (entry j on lane j).
#ifndef BLOCK
#define BLOCK 128
#endif
#ifndef QB
#define QB 1
#endif
#ifndef SPLIT
#define SPLIT 1
#endif
#ifndef SELECT
#define SELECT 0
#endif
#define KMAX 16
#define WARPS (BLOCK / 32)

#include "vec.cuh"

#define NEG_INF __int_as_float(0xff800000)
#define NO_INDEX 0x7fffffff

// Higher score first, then the lower index: a total order, so the result does not
// depend on the order in which CTAs or warps are merged.
__device__ __forceinline__ bool better(float s, int i, float t, int j) {
    return s > t || (s == t && i < j);
}

// A sorted list of KMAX entries in registers (constant indices only, fully unrolled).
struct List {
    float s[KMAX];
    int i[KMAX];
};

__device__ __forceinline__ void list_init(List& l) {
#pragma unroll
    for (int j = 0; j < KMAX; ++j) {
        l.s[j] = NEG_INF;
        l.i[j] = NO_INDEX;
    }
}

__device__ __forceinline__ void list_insert(List& l, float s, int idx) {
    if (!better(s, idx, l.s[KMAX - 1], l.i[KMAX - 1])) return;
    // The new entry sinks into place; each displaced entry moves one step down.
#pragma unroll
    for (int j = 0; j < KMAX; ++j) {
        if (better(s, idx, l.s[j], l.i[j])) {
            const float ts = l.s[j];
            const int ti = l.i[j];
            l.s[j] = s;
            l.i[j] = idx;
            s = ts;
            idx = ti;
        }
    }
}

// SELECT 1: lane j (j < KMAX) holds entry j; (s, idx) is the same on every lane.
__device__ __forceinline__ void warp_insert(float& ws, int& wi, float s, int idx, int lane) {
    const bool beats = lane < KMAX && better(s, idx, ws, wi);
    const unsigned m = __ballot_sync(0xffffffffu, beats);
    if (m == 0) return;
    const int pos = __ffs(m) - 1;
    const float up_s = __shfl_up_sync(0xffffffffu, ws, 1);
    const int up_i = __shfl_up_sync(0xffffffffu, wi, 1);
    if (lane == pos) {
        ws = s;
        wi = idx;
    } else if (lane > pos && lane < KMAX) {
        ws = up_s;
        wi = up_i;
    }
}

extern "C" __global__ void __launch_bounds__(BLOCK)
simsearch(const float* __restrict__ queries, const float* __restrict__ corpus,
          float* __restrict__ scores, int* __restrict__ index,
          float* __restrict__ part_scores, int* __restrict__ part_index,
          int* __restrict__ counter, int Q, int N, int dim, int k) {
    extern __shared__ float qs[];  // QB normalized queries, dim floats each
    __shared__ float ms[WARPS][QB][KMAX];
    __shared__ int mi[WARPS][QB][KMAX];
    __shared__ bool last[QB];

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int q0 = blockIdx.y * QB;
    const int split = blockIdx.x;
    const int per = (N + SPLIT - 1) / SPLIT;
    const int lo = split * per;
    const int hi = min(N, lo + per);

    // Normalized queries into shared memory (zeros past Q).
    for (int q = warp; q < QB; q += WARPS) {
        const int gq = q0 + q;
        const float* src = queries + (size_t)gq * dim;
        float ss = 0.0f;
        if (gq < Q)
            for (int d = lane; d < dim; d += 32) ss += src[d] * src[d];
        ss = warp_sum(ss);
        const float inv = ss > 0.0f ? rsqrtf(ss) : 0.0f;
        for (int d = lane; d < dim; d += 32) qs[q * dim + d] = gq < Q ? src[d] * inv : 0.0f;
    }
    __syncthreads();

#if SELECT == 0
    List l;  // lane q's list belongs to query q
    list_init(l);
#else
    float ws[QB];
    int wi[QB];
#pragma unroll
    for (int q = 0; q < QB; ++q) {
        ws[q] = NEG_INF;
        wi[q] = NO_INDEX;
    }
#endif

    for (int row = lo + warp; row < hi; row += WARPS) {
        const float* c = corpus + (size_t)row * dim;
        float nn = 0.0f;
        float dot[QB];
#pragma unroll
        for (int q = 0; q < QB; ++q) dot[q] = 0.0f;
        for (int d = lane; d < dim; d += 32) {
            const float v = c[d];
            nn += v * v;
#pragma unroll
            for (int q = 0; q < QB; ++q) dot[q] += v * qs[q * dim + d];
        }
        nn = warp_sum(nn);
        const float inv = nn > 0.0f ? rsqrtf(nn) : 0.0f;
#pragma unroll
        for (int q = 0; q < QB; ++q) {
            const float s = warp_sum(dot[q]) * inv;
#if SELECT == 0
            if (lane == q) list_insert(l, s, row);
#else
            warp_insert(ws[q], wi[q], s, row, lane);
#endif
        }
    }

    // Every warp's lists into shared memory.
#if SELECT == 0
    if (lane < QB) {
#pragma unroll
        for (int j = 0; j < KMAX; ++j) {
            ms[warp][lane][j] = l.s[j];
            mi[warp][lane][j] = l.i[j];
        }
    }
#else
    if (lane < KMAX) {
#pragma unroll
        for (int q = 0; q < QB; ++q) {
            ms[warp][q][lane] = ws[q];
            mi[warp][q][lane] = wi[q];
        }
    }
#endif
    __syncthreads();

    // One thread per query merges the CTA's lists.
    if (threadIdx.x < QB) {
        const int q = threadIdx.x;
        const int gq = q0 + q;
        List m;
        list_init(m);
        for (int w = 0; w < WARPS; ++w)
            for (int j = 0; j < KMAX; ++j) list_insert(m, ms[w][q][j], mi[w][q][j]);
        last[q] = false;
        if (gq < Q) {
            if (SPLIT == 1) {
#pragma unroll
                for (int j = 0; j < KMAX; ++j)
                    if (j < k) {
                        scores[(size_t)gq * k + j] = m.s[j];
                        index[(size_t)gq * k + j] = m.i[j];
                    }
            } else {
                const size_t base = ((size_t)gq * SPLIT + split) * KMAX;
#pragma unroll
                for (int j = 0; j < KMAX; ++j) {
                    part_scores[base + j] = m.s[j];
                    part_index[base + j] = m.i[j];
                }
                __threadfence();
                last[q] = atomicAdd(&counter[gq], 1) == SPLIT - 1;
            }
        }
    }
#if SPLIT > 1
    __syncthreads();
    // The last CTA to finish a query merges every CTA's list for it.
    if (threadIdx.x < QB && last[threadIdx.x]) {
        __threadfence();
        const int gq = q0 + threadIdx.x;
        List m;
        list_init(m);
        for (int p = 0; p < SPLIT * KMAX; ++p) {
            const size_t at = (size_t)gq * SPLIT * KMAX + p;
            list_insert(m, __ldcg(part_scores + at), __ldcg(part_index + at));
        }
#pragma unroll
        for (int j = 0; j < KMAX; ++j)
            if (j < k) {
                scores[(size_t)gq * k + j] = m.s[j];
                index[(size_t)gq * k + j] = m.i[j];
            }
        counter[gq] = 0;  // left as found, for the next launch
    }
#endif
}
