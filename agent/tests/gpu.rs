//! GPU tests: the example kernel on a real device, each deliberately broken variant
//! rejected for the right reason, and repeatability across processes. Without a CUDA
//! device each test prints `skipped: no CUDA device` (NIGHTSHIFT_REQUIRE_GPU=1 makes
//! that a failure, for runs on the GPU machine).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use nightshift::evaluate::{Evaluation, Options, Session};
use nightshift::spec::KernelSpec;
use nightshift::vocab::Outcome;

/// One GPU, one test at a time: timing tests must not share it.
static GPU: Mutex<()> = Mutex::new(());

fn options() -> Options {
    let mut o = Options::new(std::env::temp_dir().join("nightshift-gpu-tests"));
    o.worker_exe = Some(common::nightshift_bin());
    o.watchdog = Duration::from_secs(10);
    o.measure.rule.max_time = Duration::from_secs(2);
    o.measure.energy_ms = 200.0;
    o
}

fn session() -> Session {
    Session::start(options(), Box::new(|s| eprintln!("  .. {s}"))).expect("a GPU session starts")
}

fn example() -> PathBuf {
    common::repo_root().join("kernels/softmax")
}

/// The example kernel, edited: `source` rewrites softmax.cu, `toml` rewrites kernel.toml.
fn variant(
    source: &dyn Fn(String) -> String,
    toml: &dyn Fn(String) -> String,
) -> (tempfile::TempDir, KernelSpec) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example().join("softmax_ref.cu"),
        dir.path().join("softmax_ref.cu"),
    )
    .unwrap();
    let read = |f: &str| std::fs::read_to_string(example().join(f)).unwrap();
    std::fs::write(dir.path().join("softmax.cu"), source(read("softmax.cu"))).unwrap();
    std::fs::write(dir.path().join("kernel.toml"), toml(read("kernel.toml"))).unwrap();
    let spec = KernelSpec::load(dir.path()).unwrap();
    (dir, spec)
}

/// Replaces `from` (which must be present) in `text`; every occurrence when `all`.
fn patch(text: &str, from: &str, to: &str, all: bool) -> String {
    assert!(
        text.contains(from),
        "the example kernel no longer contains {from:?}"
    );
    if all {
        text.replace(from, to)
    } else {
        text.replacen(from, to, 1)
    }
}

const LAST_LOOP: &str = "        for (int k = 0; k < VEC; ++k) e[k] = expf(e[k] - m) * inv;\n";
const ROW_START: &str = "    const int n = seq_k / VEC;\n";

