//! Device ceilings measured on the device itself: DRAM bandwidth (the best of a
//! device-to-device copy, a vectorized copy kernel and a read-only kernel, counting
//! bytes read and written) and arithmetic throughput (FP32 FMA; FP16 tensor cores: the
//! better of an `mma.sync` loop and a large cuBLAS GEMM, which on Hopper uses the
//! faster wgmma path). Every achieved figure nightshift shows is a fraction of these.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::nvrtc::{self, CompileRequest, Compiled};
use super::{DeviceBuffer, Gpu, Kernel, Param, Params};
use crate::spec::plan::LaunchDims;

/// Bumped whenever a measurement method changes, so cached ceilings are re-measured.
pub const METHODS_VERSION: u32 = 2;

/// Measured ceilings of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub uuid: String,
    pub device: String,
    pub driver_version: i32,
    /// Best DRAM bandwidth, GB/s (10^9 bytes/s).
    pub dram_gbs: f64,
    /// Which method reached it, and what each reached.
    pub dram_method: String,
    pub dram_by_method: Vec<(String, f64)>,
    pub fp32_gflops: f64,
    pub tensor_f16_gflops: f64,
    pub tensor_method: String,
    /// Each tensor-core method and what it reached, GFLOP/s.
    #[serde(default)]
    pub tensor_by_method: Vec<(String, f64)>,
    /// SM clock while measuring, if NVML could read it.
    pub sm_clock_mhz: Option<u32>,
    /// Seconds since the Unix epoch.
    pub measured_at: u64,
}

const SOURCE: &str = r#"
extern "C" __global__ void copy4(const float4* __restrict__ src, float4* __restrict__ dst, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        dst[i] = src[i];
}
extern "C" __global__ void read4(const float4* __restrict__ src, float* __restrict__ sink, unsigned long long n) {
    float acc = 0.0f;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float4 v = src[i];
        acc += v.x + v.y + v.z + v.w;
    }
    if (acc == 1234.5678f) sink[threadIdx.x] = acc;  // never true for the data used; keeps the loads alive
}
extern "C" __global__ void fma_peak(float* sink, int iters, float seed) {
    float a[16];
    #pragma unroll
    for (int k = 0; k < 16; ++k) a[k] = seed + threadIdx.x * 1e-7f + k * 1e-6f;
    for (int i = 0; i < iters; ++i) {
        #pragma unroll
        for (int k = 0; k < 16; ++k) a[k] = fmaf(a[k], 0.9999999f, 1e-7f);
    }
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < 16; ++k) s += a[k];
    if (s == 1234.5678f) sink[threadIdx.x] = s;
}
extern "C" __global__ void mma_peak(float* sink, int iters) {
    unsigned a0 = 0x3c003c00u, a1 = 0x3c003c00u ^ threadIdx.x, a2 = 0x3c003c00u, a3 = 0x3c003c00u;
    unsigned b0 = 0x3c003c00u, b1 = 0x3c003c00u;
    float d[4][4];
    #pragma unroll
    for (int k = 0; k < 4; ++k) { d[k][0] = d[k][1] = d[k][2] = d[k][3] = 0.0f; }
    for (int i = 0; i < iters; ++i) {
        #pragma unroll
        for (int k = 0; k < 4; ++k)
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[k][0]), "+f"(d[k][1]), "+f"(d[k][2]), "+f"(d[k][3])
                         : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < 4; ++k) s += d[k][0] + d[k][1] + d[k][2] + d[k][3];
    if (s == 1234.5678f) sink[threadIdx.x] = s;
}
"#;

fn dims(grid: u32, block: u32) -> LaunchDims {
    LaunchDims {
        grid: [grid, 1, 1],
        block: [block, 1, 1],
        shared_bytes: 0,
    }
}

/// Best time in ms of `reps` runs of `f`, each between two events.
fn best_ms(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let (a, b) = (
        gpu.event().map_err(|e| e.to_string())?,
        gpu.event().map_err(|e| e.to_string())?,
    );
    f()?; // warm-up
    gpu.sync().map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        gpu.record(&a).map_err(|e| e.to_string())?;
        f()?;
        gpu.record(&b).map_err(|e| e.to_string())?;
        best = best.min(gpu.elapsed_ms(&a, &b).map_err(|e| e.to_string())?);
    }
    Ok(best)
}

