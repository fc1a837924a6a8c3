//! `report.html`: the report a person opens in the morning, one self-contained file
//! (the SVG plots inline, the CSS and one small script inline, nothing fetched).
//! It is the Markdown report's sections and figures, rendered: built from the same
//! [`Report`] (so from the same `report.json`), with a table of contents and tables
//! a reader can sort by clicking a column's head. `report --verify` renders it again
//! from the journal and compares it line by line.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

use super::chart::esc;
use super::Report;

/// The version written into the page: `--verify` can only re-render what the same
/// version wrote.
pub(crate) const GENERATOR: &str = super::GENERATOR;

const CSS: &str = r#"
:root { --fg: #1d1d1f; --muted: #555; --line: #d8d8d8; --accent: #4e79a7; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); font: 15px/1.5 "DejaVu Sans", Helvetica, Arial, sans-serif; background: #fff; }
nav.toc { position: fixed; top: 0; left: 0; bottom: 0; width: 230px; overflow-y: auto; padding: 16px 12px; background: #f6f7f9; border-right: 1px solid var(--line); font-size: 13px; }
nav.toc h2 { font-size: 14px; margin: 0 0 8px; }
nav.toc ol { margin: 0; padding-left: 18px; }
nav.toc a { color: var(--accent); text-decoration: none; }
main { margin-left: 250px; padding: 16px 28px 64px; max-width: 1180px; }
@media (max-width: 900px) { nav.toc { position: static; width: auto; border-right: 0; border-bottom: 1px solid var(--line); } main { margin-left: 0; } }
h1 { font-size: 24px; } h2 { border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 36px; } h3 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; cursor: pointer; white-space: nowrap; user-select: none; }
th[data-sort="asc"]::after { content: " \25B2"; } th[data-sort="desc"]::after { content: " \25BC"; }
tbody tr:nth-child(even) { background: #fafbfc; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; background: #f3f4f6; padding: 0 3px; border-radius: 3px; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; font-size: 12px; max-height: 480px; }
pre code { background: none; padding: 0; }
figure.plot { margin: 12px 0 20px; overflow-x: auto; }
figure.plot svg { max-width: 100%; height: auto; }
.meta { color: var(--muted); font-size: 13px; }
"#;

/// Records any script error or failed resource load on the page (a browser test
/// reads it back), sorts a table by the column head clicked (numbers as numbers),
/// and marks the page ready when it ran to the end.
const SCRIPT: &str = r#"
(function () {
  var root = document.documentElement, errors = [];
  function note(m) { errors.push(String(m)); root.setAttribute("data-errors", errors.join("\n")); }
  window.addEventListener("error", function (e) {
    var t = e.target;
    note(e.message || ("failed to load " + ((t && (t.src || t.href)) || "a resource")));
  }, true);
  var consoleError = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, " ")); consoleError.apply(console, arguments); };
  function key(cell) {
    var s = cell.textContent.trim();
    var m = s.replace(/^\$/, "").match(/^[-+]?[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?/i);
    return m ? parseFloat(m[0]) : s.toLowerCase();
  }
  function compare(x, y) {
    if (typeof x === typeof y) { return x < y ? -1 : (x > y ? 1 : 0); }
    return typeof x === "number" ? -1 : 1;
  }
  Array.prototype.forEach.call(document.querySelectorAll("main table"), function (table) {
    var heads = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        if (!body) { return; }
        var asc = th.getAttribute("data-sort") !== "asc";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-sort"); });
        th.setAttribute("data-sort", asc ? "asc" : "desc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var c = compare(key(a.cells[col]), key(b.cells[col]));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  root.setAttribute("data-ready", "1");
})();
"#;

/// An id for a heading: its words, lower case, joined by `-`; unique in the page.
fn slug(text: &str, taken: &mut Vec<String>) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let base = s.trim_matches('-').to_string();
    let base = if base.is_empty() {
        "section".into()
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    taken.push(id.clone());
    id
}

/// The page: the Markdown report rendered, its plots inline, a table of contents.
/// `plots` are the report's (file name, SVG).
pub fn html(r: &Report, plots: &[(String, String)]) -> String {
    let names: Vec<String> = plots.iter().map(|p| p.0.clone()).collect();
    let md = super::markdown(r, &names);
    let events: Vec<Event> = Parser::new_ext(&md, Options::ENABLE_TABLES).collect();
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let mut toc: Vec<(String, String)> = Vec::new();
    let mut taken = Vec::new();
    let mut i = 0;
    while i < events.len() {
        match &events[i] {
            Event::Start(Tag::Heading {
                level,
                classes,
                attrs,
                ..
            }) => {
                let text: String = events[i + 1..]
                    .iter()
                    .take_while(|e| !matches!(e, Event::End(TagEnd::Heading(_))))
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.to_string()),
                        _ => None,
                    })
                    .collect();
                let id = slug(&text, &mut taken);
                if *level == pulldown_cmark::HeadingLevel::H2 {
                    toc.push((id.clone(), text));
                }
                out.push(Event::Start(Tag::Heading {
                    level: *level,
                    id: Some(CowStr::from(id)),
                    classes: classes.clone(),
                    attrs: attrs.clone(),
                }));
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                let name = dest_url.trim_start_matches("plots/");
                // The image's alt text runs to its end tag; the plot replaces both.
                while i < events.len() && !matches!(events[i], Event::End(TagEnd::Image)) {
                    i += 1;
                }
                match plots.iter().find(|p| p.0 == name) {
                    Some((_, svg)) => out.push(Event::InlineHtml(CowStr::from(format!(
                        "<figure class=\"plot\">{}</figure>",
                        svg.trim_end()
                    )))),
                    None => out.push(Event::Text(CowStr::from(format!("(plot {name})")))),
                }
            }
            // Text from a run (a compile log, a proposer's words) is never markup,
            // and never a link: link syntax in it keeps its words, not its target.
            Event::Html(t) | Event::InlineHtml(t) => out.push(Event::Text(t.clone())),
            Event::Start(Tag::Link { .. }) | Event::End(TagEnd::Link) => {}
            e => out.push(e.clone()),
        }
        i += 1;
    }
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, out.into_iter());
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!(
        "<meta name=\"generator\" content=\"{GENERATOR}\">\n"
    ));
    page.push_str(&format!(
        "<title>nightshift run {} on {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&r.run_id),
        esc(&r.device)
    ));
    page.push_str("<nav class=\"toc\"><h2>Contents</h2>\n<ol>\n");
    for (id, text) in &toc {
        page.push_str(&format!("<li><a href=\"#{id}\">{}</a></li>\n", esc(text)));
    }
    page.push_str("</ol>\n<p class=\"meta\">Written by ");
    page.push_str(GENERATOR);
    page.push_str(" from the run's journal; <code>nightshift report --verify</code> checks every figure.</p>\n</nav>\n<main>\n");
    page.push_str(&body);
    page.push_str("</main>\n<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}
