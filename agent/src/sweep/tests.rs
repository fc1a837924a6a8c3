//! The pure part of sweeps, and `sweep.jsonl` and the outputs, on synthetic
//! measurements with known answers (made-up times for the decision logic only; none
//! reaches a report).

use super::*;

#[test]
fn axes_parse_and_bad_ones_are_refused_with_the_reason() {
    let a = parse_axis("seq_k=32..65536:x2").unwrap();
    assert_eq!(a.name, "seq_k");
    assert_eq!(a.values.len(), 12);
    assert_eq!((a.values[0], a.values[11]), (32, 65536));
    assert_eq!(
        parse_axis("N=1,2,4,8,16").unwrap().values,
        vec![1, 2, 4, 8, 16]
    );
    assert_eq!(
        parse_axis("B=0..30:+10").unwrap().values,
        vec![0, 10, 20, 30]
    );
    for (bad, why) in [
        ("seq_k", "NAME=SPEC"),
        ("=1,2", "no name"),
        ("N=1,x", "not an integer"),
        ("N=8..2:x2", "above"),
        ("N=0..64:x2", "geometric"),
        ("N=1..64:x1", "geometric"),
        ("N=1..64:*2", "the step"),
        ("N=4,2", "increase"),
        ("N=1..100000:+1", "more than"),
    ] {
        let e = parse_axis(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn the_grid_and_labels_name_their_axes() {
    let axes = vec![
        parse_axis("N=1,2").unwrap(),
        parse_axis("M=1024..4096:x2").unwrap(),
    ];
    let g: Vec<_> = grid(&axes).collect();
    assert_eq!(g.len(), 6);
    assert_eq!(grid_len(&axes), 6);
    assert_eq!(g[1], vec![("N".into(), 1), ("M".into(), 2048)]);
    for (i, p) in g.iter().enumerate() {
        assert_eq!(grid_index(&axes, p), Some(i as u64));
        assert_eq!(grid_point(&axes, i as u64).as_ref(), Some(p));
    }
    assert_eq!(grid_point(&axes, 6), None);
    // Four axes of 256 points: counted, never built.
    let big: Vec<Axis> = (0..4)
        .map(|i| parse_axis(&format!("A{i}=1..256:+1")).unwrap())
        .collect();
    assert_eq!(grid_len(&big), 1 << 32);
    let problem: BTreeMap<String, i64> =
        [("rows".to_string(), 4096), ("seq_k".to_string(), 1024)].into();
    assert_eq!(
        label(&problem, &["rows".into(), "seq_k".into()]),
        "rows4096_seqk1024"
    );
    // The swept axes' order first, then the rest.
    assert_eq!(label(&problem, &["seq_k".into()]), "seqk1024_rows4096");
}

/// Made-up times: variant 0 costs n, variant 1 costs n / 2 + 300 (it wins above
/// n = 600); the duel's verdict is within the noise when the two are within 4%.
fn synthetic(ns: &[i64], wobble: f64) -> Vec<Point> {
    ns.iter()
        .enumerate()
        .map(|(i, n)| {
            let jitter = 1.0 + wobble * if i % 2 == 0 { 1.0 } else { -1.0 };
            let t0 = *n as f64 * jitter;
            let t1 = *n as f64 / 2.0 + 300.0;
            let cell = |v: i64, t: f64| Cell {
                variant: v,
                outcome: "passed".into(),
                median_us: Some(t),
                ci_lo_us: Some(t * 0.99),
                ci_hi_us: Some(t * 1.01),
                throughput: None,
                unit: None,
                method: Some("cold".into()),
                ctas_per_sm: None,
            };
            let x = t0 / t1;
            Point {
                label: format!("seqk{n}"),
                at: vec![("seq_k".into(), *n)],
                cells: vec![cell(0, t0), cell(1, t1)],
                duel: Some(Duel {
                    a: 0,
                    b: 1,
                    speedup: x,
                    ci_lo: x * 0.98,
                    ci_hi: x * 1.02,
                    verdict: if x > 1.04 {
                        "FAST".into()
                    } else if x < 1.0 / 1.04 {
                        "SLOW".into()
                    } else {
                        "SAME".into()
                    },
                }),
            }
        })
        .collect()
}

#[test]
fn a_crossover_is_found_between_the_right_points_with_its_uncertainty() {
    let axes = vec![parse_axis("seq_k=32..65536:x2").unwrap()];
    let points = synthetic(&axes[0].values, 0.0);
    let c = crossovers(&points, &axes, "seq_k");
    assert_eq!(c.len(), 1, "{c:?}");
    // 512: 512 vs 556 (SLOW for variant 1, decisive); 1024: 1024 vs 812 (FAST).
    assert_eq!(
        (c[0].from, c[0].to, c[0].below, c[0].above),
        (512, 1024, 0, 1)
    );
    assert!(c[0].confidence.starts_with("sure"), "{c:?}");

    // Finer steps near 600 fall within the noise: the interval spans them.
    let axes = vec![parse_axis("seq_k=400..900:+50").unwrap()];
    let points = synthetic(&axes[0].values, 0.0);
    let c = crossovers(&points, &axes, "seq_k");
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].from < 600 && c[0].to > 600, "{c:?}");
    assert!(c[0].to - c[0].from > 50, "{c:?}");
    assert!(c[0].confidence.contains("within the noise"), "{c:?}");

    // Noise that flips medians but not verdicts adds no crossing.
    let axes = vec![parse_axis("seq_k=32..65536:x2").unwrap()];
    let points = synthetic(&axes[0].values, 0.02);
    assert_eq!(crossovers(&points, &axes, "seq_k").len(), 1);
    // One variant everywhere: none.
    let flat: Vec<Point> = synthetic(&[32, 64, 128], 0.0);
    assert!(crossovers(&flat, &axes, "seq_k").is_empty());
}

#[test]
fn crossovers_are_found_per_line_of_a_two_axis_grid() {
    let axes = vec![
        parse_axis("N=1,2").unwrap(),
        parse_axis("seq_k=32..4096:x2").unwrap(),
    ];
    let mut points = Vec::new();
    for n in [1, 2] {
        for mut p in synthetic(&axes[1].values, 0.0) {
            p.at.insert(0, ("N".into(), n));
            // At N = 2 variant 1 wins everywhere.
            if n == 2 {
                let d = p.duel.as_mut().unwrap();
                d.speedup = 2.0;
                d.verdict = "FAST".into();
            }
            points.push(p);
        }
    }
    let c = crossovers(&points, &axes, "seq_k");
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].held, vec![("N".to_string(), 1)]);
    // Along N at seq_k = 32: variant 0 at N = 1, variant 1 at N = 2.
    let c = crossovers(&points, &axes, "N");
    assert!(c
        .iter()
        .any(|x| x.held == vec![("seq_k".to_string(), 32)] && x.from == 1 && x.to == 2));
}

