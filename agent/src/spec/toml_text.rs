//! The one way a TOML file's errors name their place: every input nightshift reads
//! as TOML (kernel specs, `budgets.toml`, patterns) turns a byte span into a line and
//! the dotted key written there, and reports a [`SpecError`] with the file, the line
//! and the key.

use std::ops::Range;
use std::path::Path;

use super::SpecError;

/// A TOML file's text and where it was read from.
#[derive(Debug, Clone, Copy)]
pub struct TomlText<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl<'a> TomlText<'a> {
    pub fn new(text: &'a str, path: &'a Path) -> Self {
        TomlText { text, path }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    /// An error about `key` (none when empty) written at `span`.
    pub fn err(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line(s.start)),
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        }
    }

    /// Parses the whole text, a TOML or type error naming its line and its key.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, SpecError> {
        toml::from_str(self.text).map_err(|e| self.toml_error(&e))
    }

    /// A TOML or type error from serde, with the dotted key it is about recovered
    /// from the text (serde's messages name only the last part of the key).
    pub fn toml_error(&self, e: &toml::de::Error) -> SpecError {
        let message = e.message().trim().to_string();
        let span = e.span();
        SpecError {
            path: self.path.to_path_buf(),
            line: span.as_ref().map(|s| self.line(s.start)),
            key: span.and_then(|s| self.key_at(s.start, &message)),
            message,
        }
    }

    /// The dotted key written on the line holding `offset`: its table header plus
    /// the key before `=`, or the header itself on a header line.
    fn key_at(&self, offset: usize, message: &str) -> Option<String> {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[start..end].trim();
        if line.starts_with('[') {
            return header_name(line);
        }
        let name = match line.split_once('=') {
            Some((k, _)) => k.trim().to_string(),
            // An unknown key in an inline table spanning lines: the message names it.
            None => message.split('`').nth(1)?.to_string(),
        };
        let header = self.text[..start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .and_then(header_name);
        Some(match header {
            Some(h) => format!("{h}.{name}"),
            None => name,
        })
    }
}

/// `run` of `[run]`, `args` of `[[args]]`.
fn header_name(line: &str) -> Option<String> {
    let inner = line.trim_start_matches('[');
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_the_line_and_the_dotted_key() {
        let text = "[run]\nwall_hours = 1\n\n[limits]\npattern_minutes = \"ten\"\n";
        let t = TomlText::new(text, Path::new("budgets.toml"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Limits {
            pattern_minutes: f64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Raw {
            run: toml::Value,
            limits: Limits,
        }
        let e = t.parse::<Raw>().unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("limits.pattern_minutes"), "{e}");
        let e = t.err(Some(6..10), "", "no key");
        assert_eq!((e.line, e.key), (Some(2), None));
    }
}