/// The example kernel broken on purpose, in one way per name. Generated from the
/// example so each variant differs from it by exactly its defect.
fn broken_source(name: &str, src: &str) -> String {
    match name {
        // The block reductions without their barriers: a race.
        "race" => patch(src, "    __syncthreads();\n", "", true),
        // The tail of each row is never written when seq_k is not a multiple of 32 vectors.
        "tail" => patch(src, "for (int i = threadIdx.x; i < n; i += BLOCK) {\n        float e[VEC];\n        unpack(xv[i], e);\n        for (int k = 0; k < VEC; ++k) e[k] = expf", "for (int i = threadIdx.x; i < (n / 32) * 32; i += BLOCK) {\n        float e[VEC];\n        unpack(xv[i], e);\n        for (int k = 0; k < VEC; ++k) e[k] = expf", false),
        // A write far outside the output buffer: an illegal address.
        "oob" => patch(src, ROW_START, "    const int n = seq_k / VEC;\n    if (threadIdx.x == 0) y[(size_t)rows * seq_k + (1ull << 40)] = 1.0f;\n", false),
        // Never terminates: a volatile global load each iteration keeps the loop alive.
        "hang" => patch(src, ROW_START, "    const int n = seq_k / VEC;\n    while (*(volatile const float*)x == *(volatile const float*)x) { }\n", false),
        // Overwrites its read-only input.
        "mutate" => patch(src, "        yv[i] = o;\n", "        yv[i] = o;\n        const_cast<vt*>(xv)[i] = o;\n", false),
        // Copies x to y unchanged.
        "identity" => patch(src, LAST_LOOP, "", false),
        // Writes a NaN into every row.
        "nan" => patch(src, LAST_LOOP, "        for (int k = 0; k < VEC; ++k) e[k] = expf(e[k] - m) * inv;\n        if (i == 0) e[0] = __int_as_float(0x7fc00000);\n", false),
        // Does not compile.
        "syntax" => patch(src, "    m = block_max(m, red);", "    m = block_max(m, red)", false),
        // Writes 1, 3 or 64 elements past the end of its output, one before its start,
        // one past the end of its input: the guard regions see it.
        "past_end_1" => past(src, "y", "(size_t)rows * seq_k"),
        "past_end_3" => past(src, "y", "(size_t)rows * seq_k + 2"),
        "past_end_64" => past(src, "y", "(size_t)rows * seq_k + 63"),
        "before_start" => past(src, "y", "-1"),
        "input_past_end" => past(src, "const_cast<float*>(x)", "(size_t)rows * seq_k"),
        // Does its work only when its output holds NaN (the validation's poison), and
        // keeps what the output holds otherwise.
        "nan_only" => patch(src, ROW_START, "    const int n = seq_k / VEC;\n    if (!isnan(y[row * seq_k])) return;\n", false),
        // Right on its first launch, wrong (doubled) once a whole launch has finished.
        "first_launch_only" => patch(
            &patch(
                &patch(src, "__device__ __forceinline__ void\nsoftmax_block", "__device__ unsigned int ns_blocks_done;\n__device__ __forceinline__ void\nsoftmax_block", false),
                ROW_START,
                "    const int n = seq_k / VEC;\n    const float again = *(volatile unsigned int*)&ns_blocks_done >= gridDim.x ? 2.0f : 1.0f;\n",
                false,
            ),
            "        yv[i] = o;\n    }\n}",
            "        yv[i] = o;\n    }\n    __syncthreads();\n    for (int i = threadIdx.x; i < n * VEC; i += BLOCK) y[row * seq_k + i] *= again;\n    __syncthreads();\n    if (threadIdx.x == 0) atomicAdd(&ns_blocks_done, 1u);\n}",
            false,
        ),
        other => panic!("no broken variant {other}"),
    }
}

/// One write of 0.5 to `target[index]` by one thread of the first row's block.
fn past(src: &str, target: &str, index: &str) -> String {
    patch(
        src,
        ROW_START,
        &format!("    const int n = seq_k / VEC;\n    if (row == 0 && threadIdx.x == 0) {target}[{index}] = 0.5f;\n"),
        false,
    )
}

fn broken(name: &str) -> (tempfile::TempDir, KernelSpec) {
    variant(&|s| broken_source(name, &s), &|t| t)
}

fn eval(s: &mut Session, spec: &KernelSpec, sets: &[(&str, i64)], measure: bool) -> Evaluation {
    let sets: Vec<(String, i64)> = sets.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let c = spec.with_overrides(&spec.baseline(), &sets).unwrap();
    let e = s
        .evaluate(spec, &c, measure)
        .expect("the infrastructure holds");
    println!("{} {}: {}", spec.name, c, e.outcome.describe());
    e
}

#[test]
fn example_compiles_validates_and_measures() {
    if common::skip_without_gpu("example_compiles_validates_and_measures") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let spec = KernelSpec::load(&example()).unwrap();
    let mut s = session();
    for sets in [
        &[][..],
        &[("BLOCK", 256), ("VEC", 4)][..],
        &[("BLOCK", 1024), ("VEC", 2)][..],
        &[("BLOCK", 32)][..],
        &[("VARIANT", 1)][..],
        &[("VARIANT", 1), ("BLOCK", 256), ("VEC", 4)][..],
    ] {
        let e = eval(&mut s, &spec, sets, true);
        assert_eq!(e.outcome, Outcome::Passed, "{}", e.outcome.describe());
        let m = e.measurement.as_ref().expect("measured");
        let sum = m.summary.expect("samples kept");
        assert!(sum.median > 0.0 && sum.ci_lo <= sum.median && sum.median <= sum.ci_hi);
        let r = e.roofline.as_ref().expect("roofline");
        assert!(
            r.dram_fraction > 0.0 && r.dram_fraction <= 1.0 + 0.03,
            "{r:?}"
        );
        let f = e.function.expect("function info");
        assert!(f.registers > 0);
        // Four trials (three normal, one large) at every validated size.
        let sizes: std::collections::BTreeSet<&str> =
            e.checks.iter().map(|c| c.size.as_str()).collect();
        assert_eq!(e.checks.len(), sizes.len() * 4);
        assert_eq!(
            sizes.len() + e.skipped_sizes.len(),
            1 + spec.validation.sizes.len()
        );
        println!(
            "  median {:.2} us, {:.0} GB/s ({:.1}% of DRAM ceiling), {:?}",
            sum.median,
            r.gbs,
            100.0 * r.dram_fraction,
            m.method
        );
    }
}

