use super::*;

#[test]
fn si_writes_the_prefix_and_the_unit() {
    assert_eq!(si(1e15, "FLOP/s"), "1 PFLOP/s");
    assert_eq!(si(1.0e14, "FLOP/s"), "100 TFLOP/s");
    assert_eq!(si(4.4e12, "B/s"), "4.4 TB/s");
    assert_eq!(si(12.3e-6, "s"), "12.3 µs");
    assert_eq!(si(0.0015, "s"), "1.5 ms");
    assert_eq!(si(1200.0, "s"), "1200 s");
    assert_eq!(si(0.0, "s"), "0 s");
    assert_eq!(number(1.2374), "1.24");
    assert_eq!(number(1234.6), "1235");
    assert_eq!(number(0.0151), "0.0151");
}

fn labels(unit: Unit, lo: f64, hi: f64, scale: Scale) -> Vec<String> {
    ticks::ticks(&unit, lo, hi, scale)
        .into_iter()
        .map(|t| t.1)
        .collect()
}

#[test]
fn ticks_are_round_and_inside_the_range() {
    assert_eq!(
        labels(Unit::Si("FLOP/s"), 3e11, 2e15, Scale::Log),
        vec!["1 TFLOP/s", "10 TFLOP/s", "100 TFLOP/s", "1 PFLOP/s"]
    );
    assert_eq!(
        labels(Unit::Plain("x"), 0.0, 3.0, Scale::Lin),
        vec!["0.0x", "0.5x", "1.0x", "1.5x", "2.0x", "2.5x", "3.0x"]
    );
    // A narrow log range still gets several ticks.
    let l = labels(Unit::Plain("x"), 0.9, 1.3, Scale::Log);
    assert!(l.len() >= 3, "{l:?}");
    // Counts are whole.
    assert_eq!(
        labels(Unit::Count, 0.5, 3.5, Scale::Lin),
        vec!["1", "2", "3"]
    );
    for (lo, hi, scale) in [(1e-6, 3e-3, Scale::Log), (12.0, 13.0, Scale::Lin)] {
        for (v, _) in ticks::ticks(&Unit::Si("s"), lo, hi, scale) {
            assert!(
                v >= lo * 0.999 && v <= hi * 1.001,
                "{v} outside [{lo}, {hi}]"
            );
        }
    }
}

fn busy_chart() -> Chart {
    let mut c = Chart::new(
        "t",
        Axis::new("x", Unit::Plain(""), Scale::Lin),
        Axis::new("y", Unit::Plain("x"), Scale::Log),
    );
    // Marks in every corner, the top right one labelled: where a legend inside the
    // plot would sit.
    for (x, y) in [
        (0.0, 0.01),
        (0.0, 100.0),
        (10.0, 0.01),
        (10.0, 100.0),
        (5.0, 1.0),
    ] {
        c.marks
            .push(Mark::new(x, y, color(0), format!("{x},{y}")).label("a long kernel name"));
    }
    c.lane = Some((
        "failed".into(),
        vec![Mark::new(3.0, 0.0, color(1), "failed one").shape(Shape::Cross)],
    ));
    c.legend = vec![
        ("a kernel with a long name".into(), Key::Swatch(color(0))),
        ("faster".into(), Key::Mark(Shape::Up, GREY, true)),
        ("line".into(), Key::Line(GREY, true)),
    ];
    c
}

#[test]
fn the_legend_never_covers_a_mark_and_the_axes_span_every_point() {
    let svg = busy_chart().svg().unwrap();
    assert_eq!(geometry::check(&svg), Ok(6));
    // Far points widen the axes instead of leaving the picture.
    let mut c = busy_chart();
    c.marks.push(Mark::new(1e6, 1e9, color(2), "far"));
    assert_eq!(geometry::check(&c.svg().unwrap()), Ok(7));
}

#[test]
fn the_geometry_check_can_fail() {
    let svg = busy_chart().svg().unwrap();
    // A legend moved onto the plot, as plotters drew it.
    let moved = svg.replacen(
        "class=\"legend-box\" x=\"",
        "class=\"legend-box\" x=\"100\" data-was=\"",
        1,
    );
    assert!(geometry::check(&moved).unwrap_err().contains("legend"));
    // A mark without its title.
    let untitled = svg.replacen("<title>0,0.01</title>", "", 1);
    assert!(geometry::check(&untitled).unwrap_err().contains("no title"));
    // A mark outside the axes.
    let out = svg.replacen(
        "class=\"mark\" cx=\"",
        "class=\"mark\" cx=\"-50\" data-was=\"",
        1,
    );
    assert!(geometry::check(&out).unwrap_err().contains("outside"));
}

#[test]
fn text_from_a_run_is_escaped() {
    let mut c = busy_chart();
    c.marks.push(Mark::new(
        1.0,
        1.0,
        color(0),
        "<script>alert('x')</script> & \"q\"",
    ));
    let svg = c.svg().unwrap();
    assert!(!svg.contains("<script>"));
    roxmltree::Document::parse(&svg).unwrap();
}

#[test]
fn nothing_to_place_draws_nothing() {
    let c = Chart::new(
        "t",
        Axis::new("x", Unit::Plain(""), Scale::Log),
        Axis::new("y", Unit::Plain(""), Scale::Log),
    );
    assert!(c.svg().is_none());
    let mut c = c;
    c.marks
        .push(Mark::new(-1.0, f64::NAN, color(0), "not placeable"));
    assert!(c.svg().is_none());
}

#[test]
fn a_value_a_log_axis_cannot_place_is_left_out_and_said() {
    let mut c = busy_chart();
    c.marks
        .push(Mark::new(1.0, 0.0, color(0), "zero on a log axis"));
    c.marks.push(Mark::new(2.0, -3.0, color(0), "negative"));
    c.lines.push(Line::new(
        vec![(0.0, 0.0), (1.0, 1.0)],
        color(1),
        "through zero",
    ));
    let svg = c.svg().unwrap();
    assert!(!svg.contains("inf") && !svg.contains("NaN"), "{svg}");
    assert!(svg.contains("2 point(s) at or below zero"));
    assert_eq!(geometry::check(&svg), Ok(6));
}
