//! The validation protocol's device half, in the worker: nightshift's own kernels
//! (`validate::device`) loaded once per worker, buffers that sit between guard
//! regions, and the reference outputs kept for reuse. Inputs are generated, outputs
//! compared and guards checked on the GPU; only small records cross PCIe.

use std::path::Path;

use crate::gpu::nvrtc::{self, CompileRequest, Compiled};
use crate::gpu::{
    DeviceBuffer, DeviceMem, DeviceView, Gpu, GpuError, Kernel, Param, Params, PinnedHost,
};
use crate::spec::plan::{ArgPlan, LaunchDims, SizePlan};
use crate::spec::{DType, Tolerance};
use crate::validate::device::{self as dev, GenParams};
use crate::validate::ErrorStats;

/// nightshift's validation kernels, loaded on this worker's device.
pub struct Builtins {
    generate: Kernel,
    compare: Kernel,
    first_diff: Kernel,
    scramble: Kernel,
    /// The compare kernel's stats record and the first-difference word.
    stats: DeviceBuffer,
    first: DeviceBuffer,
    max_blocks: u32,
}

fn compile_err(e: GpuError) -> String {
    e.to_string()
}

impl Builtins {
    /// Compiles (once per cache) and loads the validation kernels.
    pub fn load(gpu: &Gpu, cache_dir: &Path) -> Result<Builtins, String> {
        let req = CompileRequest {
            name: "nightshift_validate.cu".into(),
            source: dev::SOURCE.into(),
            options: dev::COMPILE_OPTIONS.iter().map(|s| s.to_string()).collect(),
            arch: gpu.info.arch.clone(),
        };
        let cubin = match nvrtc::compile(&req, cache_dir)? {
            Compiled::Ok { cubin, .. } => cubin,
            Compiled::Failed { log, .. } => {
                return Err(format!("the validation kernels do not compile: {log}"))
            }
        };
        let image =
            std::fs::read(&cubin).map_err(|e| format!("cannot read {}: {e}", cubin.display()))?;
        let load = |entry| gpu.load(&image, entry).map_err(compile_err);
        Ok(Builtins {
            generate: load(dev::GENERATE)?,
            compare: load(dev::COMPARE)?,
            first_diff: load(dev::FIRST_DIFF)?,
            scramble: load(dev::SCRAMBLE)?,
            stats: gpu.alloc(dev::STATS_BYTES).map_err(compile_err)?,
            first: gpu.alloc(8).map_err(compile_err)?,
            max_blocks: gpu.info.sms.max(1) * 16,
        })
    }

    fn dims(&self, n: u64) -> LaunchDims {
        let blocks = n
            .div_ceil(dev::BLOCK as u64)
            .clamp(1, self.max_blocks as u64);
        LaunchDims {
            grid: [blocks as u32, 1, 1],
            block: [dev::BLOCK, 1, 1],
            shared_bytes: 0,
        }
    }

    /// Writes `n` elements of `dtype` drawn as `p` says into `dst`.
    pub fn generate(
        &self,
        gpu: &Gpu,
        dst: &dyn DeviceMem,
        dtype: DType,
        n: u64,
        p: &GenParams,
    ) -> Result<(), GpuError> {
        let (code, dist) = (dev::dtype_code(dtype), p.dist);
        let (k0, k1) = p.key;
        let mut params = Params::new(&[
            Param::Mem(dst),
            Param::Bytes(&n.to_le_bytes()),
            Param::Bytes(&code.to_le_bytes()),
            Param::Bytes(&dist.to_le_bytes()),
            Param::Bytes(&p.p0.to_le_bytes()),
            Param::Bytes(&p.p1.to_le_bytes()),
            Param::Bytes(&p.scale.to_le_bytes()),
            Param::Bytes(&k0.to_le_bytes()),
            Param::Bytes(&k1.to_le_bytes()),
        ])?;
        gpu.launch(&self.generate, &self.dims(n), &mut params)
    }

    /// Overwrites `dst` with bytes keyed by `key` that no kernel can predict.
    pub fn scramble(
        &self,
        gpu: &Gpu,
        dst: &dyn DeviceMem,
        key: (u32, u32),
    ) -> Result<(), GpuError> {
        let n = dst.len_bytes() as u64;
        let mut params = Params::new(&[
            Param::Mem(dst),
            Param::Bytes(&n.to_le_bytes()),
            Param::Bytes(&key.0.to_le_bytes()),
            Param::Bytes(&key.1.to_le_bytes()),
        ])?;
        gpu.launch(&self.scramble, &self.dims(n.div_ceil(16)), &mut params)
    }

