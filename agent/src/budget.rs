//! Budgets and cost: `budgets.toml` (what a run may spend and how long its steps may
//! take), parsed strictly, and the [`Ledger`] that accounts for every second of GPU
//! time against it and refuses work that cannot finish inside it.
//!
//! Times are in seconds as `f64` inside the ledger (they come from measured clocks
//! and are only ever added and compared); limits that a timer is armed with are
//! [`Duration`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::spec::toml_text::TomlText;
use crate::spec::SpecError;

/// The `budgets.toml` shipped at the repository root, for a run started where no
/// budgets file exists, and so that a test keeps the shipped file parseable.
pub const DEFAULT_BUDGETS_TOML: &str = include_str!("../../budgets.toml");

/// What one candidate is assumed to cost before anything has been measured: enough
/// for an NVRTC compile, validation at a few sizes and a few seconds of sampling.
pub const DEFAULT_CANDIDATE_S: f64 = 5.0;

/// Candidates of one (kernel, pattern) needed before the projection trusts them
/// over the kernel's whole history: one or two are too few to average.
pub const MIN_PATTERN_SAMPLES: usize = 3;

const DEFAULT_ITERATION: Duration = Duration::from_secs(30 * 60);
const DEFAULT_WATCHDOG: Duration = Duration::from_secs(30);
const DEFAULT_PATTERN: Duration = Duration::from_secs(60 * 60);

// ---------------------------------------------------------------------------
// Budgets: validated.

/// A validated `budgets.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    pub run: RunLimits,
    pub price: Prices,
    pub limits: Limits,
}

/// What the whole run may spend; `None` lifts that limit (at least one is set).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RunLimits {
    /// Wall-clock time from the start of the run.
    #[serde(rename = "wall_s", with = "opt_secs", default)]
    pub wall: Option<Duration>,
    /// GPU time held, summed over GPUs.
    #[serde(rename = "gpu_s", with = "opt_secs", default)]
    pub gpu: Option<Duration>,
    /// GPU time at the device's price.
    #[serde(default)]
    pub dollars: Option<f64>,
}

/// Dollars per GPU-hour.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Prices {
    /// For a model not in `models`; `None` when the file sets no price (then GPU
    /// time is free and there is no `dollars` limit).
    #[serde(default)]
    pub default_per_gpu_hour: Option<f64>,
    /// By device model name as written in the file (matched ignoring case).
    #[serde(default)]
    pub models: BTreeMap<String, f64>,
}

/// Time limits inside the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// One pass of the loop.
    #[serde(rename = "iteration_s", with = "secs")]
    pub iteration: Duration,
    /// Silence before a candidate is declared hung; also the reserve that
    /// [`Ledger::admit`] keeps back from every run limit.
    #[serde(rename = "candidate_watchdog_s", with = "secs")]
    pub candidate_watchdog: Duration,
    /// Default time one pattern may work on one kernel (a pattern may set its own).
    #[serde(rename = "pattern_s", with = "secs")]
    pub pattern: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iteration: DEFAULT_ITERATION,
            candidate_watchdog: DEFAULT_WATCHDOG,
            pattern: DEFAULT_PATTERN,
        }
    }
}

