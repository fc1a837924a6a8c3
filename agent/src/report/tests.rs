//! Reports rendered from journals recorded on a real GPU (see
//! `agent/tests/fixtures/journals/README.md`), checked against snapshots, verified,
//! and tampered with.

use std::path::{Path, PathBuf};

use super::chart::{Axis, Scale, Unit};
use super::*;
use crate::journal::{self, Event, Record};
use crate::state::RunState;

fn st(records: &[Record]) -> RunState {
    RunState::from_records(records)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn records(name: &str) -> Vec<Record> {
    journal::read(&fixtures().join("journals").join(format!("{name}.jsonl")))
        .unwrap()
        .records
}

fn names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("journals"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "jsonl")
                .then(|| p.file_stem().unwrap().to_string_lossy().to_string())
        })
        .collect();
    v.sort();
    assert!(v.len() >= 2, "fixtures missing: {v:?}");
    v
}

/// Compares with `tests/fixtures/snapshots/<name>`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, text: &str) {
    let path = fixtures().join("snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; UPDATE_SNAPSHOTS=1 writes it",
            path.display()
        )
    });
    assert!(
        want == text,
        "{name} differs from its snapshot; UPDATE_SNAPSHOTS=1 rewrites it after review"
    );
}

#[test]
fn reports_of_real_journals_match_their_snapshots_and_verify() {
    for name in names() {
        let recs = records(&name);
        let r = build(&name, &st(&recs));
        let svgs = plots(&r, &st(&recs));
        let names: Vec<String> = svgs.iter().map(|p| p.0.clone()).collect();
        let md = markdown(&r, &names);
        for (file, svg) in &svgs {
            let doc = roxmltree::Document::parse(svg)
                .unwrap_or_else(|e| panic!("{name} {file} is not XML: {e}"));
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            assert!(
                md.contains(&format!("(plots/{file})")),
                "{name}: {file} not embedded"
            );
            // No legend on a mark, every mark inside the axes and named.
            let marks =
                chart::geometry::check(svg).unwrap_or_else(|e| panic!("{name} {file}: {e}"));
            assert!(marks > 0, "{name} {file}: no mark");
            if !file.starts_with("evidence-") {
                snapshot(&format!("{name}.{file}"), svg);
            }
        }
        // The samples of every kept change and final comparison are drawn.
        let kept = r
            .iterations
            .iter()
            .filter(|i| i.decision.starts_with("committed"))
            .count();
        let finals = r.kernels.iter().filter(|k| k.speedup.is_some()).count();
        assert!(
            r.evidence.len() >= kept + finals,
            "{name}: {} evidence",
            r.evidence.len()
        );
        for i in 0..r.evidence.len() {
            for f in plot::evidence_names(i) {
                assert!(names.contains(&f), "{name}: {f} missing");
            }
        }
        html_matches_markdown(&name, &r, &svgs, &md);
        assert!(
            names.contains(&"candidates.svg".to_string()),
            "{name}: {names:?}"
        );
        snapshot(&format!("{name}.md"), &md);
        let json = serde_json::to_value(&r).unwrap();
        snapshot(
            &format!("{name}.json"),
            &serde_json::to_string_pretty(&json).unwrap(),
        );
        let n = verify(&json, &name, &recs).unwrap();
        assert!(n > 50, "{name}: only {n} figures checked");
        // Each section is there, and every kernel has its baseline from the samples.
        for h in [
            "## Machine",
            "## Budget and spend",
            "## Kernels",
            "## Iterations",
            "## Pattern ROI",
            "## What did not work",
            "## Predictions against measurements",
            "## Caveats",
            "## How to reproduce",
        ] {
            assert!(md.contains(h), "{name}: {h} missing");
        }
        assert!(r.kernels.iter().all(|k| k.baseline.is_some()), "{name}");
        assert!(!md.contains("NaN") && !md.contains("inf"), "{name}");
    }
}