    /// Compares `n` elements of `out` with `reference` on the device (what
    /// `validate::compare` computes on the host); waits for the result.
    pub fn compare(
        &self,
        gpu: &Gpu,
        out: &dyn DeviceMem,
        reference: &dyn DeviceMem,
        dtype: DType,
        n: u64,
        tol: Tolerance,
    ) -> Result<ErrorStats, GpuError> {
        gpu.upload(&self.stats, &dev::stats_init())?;
        let size = dtype.size() as i32;
        let mut params = Params::new(&[
            Param::Mem(out),
            Param::Mem(reference),
            Param::Bytes(&n.to_le_bytes()),
            Param::Bytes(&dev::dtype_code(dtype).to_le_bytes()),
            Param::Bytes(&size.to_le_bytes()),
            Param::Bytes(&dev::poison_word(dtype).to_le_bytes()),
            Param::Bytes(&tol.atol.to_le_bytes()),
            Param::Bytes(&tol.rtol.to_le_bytes()),
            Param::Buffer(&self.stats),
        ])?;
        gpu.launch(&self.compare, &self.dims(n), &mut params)?;
        gpu.sync()?;
        let raw = gpu.download(&self.stats)?;
        let mut err = None;
        let stats = dev::stats_from_device(&raw, n, |i| {
            let sz = dtype.size();
            let one = |m: &dyn DeviceMem| -> Result<f64, GpuError> {
                let v = gpu.download(&m.sub(i as usize * sz, sz)?)?;
                Ok(dtype.read(&v, 0))
            };
            match (one(out), one(reference)) {
                (Ok(g), Ok(w)) => (g, w),
                (Err(e), _) | (_, Err(e)) => {
                    err = Some(e);
                    (f64::NAN, f64::NAN)
                }
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// The first of `n` elements of `size` bytes where `a` and `b` differ.
    pub fn first_diff(
        &self,
        gpu: &Gpu,
        a: &dyn DeviceMem,
        b: &dyn DeviceMem,
        size: usize,
        n: u64,
    ) -> Result<Option<u64>, GpuError> {
        gpu.upload(&self.first, &u64::MAX.to_le_bytes())?;
        let size = size as i32;
        let mut params = Params::new(&[
            Param::Mem(a),
            Param::Mem(b),
            Param::Bytes(&n.to_le_bytes()),
            Param::Bytes(&size.to_le_bytes()),
            Param::Buffer(&self.first),
        ])?;
        gpu.launch(&self.first_diff, &self.dims(n), &mut params)?;
        gpu.sync()?;
        let raw = gpu.download(&self.first)?;
        let i = u64::from_le_bytes(raw[..8].try_into().unwrap_or([0xFF; 8]));
        Ok((i != u64::MAX).then_some(i))
    }
}

/// Bytes of guard on each side of every buffer a kernel gets during validation.
pub const GUARD_BYTES: usize = 4096;

/// The guard pattern: Philox bytes, so that no constant a kernel writes matches it.
pub fn guard_pattern(bytes: usize) -> Vec<u8> {
    dev::scramble(bytes, (0x6A09_E667, 0xBB67_AE85))
}

/// The buffers of one argument list, each between two guard regions; the kernel sees
/// the inside, which keeps the alignment of its own allocation (the guard is a
/// multiple of 256 bytes).
pub struct Guarded {
    allocs: Vec<Option<DeviceBuffer>>,
    /// Bytes of each inside.
    sizes: Vec<usize>,
    guard: usize,
    pattern: Vec<u8>,
}

/// A write outside a buffer: which side, and how many guard bytes changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trespass {
    pub arg: usize,
    pub after: bool,
    pub bytes: usize,
}

impl Guarded {
    /// Allocates every buffer of `plan` with its guards (not filled yet).
    pub fn alloc(gpu: &Gpu, plan: &SizePlan, guard: usize) -> Result<Guarded, GpuError> {
        let mut allocs = Vec::new();
        let mut sizes = Vec::new();
        for a in &plan.args {
            match a {
                ArgPlan::Buffer { dtype, len, .. } => {
                    let bytes = *len as usize * dtype.size();
                    allocs.push(Some(gpu.alloc(bytes + 2 * guard)?));
                    sizes.push(bytes);
                }
                ArgPlan::Scalar { .. } => {
                    allocs.push(None);
                    sizes.push(0);
                }
            }
        }
        Ok(Guarded {
            allocs,
            sizes,
            guard,
            pattern: guard_pattern(guard),
        })
    }

    /// The inside of argument `i` (None for scalars).
    pub fn inside(&self, i: usize) -> Option<DeviceView<'_>> {
        let a = self.allocs.get(i)?.as_ref()?;
        a.view(self.guard, self.sizes[i]).ok()
    }

    fn guards(&self, i: usize) -> Option<(DeviceView<'_>, DeviceView<'_>)> {
        let a = self.allocs.get(i)?.as_ref()?;
        Some((
            a.view(0, self.guard).ok()?,
            a.view(self.guard + self.sizes[i], self.guard).ok()?,
        ))
    }

    /// Writes the guard pattern on both sides of every buffer.
    pub fn arm(&self, gpu: &Gpu) -> Result<(), GpuError> {
        for i in 0..self.allocs.len() {
            if let Some((before, after)) = self.guards(i) {
                gpu.upload(&before, &self.pattern)?;
                gpu.upload(&after, &self.pattern)?;
            }
        }
        Ok(())
    }

    /// The first buffer whose guards changed, if any (after a synchronized launch).
    pub fn trespass(&self, gpu: &Gpu) -> Result<Option<Trespass>, GpuError> {
        for i in 0..self.allocs.len() {
            let Some((before, after)) = self.guards(i) else {
                continue;
            };
            for (side, v) in [(false, before), (true, after)] {
                let now = gpu.download(&v)?;
                let changed = now
                    .iter()
                    .zip(&self.pattern)
                    .filter(|(a, b)| a != b)
                    .count();
                if changed > 0 {
                    return Ok(Some(Trespass {
                        arg: i,
                        after: side,
                        bytes: changed,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The kernel parameters: each buffer's inside, each scalar's bytes.
    pub fn params(&self, plan: &SizePlan) -> Result<Params, GpuError> {
        let insides: Vec<Option<DeviceView>> =
            (0..plan.args.len()).map(|i| self.inside(i)).collect();
        let list: Vec<Param> = plan
            .args
            .iter()
            .zip(&insides)
            .map(|(a, v)| match (a, v) {
                (ArgPlan::Scalar { bytes, .. }, _) => Param::Bytes(bytes),
                (ArgPlan::Buffer { .. }, Some(v)) => Param::Mem(v),
                (ArgPlan::Buffer { .. }, None) => Param::Bytes(&[]),
            })
            .collect();
        Params::new(&list)
    }
}

/// Where a kept reference output lives.
pub enum Kept {
    Device(DeviceBuffer),
    /// Past the device budget: in page-locked host memory, uploaded when used.
    Pinned(PinnedHost),
    /// ... or in ordinary host memory when the driver would not lock more.
    Host(Vec<u8>),
}

impl Kept {
    pub fn bytes(&self) -> usize {
        match self {
            Kept::Device(b) => b.bytes(),
            Kept::Pinned(p) => p.as_slice().len(),
            Kept::Host(v) => v.len(),
        }
    }

    /// The bytes, when they are in host memory.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        match self {
            Kept::Device(_) => None,
            Kept::Pinned(p) => Some(p.as_slice()),
            Kept::Host(v) => Some(v),
        }
    }

    /// Where it is, in words.
    pub fn place(&self) -> &'static str {
        match self {
            Kept::Device(_) => "device",
            Kept::Pinned(_) => "pinned host",
            Kept::Host(_) => "host",
        }
    }
}

/// The reference outputs of one (size, trial): one per argument, `Some` for the
/// arguments the reference writes.
pub type RefOutputs = Vec<Option<Kept>>;

/// Where a new entry of `bytes` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Device,
    Host,
    /// Larger than either budget: not kept.
    Nowhere,
}

/// Reference outputs kept by key, first in first out, within a device budget and a
/// host budget. Generic over what is kept, so the policy is tested without a GPU.
pub struct RefCache<T> {
    entries: Vec<(String, Place, u64, T)>,
    device_budget: u64,
    host_budget: u64,
}

impl<T> RefCache<T> {
    pub fn new(device_budget: u64, host_budget: u64) -> Self {
        RefCache {
            entries: Vec::new(),
            device_budget,
            host_budget,
        }
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|e| e.0 == key)
            .map(|(_, _, _, v)| v)
    }

    fn used(&self, place: Place) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.1 == place)
            .map(|e| e.2)
            .sum()
    }

    /// Where an entry of `bytes` would go: the device while it fits its budget (the
    /// oldest device entries are dropped to make room), else the host likewise.
    pub fn place(&self, bytes: u64) -> Place {
        if bytes <= self.device_budget {
            Place::Device
        } else if bytes <= self.host_budget {
            Place::Host
        } else {
            Place::Nowhere
        }
    }

    /// Makes room for `bytes` at `place`, dropping its oldest entries.
    pub fn make_room(&mut self, place: Place, bytes: u64) {
        let budget = match place {
            Place::Device => self.device_budget,
            Place::Host => self.host_budget,
            Place::Nowhere => return,
        };
        while self.used(place) + bytes > budget {
            let Some(i) = self.entries.iter().position(|e| e.1 == place) else {
                break;
            };
            self.entries.remove(i);
        }
    }

    /// Keeps `value` (of `bytes`) at `place` under `key`; call [`RefCache::make_room`]
    /// first (before allocating it).
    pub fn insert(&mut self, key: String, place: Place, bytes: u64, value: T) {
        if place == Place::Nowhere {
            return;
        }
        self.entries.retain(|e| e.0 != key);
        self.entries.push((key, place, bytes, value));
    }

    /// The place of the entry under `key`.
    pub fn place_of(&self, key: &str) -> Option<Place> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key of the reference outputs of one (size, trial): everything that decides
/// them (the reference's compiled image and launch, the arguments, the inputs' seed
/// and kind). A changed spec, reference source or seed is another key.
pub fn ref_key(
    reference: &impl serde::Serialize,
    plan: &SizePlan,
    seed: u64,
    trial: usize,
    kind: crate::validate::TrialKind,
) -> String {
    let text = serde_json::to_string(&(
        reference,
        plan.ref_launch.unwrap_or(plan.launch),
        &plan.args,
        &plan.problem,
        seed,
        trial,
        kind,
    ))
    .unwrap_or_default();
    crate::digest::of_parts([("reference", text.as_bytes())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs_stay_on_the_device_within_its_budget_then_go_to_the_host() {
        let mut c: RefCache<u32> = RefCache::new(100, 1000);
        for (i, bytes) in [40u64, 40, 40].iter().enumerate() {
            let p = c.place(*bytes);
            assert_eq!(p, Place::Device);
            c.make_room(p, *bytes);
            c.insert(format!("k{i}"), p, *bytes, i as u32);
        }
        // The third did not fit beside the first two: the oldest was dropped.
        assert_eq!(c.get("k0"), None);
        assert_eq!((c.get("k1"), c.get("k2")), (Some(&1), Some(&2)));
        // Too large for the device: the host; too large for both: not kept.
        assert_eq!(c.place(500), Place::Host);
        c.make_room(Place::Host, 500);
        c.insert("big".into(), Place::Host, 500, 9);
        assert_eq!(c.place_of("big"), Some(Place::Host));
        assert_eq!(c.place(5000), Place::Nowhere);
        c.insert("huge".into(), Place::Nowhere, 5000, 10);
        assert_eq!(c.get("huge"), None);
        assert_eq!(c.len(), 3);
        // The same key again replaces its entry.
        c.make_room(Place::Device, 10);
        c.insert("k2".into(), Place::Device, 10, 7);
        assert_eq!(c.get("k2"), Some(&7));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn every_input_of_the_reference_outputs_is_in_their_key() {
        use crate::validate::TrialKind;
        let spec = crate::spec::KernelSpec::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/rowsum"),
        )
        .unwrap();
        let plan = crate::spec::plan::plan(&spec, &spec.baseline(), &spec.problem).unwrap();
        let k = ref_key(&"ref.cubin", &plan, 1, 0, TrialKind::Normal);
        assert_eq!(k, ref_key(&"ref.cubin", &plan, 1, 0, TrialKind::Normal));
        assert_ne!(k, ref_key(&"other.cubin", &plan, 1, 0, TrialKind::Normal));
        assert_ne!(k, ref_key(&"ref.cubin", &plan, 2, 0, TrialKind::Normal));
        assert_ne!(k, ref_key(&"ref.cubin", &plan, 1, 1, TrialKind::Normal));
        assert_ne!(k, ref_key(&"ref.cubin", &plan, 1, 0, TrialKind::Large));
        let mut other = plan.clone();
        other.problem.insert("rows".into(), 3);
        assert_ne!(k, ref_key(&"ref.cubin", &other, 1, 0, TrialKind::Normal));
        // The candidate's own launch is not: every configuration shares the outputs.
        let mut launched = plan.clone();
        launched.launch.block[0] = 1024;
        launched.ref_launch = Some(plan.ref_launch.unwrap_or(plan.launch));
        assert_eq!(k, ref_key(&"ref.cubin", &launched, 1, 0, TrialKind::Normal));
    }
}