impl Budgets {
    /// Reads and validates a budgets file.
    pub fn load(path: &Path) -> Result<Budgets, SpecError> {
        let text = crate::files::read_text(path, crate::files::MAX_INPUT_BYTES).map_err(|e| {
            SpecError {
                path: path.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read the budgets: {e}"),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Validates budgets text; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Budgets, SpecError> {
        let ctx = Ctx { text, path };
        let raw: RawBudgets = ctx.parse()?;
        validate(raw, &ctx)
    }

    /// When to kill a candidate projected to take `projected_s` seconds: one
    /// watchdog past its projection, the cost [`Ledger::admit`] keeps room for.
    pub fn deadline(&self, projected_s: f64) -> Duration {
        let w = self.limits.candidate_watchdog;
        if projected_s.is_finite() {
            Duration::try_from_secs_f64(projected_s.max(0.0) + w.as_secs_f64())
                .unwrap_or(Duration::MAX)
        } else {
            Duration::MAX
        }
    }

    /// Dollars per GPU-hour on `device` (its model name, as NVML reports it): the
    /// model's entry, else the default, else 0 (no price set: GPU time is free).
    pub fn price_per_gpu_hour(&self, device: &str) -> f64 {
        let device = device.trim();
        self.price
            .models
            .iter()
            .find(|(model, _)| model.trim().eq_ignore_ascii_case(device))
            .map(|(_, p)| *p)
            .or(self.price.default_per_gpu_hour)
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------
// Budgets: as written in TOML.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    run: Option<Spanned<RawRun>>,
    price: Option<RawPrice>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    wall_hours: Option<Spanned<f64>>,
    gpu_hours: Option<Spanned<f64>>,
    dollars: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    default_per_gpu_hour: Option<Spanned<f64>>,
    #[serde(default)]
    models: BTreeMap<String, Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    iteration_minutes: Option<Spanned<f64>>,
    candidate_watchdog_seconds: Option<Spanned<f64>>,
    pattern_minutes: Option<Spanned<f64>>,
}

type Ctx<'a> = TomlText<'a>;

fn validate(raw: RawBudgets, ctx: &Ctx) -> Result<Budgets, SpecError> {
    // [run]
    let no_limit = "sets no limit: set at least one of `wall_hours`, `gpu_hours`, `dollars`";
    let raw_run = raw.run.ok_or_else(|| ctx.err(None, "run", no_limit))?;
    let run_span = raw_run.span();
    let raw_run = raw_run.into_inner();
    let run = RunLimits {
        wall: opt(&raw_run.wall_hours, |v| {
            duration(ctx, v, "run.wall_hours", "hours", 3600.0)
        })?,
        gpu: opt(&raw_run.gpu_hours, |v| {
            duration(ctx, v, "run.gpu_hours", "hours", 3600.0)
        })?,
        dollars: opt(&raw_run.dollars, |v| {
            positive(ctx, v, "run.dollars", "dollars")
        })?,
    };
    if run.wall.is_none() && run.gpu.is_none() && run.dollars.is_none() {
        return Err(ctx.err(Some(run_span), "run", no_limit));
    }

    // [price]
    let mut price = Prices::default();
    let mut zero_prices = Vec::new();
    if let Some(p) = &raw.price {
        if let Some(v) = &p.default_per_gpu_hour {
            let x = price_value(ctx, v, "price.default_per_gpu_hour")?;
            if x == 0.0 {
                zero_prices.push(("price.default_per_gpu_hour".to_string(), v.span()));
            }
            price.default_per_gpu_hour = Some(x);
        }
        for (model, v) in &p.models {
            let key = format!("price.models.\"{model}\"");
            if model.trim().is_empty() {
                return Err(ctx.err(Some(v.span()), &key, "names no device model"));
            }
            if let Some(other) = price
                .models
                .keys()
                .find(|m| m.trim().eq_ignore_ascii_case(model.trim()))
            {
                return Err(ctx.err(
                    Some(v.span()),
                    &key,
                    format!("is the same model as \"{other}\" (case is ignored)"),
                ));
            }
            let x = price_value(ctx, v, &key)?;
            if x == 0.0 {
                zero_prices.push((key, v.span()));
            }
            price.models.insert(model.clone(), x);
        }
    }
    if let Some(d) = &raw_run.dollars {
        if price.default_per_gpu_hour.is_none() {
            return Err(ctx.err(
                Some(d.span()),
                "price.default_per_gpu_hour",
                "is needed because `run.dollars` caps spending: set the price of a GPU-hour \
                 on a device not listed in [price.models]",
            ));
        }
        // With dollars as the only limit, a free device would never stop the run.
        if run.wall.is_none() && run.gpu.is_none() {
            if let Some((key, span)) = zero_prices.into_iter().next() {
                return Err(ctx.err(
                    Some(span),
                    &key,
                    "is 0, and `run.dollars` is the only limit: a run on this device would \
                     never stop; set `run.wall_hours` or `run.gpu_hours` too",
                ));
            }
        }
    }

    // [limits]
    let mut limits = Limits::default();
    if let Some(l) = &raw.limits {
        if let Some(v) = &l.iteration_minutes {
            limits.iteration = duration(ctx, v, "limits.iteration_minutes", "minutes", 60.0)?;
        }
        if let Some(v) = &l.candidate_watchdog_seconds {
            limits.candidate_watchdog =
                duration(ctx, v, "limits.candidate_watchdog_seconds", "seconds", 1.0)?;
        }
        if let Some(v) = &l.pattern_minutes {
            limits.pattern = duration(ctx, v, "limits.pattern_minutes", "minutes", 60.0)?;
        }
    }
    Ok(Budgets { run, price, limits })
}

fn opt<T>(
    v: &Option<Spanned<f64>>,
    f: impl FnOnce(&Spanned<f64>) -> Result<T, SpecError>,
) -> Result<Option<T>, SpecError> {
    v.as_ref().map(f).transpose()
}

fn positive(ctx: &Ctx, v: &Spanned<f64>, key: &str, unit: &str) -> Result<f64, SpecError> {
    let x = *v.get_ref();
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(ctx.err(
            Some(v.span()),
            key,
            format!("must be a positive, finite number of {unit}, got {x}"),
        ))
    }
}

fn duration(
    ctx: &Ctx,
    v: &Spanned<f64>,
    key: &str,
    unit: &str,
    seconds_per_unit: f64,
) -> Result<Duration, SpecError> {
    let x = positive(ctx, v, key, unit)?;
    Duration::try_from_secs_f64(x * seconds_per_unit)
        .map_err(|_| ctx.err(Some(v.span()), key, format!("{x} {unit} is too long")))
}

fn price_value(ctx: &Ctx, v: &Spanned<f64>, key: &str) -> Result<f64, SpecError> {
    let x = *v.get_ref();
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(ctx.err(
            Some(v.span()),
            key,
            format!("must be a finite number of dollars per GPU-hour, 0 or more, got {x}"),
        ))
    }
}

// ---------------------------------------------------------------------------
// The ledger.

/// What GPU time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Compile,
    /// Validating a candidate.
    Validate,
    /// Validating again the incumbent it is compared with (a new worker had not).
    Revalidate,
    /// Warm-up, sampling, the check after timing and the energy window.
    Measure,
    Profile,
    /// Measuring what a user would otherwise run (cuBLAS, PyTorch).
    External,
    /// The GPU was held but did nothing (the loop deciding, a worker restarting):
    /// it is paid for all the same.
    Idle,
}

/// One piece of GPU time, charged once it is spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The kernel the time was spent for; `None` for run-level work (device
    /// ceilings at start, idle time between kernels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The pattern whose line of attack the time belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The candidate configuration (as `Config`'s display) the time was spent on;
    /// the charges sharing a kernel and config are one candidate's cost, which is
    /// what [`Ledger::project`] learns from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub stage: Stage,
    /// GPU time held, in seconds (on one GPU, the same as `wall_s`).
    #[serde(with = "crate::nonfinite")]
    pub gpu_s: f64,
    /// Wall-clock time, in seconds.
    #[serde(with = "crate::nonfinite")]
    pub wall_s: f64,
}

/// A charge the ledger refused: a NaN would poison every total after it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("charge {stage:?} time to the ledger: {message}")]
pub struct ChargeError {
    pub stage: Stage,
    pub message: String,
}

/// Time and money spent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Spend {
    #[serde(with = "crate::nonfinite")]
    pub wall_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub gpu_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub dollars: f64,
}

/// The ledger's breakdowns as a journal `budget` record holds them, each by name
/// (stages by their snake_case name), so that every snapshot can be checked against
/// the charges before it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Breakdown {
    pub by_stage: BTreeMap<String, Spend>,
    pub by_kernel: BTreeMap<String, Spend>,
    pub by_pattern: BTreeMap<String, Spend>,
}

impl Stage {
    /// The stage's name as the journal spells it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Compile => "compile",
            Stage::Validate => "validate",
            Stage::Revalidate => "revalidate",
            Stage::Measure => "measure",
            Stage::Profile => "profile",
            Stage::External => "external",
            Stage::Idle => "idle",
        }
    }
}

/// One of the run's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    WallTime,
    GpuHours,
    Dollars,
}

/// What is left of the run's limits, each as seconds of work on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Remaining {
    /// Work that still fits under every limit (0 once one is spent).
    #[serde(with = "crate::nonfinite")]
    pub seconds: f64,
    /// The limit that leaves the least; `None` only when no limit is set.
    pub binding: Option<Limit>,
    /// Each limit's headroom: infinite when the limit is not set, negative when
    /// it has been overrun.
    #[serde(with = "crate::nonfinite")]
    pub wall_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub gpu_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub dollars_s: f64,
}