#[test]
fn the_figures_are_recomputed_from_the_raw_samples() {
    let recs = records("h100-softmax-finished");
    let r = build("soft5", &st(&recs));
    let k = &r.kernels[0];
    // The recorded summary of the baseline equals what its samples give.
    let e: Evaluation = recs
        .iter()
        .find_map(|x| match &x.event {
            Event::Evaluated {
                pattern: None,
                evaluation,
                ..
            } => evaluation.get().cloned(),
            _ => None,
        })
        .unwrap();
    let s = e.measurement.as_ref().unwrap().summary.unwrap();
    let b = k.baseline.as_ref().unwrap();
    assert_eq!(
        (b.median_us, b.ci_lo_us, b.ci_hi_us),
        (s.median, s.ci_lo, s.ci_hi)
    );
    // Each verdict's speedup is the ratio of the two medians measured side by side.
    let passed = r
        .iterations
        .iter()
        .filter(|i| i.outcome == "passed")
        .count();
    assert_eq!(
        r.iterations.iter().filter(|i| i.speedup.is_some()).count(),
        passed
    );
    for i in &r.iterations {
        let sp = i.speedup.as_ref().unwrap();
        assert!(sp.ci_lo <= sp.x && sp.x <= sp.ci_hi, "{i:?}");
        assert!(i.decision.starts_with("reverted"), "{i:?}");
        assert!(i.gpu_s > 0.0 && i.dollars > 0.0, "{i:?}");
    }
    // The spend adds up to the charges, priced at the device's rate.
    assert!((r.spend.dollars - r.spend.gpu_s * 4.0 / 3600.0).abs() < 1e-9);
    // A journal from before the Machine record says so.
    assert!(r.machine.is_none());
    assert!(r.caveats.iter().any(|c| c.contains("no Machine record")));
}

#[test]
fn verify_names_the_figure_when_one_sample_was_changed() {
    let recs = records("h100-softmax-finished");
    let json = serde_json::to_value(build("soft5", &st(&recs))).unwrap();
    let mut bad = recs.clone();
    // One sample of the baseline, 1% slower.
    let rec = bad
        .iter_mut()
        .find(|r| matches!(&r.event, Event::Evaluated { pattern: None, .. }))
        .unwrap();
    let Event::Evaluated { evaluation, .. } = &mut rec.event else {
        unreachable!()
    };
    let crate::journal::Typed::Read(evaluation) = evaluation else {
        panic!("the fixture's baseline evaluation reads")
    };
    let samples = &mut evaluation.measurement.as_mut().unwrap().samples;
    let mut sorted: Vec<f64> = samples.iter().map(|s| s.us).collect();
    sorted.sort_by(f64::total_cmp);
    let mid = samples
        .iter()
        .position(|s| s.us == sorted[sorted.len() / 2])
        .unwrap();
    samples[mid].us *= 1.01;
    // The median sample moved: the journal's own summary no longer matches it.
    let err = verify(&json, "soft5", &bad).unwrap_err().to_string();
    assert!(err.contains("softmax BLOCK=128 VARIANT=0 VEC=1"), "{err}");
    // And a report edited by hand is caught at the figure that was edited.
    let mut edited = json.clone();
    edited["kernels"][0]["baseline"]["median_us"] = serde_json::json!(1.0);
    let err = verify(&edited, "soft5", &recs).unwrap_err().to_string();
    assert!(
        err.contains("report.kernels[0].baseline.median_us"),
        "{err}"
    );
}

#[test]
fn samples_csv_loads_with_a_csv_reader_and_holds_every_sample() {
    for name in names() {
        let recs = records(&name);
        let text = samples_csv(&st(&recs));
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let head: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(head[..4], ["record", "role", "kernel", "config"]);
        let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        // Counted from the records themselves, not from the fold the CSV is written from.
        let samples = |v: &Typed<Evaluation>| {
            v.get()
                .and_then(|e| e.measurement.as_ref())
                .map_or(0, |m| m.samples.len())
        };
        let total: usize = recs
            .iter()
            .map(|r| match &r.event {
                Event::Evaluated { evaluation, .. } | Event::StudyPoint { evaluation, .. } => {
                    samples(evaluation)
                }
                Event::Verdict { against, .. } => samples(against),
                Event::FinalComparison {
                    baseline_evaluation,
                    best_evaluation,
                    ..
                } => samples(baseline_evaluation) + samples(best_evaluation),
                _ => 0,
            })
            .sum();
        assert_eq!(rows.len(), total, "{name}");
        for r in &rows {
            assert_eq!(r.len(), head.len());
            let us: f64 = r[7].parse().unwrap();
            assert!(us > 0.0 && us.is_finite());
            assert!(matches!(&r[9], "true" | "false"));
        }
    }
}

#[test]
fn a_ceiling_fraction_above_one_is_an_anomaly_never_a_percentage() {
    let recs = records("h100-softmax-finished");
    let e: Evaluation = recs
        .iter()
        .find_map(|x| match &x.event {
            Event::Evaluated { evaluation, .. } => evaluation.get().cloned(),
            _ => None,
        })
        .unwrap();
    let t = timing(&e, st(&recs).recorded.seed()).unwrap();
    let r = e.roofline.as_ref().unwrap();
    let achieved = r.bytes / (t.median_us * 1e-6) / 1e9;
    // A ceiling measured below what was achieved: 107% of "peak".
    let low = serde_json::json!({"dram_gbs": achieved / 1.07, "fp32_gflops": 1e9, "tensor_f16_gflops": 1e9});
    let text = roofline_text(&e, &t, Some(&low)).unwrap();
    assert!(text.starts_with("ANOMALY"), "{text}");
    assert!(!text.contains('%'), "{text}");
    let fine = serde_json::json!({"dram_gbs": achieved * 2.0, "fp32_gflops": 1e9, "tensor_f16_gflops": 1e9});
    let text = roofline_text(&e, &t, Some(&fine)).unwrap();
    assert!(
        text.starts_with("50.0% of the measured DRAM bandwidth"),
        "{text}"
    );
}