#[test]
fn vectorized_config_records_the_sizes_it_cannot_run() {
    if common::skip_without_gpu("vectorized_config_records_the_sizes_it_cannot_run") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let spec = KernelSpec::load(&example()).unwrap();
    let mut s = session();
    let e = eval(&mut s, &spec, &[("VEC", 4)], false);
    assert_eq!(e.outcome, Outcome::Passed);
    let skipped: Vec<&str> = e.skipped_sizes.iter().map(|s| s.size.as_str()).collect();
    assert_eq!(skipped, vec!["rows=257 seq_k=4099", "rows=1 seq_k=1"]);
}

#[test]
fn broken_variants_are_rejected_for_the_right_reason() {
    if common::skip_without_gpu("broken_variants_are_rejected_for_the_right_reason") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = session();
    let good = KernelSpec::load(&example()).unwrap();
    type Check = fn(&Outcome) -> bool;
    type Sets = &'static [(&'static str, i64)];
    let cases: Vec<(&str, Sets, Check)> = vec![
        ("race", &[("BLOCK", 1024)], |o| {
            matches!(o, Outcome::Race { .. } | Outcome::Incorrect { .. })
        }),
        (
            "tail",
            &[],
            |o| matches!(o, Outcome::Incorrect { stats, size, .. } if stats.unwritten > 0 && size != "rows=4096 seq_k=1024"),
        ),
        (
            "oob",
            &[],
            |o| matches!(o, Outcome::Crashed { error, .. } if error.contains("ILLEGAL_ADDRESS")),
        ),
        ("hang", &[], |o| matches!(o, Outcome::Hung { .. })),
        (
            "mutate",
            &[],
            |o| matches!(o, Outcome::MutatedInput { arg, .. } if arg == "x"),
        ),
        ("identity", &[], |o| matches!(o, Outcome::Incorrect { .. })),
        (
            "nan",
            &[],
            |o| matches!(o, Outcome::Incorrect { stats, .. } if stats.non_finite > 0),
        ),
        (
            "syntax",
            &[],
            |o| matches!(o, Outcome::CompileFailed { log } if log.contains("error")),
        ),
        (
            "past_end_1",
            &[],
            |o| matches!(o, Outcome::OutOfBounds { arg, side, bytes, .. } if arg == "y" && side == "after" && *bytes >= 1),
        ),
        (
            "past_end_3",
            &[],
            |o| matches!(o, Outcome::OutOfBounds { arg, side, .. } if arg == "y" && side == "after"),
        ),
        (
            "past_end_64",
            &[],
            |o| matches!(o, Outcome::OutOfBounds { arg, side, .. } if arg == "y" && side == "after"),
        ),
        (
            "before_start",
            &[],
            |o| matches!(o, Outcome::OutOfBounds { arg, side, .. } if arg == "y" && side == "before"),
        ),
        (
            "input_past_end",
            &[],
            |o| matches!(o, Outcome::OutOfBounds { arg, side, .. } if arg == "x" && side == "after"),
        ),
        ("first_launch_only", &[], |o| {
            matches!(o, Outcome::Race { .. } | Outcome::Incorrect { .. })
        }),
    ];
    for (name, sets, ok) in cases {
        let (_dir, spec) = broken(name);
        let e = eval(&mut s, &spec, sets, false);
        assert!(ok(&e.outcome), "{name}: wrong outcome {:?}", e.outcome);
        // The parent survives and the next candidate runs on a healthy worker.
        let after = eval(&mut s, &good, &[], false);
        assert_eq!(
            after.outcome,
            Outcome::Passed,
            "after {name}: {:?}",
            after.outcome
        );
    }
    assert!(
        s.restarts() >= 2,
        "the hang and the illegal address each cost a worker restart"
    );
}

