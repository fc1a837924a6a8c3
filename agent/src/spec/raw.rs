//! A spec as written in `kernel.toml`: the serde types the TOML is read into, each
//! rejecting unknown keys, before validation turns them into typed values.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::{ComputeKind, Io, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub(super) name: String,
    pub(super) source: String,
    pub(super) entry: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) problem: Spanned<BTreeMap<String, i64>>,
    #[serde(default)]
    pub(super) workload_axes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) compile_options: Vec<String>,
    #[serde(default)]
    pub(super) include_dirs: Vec<String>,
    #[serde(default)]
    pub(super) validate: Option<Spanned<RawValidate>>,
    #[serde(default)]
    pub(super) tune: Option<RawTune>,
    pub(super) launch: Spanned<RawLaunch>,
    #[serde(rename = "arg")]
    pub(super) args: Vec<Spanned<RawArg>>,
    pub(super) reference: Spanned<RawReference>,
    pub(super) cost: Spanned<RawCost>,
    #[serde(default)]
    pub(super) external: Option<Spanned<RawExternal>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExternal {
    pub(super) torch: Option<String>,
    pub(super) cublas: Option<RawCublas>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCublas {
    pub(super) op: String,
    pub(super) a: String,
    pub(super) b: String,
    pub(super) c: String,
    pub(super) m: Spanned<ExprSrc>,
    pub(super) n: Spanned<ExprSrc>,
    pub(super) k: Spanned<ExprSrc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidate {
    #[serde(default)]
    pub(super) sizes: Vec<Spanned<BTreeMap<String, i64>>>,
    pub(super) rtol: Option<Spanned<f64>>,
    pub(super) atol: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) tolerance: BTreeMap<String, Spanned<RawTolerance>>,
    pub(super) trials: Option<Spanned<u32>>,
    pub(super) large_scale: Option<Spanned<f64>>,
    pub(super) large_atol: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) deterministic: Option<Spanned<RawDeterministic>>,
}

/// `deterministic = true | false | "bitwise"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDeterministic {
    Flag(bool),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTolerance {
    pub(super) rtol: f64,
    pub(super) atol: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunable {
    pub(super) values: Vec<i64>,
    pub(super) role: Role,
    pub(super) baseline: Option<i64>,
    #[serde(default)]
    pub(super) description: Option<String>,
}

/// `[tune]`: tunables by name, plus the `restrictions` list.
#[derive(Default)]
pub(super) struct RawTune {
    pub(super) params: Vec<(String, Spanned<RawTunable>)>,
    pub(super) restrictions: Vec<Spanned<ExprSrc>>,
}

impl<'de> Deserialize<'de> for RawTune {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTune;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of tunables and an optional `restrictions` list")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTune, A::Error> {
                let mut out = RawTune::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "restrictions" {
                        out.restrictions = map.next_value()?;
                    } else {
                        out.params.push((key, map.next_value()?));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLaunch {
    pub(super) grid: Vec<Spanned<ExprSrc>>,
    pub(super) block: Vec<Spanned<ExprSrc>>,
    pub(super) shared_bytes: Option<Spanned<ExprSrc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArg {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) ty: String,
    pub(super) io: Option<Io>,
    pub(super) len: Option<Spanned<ExprSrc>>,
    pub(super) init: Option<String>,
    pub(super) low: Option<f64>,
    pub(super) high: Option<f64>,
    pub(super) value: Option<Spanned<ExprSrc>>,
    pub(super) large_scale: Option<f64>,
    pub(super) topk: Option<RawTopK>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopK {
    pub(super) scores: String,
    pub(super) k: Spanned<ExprSrc>,
    pub(super) range: Spanned<ExprSrc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReference {
    pub(super) source: Option<String>,
    pub(super) entry: Option<String>,
    #[serde(default)]
    pub(super) baseline: bool,
    pub(super) launch: Option<Spanned<RawLaunch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCost {
    pub(super) bytes: Spanned<ExprSrc>,
    pub(super) flops: Spanned<ExprSrc>,
    pub(super) compute: Option<ComputeKind>,
}

/// An expression as written: a string, or a plain number.
#[derive(Debug, Clone)]
pub(super) struct ExprSrc(pub(super) String);

impl<'de> Deserialize<'de> for ExprSrc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExprSrc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an expression (a string) or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExprSrc, E> {
                Ok(ExprSrc(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExprSrc, E> {
                Ok(ExprSrc(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExprSrc, E> {
                Ok(ExprSrc(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExprSrc, E> {
                Ok(ExprSrc(format!("{v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}
