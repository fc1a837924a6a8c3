//! Rewrites a pattern declares itself: a tree-sitter query over the entry kernel and a
//! template put before, after or in place of each node it captures (`{key}` in the
//! template is the step's parameter). Pure, like the built-ins: source in, source out,
//! the result parsed again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{tree, Edit};

/// Where the template goes, relative to a captured node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// On its own line(s) before the node's line, at the node's indentation (a
    /// template ending with a newline), or right before the node.
    Before,
    /// Right after the node.
    After,
    /// In place of the node.
    Replace,
}

/// A pattern's own rewrite: rewrite texts name it by the pattern's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEdit {
    pub name: String,
    /// A tree-sitter query (CUDA grammar), matched inside the entry kernel.
    pub query: String,
    /// The capture edited (None: every capture of the query).
    pub capture: Option<String>,
    pub place: Place,
    pub template: String,
}

/// Whether `value` may be a parameter of a pattern's own rewrite: it becomes part of
/// a candidate's name (journal keys, commit trailers, `--rewrite` arguments), so no
/// spaces, control characters, `+`, `,`, `:` or `=`, and not empty.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '+' | ',' | ':' | '='))
    {
        return Err(format!(
            "`{value}` is not a parameter value: no spaces, `+`, `,`, `:` or `=`"
        ));
    }
    Ok(())
}

impl QueryEdit {
    /// The `{key}` names of its template, in order of first use.
    pub fn params(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut rest = self.template.as_str();
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else { break };
            let key = &rest[i + 1..i + j];
            if !key.is_empty() && !out.iter().any(|k| k == key) {
                out.push(key.to_string());
            }
            rest = &rest[i + j + 1..];
        }
        out
    }

    /// Checks what a pattern declares: the query compiles, its capture exists.
    pub fn check(&self) -> Result<(), String> {
        let q = tree::query(&self.query)?;
        if let Some(c) = &self.capture {
            if q.capture_index_for_name(c).is_none() {
                return Err(format!(
                    "the query has no capture `@{c}` (it has: {})",
                    q.capture_names()
                        .iter()
                        .map(|n| format!("@{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The template with its parameters filled in; an error names a missing one.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut t = self.template.clone();
        for k in self.params() {
            let v = values
                .get(&k)
                .ok_or_else(|| format!("needs {k}=... (its template reads {{{k}}})"))?;
            t = t.replace(&format!("{{{k}}}"), v);
        }
        Ok(t)
    }

    /// The byte edits on `source` (entry kernel `entry`), or why there are none: a
    /// node whose template is already there is left alone, so applying the same
    /// edit twice changes nothing the second time.
    pub(super) fn edits(
        &self,
        e: &tree::Entry,
        parsed: &tree::Parsed,
        text: &str,
    ) -> Result<Vec<Edit>, String> {
        let q = tree::query(&self.query)?;
        let source = parsed.text;
        let mut edits = Vec::new();
        for r in parsed.captures(&q, self.capture.as_deref(), e.range.clone()) {
            // Nested captures (a loop inside a loop) are each edited; an edit inside
            // a replaced node would be lost, so replacements skip nested ones.
            if self.place == Place::Replace
                && edits
                    .iter()
                    .any(|x: &Edit| x.range.start <= r.start && r.end <= x.range.end)
            {
                continue;
            }
            let line = source[..r.start].rfind('\n').map_or(0, |i| i + 1);
            let at_line_start = source[line..r.start].chars().all(char::is_whitespace);
            let edit = match self.place {
                // A node that does not start its line (`x = 0; for (...)`): the
                // template goes on a line of its own right before it.
                Place::Before if text.ends_with('\n') && !at_line_start => {
                    if source[..r.start].trim_end().ends_with(text.trim()) {
                        continue;
                    }
                    Edit {
                        range: r.start..r.start,
                        text: format!("\n{text}"),
                    }
                }
                Place::Before if text.ends_with('\n') => {
                    let indent: String = source[line..r.start].to_string();
                    // Already there, or a line like it (`#pragma unroll 2` where the
                    // template is `#pragma unroll {factor}`): the author's or an earlier
                    // rewrite's, which a second one would contradict.
                    let before = source[..line].trim_end();
                    let prev = before.rsplit('\n').next().unwrap_or("").trim();
                    let stem = self.template.split('{').next().unwrap_or("").trim();
                    let lines: String = text.lines().map(|l| format!("{indent}{l}\n")).collect();
                    if source[..line].ends_with(&lines)
                        || before.ends_with(text.trim())
                        || (!stem.is_empty() && prev.starts_with(stem))
                    {
                        continue;
                    }
                    Edit {
                        range: line..line,
                        text: lines,
                    }
                }
                Place::Before => {
                    if source[..r.start].ends_with(text) {
                        continue;
                    }
                    Edit {
                        range: r.start..r.start,
                        text: text.to_string(),
                    }
                }
                Place::After => {
                    if source[r.end..].starts_with(text) {
                        continue;
                    }
                    Edit {
                        range: r.end..r.end,
                        text: text.to_string(),
                    }
                }
                Place::Replace => {
                    if source[r.clone()] == *text {
                        continue;
                    }
                    Edit {
                        range: r,
                        text: text.to_string(),
                    }
                }
            };
            edits.push(edit);
        }
        if edits.is_empty() {
            return Err(format!(
                "the query of `{}` captures nothing to change in the entry kernel",
                self.name
            ));
        }
        Ok(edits)
    }
}
