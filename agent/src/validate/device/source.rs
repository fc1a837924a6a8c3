//! The CUDA source of the validation kernels: Philox input generation, the comparison
//! with the reference, the first bitwise difference, and the scrambling of outputs.
//! Their host mirror is in the parent module.

/// The CUDA source of the validation kernels.
pub const SOURCE: &str = r#"
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short u16;
typedef unsigned char u8;

__device__ __forceinline__ void ns_philox(u32 c[4], u32 k0, u32 k1) {
    for (int r = 0; r < 10; ++r) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        u32 lo0 = 0xD2511F53u * c[0], hi0 = __umulhi(0xD2511F53u, c[0]);
        u32 lo1 = 0xCD9E8D57u * c[2], hi1 = __umulhi(0xCD9E8D57u, c[2]);
        u32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

__device__ __forceinline__ double ns_u01(u32 x) {
    return ((double)x + 0.5) * (1.0 / 4294967296.0);
}

// ln(x) for a positive, finite, normal x, from exactly rounded operations only.
__device__ double ns_ln(double x) {
    u64 b = (u64)__double_as_longlong(x);
    int e = (int)((b >> 52) & 0x7FF) - 1023;
    double m = __longlong_as_double((long long)((b & 0xFFFFFFFFFFFFFull) | 0x3FF0000000000000ull));
    if (m > 1.4142135623730951) { m = m * 0.5; e += 1; }
    double t = (m - 1.0) / (m + 1.0);
    double t2 = t * t;
    double p = 1.0 / 25.0;
    for (int k = 11; k >= 0; --k) p = p * t2 + 1.0 / (double)(2 * k + 1);
    return 2.0 * t * p + (double)e * 0.6931471805599453;
}

__device__ double ns_normal(u64 i, u32 k0, u32 k1) {
    for (u32 attempt = 0; attempt < 32; ++attempt) {
        u32 c[4] = {(u32)i, (u32)(i >> 32), attempt, 0u};
        ns_philox(c, k0, k1);
        double u = 2.0 * ns_u01(c[0]) - 1.0;
        double v = 2.0 * ns_u01(c[1]) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * ns_ln(s) / s);
    }
    return 0.0;
}

__device__ double ns_uniform01(u64 i, u32 k0, u32 k1) {
    u32 c[4] = {(u32)i, (u32)(i >> 32), 0u, 0u};
    ns_philox(c, k0, k1);
    return ns_u01(c[0]);
}

// f32 -> f16 bits, rounding to nearest even (subnormals included).
__device__ u16 ns_f16_bits(float f) {
    u32 x = __float_as_uint(f);
    u32 sign = (x >> 16) & 0x8000u;
    u32 ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (u16)(sign | (ax > 0x7F800000u ? 0x7E00u : 0x7C00u));
    if (ax < 0x00800000u) return (u16)sign;
    int e = (int)(ax >> 23) - 127;
    u32 mant = (ax & 0x7FFFFFu) | 0x800000u;
    if (e > 15) return (u16)(sign | 0x7C00u);
    if (e >= -14) {
        u32 q = mant >> 13, rem = mant & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q += 1u;
        u32 h = ((u32)(e + 15) << 10) + (q - 0x400u);
        if (h >= 0x7C00u) h = 0x7C00u;
        return (u16)(sign | h);
    }
    int s = -(e + 1);
    if (s > 24) return (u16)sign;
    u32 q = mant >> s, rem = mant & ((1u << s) - 1u), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u))) q += 1u;
    return (u16)(sign | q);
}

// f32 -> bf16 bits, rounding to nearest even.
__device__ u16 ns_bf16_bits(float f) {
    u32 x = __float_as_uint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (u16)((x >> 16) | 0x40u);
    return (u16)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

__device__ double ns_f16_value(u16 h) {
    u32 sign = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0) v = (double)m * (1.0 / 16777216.0);
    else if (e == 31) v = m ? __longlong_as_double(0x7FF8000000000000ll) : __longlong_as_double(0x7FF0000000000000ll);
    else v = (double)(m | 0x400) * __longlong_as_double((long long)((u64)(e - 25 + 1023) << 52));
    return sign ? -v : v;
}

