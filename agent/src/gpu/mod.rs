//! The GPU layer: the only code that touches cudarc, NVML and `unsafe`.
//!
//! Three layers, as in cudarc itself: cudarc's raw `result` calls, thin wrappers here
//! that turn them into owned values with `Drop` (buffers, modules, events), and the
//! plain data types (`DeviceInfo`, `FunctionInfo`) the rest of nightshift sees.

pub mod blas;
pub mod ceilings;
pub mod nvml;
pub mod nvrtc;

use std::ffi::{c_void, CString};
use std::rc::Rc;

use cudarc::driver::result as cu;
use cudarc::driver::sys;
use cudarc::driver::{CudaContext, DriverError};
use serde::{Deserialize, Serialize};

use crate::spec::plan::LaunchDims;

/// A failed CUDA driver call, with the operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {error}")]
pub struct GpuError {
    pub op: String,
    pub error: String,
    /// The raw CUresult, when there is one.
    pub code: Option<u32>,
}

impl GpuError {
    fn driver(op: impl Into<String>, e: DriverError) -> Self {
        GpuError {
            op: op.into(),
            error: format!("{e:?}"),
            code: Some(e.0 as u32),
        }
    }

    pub fn other(op: impl Into<String>, error: impl Into<String>) -> Self {
        GpuError {
            op: op.into(),
            error: error.into(),
            code: None,
        }
    }

    /// A sticky error leaves the context unusable: the worker must exit.
    pub fn is_sticky(&self) -> bool {
        use sys::cudaError_enum as E;
        let sticky = [
            E::CUDA_ERROR_ILLEGAL_ADDRESS,
            E::CUDA_ERROR_LAUNCH_TIMEOUT,
            E::CUDA_ERROR_ASSERT,
            E::CUDA_ERROR_HARDWARE_STACK_ERROR,
            E::CUDA_ERROR_ILLEGAL_INSTRUCTION,
            E::CUDA_ERROR_MISALIGNED_ADDRESS,
            E::CUDA_ERROR_INVALID_PC,
            E::CUDA_ERROR_LAUNCH_FAILED,
        ];
        self.code
            .is_some_and(|c| sticky.iter().any(|s| *s as u32 == c))
    }

    pub fn is_out_of_memory(&self) -> bool {
        self.code == Some(sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY as u32)
    }
}

type Result<T> = std::result::Result<T, GpuError>;

/// Why there is no usable CUDA driver here, or `Ok` when `libcuda` can be loaded.
pub fn driver_present() -> std::result::Result<(), String> {
    // SAFETY: only probes whether the shared library can be opened; no symbol is called.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed?)"
                .into(),
        )
    }
}

/// The CUDA driver's version, e.g. 13000 for 13.0.
pub fn driver_version() -> Result<i32> {
    driver_present().map_err(|e| GpuError::other("cuDriverGetVersion", e))?;
    let mut v = 0;
    // SAFETY: `v` is a valid out pointer; the library was found above.
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(|e| GpuError::driver("cuDriverGetVersion", e))?;
    Ok(v)
}

/// Number of CUDA devices.
pub fn device_count() -> Result<i32> {
    driver_present().map_err(|e| GpuError::other("cuInit", e))?;
    cu::init().map_err(|e| GpuError::driver("cuInit", e))?;
    cu::device::get_count().map_err(|e| GpuError::driver("cuDeviceGetCount", e))
}

