//! `report.html` in a real browser. For every fixture journal the binary writes the
//! run's report, and headless Chromium opens `report.html` with the network blocked:
//! the page's script must run to its end (`data-ready="1"` on `<html>`) without
//! recording an error (`data-errors`), Chromium must log no console message, the page
//! must fetch nothing over the network, and its screenshot must not be blank.
//!
//! Chromium is `$NIGHTSHIFT_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one each browser test prints `skipped: no Chromium`
//! and passes, unless NIGHTSHIFT_REQUIRE_BROWSER=1 (`.ci/run` sets it wherever it
//! found or installed Chromium). `NIGHTSHIFT_SCREENSHOTS=<dir>` copies each fixture's screenshot
//! to `<dir>/<fixture>.png`; `NIGHTSHIFT_SCREENSHOT_SIZE=<width>x<height>` sets the
//! window (default 1280x2000). Chromium's `--screenshot` captures the window only, not
//! the whole page, so a long report needs a taller window to be shown whole.
//!
//! What Chromium 156 (Debian's `chromium`, new headless mode) tells, with the flags
//! used here: an uncaught exception and every console call, whatever its level, are
//! one stderr line each, all at INFO level, e.g.
//! `[pid:tid:date:INFO:CONSOLE:3] "Uncaught Error: boom", source: file:///…/p.html (3)`
//! (`console.error("x")` reads the same as `console.log("x")`). A resource that fails
//! to load prints nothing on stderr at `--v=0`, so requests are read from the net log
//! (`--log-net-log`) instead.

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A render that takes longer is killed (with everything it started) and fails.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// The window, and so the screenshot, unless NIGHTSHIFT_SCREENSHOT_SIZE says otherwise.
const DEFAULT_SIZE: (u32, u32) = (1280, 2000);

/// A screenshot is blank when fewer of its pixels than this differ from its most
/// common (background) colour. A count, not a share, so that it does not depend on the
/// window's size. Measured at 1280x2000 with Chromium 156 and fonts-dejavu-core
/// (pixels that differ / distinct colours): an empty page 0 / 1; one line of text
/// 1 246 / 209; an error page (a heading and two lines, one red) 9 609 / 481; a 300 px
/// flat blue bar and nothing else 360 000 / 2; the 78 lines of a fixture's report.md
/// as plain text 85 228 / 250; a heading with one real plot of `plots/` 173 803 / 267;
/// the hand-written report of these tests 403 567 / 1 256. So an error page is 2.6x
/// below this and plain text 3.4x above it.
const MIN_INK_PIXELS: usize = 25_000;

/// A screenshot is blank when it has fewer distinct colours than this: flat boxes
/// without text or chart (2 colours above) fail; anti-aliased text alone brings ~200.
const MIN_COLOURS: usize = 32;

/// Chromium's flags besides the window, the profile and the outputs: new headless
/// mode, no sandbox (CI runs as root), no GPU, every host name unresolvable and no
/// proxy (so nothing can be fetched), no first-run or background work, stderr logging
/// at level 0 (console messages included), scale 1 (screenshot pixels = CSS pixels).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--no-proxy-server",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--enable-logging=stderr",
    "--v=0",
];

