//! The search space of a spec: every combination of tunable values, enumerated lazily
//! (mixed radix), with its total size known up front and restrictions applied on the way.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::KernelSpec;

/// One value for every tunable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Config(pub BTreeMap<String, i64>);

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(no tunables)");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(" "))
    }
}

impl Config {
    /// `NAME=VALUE` pairs as NVRTC defines, in a stable order.
    pub fn defines(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("-D{k}={v}")).collect()
    }
}

/// A point of a run's search: a configuration of the tunables and the source or
/// compiler-option rewrites applied to the kernel, in order (`name:key=value,...`,
/// as [`crate::rewrite::Rewrite`] displays them). Without rewrites it is the
/// configuration alone, and displays as the configuration does, so journals and
/// commits of knob-only runs read as they always did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Candidate {
    pub config: Config,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<String>,
}

/// What separates a candidate's configuration from its rewrites in its display.
pub const REWRITE_SEPARATOR: &str = " + ";

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.config)?;
        for r in &self.rewrites {
            write!(f, "{REWRITE_SEPARATOR}{r}")?;
        }
        Ok(())
    }
}

impl From<Config> for Candidate {
    fn from(config: Config) -> Self {
        Candidate {
            config,
            rewrites: Vec::new(),
        }
    }
}

impl Candidate {
    /// The same rewrites at another configuration.
    pub fn at(&self, config: Config) -> Candidate {
        Candidate {
            config,
            rewrites: self.rewrites.clone(),
        }
    }
}

/// The cartesian product of the tunables' values.
pub struct SearchSpace<'a> {
    spec: &'a KernelSpec,
}

impl<'a> SearchSpace<'a> {
    pub fn new(spec: &'a KernelSpec) -> Self {
        Self { spec }
    }

    /// Number of combinations before restrictions (saturating).
    pub fn size(&self) -> u64 {
        self.spec
            .tunables
            .iter()
            .fold(1u64, |acc, t| acc.saturating_mul(t.values.len() as u64))
    }

    /// The `index`-th combination (the first tunable varies slowest).
    pub fn get(&self, index: u64) -> Option<Config> {
        if index >= self.size() {
            return None;
        }
        let mut rest = index;
        let mut out = BTreeMap::new();
        for t in self.spec.tunables.iter().rev() {
            let n = t.values.len() as u64;
            out.insert(t.name.clone(), t.values[(rest % n) as usize]);
            rest /= n;
        }
        Some(Config(out))
    }

    /// Every combination, restrictions ignored.
    pub fn iter(&self) -> impl Iterator<Item = Config> + '_ {
        (0..self.size()).map_while(move |i| self.get(i))
    }

    /// Every combination allowed by the restrictions at the default problem.
    pub fn valid(&self) -> impl Iterator<Item = Config> + '_ {
        self.iter()
            .filter(move |c| self.spec.violated(&self.spec.problem, c).is_empty())
    }
}