/// What the rest of nightshift knows about a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// `GPU-xxxxxxxx-...`, as NVML and nvidia-smi print it.
    pub uuid: String,
    pub compute_capability: (i32, i32),
    /// NVRTC architecture, e.g. `sm_90`.
    pub arch: String,
    pub sms: u32,
    pub l2_bytes: u64,
    pub total_mem_bytes: u64,
    pub max_threads_per_block: u32,
    pub max_threads_per_sm: u32,
    pub max_shared_per_block_optin: u32,
    pub max_shared_per_sm: u32,
    pub regs_per_sm: u32,
    /// Peak SM clock reported by the driver, kHz.
    pub sm_clock_khz: u32,
    pub mem_clock_khz: u32,
    pub mem_bus_bits: u32,
    /// The CUDA driver API version, e.g. 13000 for 13.0.
    pub driver_version: i32,
    /// The NVIDIA display driver, e.g. `580.159.04` (NVML), when NVML answers.
    #[serde(default)]
    pub system_driver: Option<String>,
    /// NVRTC's version, e.g. `13.0`.
    #[serde(default)]
    pub nvrtc: Option<String>,
}

impl DeviceInfo {
    /// DRAM bandwidth implied by the memory clock and bus width (a property the driver
    /// reports, not a measurement): 2 transfers per clock for DDR/HBM.
    pub fn theoretical_dram_gbs(&self) -> f64 {
        2.0 * self.mem_clock_khz as f64 * 1e3 * (self.mem_bus_bits as f64 / 8.0) / 1e9
    }
}

/// Properties of a compiled kernel, read from the loaded function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub registers: u32,
    /// Local memory per thread (spills and local arrays), bytes.
    pub local_bytes: u32,
    pub static_shared_bytes: u32,
    pub const_bytes: u32,
    pub max_threads_per_block: u32,
}

/// Device memory, freed on drop.
pub struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    bytes: usize,
}

impl DeviceBuffer {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes `offset..offset + bytes` of this allocation, borrowed.
    pub fn view(&self, offset: usize, bytes: usize) -> Result<DeviceView<'_>> {
        self.sub(offset, bytes)
    }
}

/// Page-locked host memory (cuMemHostAlloc), freed on drop: copies between it and
/// the device run at full PCIe speed.
pub struct PinnedHost {
    ptr: *mut c_void,
    bytes: usize,
}

impl PinnedHost {
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `bytes` bytes allocated by cuMemHostAlloc, alive
        // until drop, and only borrowed through `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, borrowed mutably through `&mut self` alone.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.bytes) }
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from cuMemHostAlloc and is freed exactly once, here.
        let _ = unsafe { cu::free_host(self.ptr) };
    }
}

/// A window into a live device allocation (a guarded buffer's inside, its guards).
#[derive(Clone, Copy)]
pub struct DeviceView<'a> {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    _of: std::marker::PhantomData<&'a DeviceBuffer>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DeviceBuffer {}
    impl Sealed for super::DeviceView<'_> {}
}

/// Device memory the copies and fills work on: a whole allocation or a view of one.
/// Sealed: only this module's types, whose pointers are live, implement it.
pub trait DeviceMem: sealed::Sealed {
    fn device_ptr(&self) -> u64;
    fn len_bytes(&self) -> usize;

    /// The bytes `offset..offset + bytes` of this memory, borrowed.
    fn sub(&self, offset: usize, bytes: usize) -> Result<DeviceView<'_>> {
        if offset
            .checked_add(bytes)
            .is_none_or(|end| end > self.len_bytes())
        {
            return Err(GpuError::other(
                "view",
                format!(
                    "bytes {offset}..+{bytes} of device memory of {}",
                    self.len_bytes()
                ),
            ));
        }
        Ok(DeviceView {
            ptr: self.device_ptr() + offset as u64,
            bytes,
            _of: std::marker::PhantomData,
        })
    }
}

impl DeviceMem for DeviceBuffer {
    fn device_ptr(&self) -> u64 {
        self.ptr
    }
    fn len_bytes(&self) -> usize {
        self.bytes
    }
}

impl DeviceMem for DeviceView<'_> {
    fn device_ptr(&self) -> u64 {
        self.ptr
    }
    fn len_bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from cuMemAlloc and is freed exactly once, here.
        let _ = unsafe { cu::free_sync(self.ptr) };
    }
}