/// Environment variables that could send Chromium's requests to a proxy.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// A page that keeps report.html's contract: inline CSS and SVG, one inline script
/// that records errors into `data-errors` and sets `data-ready="1"` last. `{BODY}` and
/// `{SCRIPT}` are replaced by the tests.
const CONTRACT_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nightshift report</title>
<style>
body { font-family: sans-serif; margin: 24px 40px; color: #1d2330; background: #fff; }
h1 { font-size: 26px; border-bottom: 3px solid #3b6fd8; padding-bottom: 6px; }
table { border-collapse: collapse; margin: 12px 0; }
td, th { border: 1px solid #c8cdd8; padding: 4px 10px; text-align: right; }
th { background: #e8eefb; }
.fast { color: #137a2f; font-weight: bold; }
.slow { color: #b3261e; font-weight: bold; }
</style></head><body>
{BODY}
<script>
(function () {
  var root = document.documentElement;
  function record(message) {
    root.dataset.errors = root.dataset.errors ? root.dataset.errors + "\n" + message : String(message);
  }
  window.addEventListener('error', function (e) { record(e.message || 'error'); });
  var original = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
  {SCRIPT}
})();
document.documentElement.dataset.ready = "1";
</script></body></html>
"##;

/// A report-like body: a heading, a table and an SVG chart, drawn by the script.
const REPORT_BODY: &str = r##"<h1>nightshift run night1</h1>
<p>2 kernels, 14 configurations evaluated, 3 commits; stopped: nothing left to try.</p>
<table><tr><th>kernel</th><th>baseline µs</th><th>best µs</th><th>speedup</th><th>verdict</th></tr>
<tr><td>softmax</td><td>149.9</td><td>105.8</td><td>1.42x</td><td class="fast">FAST</td></tr>
<tr><td>layernorm</td><td>189.0</td><td>188.1</td><td>1.00x</td><td class="slow">SAME</td></tr></table>
<svg id="chart" width="900" height="420" viewBox="0 0 900 420" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="900" height="420" fill="#fafbfd" stroke="#c8cdd8"/>
<g id="grid" stroke="#e1e5ee"></g>
<polyline id="line" fill="none" stroke="#3b6fd8" stroke-width="3"/>
<g id="points" fill="#d8503b"></g>
<text x="450" y="410" text-anchor="middle" font-size="14">evaluation</text>
</svg>"##;

/// Draws REPORT_BODY's chart.
const REPORT_SCRIPT: &str = r##"var ns = 'http://www.w3.org/2000/svg';
  var grid = document.getElementById('grid'), points = document.getElementById('points');
  var coords = [];
  for (var i = 0; i < 20; i++) {
    var x = 40 + i * 43, y = 360 - 300 * (1 - Math.exp(-i / 5)) + 12 * Math.sin(i);
    coords.push(x + ',' + y);
    var c = document.createElementNS(ns, 'circle');
    c.setAttribute('cx', x); c.setAttribute('cy', y); c.setAttribute('r', 6);
    points.appendChild(c);
    var l = document.createElementNS(ns, 'line');
    l.setAttribute('x1', x); l.setAttribute('x2', x); l.setAttribute('y1', 20); l.setAttribute('y2', 380);
    grid.appendChild(l);
  }
  document.getElementById('line').setAttribute('points', coords.join(' '));"##;

/// The contract page with `body` and `script` filled in.
fn contract_page(body: &str, script: &str) -> String {
    CONTRACT_PAGE
        .replace("{BODY}", body)
        .replace("{SCRIPT}", script)
}

/// What Chromium made of one page.
struct Rendered {
    /// `--dump-dom`: the DOM after the page's scripts ran (the load event).
    dom: String,
    /// Chromium's stderr (`--enable-logging=stderr --v=0`).
    stderr: String,
    /// The screenshot, as Chromium wrote it.
    png: Vec<u8>,
    /// Every http(s)/ws(s) URL the page asked the network for (from the net log).
    requests: Vec<String>,
    /// How long Chromium ran.
    took: Duration,
}

/// The Chromium binary to use: `$NIGHTSHIFT_CHROMIUM` (a path, or a name on PATH),
/// else the first of `chromium`, `chromium-browser`, `google-chrome` on PATH. `Err`
/// says why there is none.
fn find_browser() -> Result<PathBuf, String> {
    if let Some(named) = std::env::var_os("NIGHTSHIFT_CHROMIUM").filter(|v| !v.is_empty()) {
        let named = PathBuf::from(named);
        return on_path(&named).ok_or(format!(
            "NIGHTSHIFT_CHROMIUM names {}, which is not an executable file",
            named.display()
        ));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(Path::new(name)))
        .ok_or_else(|| "none of chromium, chromium-browser, google-chrome is on PATH".into())
}

/// `program` itself when it is a path (holds a `/`), else its first executable copy on
/// PATH; None when there is none.
fn on_path(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The browser, or None after printing `skipped: no Chromium …` (the test then passes).
/// With NIGHTSHIFT_REQUIRE_BROWSER set (and not `0`) a missing browser fails `test`.
fn browser_or_skip(test: &str) -> Option<PathBuf> {
    match find_browser() {
        Ok(browser) => Some(browser),
        Err(why) => {
            let required = std::env::var("NIGHTSHIFT_REQUIRE_BROWSER")
                .is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(
                !required,
                "{test}: NIGHTSHIFT_REQUIRE_BROWSER is set but there is no Chromium: {why}"
            );
            println!(
                "skipped: no Chromium (install Debian's chromium package; .ci/run does) ({test}: {why})"
            );
            None
        }
    }
}

/// The window size: NIGHTSHIFT_SCREENSHOT_SIZE (`<width>x<height>`) or DEFAULT_SIZE.
fn window_size() -> (u32, u32) {
    let Ok(v) = std::env::var("NIGHTSHIFT_SCREENSHOT_SIZE") else {
        return DEFAULT_SIZE;
    };
    let parsed = v
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0);
    assert!(
        parsed.is_some(),
        "NIGHTSHIFT_SCREENSHOT_SIZE={v:?} is not <width>x<height>"
    );
    parsed.unwrap_or(DEFAULT_SIZE)
}

/// The file:// URL of `path` (made absolute), with bytes other than unreserved ones
/// and `/` percent-encoded.
fn file_url(path: &Path) -> Result<String, String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut url = String::from("file://");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(url)
}

/// Opens `html` in `browser` (headless, network blocked, a fresh profile in a temporary
/// directory) once, dumping its DOM and taking a screenshot of the window. Chromium and
/// everything it started are killed after RENDER_TIMEOUT. `Err` says what went wrong
/// (a timeout, a non-zero exit, a missing output).
fn render(browser: &Path, html: &Path) -> Result<Rendered, String> {
    use std::os::unix::process::CommandExt;
    let work = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let (shot, netlog) = (work.path().join("shot.png"), work.path().join("net.json"));
    let (out_path, err_path) = (work.path().join("stdout"), work.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let (w, h) = window_size();
    let mut cmd = Command::new(browser);
    cmd.args(FLAGS)
        .arg(format!(
            "--user-data-dir={}",
            work.path().join("profile").display()
        ))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(file_url(html)?)
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        // Its own process group, so that a timeout kills its helpers too.
        .process_group(0);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", browser.display()))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < RENDER_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) => {
                // The group leader is not reaped yet, so its id still names our group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Chromium did not finish within {RENDER_TIMEOUT:?} and was killed; stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                ));
            }
            Err(e) => return Err(format!("waiting for Chromium: {e}")),
        }
    };
    let took = start.elapsed();
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let dom = String::from_utf8_lossy(&read(&out_path)?).into_owned();
    let stderr = String::from_utf8_lossy(&read(&err_path)?).into_owned();
    if !status.success() {
        return Err(format!("Chromium exited with {status}; stderr:\n{stderr}"));
    }
    let png = read(&shot).map_err(|e| format!("no screenshot ({e}); stderr:\n{stderr}"))?;
    let requests = network_requests(&read(&netlog)?)?;
    Ok(Rendered {
        dom,
        stderr,
        png,
        requests,
        took,
    })
}

/// The URLs of the network requests the page made, from a Chromium net log (JSON).
/// Chromium's own background requests (which the blocked resolver fails anyway) are
/// left out: a page's requests carry a network isolation key whose top frame is the
/// page's, file://.
fn network_requests(netlog: &[u8]) -> Result<Vec<String>, String> {
    let log: serde_json::Value =
        serde_json::from_slice(netlog).map_err(|e| format!("the net log is not JSON: {e}"))?;
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .ok_or("the net log names no URL_REQUEST_START_JOB event type")?;
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .ok_or("the net log has no events")?
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .map(|e| &e["params"])
        .filter(|p| {
            p["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("file://"))
        })
        .filter_map(|p| p["url"].as_str().map(str::to_string))
        .collect();
    urls.sort();
    urls.dedup();
    Ok(urls)
}

/// The attributes of the first `<tag …>` in `html` (names lower-cased, values
/// unescaped), or None when there is no such tag.
fn tag_attributes(html: &str, tag: &str) -> Option<HashMap<String, String>> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let mut from = 0;
    let at = loop {
        let i = from + lower[from..].find(&open)?;
        let next = lower.as_bytes().get(i + open.len()).copied();
        if matches!(next, Some(b'>' | b'/') | None) || next.is_some_and(|c| c.is_ascii_whitespace())
        {
            break i + open.len();
        }
        from = i + 1;
    };
    Some(parse_attributes(&html[at..]))
}

/// Parses `name="value" name='value' name=value name` up to the tag's `>`.
fn parse_attributes(rest: &str) -> HashMap<String, String> {
    let mut attrs = HashMap::new();
    let mut s = rest;
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() || s.starts_with('>') {
            return attrs;
        }
        let name_end = s
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
            .unwrap_or(s.len())
            .max(1);
        let name = s[..name_end].to_ascii_lowercase();
        s = s[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after) = s.strip_prefix('=') {
            let after = after.trim_start();
            let (raw, rest) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    (&body[..end], &body[(end + 1).min(body.len())..])
                }
                _ => {
                    let end = after
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            value = unescape(raw);
            s = rest;
        }
        attrs.entry(name).or_insert(value);
    }
}

/// Undoes the character references Chromium writes in attribute values.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// References in the page's source to anything outside it: `src`/`href`-like
/// attributes (other than a link's `<a href>`) that point at http(s) or `//`, any
/// `<link>` that is not a data: URL, `@import`, `@font-face` and CSS `url()` of
/// http(s) or `//`.
fn external_references(html: &str) -> Vec<String> {
    let remote = |v: &str| {
        let v = v.trim().to_ascii_lowercase();
        v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//")
    };
    let mut found = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while let Some(at) = lower[i..].find('<').map(|j| i + j) {
        i = at + 1;
        let name: String = lower[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '-')
            .collect();
        if name.is_empty() {
            continue;
        }
        let attrs = parse_attributes(&html[i + name.len()..]);
        for key in [
            "src",
            "href",
            "xlink:href",
            "srcset",
            "poster",
            "data",
            "action",
        ] {
            let Some(v) = attrs.get(key) else { continue };
            let is_link = name == "link" && key == "href";
            if (is_link && !v.trim().to_ascii_lowercase().starts_with("data:"))
                || (name != "a" && remote(v))
            {
                found.push(format!("<{name} {key}=\"{v}\">"));
            }
        }
    }
    for marker in ["@import", "@font-face"] {
        if lower.contains(marker) {
            found.push(marker.to_string());
        }
    }
    let mut rest = lower.as_str();
    while let Some(j) = rest.find("url(") {
        rest = &rest[j + 4..];
        let target = rest.trim_start_matches(['"', '\'', ' ']);
        if remote(target) {
            found.push(format!(
                "url({})",
                target.chars().take(60).collect::<String>()
            ));
        }
    }
    found
}

/// Console messages and uncaught exceptions Chromium logged: its `:CONSOLE` lines.
/// Chromium 156 logs every console call at INFO, whatever its level, so a report that
/// logs anything fails; the page has no reason to.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// What a screenshot shows, in the two numbers the blank check reads.
#[derive(Debug)]
struct Picture {
    width: u32,
    height: u32,
    /// How many pixels differ from the most common colour.
    ink: usize,
    /// How many distinct colours there are.
    colours: usize,
}

/// Decodes a PNG and measures it.
fn measure(png: &[u8]) -> Result<Picture, String> {
    let mut decoder = png::Decoder::new(Cursor::new(png));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("the PNG is too large")?];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG: {e}"))?;
    let channels = info.color_type.samples();
    // Each pixel's (at most four) 8-bit channels packed into one key.
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for row in buf[..info.line_size * info.height as usize].chunks_exact(info.line_size) {
        for px in row[..info.width as usize * channels].chunks_exact(channels) {
            let key = px.iter().fold(0u32, |k, &c| k << 8 | u32::from(c));
            *counts.entry(key).or_default() += 1;
        }
    }
    let pixels = info.width as usize * info.height as usize;
    let background = counts.values().copied().max().unwrap_or(0);
    Ok(Picture {
        width: info.width,
        height: info.height,
        ink: pixels - background,
        colours: counts.len(),
    })
}

/// Why the picture counts as blank (see MIN_INK_PIXELS, MIN_COLOURS), or None.
fn blank(p: &Picture) -> Option<String> {
    (p.ink < MIN_INK_PIXELS || p.colours < MIN_COLOURS).then(|| {
        format!(
            "the screenshot is (nearly) blank: {} of its {}x{} pixels differ from the \
             background (at least {MIN_INK_PIXELS} needed) and it has {} colours (at least \
             {MIN_COLOURS} needed)",
            p.ink, p.width, p.height, p.colours
        )
    })
}

/// Everything wrong with a rendered page, one line (or paragraph) each.
fn problems(r: &Rendered) -> Vec<String> {
    let mut found = Vec::new();
    match tag_attributes(&r.dom, "html") {
        None => found.push(format!("the dumped DOM has no <html> tag:\n{}", r.dom)),
        Some(attrs) => {
            if attrs.get("data-ready").map(String::as_str) != Some("1") {
                found.push(format!(
                    "<html> has data-ready={:?}, not \"1\": the page's script did not run to its end",
                    attrs.get("data-ready")
                ));
            }
            if let Some(errors) = attrs.get("data-errors") {
                found.push(format!("the page recorded errors (data-errors):\n{errors}"));
            }
        }
    }
    let console = console_lines(&r.stderr);
    if !console.is_empty() {
        found.push(format!(
            "Chromium logged console messages:\n{}",
            console.join("\n")
        ));
    }
    if !r.requests.is_empty() {
        found.push(format!(
            "the page fetched from the network: {}",
            r.requests.join(", ")
        ));
    }
    match measure(&r.png) {
        Ok(p) => found.extend(blank(&p)),
        Err(e) => found.push(format!("the screenshot: {e}")),
    }
    found
}

/// Writes `html` to a temporary file and renders it; the measured picture is printed.
fn render_page(browser: &Path, html: &str) -> Rendered {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("page.html");
    std::fs::write(&path, html).expect("write the page");
    let rendered = render(browser, &path).unwrap_or_else(|e| panic!("render {html:.60}…: {e}"));
    println!(
        "rendered in {:?}: {:?}",
        rendered.took,
        measure(&rendered.png)
    );
    rendered
}

#[test]
fn every_fixture_report_renders_in_a_browser() {
    let Some(browser) = browser_or_skip("every_fixture_report_renders_in_a_browser") else {
        return;
    };
    let fixtures = common::repo_root().join("agent/tests/fixtures/journals");
    let mut journals: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .expect("agent/tests/fixtures/journals is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    journals.sort();
    assert!(
        !journals.is_empty(),
        "no fixture journals in {}",
        fixtures.display()
    );
    let shots = std::env::var_os("NIGHTSHIFT_SCREENSHOTS").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let reports = tmp.path().join("reports");
    let mut failures = Vec::new();
    for journal in &journals {
        let name = journal
            .file_stem()
            .expect("a fixture has a name")
            .to_string_lossy()
            .into_owned();
        let run = reports.join(&name);
        std::fs::create_dir_all(&run).expect("create the run directory");
        std::fs::copy(journal, run.join("journal.jsonl")).expect("copy the fixture");
        let out = Command::new(common::nightshift_bin())
            .args(["report", &name, "--reports"])
            .arg(&reports)
            .output()
            .expect("nightshift runs");
        assert!(
            out.status.success(),
            "{name}: nightshift report failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let html = run.join("report.html");
        if !html.exists() {
            failures.push(format!(
                "{name}: report.html was not written by nightshift report (expected {})",
                html.display()
            ));
            continue;
        }
        let source = std::fs::read_to_string(&html).expect("report.html is UTF-8");
        let external = external_references(&source);
        if !external.is_empty() {
            failures.push(format!(
                "{name}: report.html is not self-contained; it refers to {}",
                external.join(", ")
            ));
        }
        let rendered = match render(&browser, &html) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        println!(
            "{name}: rendered in {:?}: {:?}",
            rendered.took,
            measure(&rendered.png)
        );
        if let Some(dir) = &shots {
            std::fs::create_dir_all(dir).expect("create NIGHTSHIFT_SCREENSHOTS");
            std::fs::write(dir.join(format!("{name}.png")), &rendered.png)
                .expect("write the screenshot");
        }
        failures.extend(
            problems(&rendered)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_page_that_keeps_the_contract_passes_every_check() {
    let Some(browser) = browser_or_skip("a_page_that_keeps_the_contract_passes_every_check") else {
        return;
    };
    let page = contract_page(REPORT_BODY, REPORT_SCRIPT);
    assert_eq!(external_references(&page), Vec::<String>::new());
    let r = render_page(&browser, &page);
    assert_eq!(problems(&r), Vec::<String>::new(), "stderr:\n{}", r.stderr);
}

#[test]
fn a_thrown_error_is_caught_by_both_the_page_and_the_console_check() {
    let Some(browser) = browser_or_skip("a_thrown_error_is_caught") else {
        return;
    };
    // The page's own script ends well; a later script throws.
    let page = contract_page(REPORT_BODY, REPORT_SCRIPT).replace(
        "</body>",
        "<script>throw new Error('deliberate throw');</script></body>",
    );
    let r = render_page(&browser, &page);
    let html = tag_attributes(&r.dom, "html").expect("an <html> tag");
    assert_eq!(html.get("data-ready").map(String::as_str), Some("1"));
    assert!(
        html.get("data-errors")
            .is_some_and(|e| e.contains("deliberate throw")),
        "{html:?}"
    );
    let console = console_lines(&r.stderr);
    assert!(
        console
            .iter()
            .any(|l| l.contains("Uncaught Error: deliberate throw")),
        "stderr:\n{}",
        r.stderr
    );
    assert!(problems(&r).len() >= 2, "{:?}", problems(&r));

    // A throw inside the page's script stops it before data-ready.
    let r = render_page(
        &browser,
        &contract_page(REPORT_BODY, "throw new Error('early throw');"),
    );
    let found = problems(&r).join("\n");
    assert!(found.contains("did not run to its end"), "{found}");
    assert!(found.contains("early throw"), "{found}");
}

#[test]
fn console_error_is_caught_by_both_the_page_and_the_console_check() {
    let Some(browser) = browser_or_skip("console_error_is_caught") else {
        return;
    };
    let script = format!("{REPORT_SCRIPT}\n  console.error('deliberate console error', 42);");
    let r = render_page(&browser, &contract_page(REPORT_BODY, &script));
    let html = tag_attributes(&r.dom, "html").expect("an <html> tag");
    assert_eq!(
        html.get("data-errors").map(String::as_str),
        Some("deliberate console error 42")
    );
    assert!(
        console_lines(&r.stderr)
            .iter()
            .any(|l| l.contains("deliberate console error")),
        "stderr:\n{}",
        r.stderr
    );
}

#[test]
fn a_remote_resource_is_caught_in_the_source_and_in_the_net_log() {
    let Some(browser) = browser_or_skip("a_remote_resource_is_caught") else {
        return;
    };
    let body = format!(
        "{REPORT_BODY}<img src=\"http://example.invalid/x.png\">\
         <a href=\"https://example.invalid/docs\">docs</a>"
    );
    let page = contract_page(&body, REPORT_SCRIPT);
    assert_eq!(
        external_references(&page),
        vec!["<img src=\"http://example.invalid/x.png\">".to_string()]
    );
    let r = render_page(&browser, &page);
    assert_eq!(r.requests, vec!["http://example.invalid/x.png".to_string()]);
    // Chromium 156 logs nothing for the failed load: the net log is what tells.
    assert!(console_lines(&r.stderr).is_empty(), "stderr:\n{}", r.stderr);
}

#[test]
fn blank_and_nearly_blank_pages_are_judged_blank() {
    let Some(browser) = browser_or_skip("blank_pages_are_judged_blank") else {
        return;
    };
    let pages = [
        ("an empty page", contract_page("", "")),
        (
            "one line of text",
            contract_page("<p>nightshift run night1: 2 kernels</p>", ""),
        ),
        (
            "an error message",
            contract_page(
                "<h1>report failed</h1><p class=\"slow\">Error: cannot read journal.jsonl line 7: \
                 expected value at line 1 column 1</p><p>Run nightshift report again.</p>",
                "",
            ),
        ),
        (
            "a flat bar and no text",
            contract_page("<div style=\"height:300px;background:#3b6fd8\"></div>", ""),
        ),
    ];
    for (what, html) in pages {
        let r = render_page(&browser, &html);
        let p = measure(&r.png).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(blank(&p).is_some(), "{what} was not judged blank: {p:?}");
    }
}

#[test]
fn the_source_scan_finds_what_a_self_contained_page_must_not_have() {
    let page = r#"<html><head><link rel="stylesheet" href="s.css">
<style>@import "x.css"; body { background: url('https://x.invalid/b.png') }</style></head>
<body><script src="//cdn.invalid/a.js"></script><a href="https://ok.invalid/">ok</a>
<img src="data:image/png;base64,AAAA"><svg><image href="http://x.invalid/i.png"/></svg></body></html>"#;
    let found = external_references(page);
    assert_eq!(found.len(), 5, "{found:?}");
    for needle in [
        "<link href",
        "@import",
        "url(https://x.invalid",
        "<script src",
        "<image href",
    ] {
        assert!(
            found.iter().any(|f| f.contains(needle)),
            "{needle}: {found:?}"
        );
    }
}

#[test]
fn html_attributes_are_read_from_the_dumped_dom() {
    let dom = "<!DOCTYPE html>\n<html lang=\"en\" data-errors=\"a &quot;b&quot; &amp; c\nd\" \
               data-ready=\"1\"><head></head></html>";
    let attrs = tag_attributes(dom, "html").expect("an <html> tag");
    assert_eq!(attrs["data-ready"], "1");
    assert_eq!(attrs["data-errors"], "a \"b\" & c\nd");
    assert!(tag_attributes("<htmlx></htmlx>", "html").is_none());
}

/// A fixture journal as the run `name` under a temporary reports directory:
/// (the directory's guard, the reports directory, the run's directory).
fn fixture_run(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let reports = tmp.path().join("reports");
    let run = reports.join(name);
    std::fs::create_dir_all(&run).expect("create the run directory");
    std::fs::copy(
        common::repo_root().join(format!("agent/tests/fixtures/journals/{name}.jsonl")),
        run.join("journal.jsonl"),
    )
    .expect("copy the fixture");
    (tmp, reports, run)
}

/// Clicks a column head of a real report's table twice (as a reader would) and reads
/// the column back: ascending by number, then descending.
#[test]
fn a_report_table_sorts_by_the_column_clicked() {
    let Some(browser) = browser_or_skip("a_report_table_sorts_by_the_column_clicked") else {
        return;
    };
    let name = "h100-simsearch-q1-study";
    let (_tmp, reports, run) = fixture_run(name);
    let out = Command::new(common::nightshift_bin())
        .args(["report", name, "--reports"])
        .arg(&reports)
        .output()
        .expect("nightshift runs");
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(run.join("report.html")).expect("report.html");
    // The per-kernel table of every candidate: its "µs [95% CI]" column (the 5th).
    let probe = r#"<script>
(function () {
  var h = Array.prototype.find.call(document.querySelectorAll("h3"), function (x) { return /every candidate$/.test(x.textContent); });
  var table = h.nextElementSibling, th = table.querySelectorAll("thead th")[4];
  function column() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[4].textContent; }).join("|"); }
  th.click(); var up = column(); th.click(); var down = column();
  document.documentElement.setAttribute("data-up", up);
  document.documentElement.setAttribute("data-down", down);
})();
</script>
</body>"#;
    let probed = page.replacen("</body>", probe, 1);
    let r = render_page(&browser, &probed);
    let attrs = tag_attributes(&r.dom, "html").expect("the dumped DOM has <html>");
    let numbers = |key: &str| -> Vec<f64> {
        let v = attrs
            .get(key)
            .unwrap_or_else(|| panic!("the probe did not run: {:?}", r.stderr));
        v.split('|')
            .map(|c| {
                if c.trim() == "-" {
                    f64::INFINITY
                } else {
                    c.split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(f64::NAN)
                }
            })
            .collect()
    };
    let (up, down) = (numbers("data-up"), numbers("data-down"));
    assert!(up.len() >= 5, "{up:?}");
    let measured: Vec<f64> = up.iter().copied().filter(|x| x.is_finite()).collect();
    assert!(measured.len() >= 3, "{up:?}");
    assert!(
        measured.windows(2).all(|w| w[0] <= w[1]),
        "not ascending: {up:?}"
    );
    let measured: Vec<f64> = down.iter().copied().filter(|x| x.is_finite()).collect();
    assert!(
        measured.windows(2).all(|w| w[0] >= w[1]),
        "not descending: {down:?}"
    );
}

/// What a run writes verifies as written, and a figure changed by hand in the page or
/// a plot fails naming the file and line (no browser needed).
#[test]
fn a_written_report_verifies_and_a_changed_page_does_not() {
    let name = "h100-layernorm-sigint";
    let (_tmp, reports, run) = fixture_run(name);
    let nightshift = |verify: bool| {
        let mut c = Command::new(common::nightshift_bin());
        c.args(["report", name, "--reports"]).arg(&reports);
        if verify {
            c.arg("--verify");
        }
        c.output().expect("nightshift runs")
    };
    assert!(nightshift(false).status.success());
    let ok = nightshift(true);
    let said = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        said.contains("report.html") && said.contains("plots/evidence-1-samples.svg"),
        "{said}"
    );
    // The baseline's median, changed in the page.
    let page = std::fs::read_to_string(run.join("report.html")).expect("report.html");
    let changed = page.replacen("189.94", "179.94", 1);
    assert_ne!(changed, page);
    std::fs::write(run.join("report.html"), changed).unwrap();
    let bad = nightshift(true);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("report.html line") && err.contains("179.94"),
        "{err}"
    );
    // Written again, then a plot's point moved.
    assert!(nightshift(false).status.success());
    let plot = run.join("plots/progress.svg");
    let svg = std::fs::read_to_string(&plot).unwrap();
    std::fs::write(&plot, svg.replacen("cx=\"", "cx=\"1", 1)).unwrap();
    let bad = nightshift(true);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(err.contains("plots/progress.svg line"), "{err}");
}