/// Measures the ceilings of `gpu`. Takes a few seconds.
pub fn measure(
    gpu: &mut Gpu,
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Ceilings, String> {
    let k = load_kernels(gpu, cache_dir)?;
    let sms = gpu.info.sms;
    let err = |e: super::GpuError| e.to_string();

    // DRAM: a buffer far larger than L2, at most 1 GiB and a quarter of free memory.
    progress("ceilings: DRAM bandwidth");
    let free = gpu.free_memory().map_err(err)?;
    let bytes = ((free / 4).min(1 << 30) as usize) & !0xFFF;
    if bytes < 16 * gpu.info.l2_bytes as usize {
        return Err(format!(
            "only {free} bytes free on the device: too little to measure bandwidth honestly"
        ));
    }
    let src = gpu.alloc(bytes).map_err(err)?;
    let dst = gpu.alloc(bytes).map_err(err)?;
    let sink = gpu.alloc(4096 * 4).map_err(err)?;
    gpu.fill(&src, 0).map_err(err)?;
    let by_method = dram_by_method(gpu, &k, &src, &dst, &sink, bytes)?;
    drop((src, dst));
    let (dram_method, dram_gbs) = best(&by_method);

    progress("ceilings: FP32 FMA throughput");
    let threads = 256u32;
    let blocks = sms * 8;
    let fp32_gflops = fp32_gflops(gpu, &k.fma, &sink, blocks, threads)?;

    progress("ceilings: FP16 tensor-core throughput");
    let mut tensor_by_method = vec![(
        "mma.sync m16n8k16 f16->f32 loop".to_string(),
        mma_gflops(gpu, &k.mma, &sink, blocks, threads)?,
    )];
    gpu.sync().map_err(err)?;
    progress("ceilings: FP16 tensor-core throughput (cuBLAS)");
    match cublas_gemm_gflops(gpu) {
        Ok(g) => tensor_by_method.push(("cuBLAS GemmEx 8192^3 f16->f32".to_string(), g)),
        // Without cuBLAS the mma.sync figure stands; the method says so.
        Err(e) => tensor_by_method.push((format!("cuBLAS unavailable: {e}"), 0.0)),
    }
    let (tensor_method, tensor_f16_gflops) = best(&tensor_by_method);

    Ok(Ceilings {
        uuid: gpu.info.uuid.clone(),
        device: gpu.info.name.clone(),
        driver_version: gpu.info.driver_version,
        dram_gbs,
        dram_method,
        dram_by_method: by_method,
        fp32_gflops,
        tensor_f16_gflops,
        tensor_method,
        tensor_by_method,
        sm_clock_mhz: None,
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

/// The kernels of [`SOURCE`], loaded.
struct Kernels {
    copy4: Kernel,
    read4: Kernel,
    fma: Kernel,
    mma: Kernel,
}

/// Compiles [`SOURCE`] for `gpu` (cached in `cache_dir`) and loads its kernels.
fn load_kernels(gpu: &Gpu, cache_dir: &Path) -> Result<Kernels, String> {
    let req = CompileRequest {
        name: "ceilings.cu".into(),
        source: SOURCE.into(),
        options: vec![],
        arch: gpu.info.arch.clone(),
    };
    let cubin = match nvrtc::compile(&req, cache_dir)? {
        Compiled::Ok { cubin, .. } => cubin,
        Compiled::Failed { log, .. } => {
            return Err(format!("the ceiling kernels did not compile:\n{log}"))
        }
    };
    let image =
        std::fs::read(&cubin).map_err(|e| format!("cannot read {}: {e}", cubin.display()))?;
    let load = |entry: &str| gpu.load(&image, entry).map_err(|e| e.to_string());
    let (copy4, read4, fma, mma) = (
        load("copy4")?,
        load("read4")?,
        load("fma_peak")?,
        load("mma_peak")?,
    );
    Ok(Kernels {
        copy4,
        read4,
        fma,
        mma,
    })
}

/// DRAM bandwidth, GB/s, by method over `bytes` of `src` (zeroed): a device-to-device
/// copy into `dst`, the float4 copy kernel, and the float4 read kernel (into `sink`).
fn dram_by_method(
    gpu: &Gpu,
    k: &Kernels,
    src: &DeviceBuffer,
    dst: &DeviceBuffer,
    sink: &DeviceBuffer,
    bytes: usize,
) -> Result<Vec<(String, f64)>, String> {
    let err = |e: super::GpuError| e.to_string();
    let sms = gpu.info.sms;
    let n4 = (bytes / 16) as u64;
    let n4_bytes = n4.to_le_bytes();
    let mut by_method = Vec::new();
    let ms = best_ms(gpu, 10, || gpu.copy(dst, src).map_err(err))?;
    by_method.push((
        "cuMemcpyDtoD (read + write)".to_string(),
        2.0 * bytes as f64 / (ms * 1e-3) / 1e9,
    ));
    let mut p = Params::new(&[
        Param::Buffer(src),
        Param::Buffer(dst),
        Param::Bytes(&n4_bytes),
    ])
    .map_err(err)?;
    let ms = best_ms(gpu, 10, || {
        gpu.launch(&k.copy4, &dims(sms * 8, 512), &mut p)
            .map_err(err)
    })?;
    by_method.push((
        "float4 copy kernel (read + write)".to_string(),
        2.0 * bytes as f64 / (ms * 1e-3) / 1e9,
    ));
    let mut p = Params::new(&[
        Param::Buffer(src),
        Param::Buffer(sink),
        Param::Bytes(&n4_bytes),
    ])
    .map_err(err)?;
    let ms = best_ms(gpu, 10, || {
        gpu.launch(&k.read4, &dims(sms * 8, 512), &mut p)
            .map_err(err)
    })?;
    by_method.push((
        "float4 read kernel (read only)".to_string(),
        bytes as f64 / (ms * 1e-3) / 1e9,
    ));
    Ok(by_method)
}

/// FP32 FMA throughput, GFLOP/s, of `fma_peak` on `blocks` blocks of `threads`.
fn fp32_gflops(
    gpu: &Gpu,
    fma: &Kernel,
    sink: &DeviceBuffer,
    blocks: u32,
    threads: u32,
) -> Result<f64, String> {
    let err = |e: super::GpuError| e.to_string();
    let iters: i32 = 4096;
    let it = iters.to_le_bytes();
    let seed = 1.0f32.to_le_bytes();
    let mut p =
        Params::new(&[Param::Buffer(sink), Param::Bytes(&it), Param::Bytes(&seed)]).map_err(err)?;
    let ms = best_ms(gpu, 5, || {
        gpu.launch(fma, &dims(blocks, threads), &mut p).map_err(err)
    })?;
    let flops = 2.0 * 16.0 * iters as f64 * (blocks * threads) as f64;
    Ok(flops / (ms * 1e-3) / 1e9)
}

/// FP16 tensor-core throughput, GFLOP/s, of the `mma.sync` loop on `blocks` blocks
/// of `threads`.
fn mma_gflops(
    gpu: &Gpu,
    mma: &Kernel,
    sink: &DeviceBuffer,
    blocks: u32,
    threads: u32,
) -> Result<f64, String> {
    let err = |e: super::GpuError| e.to_string();
    let iters: i32 = 2048;
    let it = iters.to_le_bytes();
    let mut p = Params::new(&[Param::Buffer(sink), Param::Bytes(&it)]).map_err(err)?;
    let ms = best_ms(gpu, 5, || {
        gpu.launch(mma, &dims(blocks, threads), &mut p).map_err(err)
    })?;
    let warps = (blocks * threads / 32) as f64;
    let flops = warps * iters as f64 * 4.0 * (2.0 * 16.0 * 8.0 * 16.0);
    Ok(flops / (ms * 1e-3) / 1e9)
}

/// The method that reached the highest figure, and that figure.
fn best(by_method: &[(String, f64)]) -> (String, f64) {
    by_method.iter().cloned().fold(
        (String::new(), 0.0),
        |best, (m, v)| if v > best.1 { (m, v) } else { best },
    )
}

/// The best rate of a large fp16 GEMM (fp32 accumulation and output) through cuBLAS.
fn cublas_gemm_gflops(gpu: &Gpu) -> Result<f64, String> {
    use crate::spec::plan::{BlasCall, BlasOp};
    let n: usize = 8192;
    let err = |e: super::GpuError| e.to_string();
    let a = gpu.alloc(n * n * 2).map_err(err)?;
    let b = gpu.alloc(n * n * 2).map_err(err)?;
    let c = gpu.alloc(n * n * 4).map_err(err)?;
    // 0x3c00 is 1.0 in fp16: finite inputs, so no special-value fast path.
    gpu.fill(&a, 0x3c).map_err(err)?;
    gpu.fill(&b, 0x3c).map_err(err)?;
    let blas = super::blas::Blas::new().map_err(err)?;
    let p = Params::new(&[Param::Buffer(&a), Param::Buffer(&b), Param::Buffer(&c)]).map_err(err)?;
    let call = BlasCall {
        op: BlasOp::GemmF16F32,
        m: n as i32,
        n: n as i32,
        k: n as i32,
        a: 0,
        b: 1,
        c: 2,
    };
    let ms = best_ms(gpu, 5, || blas.run(&call, &p).map_err(err))?;
    gpu.sync().map_err(err)?;
    Ok(2.0 * (n as f64).powi(3) / (ms * 1e-3) / 1e9)
}