#[test]
fn runs_stopped_by_budget_or_signal_have_complete_reports() {
    for (name, why) in [
        ("h100-rowsum-budget-stopped", "wall-time limit"),
        ("h100-layernorm-sigint", "stopped by SIGINT"),
    ] {
        let recs = records(name);
        let r = build(name, &st(&recs));
        assert_eq!(r.state, "finished", "{name}");
        assert!(r.stop.contains(why), "{name}: {}", r.stop);
        let m = r.machine.as_ref().expect("a Machine record");
        assert_eq!(m.name, "NVIDIA H100 80GB HBM3");
        assert!(m.dram_measured_gbs.is_some() && m.display_driver.is_some());
        assert!(r.spend.gpu_s > 0.0 && r.spend.dollars > 0.0);
        let k = &r.kernels[0];
        assert!(
            k.baseline.is_some() && k.roofline.is_some(),
            "{name}: {k:?}"
        );
        assert!(!k.roofline.as_ref().unwrap().starts_with("ANOMALY"));
        let md = markdown(&r, &[]);
        assert!(md.contains(why), "{name}");
    }
}

#[test]
fn the_study_is_reported_as_throughput_per_unit_of_work() {
    let recs = records("h100-simsearch-q1-study");
    let r = build("q1", &st(&recs));
    let s = &r.studies[0];
    assert_eq!(
        s.result.rows.iter().map(|x| x.scale).collect::<Vec<_>>(),
        vec![1, 2, 4, 8]
    );
    let md = markdown(&r, &[]);
    assert!(md.contains("## Workload batching (throughput per unit of work)"));
    assert!(md.contains("not a speedup of one launch"));
    assert!(r
        .caveats
        .iter()
        .any(|c| c.contains("throughput per unit of work") && c.contains("simsearch-q1")));
    // The roofline plot has the measured ceilings to draw.
    assert!(plots(&r, &st(&recs)).iter().any(|p| p.0 == "roofline.svg"));
}

#[test]
fn compare_lines_two_runs_up_and_refuses_what_is_not_comparable() {
    let a = build("budget1", &st(&records("h100-rowsum-budget-stopped")));
    let b = build("kill1", &st(&records("h100-rowsum-layernorm")));
    let c = compare::compare(&a, &b, false).unwrap();
    assert!(c.forced.is_empty());
    let names: Vec<&str> = c.rows.iter().map(|r| r.kernel.as_str()).collect();
    assert_eq!(names, vec!["rowsum", "layernorm"]);
    assert!(c.rows[0].a.is_some() && c.rows[0].b.is_some());
    assert!(c.rows[1].a.is_none());
    assert!(c.rows[0].best_ratio.is_some());
    let md = compare::render(&c);
    assert!(
        md.contains("| layernorm | budget1 | not in this run |"),
        "{md}"
    );
    assert!(md.contains("no interval claimed"), "{md}");

    // Another device: refused, or forced and said so.
    let mut other = b.clone();
    other.device = "NVIDIA H200".into();
    let e = compare::compare(&a, &other, false).unwrap_err();
    assert!(
        e.contains("different devices") && e.contains("--force"),
        "{e}"
    );
    let c = compare::compare(&a, &other, true).unwrap();
    assert!(compare::render(&c).starts_with("**Compared as forced"));

    // rowsum timed cold in one run and batched in the other: refused.
    let mut batched = b.clone();
    for k in batched.kernels.iter_mut() {
        for t in [&mut k.baseline, &mut k.best].into_iter().flatten() {
            t.method = "batch of 64".into();
        }
    }
    let e = compare::compare(&a, &batched, false).unwrap_err();
    assert!(e.contains("rowsum") && e.contains("not comparable"), "{e}");
}

#[test]
fn a_sweep_plot_is_svg_on_every_combination_of_scales() {
    let lines = vec![
        (
            "VARIANT=0".to_string(),
            vec![(32.0, 5.4), (1024.0, 16.9), (65536.0, 1529.0)],
        ),
        (
            "VARIANT=1".to_string(),
            vec![(32.0, 3.6), (1024.0, 20.0), (65536.0, 1216.7)],
        ),
    ];
    for (lx, ly) in [(true, true), (true, false), (false, true), (false, false)] {
        let scale = |log| if log { Scale::Log } else { Scale::Lin };
        let x = Axis::new("seq_k", Unit::Plain(""), scale(lx));
        let y = Axis::new("time", Unit::Si("s"), scale(ly));
        let svg = plot::series("t", x, y, &lines).unwrap();
        chart::geometry::check(&svg).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(svg.contains("VARIANT=1"));
    }
    let axis = || Axis::new("x", Unit::Plain(""), Scale::Log);
    assert!(plot::series("t", axis(), axis(), &[]).is_none());
}