__device__ double ns_clamp_round(double v, double lo, double hi) {
    double r = round(v);
    if (r != r) r = 0.0;
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    return r;
}

// dtype codes: 0 f16, 1 bf16, 2 f32, 3 f64, 4 i8, 5 u8, 6 i32, 7 u32, 8 i64, 9 u64.
__device__ void ns_store(u8* out, u64 i, int dtype, double v) {
    switch (dtype) {
    case 0: ((u16*)out)[i] = ns_f16_bits(__double2float_rn(v)); break;
    case 1: ((u16*)out)[i] = ns_bf16_bits(__double2float_rn(v)); break;
    case 2: ((float*)out)[i] = __double2float_rn(v); break;
    case 3: ((double*)out)[i] = v; break;
    case 4: ((signed char*)out)[i] = (signed char)ns_clamp_round(v, -128.0, 127.0); break;
    case 5: out[i] = (u8)ns_clamp_round(v, 0.0, 255.0); break;
    case 6: ((int*)out)[i] = (int)ns_clamp_round(v, -2147483648.0, 2147483647.0); break;
    case 7: ((u32*)out)[i] = (u32)ns_clamp_round(v, 0.0, 4294967295.0); break;
    case 8: {
        double r = round(v);
        long long q;
        if (r != r) q = 0;
        else if (r >= 9223372036854775808.0) q = 0x7FFFFFFFFFFFFFFFll;
        else if (r < -9223372036854775808.0) q = (long long)0x8000000000000000ull;
        else q = (long long)r;
        ((long long*)out)[i] = q;
        break;
    }
    default: {
        double r = round(v);
        u64 q;
        if (r != r || r < 0.0) q = 0;
        else if (r >= 18446744073709551616.0) q = 0xFFFFFFFFFFFFFFFFull;
        else q = (u64)r;
        ((u64*)out)[i] = q;
        break;
    }
    }
}

// dist: 0 normal, 1 uniform [p0, p1), 2 integers in [p0, p1), 3 the constant p0.
extern "C" __global__ void ns_generate(u8* out, u64 n, int dtype, int dist, double p0,
                                       double p1, double scale, u32 k0, u32 k1) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (u64)gridDim.x * blockDim.x) {
        double v;
        if (dist == 0) v = ns_normal(i, k0, k1) * scale;
        else if (dist == 1) v = (p0 + (p1 - p0) * ns_uniform01(i, k0, k1)) * scale;
        else if (dist == 2) {
            v = p0 + floor(ns_uniform01(i, k0, k1) * (p1 - p0));
            if (v >= p1) v = p1 - 1.0;
        } else v = p0 * scale;
        ns_store(out, i, dtype, v);
    }
}

__device__ u64 ns_raw(const u8* p, u64 i, int size) {
    switch (size) {
    case 1: return p[i];
    case 2: return ((const u16*)p)[i];
    case 4: return ((const u32*)p)[i];
    default: return ((const u64*)p)[i];
    }
}

__device__ double ns_value(u64 raw, int dtype) {
    switch (dtype) {
    case 0: return ns_f16_value((u16)raw);
    case 1: return (double)__uint_as_float((u32)raw << 16);
    case 2: return (double)__uint_as_float((u32)raw);
    case 3: return __longlong_as_double((long long)raw);
    case 4: return (double)(signed char)(u8)raw;
    case 5: return (double)(u8)raw;
    case 6: return (double)(int)(u32)raw;
    case 7: return (double)(u32)raw;
    case 8: return (double)(long long)raw;
    default: return (double)raw;
    }
}

__device__ __forceinline__ bool ns_finite(double x) { return x == x && x - x == 0.0; }

struct NsStats {
    u64 bad, unwritten, non_finite, first_bad, max_abs_bits, max_rel_bits;
    double diff2, ref2;
};

