//! The validation context: the spec's text for errors that name their line and key,
//! and the expression, launch and source readers every section of the spec uses.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{ExprSrc, RawLaunch};
use super::{toml_text, Expr, Launch, SpecError};

/// What every check of a spec needs: its text, so errors name their line and key,
/// and the expressions parsed so far.
pub(super) struct Ctx<'a> {
    pub(super) toml: toml_text::TomlText<'a>,
    /// Every expression parsed, with its key and where it is written: each is then
    /// evaluated for the baseline, so an error names its own line and key.
    pub(super) exprs: std::cell::RefCell<Vec<(String, Range<usize>, Expr)>>,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        span: Option<&Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> SpecError {
        self.toml.err(span.cloned(), key, message)
    }

    /// Parses an expression and checks that it reads only `known` variables.
    pub(super) fn expr(
        &self,
        raw: &Spanned<ExprSrc>,
        key: &str,
        known: &BTreeSet<String>,
    ) -> Result<Expr, SpecError> {
        let span = raw.span();
        let e = Expr::parse(&raw.get_ref().0)
            .map_err(|m| self.err(Some(&span), key, format!("not an expression: {m}")))?;
        self.exprs
            .borrow_mut()
            .push((key.to_string(), span.clone(), e.clone()));
        for v in e.variables() {
            if !known.contains(&v) {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(self.err(
                    Some(&span),
                    key,
                    format!("`{}` uses `{v}`, which is neither a problem size nor a tunable (known: {})", e.src(), names.join(", ")),
                ));
            }
        }
        Ok(e)
    }

    pub(super) fn launch(
        &self,
        raw: &Spanned<RawLaunch>,
        key: &str,
        known: &BTreeSet<String>,
    ) -> Result<Launch, SpecError> {
        let span = raw.span();
        let l = raw.get_ref();
        let dims = |v: &Vec<Spanned<ExprSrc>>, name: &str| -> Result<[Expr; 3], SpecError> {
            if v.is_empty() || v.len() > 3 {
                return Err(self.err(
                    Some(&span),
                    &format!("{key}.{name}"),
                    "needs 1 to 3 expressions (x, y, z)",
                ));
            }
            let mut out = [
                Expr::parse("1").expect("literal"),
                Expr::parse("1").expect("literal"),
                Expr::parse("1").expect("literal"),
            ];
            for (i, e) in v.iter().enumerate() {
                out[i] = self.expr(e, &format!("{key}.{name}[{i}]"), known)?;
            }
            Ok(out)
        };
        Ok(Launch {
            grid: dims(&l.grid, "grid")?,
            block: dims(&l.block, "block")?,
            shared_bytes: match &l.shared_bytes {
                Some(s) => self.expr(s, &format!("{key}.shared_bytes"), known)?,
                None => Expr::parse("0").expect("literal"),
            },
        })
    }

    pub(super) fn read_source(
        &self,
        name: &str,
        key: &str,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<(PathBuf, String), SpecError> {
        let dir = self.toml.path.parent().unwrap_or(Path::new("."));
        let p = dir.join(name);
        let text = read(&p).map_err(|e| {
            self.err(
                None,
                key,
                format!("cannot read source {}: {e}", p.display()),
            )
        })?;
        Ok((p, text))
    }
}

pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