#[test]
fn a_short_kernel_is_timed_in_batches_over_rotating_buffers() {
    if common::skip_without_gpu("a_short_kernel_is_timed_in_batches_over_rotating_buffers") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    // 64 rows: a few microseconds, far below the single-launch threshold.
    let (_dir, spec) = variant(&|s| s, &|t| patch(&t, "rows = 4096", "rows = 64", false));
    let mut s = session();
    let e = eval(&mut s, &spec, &[], true);
    assert_eq!(e.outcome, Outcome::Passed, "{}", e.outcome.describe());
    let m = e.measurement.as_ref().unwrap();
    match m.method {
        nightshift::measure::TimingMethod::Batch {
            launches,
            buffer_sets,
        } => {
            assert!(
                buffer_sets > 1,
                "the working set must be rotated out of the L2"
            );
            assert_eq!(launches % buffer_sets, 0);
            println!("  batch: {launches} launches over {buffer_sets} argument copies");
        }
        other => panic!("expected batch timing, got {other:?}"),
    }
    let r = e.roofline.as_ref().unwrap();
    println!(
        "  median {:.3} us, {:.0} GB/s ({:.1}% of DRAM ceiling)",
        e.median_us().unwrap(),
        r.gbs,
        100.0 * r.dram_fraction
    );
    assert!(
        r.dram_fraction <= 1.03,
        "rotating buffers keep the data out of the L2: {r:?}"
    );
}

#[test]
fn too_much_shared_memory_is_unlaunchable() {
    if common::skip_without_gpu("too_much_shared_memory_is_unlaunchable") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, spec) = variant(&|s| s, &|t| {
        patch(
            &t,
            "shared_bytes = 0",
            "shared_bytes = \"BLOCK * 4096\"",
            false,
        )
    });
    let mut s = session();
    let e = eval(&mut s, &spec, &[("BLOCK", 128)], false);
    assert!(
        matches!(&e.outcome, Outcome::Unlaunchable { reason } if reason.contains("shared memory")),
        "{:?}",
        e.outcome
    );
}

#[test]
fn a_block_the_device_cannot_launch_is_unlaunchable() {
    if common::skip_without_gpu("a_block_the_device_cannot_launch_is_unlaunchable") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, spec) = variant(&|s| s, &|t| {
        patch(
            &t,
            "block = [\"BLOCK\", 1, 1]",
            "block = [\"BLOCK * 2\", 1, 1]",
            false,
        )
    });
    let mut s = session();
    let e = eval(&mut s, &spec, &[("BLOCK", 1024)], false);
    assert!(
        matches!(&e.outcome, Outcome::Unlaunchable { reason } if reason.contains("2048")),
        "{:?}",
        e.outcome
    );
}

