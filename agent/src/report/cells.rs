//! How the report writes its figures and tables in Markdown (shared by its sections).

use super::*;

pub(super) fn t(x: &Option<Timing>) -> String {
    x.as_ref().map_or("-".into(), |t| {
        format!(
            "{:.2} [{:.2}, {:.2}] {}",
            t.median_us, t.ci_lo_us, t.ci_hi_us, t.method
        )
    })
}

pub(super) fn sx(x: &Option<Speedup>) -> String {
    x.as_ref().map_or("-".into(), |s| {
        format!("{:.3}x [{:.3}, {:.3}] {}", s.x, s.ci_lo, s.ci_hi, s.verdict)
    })
}

/// A Markdown table; `|` in cells is escaped.
pub(super) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    // A cell's trailing `\` would escape the next `|` and merge two cells.
    let esc = |s: &str| {
        let s = s.replace('|', "\\|").replace('\n', " ");
        if s.ends_with('\\') {
            format!("{s} ")
        } else {
            s
        }
    };
    let mut out = format!("| {} |\n", head.join(" | "));
    out.push_str(&format!("|{}\n", " --- |".repeat(head.len())));
    for r in rows {
        out.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}