/// Why the run stops (or why a piece of work was not started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The next step would end past the wall-time limit.
    WallTime {
        #[serde(with = "crate::nonfinite")]
        limit_s: f64,
        #[serde(with = "crate::nonfinite")]
        elapsed_s: f64,
        /// The step's projection plus the watchdog reserve.
        #[serde(with = "crate::nonfinite")]
        needed_s: f64,
    },
    /// The next step would spend GPU time past the GPU-hours limit.
    GpuHours {
        #[serde(with = "crate::nonfinite")]
        limit_s: f64,
        #[serde(with = "crate::nonfinite")]
        spent_s: f64,
        #[serde(with = "crate::nonfinite")]
        needed_s: f64,
    },
    /// The next step would spend money past the dollars limit.
    Dollars {
        #[serde(with = "crate::nonfinite")]
        limit: f64,
        #[serde(with = "crate::nonfinite")]
        spent: f64,
        #[serde(with = "crate::nonfinite")]
        needed: f64,
    },
    /// SIGINT or SIGTERM.
    Signal { signal: String },
    /// Every kernel's every line of attack is done.
    NothingLeft,
}

impl StopReason {
    /// Stopped by a budget limit (wall time, GPU-hours, dollars).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            StopReason::WallTime { .. } | StopReason::GpuHours { .. } | StopReason::Dollars { .. }
        )
    }

    /// One line for a person: which limit, how much of it is used, what was asked.
    pub fn describe(&self) -> String {
        match self {
            StopReason::WallTime {
                limit_s,
                elapsed_s,
                needed_s,
            } => format!(
                "wall-time limit: {} of {} elapsed, and the next step needs about {} \
                 (its projection plus one watchdog in reserve)",
                human_s(*elapsed_s),
                human_s(*limit_s),
                human_s(*needed_s)
            ),
            StopReason::GpuHours {
                limit_s,
                spent_s,
                needed_s,
            } => format!(
                "GPU-time limit: {:.2} of {:.2} GPU-hours spent, and the next step needs \
                 about {} more (its projection plus one watchdog in reserve)",
                spent_s / 3600.0,
                limit_s / 3600.0,
                human_s(*needed_s)
            ),
            StopReason::Dollars {
                limit,
                spent,
                needed,
            } => format!(
                "dollar limit: ${spent:.2} of ${limit:.2} spent, and the next step would \
                 cost about ${needed:.2} more (its projection plus one watchdog in reserve)"
            ),
            StopReason::Signal { signal } => format!("stopped by {signal}"),
            StopReason::NothingLeft => "nothing left to try".to_string(),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `12.3s`, `4m 05s`, `2h 07m`.
fn human_s(s: f64) -> String {
    if !s.is_finite() {
        return format!("{s}s");
    }
    let neg = if s < 0.0 { "-" } else { "" };
    let s = s.abs();
    if s < 60.0 {
        format!("{neg}{s:.1}s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{neg}{}m {:02}s", t / 60, t % 60)
    } else {
        let t = (s / 60.0).round() as u64;
        format!("{neg}{}h {:02}m", t / 60, t % 60)
    }
}

/// Where a projection's per-candidate cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Past candidates of the same kernel and pattern.
    Pattern,
    /// Past candidates of the same kernel.
    Kernel,
    /// Past candidates of every kernel.
    AllKernels,
    /// Nothing measured yet: [`DEFAULT_CANDIDATE_S`].
    Default,
}

/// What some work is expected to cost, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// GPU seconds for all the candidates.
    pub seconds: f64,
    pub per_candidate_s: f64,
    pub basis: Basis,
    /// Past candidates the mean was taken over.
    pub samples: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    gpu_s: f64,
    wall_s: f64,
}

impl Totals {
    fn add(&mut self, c: &Charge) {
        self.gpu_s += c.gpu_s;
        self.wall_s += c.wall_s;
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    pattern: Option<String>,
    gpu_s: f64,
}

/// Every second of GPU time spent in a run, by stage, kernel and pattern, priced
/// at the device's rate.
///
/// The ledger does no I/O and reads no clock: the caller charges what it measured
/// and passes the run's elapsed wall time where a limit needs it. It can be rebuilt
/// from the journal's charges on resume.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    price_per_gpu_hour: f64,
    total: Totals,
    by_stage: BTreeMap<Stage, Totals>,
    by_kernel: BTreeMap<String, Totals>,
    by_pattern: BTreeMap<String, Totals>,
    /// By (kernel, pattern): one line of attack.
    by_attack: BTreeMap<(String, String), Totals>,
    /// By (kernel, config): one candidate.
    candidates: BTreeMap<(String, String), Candidate>,
}

impl Ledger {
    /// An empty ledger pricing GPU time at `price_per_gpu_hour` dollars; a price
    /// that is negative or not finite (never one from [`Budgets`]) counts as free.
    pub fn new(price_per_gpu_hour: f64) -> Ledger {
        Ledger {
            price_per_gpu_hour: if price_per_gpu_hour.is_finite() && price_per_gpu_hour >= 0.0 {
                price_per_gpu_hour
            } else {
                0.0
            },
            total: Totals::default(),
            by_stage: BTreeMap::new(),
            by_kernel: BTreeMap::new(),
            by_pattern: BTreeMap::new(),
            by_attack: BTreeMap::new(),
            candidates: BTreeMap::new(),
        }
    }

