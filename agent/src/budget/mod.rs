//! Budgets and cost: `budgets.toml` (what a run may spend and how long its steps may
//! take), parsed strictly, and the [`Ledger`] that accounts for every second of GPU
//! time against it and refuses work that cannot finish inside it.
//!
//! Times are in seconds as `f64` inside the ledger (they come from measured clocks
//! and are only ever added and compared); limits that a timer is armed with are
//! [`Duration`]s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::spec::toml_text::TomlText;
use crate::spec::SpecError;

/// The `budgets.toml` shipped at the repository root, for a run started where no
/// budgets file exists, and so that a test keeps the shipped file parseable.
pub const DEFAULT_BUDGETS_TOML: &str = include_str!("../../../budgets.toml");

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
    /// What the run does once the pattern library has nothing left for a kernel.
    #[serde(default)]
    pub search: Search,
}

/// `[search]`: the model-based search after the patterns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Search {
    /// Spend what is left on a model-based search over the kernel's whole space
    /// (true, the default), or call the kernel done (false).
    pub after_patterns: bool,
    /// Also take one search candidate whenever the patterns' last two candidates were
    /// not FAST, instead of waiting for the library to run out (false, the default).
    #[serde(default)]
    pub interleave: bool,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            after_patterns: true,
            interleave: false,
        }
    }
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
    search: Option<RawSearch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    after_patterns: Option<bool>,
    interleave: Option<bool>,
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
    let search = Search {
        after_patterns: raw
            .search
            .as_ref()
            .and_then(|s| s.after_patterns)
            .unwrap_or(true),
        interleave: raw
            .search
            .as_ref()
            .and_then(|s| s.interleave)
            .unwrap_or(false),
    };
    if search.interleave && !search.after_patterns {
        return Err(ctx.err(
            None,
            "search.interleave",
            "needs `after_patterns = true` (the search it interleaves is off)",
        ));
    }
    Ok(Budgets {
        run,
        price,
        limits,
        search,
    })
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

mod ledger;
mod stop;

pub use ledger::*;
pub use stop::*;

#[cfg(test)]
mod tests;
