//! Serde support for f64 values that may be infinite or NaN (error figures of a kernel
//! that wrote NaN, waves of a kernel that cannot be resident). JSON has no such
//! numbers: they are written as the strings "inf", "-inf" and "nan" and read back.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("nan")
    } else if *v > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        N(f64),
        S(String),
    }
    match F::deserialize(d)? {
        F::N(x) => Ok(x),
        F::S(s) => match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a number"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug)]
    struct T {
        #[serde(with = "super")]
        x: f64,
    }

    #[test]
    fn non_finite_values_round_trip_through_json() {
        for x in [1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let j = serde_json::to_string(&T { x }).unwrap();
            let back: T = serde_json::from_str(&j).unwrap();
            assert!(back.x == x || (x.is_nan() && back.x.is_nan()), "{j}");
        }
    }
}