// Compares `out` with `ref` elementwise exactly as validate::compare does on the host.
extern "C" __global__ void ns_compare(const u8* out, const u8* ref, u64 n, int dtype, int size,
                                      u64 poison, double atol, double rtol, NsStats* s) {
    u64 bad = 0, unwritten = 0, non_finite = 0, first = 0xFFFFFFFFFFFFFFFFull;
    double max_abs = 0.0, max_rel = 0.0, diff2 = 0.0, ref2 = 0.0;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (u64)gridDim.x * blockDim.x) {
        u64 g = ns_raw(out, i, size), w = ns_raw(ref, i, size);
        bool unw = g == poison && w != poison;
        if (unw) unwritten += 1;
        double got = ns_value(g, dtype), want = ns_value(w, dtype);
        bool ok;
        if (!ns_finite(want)) {
            ok = (want != want && got != got) || want == got;
        } else if (!ns_finite(got)) {
            non_finite += 1;
            ok = false;
        } else {
            double d = fabs(got - want);
            max_abs = fmax(max_abs, d);
            if (want != 0.0) max_rel = fmax(max_rel, d / fabs(want));
            else if (d > 0.0) max_rel = __longlong_as_double(0x7FF0000000000000ll);
            diff2 += d * d;
            ref2 += want * want;
            ok = !unw && d <= atol + rtol * fabs(want);
        }
        if (!ok) {
            bad += 1;
            if (i < first) first = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        bad += __shfl_down_sync(0xFFFFFFFFu, bad, o);
        unwritten += __shfl_down_sync(0xFFFFFFFFu, unwritten, o);
        non_finite += __shfl_down_sync(0xFFFFFFFFu, non_finite, o);
        u64 f = __shfl_down_sync(0xFFFFFFFFu, first, o);
        if (f < first) first = f;
        max_abs = fmax(max_abs, __shfl_down_sync(0xFFFFFFFFu, max_abs, o));
        max_rel = fmax(max_rel, __shfl_down_sync(0xFFFFFFFFu, max_rel, o));
        diff2 += __shfl_down_sync(0xFFFFFFFFu, diff2, o);
        ref2 += __shfl_down_sync(0xFFFFFFFFu, ref2, o);
    }
    if ((threadIdx.x & 31) == 0) {
        if (bad) atomicAdd(&s->bad, bad);
        if (unwritten) atomicAdd(&s->unwritten, unwritten);
        if (non_finite) atomicAdd(&s->non_finite, non_finite);
        if (first != 0xFFFFFFFFFFFFFFFFull) atomicMin(&s->first_bad, first);
        atomicMax(&s->max_abs_bits, (u64)__double_as_longlong(max_abs));
        atomicMax(&s->max_rel_bits, (u64)__double_as_longlong(max_rel));
        if (diff2 != 0.0) atomicAdd(&s->diff2, diff2);
        if (ref2 != 0.0) atomicAdd(&s->ref2, ref2);
    }
}

// The first element (of `size` bytes) where a and b differ, into *first (atomicMin).
extern "C" __global__ void ns_first_diff(const u8* a, const u8* b, u64 n, int size, u64* first) {
    u64 mine = 0xFFFFFFFFFFFFFFFFull;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (u64)gridDim.x * blockDim.x) {
        if (ns_raw(a, i, size) != ns_raw(b, i, size)) { mine = i; break; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        u64 f = __shfl_down_sync(0xFFFFFFFFu, mine, o);
        if (f < mine) mine = f;
    }
    if ((threadIdx.x & 31) == 0 && mine != 0xFFFFFFFFFFFFFFFFull) atomicMin(first, mine);
}

// Fills n bytes with Philox bits: outputs no kernel can predict or recognize.
extern "C" __global__ void ns_scramble(u8* p, u64 n, u32 k0, u32 k1) {
    u64 words = n / 16;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < words;
         i += (u64)gridDim.x * blockDim.x) {
        u32 c[4] = {(u32)i, (u32)(i >> 32), 0x5C4A3B1Du, 0u};
        ns_philox(c, k0, k1);
        u32* q = (u32*)(p + i * 16);
        q[0] = c[0]; q[1] = c[1]; q[2] = c[2]; q[3] = c[3];
    }
    if (blockIdx.x == 0 && threadIdx.x < n % 16) {
        u32 c[4] = {(u32)words, (u32)(words >> 32), 0x5C4A3B1Du, 0u};
        ns_philox(c, k0, k1);
        p[words * 16 + threadIdx.x] = (u8)(c[threadIdx.x / 4] >> (8 * (threadIdx.x % 4)));
    }
}
"#;
