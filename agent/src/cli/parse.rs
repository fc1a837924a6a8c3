//! The checks of numeric and `NAME=VALUE` flags, each with a message that names
//! what is allowed.

/// A number from the command line: finite, and within `[min, max]` (`min` excluded
/// when `open`). NaN, infinities and values past the stated limits are refused,
/// naming the range, so that no flag can panic a conversion or silently mean nothing.
pub(super) fn number_in(s: &str, min: f64, max: f64, open: bool) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    let low_ok = if open { x > min } else { x >= min };
    if !(x.is_finite() && low_ok && x <= max) {
        let lo = if open { "above" } else { "at least" };
        return Err(format!(
            "`{s}`: must be a finite number {lo} {min} and at most {max}"
        ));
    }
    Ok(x)
}

/// Seconds of a time limit: above 0, at most a day.
pub(super) fn parse_seconds(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 86_400.0, true)
}

/// A minimum gain: a fraction from 0 to below 1 (0.02 = 2%).
pub(super) fn parse_min_gain(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 0.99, false)
}

/// A target noise: a fraction above 0 and below 1.
pub(super) fn parse_noise(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 0.99, true)
}

/// An energy window: 0 (none) to 60 000 ms.
pub(super) fn parse_energy_ms(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 60_000.0, false)
}

/// A budget (minutes, GPU-hours or dollars): above 0, at most a million.
pub(super) fn parse_budget(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 1e6, true)
}

/// A regression threshold: a fraction above 0 and below 1.
pub(super) fn parse_threshold(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 0.99, true)
}

pub(super) fn parse_count_in(s: &str, max: usize) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n > max {
        return Err(format!("`{s}`: at most {max}"));
    }
    Ok(n)
}

/// Retries of an ambiguous check: at most 20.
pub(super) fn parse_retries(s: &str) -> Result<usize, String> {
    parse_count_in(s, 20)
}

/// Comparisons of a calibration: at most 100 000.
pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    parse_count_in(s, 100_000)
}

pub(super) fn parse_assignment(s: &str) -> Result<(String, i64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    let value: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` in `{s}` is not an integer"))?;
    Ok((name.trim().to_string(), value))
}