#[test]
fn thresholds_come_as_json_rust_and_c_with_where_they_were_measured() {
    let axes = vec![parse_axis("seq_k=32..65536:x2").unwrap()];
    let t = Thresholds {
        kernel: "softmax".into(),
        over: Some("VARIANT".into()),
        device: "NVIDIA H100 80GB HBM3".into(),
        date: "2026-11-21".into(),
        command: "nightshift sweep kernels/softmax --axis seq_k=32..65536:x2 --over VARIANT".into(),
        crossovers: crossovers(&synthetic(&axes[0].values, 0.0), &axes, "seq_k"),
    };
    let rs = rust_consts(&t);
    assert!(
        rs.contains("pub const SOFTMAX_VARIANT_0_MAX_SEQ_K: i64 = 512;"),
        "{rs}"
    );
    assert!(rs.contains("NVIDIA H100 80GB HBM3 on 2026-11-21"), "{rs}");
    assert!(
        rs.contains("Command: nightshift sweep kernels/softmax"),
        "{rs}"
    );
    let c = c_defines(&t);
    assert!(c.contains("#define SOFTMAX_VARIANT_0_MAX_SEQ_K 512"), "{c}");
    let back: Thresholds = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn the_csv_has_a_row_per_point_and_variant_labelled_by_axis() {
    let axes = vec![parse_axis("seq_k=32..128:x2").unwrap()];
    let points = synthetic(&axes[0].values, 0.0);
    let text = csv(&points, &axes, Some("VARIANT"));
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let head: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(head[..3], ["label", "seq_k", "VARIANT"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6);
    assert_eq!(&rows[0][0], "seqk32");
    assert_eq!(&rows[0][1], "32");
    // At 32 variant 0 is decisively faster (32 vs 316).
    assert_eq!(&rows[0][10], "yes");
    assert_eq!(&rows[1][10], "");
}

#[test]
fn one_configuration_over_a_workload_axis_gives_throughput_per_unit_and_its_knee() {
    // Per unit of work: 100, 50, 30, 28.75 µs; the last doubling gains 4%.
    let points: Vec<Point> = [(1, 100.0), (2, 100.0), (4, 120.0), (8, 230.0)]
        .iter()
        .map(|(b, t)| Point {
            label: format!("b{b}"),
            at: vec![("B".into(), *b)],
            cells: vec![Cell {
                variant: 0,
                outcome: "passed".into(),
                median_us: Some(*t),
                ci_lo_us: Some(t * 0.995),
                ci_hi_us: Some(t * 1.005),
                throughput: None,
                unit: None,
                method: Some("cold".into()),
                ctas_per_sm: Some(*b as f64 * 0.25),
            }],
            duel: None,
        })
        .collect();
    let r = batching(&points, "B").unwrap();
    assert_eq!(r.knee, Some(4));
    assert_eq!(r.rows[3].us_per_unit, Some(28.75));
    assert_eq!(r.rows[3].ctas_per_sm, Some(2.0));
    assert!(
        r.conclusion.contains("throughput per unit of work"),
        "{}",
        r.conclusion
    );
    assert!(
        r.conclusion.contains("not a speedup of one launch"),
        "{}",
        r.conclusion
    );
    // Values that are not multiples of the first have no unit to share.
    let mut odd = points.clone();
    odd[1].at = vec![("B".into(), 3)];
    odd[0].at = vec![("B".into(), 2)];
    assert!(batching(&odd, "B").is_none());
}

/// `sweep.jsonl` without a GPU: a new sweep's header and points, what `--resume`
/// reads back (a line torn by a crash is measured again), another sweep refused, and
/// the outputs written from the points.
#[test]
fn a_sweep_file_resumes_only_the_same_sweep() {
    use super::file::{Appender, Header, Line};
    let kernel = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
    let spec = crate::spec::KernelSpec::load(&kernel).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let axes = vec![parse_axis("seq_k=512..4096:x2").unwrap()];
    let plan = |over: &str| {
        let out = Some(dir.path().join("s"));
        Plan::new(spec.clone(), axes.clone(), Some(over.into()), &[], out, 100).unwrap()
    };
    let p = plan("VARIANT");
    assert_eq!((p.configs.len(), p.total()), (2, 4));
    assert!(resumed(&p, false).unwrap().is_none());
    let header = Header {
        kernel: spec.name.clone(),
        axes: axes.clone(),
        over: p.over.clone(),
        base: p.base.to_string(),
        device: "NVIDIA H200".into(),
        command: "nightshift sweep".into(),
        rewrites: vec![],
    };
    let points = synthetic(&axes[0].values, 0.0);
    let mut f = Appender::open(&p, Some(header.clone())).unwrap();
    for pt in &points[..2] {
        f.append(&Line::Point(pt.clone())).unwrap();
    }
    drop(f);
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(p.journal())
        .unwrap();
    std::io::Write::write_all(&mut torn, b"{\"kind\":\"point\",\"lab").unwrap();
    let e = resumed(&p, false).err().unwrap().to_string();
    assert!(e.contains("--resume"), "{e}");
    let r = resumed(&p, true).unwrap().unwrap();
    assert_eq!(
        (r.header.clone(), r.points.clone()),
        (header, points[..2].to_vec())
    );
    let e = resumed(&plan("VEC"), true).err().unwrap().to_string();
    assert!(e.contains("a different sweep"), "{e}");
    let t = Thresholds {
        kernel: spec.name.clone(),
        over: p.over.clone(),
        device: "NVIDIA H200".into(),
        date: "2026-01-02".into(),
        command: "nightshift sweep".into(),
        crossovers: crossovers(&points, &axes, "seq_k"),
    };
    let s = Swept {
        points,
        thresholds: t,
        batching: None,
    };
    s.write(&p).unwrap();
    for f in [
        "sweep.csv",
        "thresholds.json",
        "thresholds.rs",
        "thresholds.h",
        "sweep.svg",
    ] {
        assert!(p.out.join(f).is_file(), "{f}");
    }
    assert!(s.render(&p).contains("crossover along seq_k"));
}

/// A rewritten kernel's sweep goes beside the plain one by default, and a sweep
/// file resumes only with the same rewrites.
#[test]
fn a_rewritten_sweep_has_its_own_place_and_resumes_only_as_rewritten() {
    use super::file::{Appender, Header};
    let kernel = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
    let spec = crate::spec::KernelSpec::load(&kernel).unwrap();
    let fast = crate::rewrite::rewritten(spec.clone(), &["fast-math".into()], &[]).unwrap();
    let axes = vec![parse_axis("seq_k=512..1024:x2").unwrap()];
    let plain = Plan::new(spec.clone(), axes.clone(), None, &[], None, 100).unwrap();
    let rw = Plan::new(fast.clone(), axes.clone(), None, &[], None, 100).unwrap();
    assert_ne!(plain.out, rw.out);
    assert!(
        rw.out.to_string_lossy().contains("-rewritten-"),
        "{:?}",
        rw.out
    );
    assert_eq!(rw.rewrites(), vec!["fast-math:part=all".to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let at = |s: &crate::spec::KernelSpec| {
        Plan::new(
            s.clone(),
            axes.clone(),
            None,
            &[],
            Some(dir.path().join("s")),
            100,
        )
        .unwrap()
    };
    let header = Header {
        kernel: spec.name.clone(),
        axes: axes.clone(),
        over: None,
        base: plain.base.to_string(),
        device: "NVIDIA H200".into(),
        command: "nightshift sweep".into(),
        rewrites: at(&fast).rewrites(),
    };
    drop(Appender::open(&at(&fast), Some(header)).unwrap());
    assert!(resumed(&at(&fast), true).unwrap().is_some());
    let Err(e) = resumed(&at(&spec), true) else {
        panic!("a plain sweep resumed a rewritten one");
    };
    let e = e.to_string();
    assert!(
        e.contains("different sweep") && e.contains("rewritten: fast-math"),
        "{e}"
    );
}
