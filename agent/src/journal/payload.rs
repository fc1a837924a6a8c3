//! How the journal writes its payloads: typed where this version reads them
//! ([`Typed`]), verdicts (`not_compared` for a final comparison with a failed side),
//! optional non-finite numbers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::measure::Verdict;

/// A payload typed as this version reads it, or kept as it was written when this
/// version cannot read it (a record of another version): the journal still reads,
/// and whatever the payload would have answered is measured again.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Typed<T> {
    /// Boxed: an evaluation is large beside the other records.
    Read(Box<T>),
    /// As written (`null` when absent).
    #[default]
    Unread,
    Unreadable(Value),
}

impl<T> Typed<T> {
    /// The payload, when this version reads it.
    pub fn get(&self) -> Option<&T> {
        match self {
            Typed::Read(t) => Some(&**t),
            _ => None,
        }
    }

    /// Absent (`null` on disk).
    pub fn is_null(&self) -> bool {
        matches!(self, Typed::Unread)
    }
}

impl<T> From<T> for Typed<T> {
    fn from(t: T) -> Self {
        Typed::Read(Box::new(t))
    }
}

impl<T: Serialize> Serialize for Typed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Typed::Read(t) => t.serialize(s),
            Typed::Unread => s.serialize_unit(),
            Typed::Unreadable(v) => v.serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Typed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(Typed::Unread);
        }
        Ok(match T::deserialize(&v) {
            Ok(t) => Typed::Read(Box::new(t)),
            Err(_) => Typed::Unreadable(v),
        })
    }
}

/// A final comparison's verdict as the journal writes it.
pub fn final_verdict_name(v: Option<Verdict>) -> &'static str {
    v.map_or("not_compared", Verdict::as_str)
}

/// A final comparison's verdict on disk: `FAST`, `SLOW`, `SAME`, `AMBIGUOUS`, or
/// `not_compared` when one side failed.
pub(super) mod final_verdict {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::measure::Verdict;

    const NOT_COMPARED: &str = "not_compared";

    pub fn serialize<S: Serializer>(v: &Option<Verdict>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(NOT_COMPARED),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Verdict>, D::Error> {
        let text = String::deserialize(d)?;
        if text == NOT_COMPARED {
            return Ok(None);
        }
        serde_json::from_value(serde_json::Value::String(text))
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// [`crate::nonfinite`] for an optional value.
pub(super) mod opt_nonfinite {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct F(#[serde(with = "crate::nonfinite")] f64);

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(F).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<F>::deserialize(d)?.map(|f| f.0))
    }
}