#[test]
fn the_same_configuration_in_two_processes_gives_medians_within_2_percent() {
    if common::skip_without_gpu(
        "the_same_configuration_in_two_processes_gives_medians_within_2_percent",
    ) {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let spec = KernelSpec::load(&example()).unwrap();
    let mut medians = Vec::new();
    for _ in 0..2 {
        let mut s = session();
        let e = eval(&mut s, &spec, &[("BLOCK", 256)], true);
        medians.push(e.median_us().expect("measured"));
        s.shutdown();
    }
    let diff = (medians[0] - medians[1]).abs() / medians[0].min(medians[1]);
    println!(
        "medians in two processes: {medians:?} ({:.2}% apart)",
        100.0 * diff
    );
    assert!(diff < 0.02, "{medians:?}");
}

#[test]
fn a_configuration_against_itself_is_never_fast_or_slow() {
    if common::skip_without_gpu("a_configuration_against_itself_is_never_fast_or_slow") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let spec = KernelSpec::load(&example()).unwrap();
    let mut s = session();
    let c = spec.baseline();
    let (a, b, ab) = s.compare(&spec, &c, &c).expect("compare runs");
    assert_eq!(
        (a.outcome.clone(), b.outcome.clone()),
        (Outcome::Passed, Outcome::Passed)
    );
    let ab = ab.expect("a verdict");
    println!(
        "A/A: {:.4}x [{:.4}, {:.4}] {:?}",
        ab.speedup, ab.ci_lo, ab.ci_hi, ab.verdict
    );
    assert!(
        matches!(
            ab.verdict,
            nightshift::measure::Verdict::Same | nightshift::measure::Verdict::Ambiguous
        ),
        "{ab:?}"
    );
}

#[test]
fn the_validation_kernels_agree_with_the_host_bit_for_bit() {
    if common::skip_without_gpu("the_validation_kernels_agree_with_the_host_bit_for_bit") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = session();
    let (cases, failures) = s.self_check().expect("the self-check runs");
    println!("{cases} cases, {} failures", failures.len());
    assert!(cases > 100, "{cases}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_kernel_that_works_only_on_poisoned_outputs_fails_after_timing() {
    if common::skip_without_gpu("a_kernel_that_works_only_on_poisoned_outputs_fails_after_timing") {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = session();
    let (_dir, spec) = broken("nan_only");
    // Validated alone it passes: every validation launch starts from poisoned outputs.
    let v = eval(&mut s, &spec, &[], false);
    assert_eq!(v.outcome, Outcome::Passed, "{}", v.outcome.describe());
    let e = eval(&mut s, &spec, &[], true);
    assert!(
        matches!(&e.outcome, Outcome::Incorrect { stage: Some(st), .. } if st == "after timing"),
        "{:?}",
        e.outcome
    );
    // And it is never FAST against its honest twin: its figures stand for nothing.
    let good = KernelSpec::load(&example()).unwrap();
    let c = good.baseline();
    let (a, b, ab) = s.compare(&spec, &c, &c).expect("compare runs");
    println!(
        "honest {}, cheat {}",
        a.outcome.describe(),
        b.outcome.describe()
    );
    assert!(ab.is_none(), "{ab:?}");
    assert_ne!(b.outcome, Outcome::Passed);
}

/// A row sum whose blocks split each row and add their parts with float atomics:
/// correct, and different in the last bits from run to run.
fn atomic_rowsum(deterministic: &str) -> (tempfile::TempDir, KernelSpec) {
    let dir = tempfile::tempdir().unwrap();
    let root = common::repo_root().join("kernels/rowsum");
    std::fs::copy(root.join("rowsum_ref.cu"), dir.path().join("rowsum_ref.cu")).unwrap();
    std::fs::write(
        dir.path().join("rowsum_atomic.cu"),
        r#"
#ifndef BLOCK
#define BLOCK 128
#endif
extern "C" __global__ void rowsum_atomic(const float* x, float* y, int rows, int cols) {
    const size_t row = blockIdx.x;
    const int parts = gridDim.y, chunk = (cols + parts - 1) / parts;
    const int lo = blockIdx.y * chunk, hi = min(cols, lo + chunk);
    float s = 0.0f;
    for (int i = lo + threadIdx.x; i < hi; i += BLOCK) s += x[row * cols + i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(&y[row], s);
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("kernel.toml"),
        format!(
            r#"name = "rowsum_atomic"
source = "rowsum_atomic.cu"
entry = "rowsum_atomic"

[problem]
rows = 4096
cols = 8192

[validate]
sizes = [{{ rows = 3, cols = 1000 }}, {{ rows = 257, cols = 4099 }}]
rtol = 1e-5
atol = 1e-3
large_atol = 1.0
deterministic = {deterministic}

[tune]
BLOCK = {{ values = [128, 256], role = "block", baseline = 128 }}

[launch]
grid = ["rows", 16, 1]
block = ["BLOCK", 1, 1]

[[arg]]
name = "x"
type = "f32*"
io = "in"
len = "rows * cols"

[[arg]]
name = "y"
type = "f32*"
io = "inout"
init = "zeros"
len = "rows"

[[arg]]
name = "rows"
type = "i32"
value = "rows"

[[arg]]
name = "cols"
type = "i32"
value = "cols"

[reference]
source = "rowsum_ref.cu"
entry = "rowsum_ref"
launch = {{ grid = ["cdiv(rows, 64)", 1, 1], block = [64, 1, 1] }}

[cost]
bytes = "4 * rows * cols + 4 * rows"
flops = "rows * cols"
"#
        ),
    )
    .unwrap();
    let spec = KernelSpec::load(dir.path()).unwrap();
    (dir, spec)
}

#[test]
fn a_float_atomic_reduction_passes_with_a_nondeterministic_note_unless_bitwise_is_asked() {
    if common::skip_without_gpu(
        "a_float_atomic_reduction_passes_with_a_nondeterministic_note_unless_bitwise_is_asked",
    ) {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = session();
    let (_d, spec) = atomic_rowsum("true");
    let e = eval(&mut s, &spec, &[], true);
    assert_eq!(e.outcome, Outcome::Passed, "{}", e.outcome.describe());
    println!("note: {:?}", e.nondeterministic);
    assert!(
        e.nondeterministic.is_some(),
        "16 blocks adding to each of 4096 sums in hardware order differ somewhere"
    );
    let (_d, strict) = atomic_rowsum("\"bitwise\"");
    let e = eval(&mut s, &strict, &[], false);
    assert!(matches!(e.outcome, Outcome::Race { .. }), "{:?}", e.outcome);
}

#[test]
fn reference_outputs_are_reused_and_the_current_best_is_not_validated_again() {
    if common::skip_without_gpu(
        "reference_outputs_are_reused_and_the_current_best_is_not_validated_again",
    ) {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = session();
    let spec = KernelSpec::load(&example()).unwrap();
    let first = eval(&mut s, &spec, &[], false);
    let v = first.validation.clone().expect("a validation cost");
    assert!(v.references_computed > 0 && !v.validated_earlier, "{v:?}");
    let other = eval(&mut s, &spec, &[("BLOCK", 256)], false);
    let w = other.validation.clone().expect("a validation cost");
    assert_eq!(w.references_computed, 0, "{w:?}");
    assert_eq!(w.references_reused, v.references_computed, "{w:?}");
    let c = spec.baseline();
    let b = spec
        .with_overrides(&c, &[("BLOCK".to_string(), 256)])
        .unwrap();
    let (ea, eb, _) = s.compare(&spec, &c, &b).expect("compare runs");
    assert!(
        ea.validation.as_ref().is_some_and(|x| x.validated_earlier),
        "{:?}",
        ea.validation
    );
    assert!(
        eb.validation.as_ref().is_some_and(|x| x.validated_earlier),
        "{:?}",
        eb.validation
    );
    assert_eq!(ea.checks, first.checks);
}

#[test]
fn reference_outputs_past_the_device_budget_are_kept_in_pinned_host_memory() {
    if common::skip_without_gpu(
        "reference_outputs_past_the_device_budget_are_kept_in_pinned_host_memory",
    ) {
        return;
    }
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    // The worker inherits the variable when it starts; no device memory for them.
    std::env::set_var("NIGHTSHIFT_REFERENCE_DEVICE_BYTES", "0");
    let mut s = session();
    std::env::remove_var("NIGHTSHIFT_REFERENCE_DEVICE_BYTES");
    let spec = KernelSpec::load(&example()).unwrap();
    let first = eval(&mut s, &spec, &[], true);
    assert_eq!(
        first.outcome,
        Outcome::Passed,
        "{}",
        first.outcome.describe()
    );
    let other = eval(&mut s, &spec, &[("BLOCK", 256)], true);
    assert_eq!(
        other.outcome,
        Outcome::Passed,
        "{}",
        other.outcome.describe()
    );
    let w = other.validation.clone().expect("a validation cost");
    assert!(
        w.references_reused > 0 && w.references_computed == 0,
        "{w:?}"
    );
    assert_eq!(w.kept_on, vec!["pinned host".to_string()], "{w:?}");
}