/// The HTML page holds the Markdown report's sections, tables and plots, inline and
/// self-contained.
fn html_matches_markdown(name: &str, r: &Report, svgs: &[(String, String)], md: &str) {
    let page = html(r, svgs);
    let body = &page[page.find("<main>").expect("a <main>")..];
    for h in md.lines().filter_map(|l| l.strip_prefix("## ")) {
        let h = chart::esc(&h.replace('`', ""));
        assert!(
            body.contains(&format!("\">{h}</h2>")),
            "{name}: section {h} not in the page's body"
        );
    }
    let md_tables = md.lines().filter(|l| l.starts_with("| --- |")).count();
    assert_eq!(page.matches("<table>").count(), md_tables, "{name}: tables");
    for (file, svg) in svgs {
        let first = svg.lines().nth(2).unwrap_or_default();
        assert!(page.contains(first), "{name}: {file} not inline");
    }
    assert_eq!(
        page.matches("<figure class=\"plot\">").count(),
        svgs.len(),
        "{name}"
    );
    // Nothing fetched: no external address but the SVG namespace.
    for bad in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(bad), "{name}: `{bad}` in the page");
    }
    assert!(page.contains("<nav class=\"toc\">") && page.contains("data-ready"));
    // Stamped like the files on disk, the page verifies line by line.
    let stamped = super::stamped("report.html", &page);
    assert_eq!(
        verify_page("report.html", &stamped, &page).unwrap(),
        page.lines().count()
    );
}

#[test]
fn a_page_changed_by_hand_fails_verification_naming_the_line() {
    let recs = records("h100-softmax-finished");
    let state = st(&recs);
    let r = build("s", &state);
    let svgs = plots(&r, &state);
    let page = html(&r, &svgs);
    let median = format!("{:.2}", r.kernels[0].baseline.as_ref().unwrap().median_us);
    let tampered = page.replacen(&median, "1.00", 1);
    assert_ne!(tampered, page);
    let e = verify_page("report.html", &tampered, &page)
        .unwrap_err()
        .to_string();
    assert!(e.contains("report.html line") && e.contains("1.00"), "{e}");
    // Another version's page is named as such, not compared.
    let old = page.replace(html::GENERATOR, "nightshift 0.0.1");
    let e = verify_page("report.html", &old, &page)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nightshift 0.0.1") && e.contains("write it again"),
        "{e}"
    );
    // A plot changed: its point moved.
    let (file, svg) = &svgs[0];
    let moved = svg.replacen("cx=\"", "cx=\"1", 1);
    let e = verify_page(file, &moved, svg).unwrap_err().to_string();
    assert!(e.contains(file.as_str()), "{e}");
}

/// Text from a run is never markup in the page: link syntax keeps its words and
/// loses its target, a tag is shown as text, a trailing backslash does not merge
/// table cells.
#[test]
fn run_text_cannot_become_a_link_a_tag_or_a_merged_cell() {
    let recs = records("h100-softmax-finished");
    let state = st(&recs);
    let mut r = build("s", &state);
    r.kernels[0].state = "done [click](javascript:alert(1)) <script>x()</script> a\\".into();
    r.iterations[0].config = "a`[cfg](javascript:alert(2))`".into();
    let page = html(&r, &plots(&r, &state));
    assert!(!page.contains("href=\"javascript"), "a link survived");
    assert!(!page.contains("<script>x()"), "a tag survived");
    assert!(page.contains("click"));
    let md = markdown(&r, &[]);
    let row = md.lines().find(|l| l.contains("done [click]")).unwrap();
    assert!(row.ends_with("a\\  |"), "{row}");
}

/// A stamp from another version or format is named, not compared.
#[test]
fn a_page_from_another_version_says_so() {
    let md = super::stamped("report.md", "# x\n");
    let old = md.replace(super::GENERATOR, "nightshift 0.0.9, report format 1");
    let e = verify_page("report.md", &old, &md).unwrap_err().to_string();
    assert!(
        e.contains("report format 1") && e.contains("write it again"),
        "{e}"
    );
    let e = verify_page("report.md", "# x\n", &md)
        .unwrap_err()
        .to_string();
    assert!(e.contains("an earlier nightshift"), "{e}");
    let svg = super::stamped("plots/a.svg", "<svg>\n</svg>\n");
    assert!(svg.starts_with("<svg>\n<!-- written by"));
    roxmltree::Document::parse(&svg).unwrap();
}
