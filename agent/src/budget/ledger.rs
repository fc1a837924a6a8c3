//! The ledger: every second of GPU time charged, by kernel, pattern and stage, and
//! the projections that refuse work which cannot finish inside the budget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

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
    /// A code-writing proposer's bill (its tokens at the configured prices, or a
    /// command's price per call): dollars, no GPU time (the GPU held meanwhile is
    /// charged as idle).
    Proposer,
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
    /// Dollars spent beside GPU time (a proposer's bill); 0 for GPU work, which is
    /// priced from `gpu_s`.
    #[serde(default, skip_serializing_if = "is_zero", with = "crate::nonfinite")]
    pub dollars: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
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
    /// Of `dollars`, a code-writing proposer's bill.
    #[serde(default, skip_serializing_if = "is_zero", with = "crate::nonfinite")]
    pub proposer_dollars: f64,
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
            Stage::Proposer => "proposer",
        }
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
    /// Dollars beside GPU time (a proposer's bill).
    dollars: f64,
    /// Proposer calls charged.
    calls: usize,
}

impl Totals {
    fn add(&mut self, c: &Charge) {
        self.gpu_s += c.gpu_s;
        self.wall_s += c.wall_s;
        self.dollars += c.dollars;
        if c.stage == Stage::Proposer {
            self.calls += 1;
        }
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
        for (what, x, unit) in [
            ("gpu_s", c.gpu_s, "seconds"),
            ("wall_s", c.wall_s, "seconds"),
            ("dollars", c.dollars, "dollars"),
        ] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(ChargeError {
                    stage: c.stage,
                    message: format!(
                        "{what} must be a finite number of {unit}, 0 or more, got {x}"
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
            dollars: t.gpu_s * self.price_per_gpu_hour / 3600.0 + t.dollars,
            proposer_dollars: t.dollars,
        }
    }

    /// The mean bill of one proposer call so far (0 before the first): what the
    /// next one is projected to cost.
    pub fn proposer_mean(&self) -> f64 {
        let t = self
            .by_stage
            .get(&Stage::Proposer)
            .copied()
            .unwrap_or_default();
        if t.calls == 0 {
            0.0
        } else {
            t.dollars / t.calls as f64
        }
    }

    /// Dollars as GPU seconds at the device's price (the ROI rule counts a
    /// proposer's bill in the time it could have bought); 0 on a free device.
    pub fn dollars_as_gpu_s(&self, dollars: f64) -> f64 {
        if self.price_per_gpu_hour > 0.0 && dollars.is_finite() {
            dollars / self.price_per_gpu_hour * 3600.0
        } else {
            0.0
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
            // Free GPU time: only a proposer's bill can reach the limit.
            Some(d) if spent.dollars >= d => 0.0,
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
        self.admit_spending(budgets, projected_s, 0.0, now_wall_s)
    }

    /// [`Ledger::admit`] for work that also spends `dollars` beside its GPU time (a
    /// proposer's call, projected at [`Ledger::proposer_mean`]).
    pub fn admit_spending(
        &self,
        budgets: &Budgets,
        projected_s: f64,
        dollars: f64,
        now_wall_s: f64,
    ) -> Result<(), StopReason> {
        let dollars = if dollars.is_finite() {
            dollars.max(0.0)
        } else {
            f64::INFINITY
        };
        let reserve = budgets.limits.candidate_watchdog.as_secs_f64();
        let needed_s = if projected_s.is_finite() {
            projected_s.max(0.0) + reserve
        } else {
            f64::INFINITY
        };
        let left = self.remaining(budgets, now_wall_s);
        let spent = self.spent();
        // The dollars limit less what the work spends beside its GPU time, in GPU
        // seconds at the price (free GPU time: all or nothing).
        let dollars_s = match budgets.run.dollars {
            Some(_) if dollars == 0.0 => left.dollars_s,
            Some(d) if self.price_per_gpu_hour > 0.0 => {
                (d - spent.dollars - dollars) / self.price_per_gpu_hour * 3600.0
            }
            Some(d) if spent.dollars + dollars > d => f64::NEG_INFINITY,
            _ => left.dollars_s,
        };
        let Some(binding) = [
            (Limit::WallTime, left.wall_s, budgets.run.wall.is_some()),
            (Limit::GpuHours, left.gpu_s, budgets.run.gpu.is_some()),
            (Limit::Dollars, dollars_s, budgets.run.dollars.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, set)| *set)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(l, _, _)| l) else {
            return Ok(());
        };
        let headroom = left.wall_s.min(left.gpu_s).min(dollars_s);
        if needed_s <= headroom {
            return Ok(());
        }
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
                needed: needed_s * self.price_per_gpu_hour / 3600.0 + dollars,
            },
        })
    }
}
