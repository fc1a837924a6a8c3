//! What carries out the GPU work: the worker session in a run, a scripted fake in
//! tests of the loop's plumbing.

use super::*;

/// What runs a candidate: the GPU session, or a scripted fake in unit tests of the
/// loop's plumbing (whose numbers never reach a report).
pub trait Evaluator: Send + 'static {
    /// The device's model name, as the journal and prices name it.
    fn device_name(&self) -> String;
    /// Compiles, validates and measures one configuration.
    fn evaluate(&mut self, spec: &KernelSpec, config: &Config) -> Result<Evaluation, EvalError>;
    /// Validates both and measures them interleaved; the speedup is `b` over `a`.
    /// Each side is a version of the kernel (as written, or as rewritten) at a
    /// configuration; both are validated against the spec's own reference.
    fn compare(
        &mut self,
        a: (&KernelSpec, &Config),
        b: (&KernelSpec, &Config),
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError>;
    /// The device, its measured ceilings and the measurement options, for the
    /// journal's `Machine` record (None: nothing to record).
    fn machine(&self) -> Option<(Value, Value, Value)> {
        None
    }
    /// The CUDA ordinal of its GPU (None: not a GPU, a test double).
    fn ordinal(&self) -> Option<usize> {
        None
    }
    /// Where a compile prefetch may put its results (None: no prefetch).
    fn prefetch_target(&self) -> Option<(PathBuf, String)> {
        None
    }
    fn min_gain(&self) -> f64;
    /// Pins the timing method of the measurements that follow (a run measures each
    /// kernel with its baseline's method, so its figures are of one method).
    fn pin_method(&mut self, _method: MethodChoice) {}
    fn shutdown(self)
    where
        Self: Sized,
    {
    }
}

impl Evaluator for Session {
    fn device_name(&self) -> String {
        self.device.name.clone()
    }
    fn evaluate(&mut self, spec: &KernelSpec, config: &Config) -> Result<Evaluation, EvalError> {
        Session::evaluate(self, spec, config, true)
    }
    fn compare(
        &mut self,
        a: (&KernelSpec, &Config),
        b: (&KernelSpec, &Config),
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        Session::compare_kernels(self, a, b, false)
    }
    fn prefetch_target(&self) -> Option<(PathBuf, String)> {
        Some((self.opts.cache_dir.clone(), self.device.arch.clone()))
    }
    fn ordinal(&self) -> Option<usize> {
        Some(self.opts.gpu)
    }
    fn machine(&self) -> Option<(Value, Value, Value)> {
        Some((
            to_value(&self.device),
            to_value(&self.ceilings),
            to_value(&self.opts.measure),
        ))
    }
    fn min_gain(&self) -> f64 {
        self.opts.min_gain
    }
    fn pin_method(&mut self, method: MethodChoice) {
        self.opts.measure.method = method;
    }
    fn shutdown(self) {
        Session::shutdown(self)
    }
}

/// A machine record's part as JSON (null if it cannot be written).
fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
