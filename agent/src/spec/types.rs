//! Element types of kernel arguments and how their bytes are read and written.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The element type of a buffer or scalar argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F16,
    Bf16,
    F32,
    F64,
    I8,
    U8,
    I32,
    U32,
    I64,
    U64,
}

impl DType {
    pub const ALL: [DType; 10] = [
        DType::F16,
        DType::Bf16,
        DType::F32,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::U64 => "u64",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::Bf16 | DType::F32 | DType::F64)
    }

    /// The byte written to every byte of an output before a run. For floats it
    /// makes every element NaN; for integers a recognisable sentinel.
    pub fn poison_byte(self) -> u8 {
        if self.is_float() {
            0xFF
        } else {
            0xA5
        }
    }

    /// Reads element `i` of a little-endian buffer as f64.
    pub fn read(self, bytes: &[u8], i: usize) -> f64 {
        let s = self.size();
        let b = &bytes[i * s..(i + 1) * s];
        match self {
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
            DType::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            DType::F32 => f32::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
            DType::F64 => f64::from_le_bytes(b.try_into().unwrap_or_default()),
            DType::I8 => b[0] as i8 as f64,
            DType::U8 => b[0] as f64,
            DType::I32 => i32::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
            DType::U32 => u32::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
            DType::I64 => i64::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
            DType::U64 => u64::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
        }
    }

    /// Encodes `v` (rounded for integers, saturating) as little-endian bytes.
    pub fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            DType::F16 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            DType::Bf16 => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::I8 => out.extend_from_slice(&(v.round() as i8).to_le_bytes()),
            DType::U8 => out.extend_from_slice(&(v.round() as u8).to_le_bytes()),
            DType::I32 => out.extend_from_slice(&(v.round() as i32).to_le_bytes()),
            DType::U32 => out.extend_from_slice(&(v.round() as u32).to_le_bytes()),
            DType::I64 => out.extend_from_slice(&(v.round() as i64).to_le_bytes()),
            DType::U64 => out.extend_from_slice(&(v.round() as u64).to_le_bytes()),
        }
    }

    /// Encodes an integer exactly (for integer scalars beyond f64's exact range).
    pub fn encode_int(self, v: i64, out: &mut Vec<u8>) {
        match self {
            DType::I64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::U64 => out.extend_from_slice(&(v as u64).to_le_bytes()),
            _ => self.encode(v as f64, out),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips_small_integers() {
        for d in DType::ALL {
            let mut buf = Vec::new();
            for v in [0.0, 1.0, 2.0, 100.0] {
                d.encode(v, &mut buf);
            }
            assert_eq!(buf.len(), 4 * d.size());
            for (i, v) in [0.0, 1.0, 2.0, 100.0].iter().enumerate() {
                assert_eq!(d.read(&buf, i), *v, "{d}");
            }
            assert_eq!(DType::parse(d.name()), Some(d));
        }
    }

    #[test]
    fn float_poison_is_nan() {
        for d in [DType::F16, DType::Bf16, DType::F32, DType::F64] {
            let buf = vec![d.poison_byte(); d.size()];
            assert!(d.read(&buf, 0).is_nan(), "{d}");
        }
    }
}