    /// The ledger that `charges`, in order, leave: what a resumed run rebuilds from
    /// its journal. A charge the ledger would refuse is an error.
    pub fn from_charges<'a>(
        price_per_gpu_hour: f64,
        charges: impl IntoIterator<Item = &'a Charge>,
    ) -> Result<Ledger, ChargeError> {
        let mut l = Ledger::new(price_per_gpu_hour);
        for c in charges {
            l.charge(c)?;
        }
        Ok(l)
    }

    /// An empty ledger for a run on `device` (its model name).
    pub fn for_device(budgets: &Budgets, device: &str) -> Ledger {
        Ledger::new(budgets.price_per_gpu_hour(device))
    }

    pub fn price_per_gpu_hour(&self) -> f64 {
        self.price_per_gpu_hour
    }

    /// Adds spent time. Negative or non-finite times are refused, leaving the
    /// ledger unchanged.
    pub fn charge(&mut self, c: &Charge) -> Result<(), ChargeError> {
        for (what, x) in [("gpu_s", c.gpu_s), ("wall_s", c.wall_s)] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(ChargeError {
                    stage: c.stage,
                    message: format!(
                        "{what} must be a finite number of seconds, 0 or more, got {x}"
                    ),
                });
            }
        }
        self.total.add(c);
        self.by_stage.entry(c.stage).or_default().add(c);
        if let Some(k) = &c.kernel {
            self.by_kernel.entry(k.clone()).or_default().add(c);
        }
        if let Some(p) = &c.pattern {
            self.by_pattern.entry(p.clone()).or_default().add(c);
            if let Some(k) = &c.kernel {
                self.by_attack
                    .entry((k.clone(), p.clone()))
                    .or_default()
                    .add(c);
            }
        }
        if let (Some(k), Some(cfg)) = (&c.kernel, &c.config) {
            let cand = self
                .candidates
                .entry((k.clone(), cfg.clone()))
                .or_insert_with(|| Candidate {
                    pattern: c.pattern.clone(),
                    gpu_s: 0.0,
                });
            cand.gpu_s += c.gpu_s;
        }
        Ok(())
    }

    fn spend(&self, t: Totals) -> Spend {
        Spend {
            wall_s: t.wall_s,
            gpu_s: t.gpu_s,
            dollars: t.gpu_s * self.price_per_gpu_hour / 3600.0,
        }
    }

    /// Everything charged so far. `wall_s` sums the charges' wall times, which is
    /// the run's elapsed time only when the loop charges its idle time too.
    pub fn spent(&self) -> Spend {
        self.spend(self.total)
    }

    pub fn by_stage(&self) -> BTreeMap<Stage, Spend> {
        self.by_stage
            .iter()
            .map(|(s, t)| (*s, self.spend(*t)))
            .collect()
    }

    pub fn by_kernel(&self) -> BTreeMap<String, Spend> {
        self.by_kernel
            .iter()
            .map(|(k, t)| (k.clone(), self.spend(*t)))
            .collect()
    }

    /// Over all kernels.
    pub fn by_pattern(&self) -> BTreeMap<String, Spend> {
        self.by_pattern
            .iter()
            .map(|(p, t)| (p.clone(), self.spend(*t)))
            .collect()
    }

    /// Every breakdown at once, for a journal snapshot.
    pub fn breakdown(&self) -> Breakdown {
        Breakdown {
            by_stage: self
                .by_stage
                .iter()
                .map(|(s, t)| (s.name().to_string(), self.spend(*t)))
                .collect(),
            by_kernel: self.by_kernel(),
            by_pattern: self.by_pattern(),
        }
    }

    /// What one pattern has cost on one kernel: compared with its time budget
    /// (`limits.pattern` or the pattern's own) to decide when to pivot.
    pub fn attack(&self, kernel: &str, pattern: &str) -> Spend {
        let t = self
            .by_attack
            .get(&(kernel.to_string(), pattern.to_string()))
            .copied()
            .unwrap_or_default();
        self.spend(t)
    }

    /// Headroom left under each limit, `now_wall_s` seconds after the run started.
    ///
    /// Wall time converts to work one for one: this is the headroom of one GPU.
    /// A loop running several GPUs at once must pass, as its projection, the work
    /// in flight on the others too.
    pub fn remaining(&self, budgets: &Budgets, now_wall_s: f64) -> Remaining {
        let spent = self.spent();
        let wall_s = budgets
            .run
            .wall
            .map_or(f64::INFINITY, |w| w.as_secs_f64() - now_wall_s);
        let gpu_s = budgets
            .run
            .gpu
            .map_or(f64::INFINITY, |g| g.as_secs_f64() - spent.gpu_s);
        let dollars_s = match budgets.run.dollars {
            Some(d) if self.price_per_gpu_hour > 0.0 => {
                (d - spent.dollars) / self.price_per_gpu_hour * 3600.0
            }
            _ => f64::INFINITY,
        };
        let binding = [
            (Limit::WallTime, wall_s, budgets.run.wall.is_some()),
            (Limit::GpuHours, gpu_s, budgets.run.gpu.is_some()),
            (Limit::Dollars, dollars_s, budgets.run.dollars.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, set)| *set)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(l, _, _)| l);
        let least = wall_s.min(gpu_s).min(dollars_s);
        Remaining {
            seconds: least.max(0.0),
            binding,
            wall_s,
            gpu_s,
            dollars_s,
        }
    }

    /// Projected GPU seconds for `candidates` more candidates of `kernel` under
    /// `pattern`; see [`Ledger::projection`].
    pub fn project(&self, kernel: &str, pattern: Option<&str>, candidates: usize) -> f64 {
        self.projection(kernel, pattern, candidates).seconds
    }

    /// Projects from the mean cost of past candidates: those of the same kernel and
    /// pattern once there are [`MIN_PATTERN_SAMPLES`], else the kernel's, else every
    /// kernel's, else [`DEFAULT_CANDIDATE_S`] each. The mean, not the median: hung
    /// candidates cost a whole watchdog and a budget must pay for them.
    pub fn projection(&self, kernel: &str, pattern: Option<&str>, candidates: usize) -> Projection {
        let of_kernel = || {
            self.candidates
                .range((kernel.to_string(), String::new())..)
                .take_while(move |((k, _), _)| k == kernel)
                .map(|(_, c)| c)
        };
        let mean = |costs: Vec<f64>| -> Option<(f64, usize)> {
            (!costs.is_empty())
                .then(|| (costs.iter().sum::<f64>() / costs.len() as f64, costs.len()))
        };
        let pattern_costs: Vec<f64> = match pattern {
            Some(p) => of_kernel()
                .filter(|c| c.pattern.as_deref() == Some(p))
                .map(|c| c.gpu_s)
                .collect(),
            None => Vec::new(),
        };
        let (per, basis, samples) = if pattern_costs.len() >= MIN_PATTERN_SAMPLES {
            let (m, n) = mean(pattern_costs).unwrap_or((DEFAULT_CANDIDATE_S, 0));
            (m, Basis::Pattern, n)
        } else if let Some((m, n)) = mean(of_kernel().map(|c| c.gpu_s).collect()) {
            (m, Basis::Kernel, n)
        } else if let Some((m, n)) = mean(self.candidates.values().map(|c| c.gpu_s).collect()) {
            (m, Basis::AllKernels, n)
        } else {
            (DEFAULT_CANDIDATE_S, Basis::Default, 0)
        };
        Projection {
            seconds: per * candidates as f64,
            per_candidate_s: per,
            basis,
            samples,
        }
    }

    /// Allows work projected to take `projected_s` GPU seconds, `now_wall_s`
    /// seconds into the run, only if it fits under every limit with one candidate
    /// watchdog to spare; otherwise says which limit it would break (the tightest).
    /// A projection that is not finite is refused.
    ///
    /// How this bounds the overrun: admitted work satisfies
    /// `spent + projected + watchdog <= limit` for every limit, so the run stays
    /// inside its limits as long as each admitted candidate costs at most
    /// [`Budgets::deadline`] (its projection plus one watchdog). A candidate that
    /// stops making progress is killed one watchdog after it falls silent, so one
    /// that hangs by the end of its projection keeps to that; the loop kills one
    /// still running at the deadline. Without that deadline, a candidate that runs
    /// up to one watchdog past its projection and then hangs overruns the budget by
    /// at most one watchdog.
    pub fn admit(
        &self,
        budgets: &Budgets,
        projected_s: f64,
        now_wall_s: f64,
    ) -> Result<(), StopReason> {
        let reserve = budgets.limits.candidate_watchdog.as_secs_f64();
        let needed_s = if projected_s.is_finite() {
            projected_s.max(0.0) + reserve
        } else {
            f64::INFINITY
        };
        let left = self.remaining(budgets, now_wall_s);
        let Some(binding) = left.binding else {
            return Ok(());
        };
        let headroom = left.wall_s.min(left.gpu_s).min(left.dollars_s);
        if needed_s <= headroom {
            return Ok(());
        }
        let spent = self.spent();
        Err(match binding {
            Limit::WallTime => StopReason::WallTime {
                limit_s: budgets.run.wall.map_or(f64::INFINITY, |w| w.as_secs_f64()),
                elapsed_s: now_wall_s,
                needed_s,
            },
            Limit::GpuHours => StopReason::GpuHours {
                limit_s: budgets.run.gpu.map_or(f64::INFINITY, |g| g.as_secs_f64()),
                spent_s: spent.gpu_s,
                needed_s,
            },
            Limit::Dollars => StopReason::Dollars {
                limit: budgets.run.dollars.unwrap_or(f64::INFINITY),
                spent: spent.dollars,
                needed: needed_s * self.price_per_gpu_hour / 3600.0,
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Serde helpers: durations as seconds (journal readers should not need to know
// serde's `{secs, nanos}`).

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let x = f64::deserialize(d)?;
        Duration::try_from_secs_f64(x).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|x| Duration::try_from_secs_f64(x).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    const PATH: &str = "budgets.toml";

    fn parse(text: &str) -> Result<Budgets, SpecError> {
        Budgets::parse(text, Path::new(PATH))
    }

    fn err(text: &str) -> SpecError {
        match parse(text) {
            Ok(b) => panic!("expected an error, parsed {b:?} from\n{text}"),
            Err(e) => e,
        }
    }

    /// 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in the text"))
            + 1
    }

    /// Asserts that an error names the file, the line holding `needle`, and `key`.
    fn assert_names(e: &SpecError, text: &str, needle: &str, key: &str) {
        assert_eq!(e.path, Path::new(PATH), "{e}");
        assert_eq!(e.line, Some(line_of(text, needle)), "{e}");
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        let shown = e.to_string();
        let prefix = format!("{PATH}:{}: `{key}`: ", line_of(text, needle));
        assert!(
            shown.starts_with(&prefix),
            "{shown} does not start with {prefix}"
        );
    }

    fn gpu_only(gpu_hours: f64, watchdog_s: f64) -> Budgets {
        parse(&format!(
            "[run]\ngpu_hours = {gpu_hours}\n[limits]\ncandidate_watchdog_seconds = {watchdog_s}\n"
        ))
        .unwrap()
    }

    fn charge(kernel: &str, pattern: Option<&str>, config: &str, stage: Stage, s: f64) -> Charge {
        Charge {
            kernel: Some(kernel.to_string()),
            pattern: pattern.map(str::to_string),
            config: Some(config.to_string()),
            stage,
            gpu_s: s,
            wall_s: s,
        }
    }

    // -- budgets.toml ------------------------------------------------------

    #[test]
    fn shipped_budgets_parse() {
        let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
        assert_eq!(b.run.wall, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(b.run.gpu, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(b.run.dollars, Some(40.0));
        assert_eq!(b.price.default_per_gpu_hour, Some(3.0));
        assert_eq!(b.price.models.get("NVIDIA H100 80GB HBM3"), Some(&4.0));
        assert_eq!(b.limits.iteration, Duration::from_secs(30 * 60));
        assert_eq!(b.limits.candidate_watchdog, Duration::from_secs(30));
        assert_eq!(b.limits.pattern, Duration::from_secs(60 * 60));
    }

    #[test]
    fn shipped_budgets_document_every_key() {
        for key in [
            "[run]",
            "wall_hours",
            "gpu_hours",
            "dollars",
            "[price]",
            "default_per_gpu_hour",
            "[price.models]",
            "[limits]",
            "iteration_minutes",
            "candidate_watchdog_seconds",
            "pattern_minutes",
        ] {
            assert!(
                DEFAULT_BUDGETS_TOML.contains(key),
                "budgets.toml lacks {key}"
            );
        }
    }

    #[test]
    fn left_out_limits_take_their_defaults() {
        let b = parse("[run]\nwall_hours = 2\n").unwrap();
        assert_eq!(b.run.wall, Some(Duration::from_secs(7200)));
        assert_eq!(b.run.gpu, None);
        assert_eq!(b.run.dollars, None);
        assert_eq!(b.limits, Limits::default());
        assert_eq!(b.price, Prices::default());
    }

    #[test]
    fn unknown_key_in_run_names_file_line_and_key() {
        let text = "[run]\nwall_hours = 8\nwal_hours = 2\n";
        let e = err(text);
        assert_names(&e, text, "wal_hours = 2", "run.wal_hours");
        assert!(e.message.contains("wal_hours"), "{e}");
    }

    #[test]
    fn unknown_key_in_limits_names_file_line_and_key() {
        let text = "[run]\nwall_hours = 8\n\n[limits]  # time limits\nwatchdog_seconds = 30\n";
        let e = err(text);
        assert_names(&e, text, "watchdog_seconds", "limits.watchdog_seconds");
    }

    #[test]
    fn unknown_table_names_file_line_and_key() {
        let text = "[run]\nwall_hours = 8\n[limit]\niteration_minutes = 3\n";
        let e = err(text);
        assert_names(&e, text, "[limit]", "limit");
    }

    #[test]
    fn misspelt_price_key_is_an_error_not_a_model() {
        let text = "[run]\nwall_hours = 8\n[price]\ndefault_per_gpu_hr = 3\n";
        let e = err(text);
        assert_names(&e, text, "default_per_gpu_hr", "price.default_per_gpu_hr");
    }

    #[test]
    fn bad_numbers_name_file_line_and_key() {
        let keys = [
            ("run", "wall_hours"),
            ("run", "gpu_hours"),
            ("run", "dollars"),
            ("limits", "iteration_minutes"),
            ("limits", "candidate_watchdog_seconds"),
            ("limits", "pattern_minutes"),
        ];
        for (table, key) in keys {
            for bad in ["-1.0", "0", "nan", "inf", "-inf"] {
                let text = if table == "run" {
                    let other = if key == "gpu_hours" {
                        "wall_hours"
                    } else {
                        "gpu_hours"
                    };
                    format!(
                        "[run]\n{other} = 1\n{key} = {bad}\n[price]\ndefault_per_gpu_hour = 1\n"
                    )
                } else {
                    format!("[run]\ngpu_hours = 1\n[{table}]\n{key} = {bad}\n")
                };
                let e = err(&text);
                assert_names(
                    &e,
                    &text,
                    &format!("{key} = {bad}"),
                    &format!("{table}.{key}"),
                );
                assert!(e.message.contains("positive, finite"), "{e}");
            }
        }
    }

    #[test]
    fn a_number_too_large_for_a_duration_is_an_error_not_a_panic() {
        let text = "[run]\nwall_hours = 1e300\n";
        let e = err(text);
        assert_names(&e, text, "wall_hours", "run.wall_hours");
        assert!(e.message.contains("too long"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = "[run]\nwall_hours = \"8\"\n";
        let e = err(text);
        assert_names(&e, text, "wall_hours", "run.wall_hours");
    }

    #[test]
    fn run_with_no_limit_is_an_error() {
        let text = "\n[run]\n# wall_hours = 8\n";
        let e = err(text);
        assert_names(&e, text, "[run]", "run");
        assert!(e.message.contains("at least one"), "{e}");

        let e = err("[limits]\npattern_minutes = 10\n");
        assert_eq!(e.key.as_deref(), Some("run"));
        assert!(e.message.contains("at least one"), "{e}");
    }

    #[test]
    fn dollars_without_a_default_price_is_an_error() {
        let text = "[run]\ndollars = 10\n[price.models]\n\"NVIDIA H100\" = 4\n";
        let e = err(text);
        assert_names(&e, text, "dollars = 10", "price.default_per_gpu_hour");
    }

    #[test]
    fn dollars_as_the_only_limit_on_a_free_device_is_an_error() {
        let text = "[run]\ndollars = 10\n[price]\ndefault_per_gpu_hour = 2\n[price.models]\n\"My Box\" = 0\n";
        let e = err(text);
        assert_names(&e, text, "\"My Box\" = 0", "price.models.\"My Box\"");
        assert!(e.message.contains("never stop"), "{e}");
        // With another limit, a free device is fine.
        let ok = text.replace("dollars = 10", "dollars = 10\nwall_hours = 1");
        assert_eq!(parse(&ok).unwrap().price_per_gpu_hour("my box"), 0.0);
    }

    #[test]
    fn bad_prices_name_file_line_and_key() {
        let text = "[run]\nwall_hours = 1\n[price]\ndefault_per_gpu_hour = -3\n";
        assert_names(
            &err(text),
            text,
            "default_per_gpu_hour",
            "price.default_per_gpu_hour",
        );
        let text = "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = nan\n";
        assert_names(&err(text), text, "H100", "price.models.\"NVIDIA H100\"");
        let text = "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = \"4$\"\n";
        assert_names(&err(text), text, "H100", "price.models.\"NVIDIA H100\"");
    }

    #[test]
    fn the_same_model_twice_ignoring_case_is_an_error() {
        let text =
            "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = 4\n\"nvidia h100\" = 3\n";
        let e = err(text);
        assert_eq!(e.line, Some(line_of(text, "nvidia h100")), "{e}");
        assert!(e.message.contains("same model"), "{e}");
    }

    #[test]
    fn price_is_the_models_else_the_default_else_free() {
        let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
        assert_eq!(b.price_per_gpu_hour("NVIDIA H100 80GB HBM3"), 4.0);
        assert_eq!(b.price_per_gpu_hour(" nvidia h100 80gb hbm3 "), 4.0);
        assert_eq!(b.price_per_gpu_hour("NVIDIA H200"), 5.0);
        assert_eq!(b.price_per_gpu_hour("NVIDIA GeForce RTX 4090"), 3.0);
        let free = parse("[run]\nwall_hours = 1\n").unwrap();
        assert_eq!(free.price_per_gpu_hour("NVIDIA H100 80GB HBM3"), 0.0);
    }

    #[test]
    fn load_names_a_missing_file() {
        let e = Budgets::load(Path::new("/nonexistent/budgets.toml")).unwrap_err();
        assert_eq!(e.path, Path::new("/nonexistent/budgets.toml"));
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn budgets_round_trip_through_json_in_seconds() {
        let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["run"]["wall_s"], 28800.0);
        assert_eq!(v["limits"]["candidate_watchdog_s"], 30.0);
        let back: Budgets = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }

    // -- the ledger --------------------------------------------------------

    #[test]
    fn ledger_totals_by_stage_kernel_and_pattern() {
        let mut l = Ledger::new(3.6);
        l.charge(&charge(
            "softmax",
            Some("vectorize"),
            "VEC=2",
            Stage::Compile,
            1.0,
        ))
        .unwrap();
        l.charge(&charge(
            "softmax",
            Some("vectorize"),
            "VEC=2",
            Stage::Measure,
            3.0,
        ))
        .unwrap();
        l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Validate, 2.0))
            .unwrap();
        l.charge(&Charge {
            kernel: None,
            pattern: None,
            config: None,
            stage: Stage::Idle,
            gpu_s: 4.0,
            wall_s: 5.0,
        })
        .unwrap();
        let s = l.spent();
        assert_eq!(s.gpu_s, 10.0);
        assert_eq!(s.wall_s, 11.0);
        assert!((s.dollars - 0.01).abs() < 1e-12, "{s:?}");
        assert_eq!(l.by_kernel()["softmax"].gpu_s, 4.0);
        assert_eq!(l.by_kernel()["gemm"].gpu_s, 2.0);
        assert_eq!(l.by_kernel().len(), 2);
        assert_eq!(l.by_pattern()["vectorize"].gpu_s, 4.0);
        assert_eq!(l.by_stage()[&Stage::Idle].wall_s, 5.0);
        assert_eq!(l.by_stage()[&Stage::Measure].gpu_s, 3.0);
        assert_eq!(l.attack("softmax", "vectorize").gpu_s, 4.0);
        assert_eq!(l.attack("gemm", "vectorize").gpu_s, 0.0);
    }

    #[test]
    fn dollars_follow_the_device_price() {
        let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
        let mut l = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
        l.charge(&charge("softmax", None, "B=1", Stage::Measure, 3600.0))
            .unwrap();
        assert_eq!(l.spent().dollars, 4.0);
        assert_eq!(Ledger::new(f64::NAN).price_per_gpu_hour(), 0.0);
    }

    #[test]
    fn charge_refuses_nan_and_negative_times() {
        let mut l = Ledger::new(1.0);
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            let e = l
                .charge(&charge("softmax", None, "B=1", Stage::Measure, bad))
                .unwrap_err();
            assert!(e.to_string().contains("gpu_s"), "{e}");
        }
        assert_eq!(l.spent(), Spend::default());
        assert_eq!(l.projection("softmax", None, 1).basis, Basis::Default);
    }

    #[test]
    fn remaining_is_the_tightest_limit_in_gpu_seconds() {
        // 1 h wall, 2 GPU-hours, $3 at $4/h = 45 min of GPU time.
        let b = parse(
            "[run]\nwall_hours = 1\ngpu_hours = 2\ndollars = 3\n[price]\ndefault_per_gpu_hour = 4\n",
        )
        .unwrap();
        let mut l = Ledger::new(4.0);
        let r = l.remaining(&b, 0.0);
        assert_eq!(r.binding, Some(Limit::Dollars));
        assert!((r.seconds - 2700.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.wall_s, 3600.0);
        assert_eq!(r.gpu_s, 7200.0);
        // Late in the night, wall time binds.
        let r = l.remaining(&b, 3500.0);
        assert_eq!(r.binding, Some(Limit::WallTime));
        assert_eq!(r.seconds, 100.0);
        // Overrun: negative headroom, zero seconds.
        l.charge(&charge("k", None, "c", Stage::Measure, 3000.0))
            .unwrap();
        let r = l.remaining(&b, 0.0);
        assert_eq!(r.binding, Some(Limit::Dollars));
        assert!(r.dollars_s < 0.0);
        assert_eq!(r.seconds, 0.0);
        // A limit left out never binds.
        let r = Ledger::new(4.0).remaining(&gpu_only(1.0, 30.0), 1e9);
        assert_eq!(r.binding, Some(Limit::GpuHours));
        assert_eq!(r.wall_s, f64::INFINITY);
    }

    #[test]
    fn projection_without_history_is_the_stated_default() {
        let l = Ledger::new(0.0);
        let p = l.projection("softmax", Some("vectorize"), 4);
        assert_eq!(p.basis, Basis::Default);
        assert_eq!(p.per_candidate_s, DEFAULT_CANDIDATE_S);
        assert_eq!(p.seconds, 4.0 * DEFAULT_CANDIDATE_S);
        assert_eq!(l.project("softmax", None, 0), 0.0);
    }

    #[test]
    fn projection_learns_from_the_kernel_then_all_kernels() {
        let mut l = Ledger::new(0.0);
        // gemm candidates: 10 s and 20 s (a candidate's stages add up).
        l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Compile, 4.0))
            .unwrap();
        l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Measure, 6.0))
            .unwrap();
        l.charge(&charge(
            "gemm",
            Some("tile"),
            "TM=128",
            Stage::Measure,
            20.0,
        ))
        .unwrap();
        // Time with no config is no candidate's.
        l.charge(&Charge {
            config: None,
            ..charge("gemm", None, "", Stage::External, 100.0)
        })
        .unwrap();
        let p = l.projection("gemm", None, 3);
        assert_eq!(
            (p.basis, p.samples, p.per_candidate_s),
            (Basis::Kernel, 2, 15.0)
        );
        assert_eq!(p.seconds, 45.0);
        // A kernel with no history of its own borrows everyone's.
        let p = l.projection("softmax", None, 2);
        assert_eq!(
            (p.basis, p.samples, p.seconds),
            (Basis::AllKernels, 2, 30.0)
        );
        // softmax candidates are cheap: 1 s each.
        l.charge(&charge(
            "softmax",
            Some("vectorize"),
            "VEC=2",
            Stage::Measure,
            1.0,
        ))
        .unwrap();
        let p = l.projection("softmax", Some("vectorize"), 2);
        assert_eq!((p.basis, p.samples, p.seconds), (Basis::Kernel, 1, 2.0));
    }

    #[test]
    fn projection_prefers_the_pattern_once_it_has_enough_history() {
        let mut l = Ledger::new(0.0);
        for i in 0..MIN_PATTERN_SAMPLES {
            l.charge(&charge(
                "gemm",
                Some("split_k"),
                &format!("SK={i}"),
                Stage::Measure,
                30.0,
            ))
            .unwrap();
        }
        l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Measure, 2.0))
            .unwrap();
        let p = l.projection("gemm", Some("split_k"), 1);
        assert_eq!(
            (p.basis, p.samples, p.seconds),
            (Basis::Pattern, MIN_PATTERN_SAMPLES, 30.0)
        );
        // `tile` has one candidate: too few, so the kernel's mean is used.
        let p = l.projection("gemm", Some("tile"), 1);
        assert_eq!(p.basis, Basis::Kernel);
        assert_eq!(p.seconds, (3.0 * 30.0 + 2.0) / 4.0);
    }

    #[test]
    fn admit_allows_work_inside_the_budget_and_refuses_work_past_it() {
        let b = gpu_only(1.0, 30.0);
        let mut l = Ledger::new(0.0);
        l.charge(&charge("k", None, "c", Stage::Measure, 3000.0))
            .unwrap();
        // 600 s left: 500 s + 30 s reserve fits, 580 s + 30 s does not.
        assert_eq!(l.admit(&b, 500.0, 0.0), Ok(()));
        assert_eq!(l.admit(&b, 570.0, 0.0), Ok(()));
        let stop = l.admit(&b, 580.0, 0.0).unwrap_err();
        assert_eq!(
            stop,
            StopReason::GpuHours {
                limit_s: 3600.0,
                spent_s: 3000.0,
                needed_s: 610.0
            }
        );
        assert!(stop.describe().contains("GPU-hours"), "{stop}");
    }

    #[test]
    fn admit_refuses_on_wall_time_and_dollars_too() {
        // 1 h of wall time; $1 at $2 per GPU-hour is 1800 GPU seconds.
        let b = parse(
            "[run]\nwall_hours = 1\ndollars = 1\n[price]\ndefault_per_gpu_hour = 2\n\
             [limits]\ncandidate_watchdog_seconds = 10\n",
        )
        .unwrap();
        let l = Ledger::for_device(&b, "any");
        assert_eq!(l.admit(&b, 90.0, 3500.0), Ok(()));
        match l.admit(&b, 100.0, 3500.0) {
            Err(StopReason::WallTime {
                limit_s,
                elapsed_s,
                needed_s,
            }) => assert_eq!((limit_s, elapsed_s, needed_s), (3600.0, 3500.0, 110.0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.admit(&b, 1790.0, 0.0), Ok(()));
        match l.admit(&b, 1800.0, 0.0) {
            Err(StopReason::Dollars {
                limit,
                spent,
                needed,
            }) => {
                assert_eq!((limit, spent), (1.0, 0.0));
                assert!((needed - 1810.0 * 2.0 / 3600.0).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admit_refuses_a_projection_that_is_not_a_number() {
        let b = gpu_only(1.0, 30.0);
        let l = Ledger::new(0.0);
        for p in [f64::NAN, f64::INFINITY] {
            assert!(matches!(
                l.admit(&b, p, 0.0),
                Err(StopReason::GpuHours { needed_s, .. }) if needed_s.is_infinite()
            ));
        }
        // A negative projection is treated as free work, still with the reserve.
        assert_eq!(l.admit(&b, -5.0, 0.0), Ok(()));
    }

    #[test]
    fn the_deadline_is_one_watchdog_past_the_projection() {
        let b = gpu_only(1.0, 30.0);
        assert_eq!(b.deadline(12.5), Duration::from_secs_f64(42.5));
        assert_eq!(b.deadline(-1.0), Duration::from_secs(30));
        assert_eq!(b.deadline(f64::NAN), Duration::MAX);
        assert_eq!(b.deadline(1e300), Duration::MAX);
    }

    #[test]
    fn malformed_toml_is_reported_with_a_line() {
        let text = "[run]\nwall_hours = 8\n[limits\n";
        let e = err(text);
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn work_admitted_at_the_edge_ends_exactly_at_the_limit_when_it_hangs() {
        // 100 s left, 30 s watchdog: 70 s of work is the most admitted, and if that
        // candidate hangs at the end of its projection it is killed a watchdog
        // later, spending the budget to the second and not beyond.
        let b = gpu_only(1.0, 30.0);
        let mut l = Ledger::new(0.0);
        l.charge(&charge("k", None, "a", Stage::Measure, 3500.0))
            .unwrap();
        assert_eq!(l.admit(&b, 70.0, 0.0), Ok(()));
        assert!(l.admit(&b, 70.5, 0.0).is_err());
        l.charge(&charge("k", None, "b", Stage::Measure, 70.0 + 30.0))
            .unwrap();
        assert_eq!(l.spent().gpu_s, 3600.0);
        assert!(l.admit(&b, 0.0, 0.0).is_err());
    }

    /// Runs the loop's use of the ledger: project one candidate, ask, and spend
    /// `cost(projection, watchdog, draw)`; returns the GPU seconds spent and the
    /// wall seconds elapsed.
    fn simulate(b: &Budgets, draws: &[f64], cost: impl Fn(f64, f64, f64) -> f64) -> (f64, f64) {
        let w = b.limits.candidate_watchdog.as_secs_f64();
        let mut l = Ledger::for_device(b, "NVIDIA H100 80GB HBM3");
        let mut now = 0.0;
        for (i, d) in draws.iter().enumerate() {
            let p = l.project("k", None, 1);
            if l.admit(b, p, now).is_err() {
                break;
            }
            let s = cost(p, w, *d);
            now += s;
            l.charge(&charge("k", None, &i.to_string(), Stage::Measure, s))
                .unwrap();
        }
        (l.spent().gpu_s, now)
    }

    fn three_limits() -> Budgets {
        parse(
            "[run]\nwall_hours = 0.5\ngpu_hours = 0.4\ndollars = 1.5\n\
             [price]\ndefault_per_gpu_hour = 4\n[limits]\ncandidate_watchdog_seconds = 30\n",
        )
        .unwrap()
    }

    proptest! {
        /// Every candidate ends by its deadline (projection + one watchdog): the
        /// run never spends past any limit, whatever the candidates cost.
        #[test]
        fn admitted_work_stays_inside_every_limit(
            draws in proptest::collection::vec(0.0f64..=1.0, 1..400),
        ) {
            let b = three_limits();
            let (gpu, wall) = simulate(&b, &draws, |p, w, d| d * (p + w));
            prop_assert!(gpu <= 0.4 * 3600.0 + 1e-6);
            prop_assert!(wall <= 0.5 * 3600.0 + 1e-6);
            prop_assert!(gpu * 4.0 / 3600.0 <= 1.5 + 1e-9);
        }

        /// A candidate that runs a whole watchdog past its projection and then
        /// hangs (killed one more watchdog later) overruns by at most one watchdog.
        #[test]
        fn a_late_hang_overruns_by_at_most_one_watchdog(
            draws in proptest::collection::vec(0.0f64..=1.0, 1..400),
        ) {
            let b = three_limits();
            let (gpu, wall) = simulate(&b, &draws, |p, w, d| d * (p + 2.0 * w));
            // Dollars bind first: 1.5 $ at 4 $/h is 1350 GPU seconds.
            prop_assert!(gpu <= 1350.0 + 30.0 + 1e-6, "{gpu}");
            prop_assert!(wall <= 0.5 * 3600.0 + 30.0 + 1e-6);
        }
    }

    #[test]
    fn stop_reasons_describe_themselves_and_round_trip() {
        let reasons = [
            StopReason::WallTime {
                limit_s: 28800.0,
                elapsed_s: 28700.0,
                needed_s: 250.0,
            },
            StopReason::GpuHours {
                limit_s: 28800.0,
                spent_s: 28750.0,
                needed_s: f64::INFINITY,
            },
            StopReason::Dollars {
                limit: 40.0,
                spent: 39.9,
                needed: 0.25,
            },
            StopReason::Signal {
                signal: "SIGTERM".into(),
            },
            StopReason::NothingLeft,
        ];
        let shown: Vec<String> = reasons.iter().map(StopReason::describe).collect();
        assert!(
            shown[0].starts_with("wall-time limit: 7h 58m of 8h 00m elapsed"),
            "{}",
            shown[0]
        );
        assert!(shown[0].contains("4m 10s"), "{}", shown[0]);
        assert!(shown[1].contains("7.99 of 8.00 GPU-hours"), "{}", shown[1]);
        assert!(shown[2].contains("$39.90 of $40.00"), "{}", shown[2]);
        assert_eq!(shown[3], "stopped by SIGTERM");
        for r in &reasons {
            let j = serde_json::to_string(r).unwrap();
            let back: StopReason = serde_json::from_str(&j).unwrap();
            assert_eq!(&back, r, "{j}");
        }
        let j = serde_json::to_value(&reasons[0]).unwrap();
        assert_eq!(j["reason"], "wall_time");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_s(12.34), "12.3s");
        assert_eq!(human_s(245.0), "4m 05s");
        assert_eq!(human_s(7620.0), "2h 07m");
        assert_eq!(human_s(-30.0), "-30.0s");
        assert_eq!(human_s(f64::INFINITY), "infs");
    }
}