struct Module(sys::CUmodule);

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: the module was loaded by `Gpu::load` and is unloaded once, after every
        // `Kernel` holding it (they share the `Rc`) has been dropped.
        let _ = unsafe { cu::module::unload(self.0) };
    }
}

/// A loaded kernel function.
pub struct Kernel {
    f: sys::CUfunction,
    _module: Rc<Module>,
    pub info: FunctionInfo,
    pub entry: String,
}

/// A CUDA event for timing, destroyed on drop.
pub struct Event(sys::CUevent);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by cuEventCreate, destroyed once.
        let _ = unsafe { cu::event::destroy(self.0) };
    }
}

/// One kernel parameter: a buffer's device pointer or a scalar's bytes.
pub enum Param<'a> {
    Buffer(&'a DeviceBuffer),
    /// Any device memory: a view of an allocation (a guarded buffer's inside).
    Mem(&'a dyn DeviceMem),
    Bytes(&'a [u8]),
}

/// Kernel parameters laid out for cuLaunchKernel: 8-byte aligned slots that live as
/// long as the launch call.
pub struct Params {
    slots: Vec<[u64; 2]>,
}

impl Params {
    pub fn new(params: &[Param<'_>]) -> Result<Params> {
        let mut slots = Vec::with_capacity(params.len());
        for p in params {
            let mut slot = [0u64; 2];
            match p {
                Param::Buffer(b) => slot[0] = b.ptr,
                Param::Mem(m) => slot[0] = m.device_ptr(),
                Param::Bytes(bytes) => {
                    if bytes.len() > 16 {
                        return Err(GpuError::other(
                            "kernel parameter",
                            "scalars of more than 16 bytes are not supported",
                        ));
                    }
                    let mut raw = [0u8; 16];
                    raw[..bytes.len()].copy_from_slice(bytes);
                    slot[0] = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
                    slot[1] = u64::from_le_bytes(raw[8..].try_into().unwrap_or_default());
                }
            }
            slots.push(slot);
        }
        Ok(Params { slots })
    }

    /// The device pointer of parameter `i`, when it is a buffer. (A scalar's slot
    /// reads as its bytes; callers pass positions of buffer arguments.)
    pub fn pointer(&self, i: usize) -> Option<u64> {
        self.slots.get(i).map(|s| s[0]).filter(|p| *p != 0)
    }
}

/// The CUDA context of one device, the null stream, and an L2 flush buffer.
pub struct Gpu {
    _ctx: std::sync::Arc<CudaContext>,
    pub info: DeviceInfo,
    flush: Option<DeviceBuffer>,
}

const STREAM: sys::CUstream = std::ptr::null_mut();

fn uuid_string(u: &sys::CUuuid) -> String {
    let b: Vec<u8> = u.bytes.iter().map(|&c| c as u8).collect();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Gpu {
    /// Opens device `ordinal` and makes its primary context current on this thread.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        driver_present().map_err(|e| GpuError::other("open device", e))?;
        let n = device_count()?;
        if n <= 0 {
            return Err(GpuError::other(
                "open device",
                "no CUDA device found (cuDeviceGetCount returned 0)",
            ));
        }
        if ordinal >= n as usize {
            return Err(GpuError::other(
                "open device",
                format!("device {ordinal} does not exist; {n} device(s) found"),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| GpuError::driver("create context", e))?;
        let attr = |a: sys::CUdevice_attribute| -> Result<u32> {
            ctx.attribute(a)
                .map(|v| v as u32)
                .map_err(|e| GpuError::driver(format!("cuDeviceGetAttribute({a:?})"), e))
        };
        use sys::CUdevice_attribute as A;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| GpuError::driver("compute capability", e))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().map_err(|e| GpuError::driver("device name", e))?,
            uuid: uuid_string(&ctx.uuid().map_err(|e| GpuError::driver("device uuid", e))?),
            compute_capability: (major, minor),
            arch: format!("sm_{major}{minor}"),
            sms: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            l2_bytes: attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u64,
            total_mem_bytes: ctx
                .total_mem()
                .map_err(|e| GpuError::driver("total memory", e))?
                as u64,
            max_threads_per_block: attr(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            max_threads_per_sm: attr(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?,
            max_shared_per_block_optin: attr(
                A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )?,
            max_shared_per_sm: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)?,
            regs_per_sm: attr(A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR)?,
            sm_clock_khz: attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
            mem_clock_khz: attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
            mem_bus_bits: attr(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
            driver_version: driver_version()?,
            system_driver: None,
            nvrtc: nvrtc::version().ok().map(|(a, b)| format!("{a}.{b}")),
        };
        Ok(Gpu {
            _ctx: ctx,
            info,
            flush: None,
        })
    }

    pub fn free_memory(&self) -> Result<u64> {
        cu::mem_get_info()
            .map(|(free, _)| free as u64)
            .map_err(|e| GpuError::driver("cuMemGetInfo", e))
    }

    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer> {
        // SAFETY: a plain allocation on the current context; the pointer is owned by the
        // returned buffer and freed in its Drop.
        let ptr = unsafe { cu::malloc_sync(bytes.max(1)) }
            .map_err(|e| GpuError::driver(format!("cuMemAlloc({bytes} bytes)"), e))?;
        Ok(DeviceBuffer { ptr, bytes })
    }

    pub fn upload(&self, dst: &dyn DeviceMem, src: &[u8]) -> Result<()> {
        if src.len() > dst.len_bytes() {
            return Err(GpuError::other(
                "upload",
                format!("{} bytes into a buffer of {}", src.len(), dst.len_bytes()),
            ));
        }
        // SAFETY: `dst` holds at least `src.len()` bytes (checked above) of a live
        // allocation (a view borrows its allocation).
        unsafe { cu::memcpy_htod_sync(dst.device_ptr(), src) }
            .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))
    }

    /// `bytes` of page-locked host memory (zeroed).
    pub fn alloc_pinned(&self, bytes: usize) -> Result<PinnedHost> {
        // SAFETY: a plain allocation; the pointer is owned by the returned value and
        // freed in its Drop.
        let ptr = unsafe { cu::malloc_host(bytes.max(1), 0) }
            .map_err(|e| GpuError::driver(format!("cuMemHostAlloc({bytes} bytes)"), e))?;
        let mut p = PinnedHost {
            ptr,
            bytes: bytes.max(1),
        };
        p.as_mut_slice().fill(0);
        p.bytes = bytes;
        Ok(p)
    }

    /// Copies all of `src` into `dst`, which must be as long.
    pub fn download_into(&self, src: &dyn DeviceMem, dst: &mut [u8]) -> Result<()> {
        if dst.len() != src.len_bytes() {
            return Err(GpuError::other(
                "download",
                format!("{} bytes into {}", src.len_bytes(), dst.len()),
            ));
        }
        // SAFETY: `dst` has exactly `src.len_bytes()` bytes; the memory is alive.
        unsafe { cu::memcpy_dtoh_sync(dst, src.device_ptr()) }
            .map_err(|e| GpuError::driver("cuMemcpyDtoH", e))
    }

    pub fn download(&self, src: &dyn DeviceMem) -> Result<Vec<u8>> {
        let mut out = vec![0u8; src.len_bytes()];
        // SAFETY: `out` has exactly `src.len_bytes()` bytes; the memory is alive.
        unsafe { cu::memcpy_dtoh_sync(&mut out, src.device_ptr()) }
            .map_err(|e| GpuError::driver("cuMemcpyDtoH", e))?;
        Ok(out)
    }

    /// Sets every byte of `dst` to `byte` (stream-ordered).
    pub fn fill(&self, dst: &dyn DeviceMem, byte: u8) -> Result<()> {
        // SAFETY: writes exactly `dst.len_bytes()` bytes of live device memory.
        unsafe { cu::memset_d8_async(dst.device_ptr(), byte, dst.len_bytes(), STREAM) }
            .map_err(|e| GpuError::driver("cuMemsetD8", e))
    }

    /// Copies all of `src` into `dst` (stream-ordered); `dst` must hold it.
    pub fn copy(&self, dst: &dyn DeviceMem, src: &dyn DeviceMem) -> Result<()> {
        if dst.len_bytes() < src.len_bytes() {
            return Err(GpuError::other("copy", "destination smaller than source"));
        }
        // SAFETY: both are live device memory and `dst` holds at least
        // `src.len_bytes()` bytes.
        unsafe {
            cu::memcpy_dtod_async(dst.device_ptr(), src.device_ptr(), src.len_bytes(), STREAM)
        }
        .map_err(|e| GpuError::driver("cuMemcpyDtoD", e))
    }

    /// Evicts the L2 by writing a buffer of twice its size (allocated on first use).
    pub fn flush_l2(&mut self) -> Result<()> {
        if self.flush.is_none() {
            let bytes = (2 * self.info.l2_bytes as usize).max(1 << 20);
            self.flush = Some(self.alloc(bytes)?);
        }
        let f = self.flush.as_ref().expect("allocated above");
        self.fill(f, 0x5A)
    }

    /// Loads a CUBIN (or PTX) image and looks up `entry`.
    pub fn load(&self, image: &[u8], entry: &str) -> Result<Kernel> {
        let mut data = image.to_vec();
        data.push(0); // PTX images must be NUL-terminated; CUBIN ignores the extra byte.
                      // SAFETY: `data` is a complete image that outlives the call.
        let m = unsafe { cu::module::load_data(data.as_ptr() as *const c_void) }
            .map_err(|e| GpuError::driver("cuModuleLoadData", e))?;
        let module = Rc::new(Module(m));
        let name = CString::new(entry)
            .map_err(|_| GpuError::other("cuModuleGetFunction", "entry name contains NUL"))?;
        // SAFETY: `module.0` was just loaded and is kept alive by the Rc.
        let f = unsafe { cu::module::get_function(module.0, name) }.map_err(|e| {
            GpuError::driver(
                format!("cuModuleGetFunction(`{entry}`): is the kernel declared extern \"C\"?"),
                e,
            )
        })?;
        let get = |a: sys::CUfunction_attribute| -> Result<u32> {
            // SAFETY: `f` is a live function of a loaded module.
            unsafe { cu::function::get_function_attribute(f, a) }
                .map(|v| v as u32)
                .map_err(|e| GpuError::driver("cuFuncGetAttribute", e))
        };
        use sys::CUfunction_attribute as F;
        let info = FunctionInfo {
            registers: get(F::CU_FUNC_ATTRIBUTE_NUM_REGS)?,
            local_bytes: get(F::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)?,
            static_shared_bytes: get(F::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?,
            const_bytes: get(F::CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES)?,
            max_threads_per_block: get(F::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        };
        Ok(Kernel {
            f,
            _module: module,
            info,
            entry: entry.to_string(),
        })
    }

    /// Why `dims` cannot launch `k` on this device, if it cannot.
    pub fn launch_problem(&self, k: &Kernel, dims: &LaunchDims) -> Option<String> {
        let threads = dims.threads_per_block();
        if threads > k.info.max_threads_per_block as u64 {
            return Some(format!(
                "{threads} threads per block, but `{}` can launch at most {} (registers: {}, device limit: {})",
                k.entry, k.info.max_threads_per_block, k.info.registers, self.info.max_threads_per_block
            ));
        }
        let shared = dims.shared_bytes as u64 + k.info.static_shared_bytes as u64;
        if shared > self.info.max_shared_per_block_optin as u64 {
            return Some(format!(
                "{shared} bytes of shared memory per block ({} dynamic + {} static), the device allows {}",
                dims.shared_bytes, k.info.static_shared_bytes, self.info.max_shared_per_block_optin
            ));
        }
        None
    }

    /// Enqueues one launch. Checks the launch against the function's limits first.
    pub fn launch(&self, k: &Kernel, dims: &LaunchDims, params: &mut Params) -> Result<()> {
        if let Some(p) = self.launch_problem(k, dims) {
            return Err(GpuError::other("launch", p));
        }
        self.allow_shared(k, dims)?;
        let mut ptrs: Vec<*mut c_void> = params
            .slots
            .iter_mut()
            .map(|s| s.as_mut_ptr() as *mut c_void)
            .collect();
        // SAFETY: `k.f` is a live function; every parameter pointer points into a slot of
        // `params` that outlives this call (the driver copies parameter values at launch);
        // buffer parameters point to live allocations owned by the caller, who keeps them
        // alive until the stream is synchronized.
        unsafe {
            cu::launch_kernel(
                k.f,
                (dims.grid[0], dims.grid[1], dims.grid[2]),
                (dims.block[0], dims.block[1], dims.block[2]),
                dims.shared_bytes,
                STREAM,
                &mut ptrs,
            )
        }
        .map_err(|e| GpuError::driver("cuLaunchKernel", e))
    }

    /// Waits for all enqueued work. A kernel fault surfaces here.
    pub fn sync(&self) -> Result<()> {
        // SAFETY: the null stream always exists.
        unsafe { cu::stream::synchronize(STREAM) }
            .map_err(|e| GpuError::driver("cuStreamSynchronize", e))
    }

    pub fn event(&self) -> Result<Event> {
        cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map(Event)
            .map_err(|e| GpuError::driver("cuEventCreate", e))
    }

    pub fn record(&self, e: &Event) -> Result<()> {
        // SAFETY: `e` is a live event; the null stream always exists.
        unsafe { cu::event::record(e.0, STREAM) }
            .map_err(|er| GpuError::driver("cuEventRecord", er))
    }

    /// Milliseconds between two recorded events (waits for `end`).
    pub fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64> {
        // SAFETY: both events are alive and were recorded on this context.
        unsafe {
            cu::event::synchronize(end.0).map_err(|e| GpuError::driver("cuEventSynchronize", e))?;
            cu::event::elapsed(start.0, end.0)
                .map(|ms| ms as f64)
                .map_err(|e| GpuError::driver("cuEventElapsedTime", e))
        }
    }

    /// Resident blocks per SM for `k` at this block size (the occupancy API).
    /// Opts `k` in to more than 48 KiB of dynamic shared memory when `dims` asks for it
    /// (launches and the occupancy calculator both need the attribute set first).
    fn allow_shared(&self, k: &Kernel, dims: &LaunchDims) -> Result<()> {
        if dims.shared_bytes > 48 * 1024 {
            // SAFETY: `k.f` is a live function; the value is within the device's opt-in
            // limit (checked by `launch_problem` before any launch).
            unsafe {
                cu::function::set_function_attribute(
                    k.f,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dims.shared_bytes as i32,
                )
            }
            .map_err(|e| GpuError::driver("cuFuncSetAttribute(max dynamic shared)", e))?;
        }
        Ok(())
    }

    pub fn active_blocks_per_sm(&self, k: &Kernel, dims: &LaunchDims) -> Result<u32> {
        if self.launch_problem(k, dims).is_some() {
            return Ok(0);
        }
        self.allow_shared(k, dims)?;
        // SAFETY: `k.f` is a live function.
        unsafe {
            cudarc::driver::result::occupancy::max_active_block_per_multiprocessor(
                k.f,
                dims.threads_per_block() as i32,
                dims.shared_bytes as usize,
            )
        }
        .map(|v| v as u32)
        .map_err(|e| GpuError::driver("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))
    }
}
