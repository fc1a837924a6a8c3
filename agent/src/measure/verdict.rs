//! The A/B rule: is the candidate faster than the incumbent, given the evidence?

use serde::{Deserialize, Serialize};

/// Default minimum gain for FAST: 2%.
pub const DEFAULT_MIN_GAIN: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The whole 95% interval of the speedup is at or above 1 + min_gain.
    Fast,
    /// The whole interval is at or below 1 / (1 + min_gain).
    Slow,
    /// The whole interval lies within the ±min_gain band: no difference that matters.
    Same,
    /// The interval straddles a band edge: not enough evidence either way.
    Ambiguous,
}

impl Verdict {
    /// Verdict for a speedup interval (baseline time / candidate time).
    pub fn from_interval(lo: f64, hi: f64, min_gain: f64) -> Verdict {
        let up = 1.0 + min_gain;
        let down = 1.0 / up;
        if !(lo.is_finite() && hi.is_finite()) || lo > hi {
            return Verdict::Ambiguous;
        }
        if lo >= up {
            Verdict::Fast
        } else if hi <= down {
            Verdict::Slow
        } else if lo >= down && hi <= up {
            Verdict::Same
        } else {
            Verdict::Ambiguous
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fast => "FAST",
            Verdict::Slow => "SLOW",
            Verdict::Same => "SAME",
            Verdict::Ambiguous => "AMBIGUOUS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_four_verdicts() {
        let g = DEFAULT_MIN_GAIN;
        assert_eq!(Verdict::from_interval(1.05, 1.10, g), Verdict::Fast);
        assert_eq!(Verdict::from_interval(1.02, 1.03, g), Verdict::Fast);
        assert_eq!(Verdict::from_interval(0.90, 0.95, g), Verdict::Slow);
        assert_eq!(Verdict::from_interval(0.99, 1.01, g), Verdict::Same);
        assert_eq!(Verdict::from_interval(1.01, 1.05, g), Verdict::Ambiguous);
        assert_eq!(Verdict::from_interval(0.90, 1.10, g), Verdict::Ambiguous);
        assert_eq!(Verdict::from_interval(f64::NAN, 1.0, g), Verdict::Ambiguous);
    }

    #[test]
    fn a_gain_below_min_gain_is_never_fast() {
        // 1.5% faster with a razor-thin interval: real but below the bar.
        assert_eq!(Verdict::from_interval(1.015, 1.016, 0.02), Verdict::Same);
    }

    proptest! {
        #[test]
        fn swapping_a_and_b_swaps_fast_and_slow(lo in 0.2f64..5.0, w in 0.0f64..2.0, g in 0.0f64..0.2) {
            let hi = lo + w;
            let v = Verdict::from_interval(lo, hi, g);
            let back = Verdict::from_interval(1.0 / hi, 1.0 / lo, g);
            let expected = match v {
                Verdict::Fast => Verdict::Slow,
                Verdict::Slow => Verdict::Fast,
                other => other,
            };
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn fast_needs_the_whole_interval_above_the_bar(lo in 0.2f64..5.0, w in 0.0f64..2.0, g in 0.0f64..0.2) {
            if Verdict::from_interval(lo, lo + w, g) == Verdict::Fast {
                prop_assert!(lo >= 1.0 + g);
            }
        }
    }
}
