//! The kernel's parse tree (tree-sitter with the CUDA grammar): the entry kernel,
//! its parameters and their qualifiers, its `__launch_bounds__`, its loops and the
//! pragmas before them, each with the byte range an edit replaces.

use std::ops::Range;

use tree_sitter::{Node, Parser, Query, QueryCursor, StreamingIterator, Tree};

use super::RewriteError;

/// A source and its tree.
pub struct Parsed<'a> {
    pub text: &'a str,
    tree: Tree,
}

/// A parameter of the entry kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// The whole `parameter_declaration`.
    pub range: Range<usize>,
    /// Declared as a pointer (`T* p`, `T *p`).
    pub pointer: bool,
    /// `const` on what it points to (`const T*` or `T const*`).
    pub pointee_const: bool,
    /// `__restrict__` (or `__restrict`, `restrict`) on the pointer.
    pub restrict: bool,
    /// Where ` __restrict__` goes: right after the (last) `*`.
    pub after_star: Option<usize>,
}

/// A loop of the entry kernel's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    pub range: Range<usize>,
    /// 1-based line of its first byte.
    pub line: usize,
    /// No loop inside it.
    pub inner: bool,
    /// The `#pragma unroll ...` right before it, if any.
    pub pragma: Option<String>,
    /// A statement of a `{ }` block (not the unbraced body of an `if` or a loop).
    pub in_block: bool,
}

/// The entry kernel, as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The `function_definition`.
    pub range: Range<usize>,
    /// Where a `__launch_bounds__(...) ` is inserted: before the declarator.
    pub declarator_start: usize,
    /// An existing `__launch_bounds__(...)`: its range and its arguments' text.
    pub launch_bounds: Option<(Range<usize>, Vec<String>)>,
    pub params: Vec<Param>,
    pub loops: Vec<Loop>,
    /// Declared `__global__` (a kernel, not a device function).
    pub global: bool,
    /// Inside `extern "C"` (its name is not mangled, so the module exports it).
    pub extern_c: bool,
}

/// Compiles a tree-sitter query against the CUDA grammar (what a pattern's `query`
/// is checked with at load); the error says where it fails.
pub fn query(text: &str) -> Result<Query, String> {
    Query::new(&tree_sitter_cuda::LANGUAGE.into(), text).map_err(|e| {
        format!(
            "the query does not compile against the CUDA grammar at row {}, column {}: {:?} {}",
            e.row + 1,
            e.column + 1,
            e.kind,
            e.message
        )
    })
}

/// Parses CUDA C++ (the `tree-sitter-cuda` grammar).
pub fn parse(text: &str) -> Result<Parsed<'_>, RewriteError> {
    let mut p = Parser::new();
    p.set_language(&tree_sitter_cuda::LANGUAGE.into())
        .map_err(|e| RewriteError::Grammar(e.to_string()))?;
    let tree = p
        .parse(text, None)
        .ok_or_else(|| RewriteError::Grammar("the parser gave up".into()))?;
    Ok(Parsed { text, tree })
}

fn walk<'t>(n: Node<'t>, f: &mut dyn FnMut(Node<'t>) -> bool) {
    if !f(n) {
        return;
    }
    let mut c = n.walk();
    for ch in n.children(&mut c) {
        walk(ch, f);
    }
}

fn is_loop(kind: &str) -> bool {
    matches!(
        kind,
        "for_statement" | "while_statement" | "do_statement" | "for_range_loop"
    )
}

impl Parsed<'_> {
    /// The byte ranges the parser could not read (error and missing nodes).
    pub fn errors(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        walk(self.tree.root_node(), &mut |n| {
            if n.is_error() || n.is_missing() {
                out.push(n.byte_range());
                return false;
            }
            n.has_error()
        });
        out
    }

    /// The byte ranges of the nodes `query` captures as `capture` (every capture
    /// when None) inside `within`, in source order, without duplicates.
    pub fn captures(
        &self,
        query: &Query,
        capture: Option<&str>,
        within: Range<usize>,
    ) -> Vec<Range<usize>> {
        let index = capture.and_then(|c| query.capture_index_for_name(c));
        let mut cursor = QueryCursor::new();
        cursor.set_byte_range(within.clone());
        let mut out: Vec<Range<usize>> = Vec::new();
        let mut matches = cursor.matches(query, self.tree.root_node(), self.text.as_bytes());
        while let Some(m) = matches.next() {
            for c in m.captures {
                let r = c.node.byte_range();
                let wanted = index.is_none_or(|i| c.index == i);
                if wanted && r.start >= within.start && r.end <= within.end && !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        // Source order; of nodes that start together, the outer one first.
        out.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
        out
    }

    fn text_of(&self, n: Node) -> &str {
        &self.text[n.byte_range()]
    }

    /// The definition of the kernel named `entry` (the last, if several).
    pub fn entry(&self, entry: &str) -> Option<Entry> {
        let mut found = None;
        walk(self.tree.root_node(), &mut |n| {
            if n.kind() != "function_definition" {
                return true;
            }
            let Some(decl) = n.child_by_field_name("declarator") else {
                return false;
            };
            let name = function_name(decl).map(|x| self.text_of(x));
            if name == Some(entry) {
                found = Some(self.entry_of(n, decl, entry));
            }
            false
        });
        found
    }

    fn entry_of(&self, def: Node, decl: Node, name: &str) -> Entry {
        let mut launch_bounds = None;
        let mut c = def.walk();
        for ch in def.children(&mut c) {
            if ch.kind() == "launch_bounds" {
                let mut cc = ch.walk();
                let args = ch
                    .named_children(&mut cc)
                    .map(|a| self.text_of(a).to_string())
                    .collect();
                launch_bounds = Some((ch.byte_range(), args));
            }
        }
        let params = decl
            .child_by_field_name("parameters")
            .map(|ps| {
                let mut c = ps.walk();
                ps.named_children(&mut c)
                    .filter(|p| p.kind() == "parameter_declaration")
                    .filter_map(|p| self.param(p))
                    .collect()
            })
            .unwrap_or_default();
        let loops = def
            .child_by_field_name("body")
            .map(|b| self.loops(b))
            .unwrap_or_default();
        let global = self.text[def.start_byte()..decl.start_byte()]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "__global__");
        let mut extern_c = false;
        let mut up = def.parent();
        while let Some(p) = up {
            if p.kind() == "linkage_specification" {
                let value = p.child_by_field_name("value").map(|v| self.text_of(v));
                extern_c |= value == Some("\"C\"");
            }
            up = p.parent();
        }
        Entry {
            name: name.to_string(),
            range: def.byte_range(),
            declarator_start: decl.start_byte(),
            launch_bounds,
            params,
            loops,
            global,
            extern_c,
        }
    }

    fn param(&self, p: Node) -> Option<Param> {
        let mut pointer = false;
        let mut restrict = false;
        let mut after_star = None;
        let mut pointee_const = false;
        let mut c = p.walk();
        // Qualifiers before the declarator qualify the pointee.
        for ch in p.children(&mut c) {
            if ch.kind() == "type_qualifier" && self.text_of(ch) == "const" {
                pointee_const = true;
            }
        }
        let mut d = p.child_by_field_name("declarator")?;
        let name = loop {
            match d.kind() {
                "pointer_declarator" => {
                    pointer = true;
                    let mut c = d.walk();
                    for ch in d.children(&mut c) {
                        match (ch.kind(), self.text_of(ch)) {
                            ("*", _) => after_star = Some(ch.end_byte()),
                            ("type_qualifier", q) if q.contains("restrict") => restrict = true,
                            _ => {}
                        }
                    }
                    d = d.child_by_field_name("declarator")?;
                }
                "identifier" => break self.text_of(d).to_string(),
                _ => return None,
            }
        };
        // `T const* p`: the type's own qualifier after it.
        if let Some(t) = p.child_by_field_name("type") {
            let after = &self.text[t.end_byte()..after_star.unwrap_or(t.end_byte())];
            pointee_const |= after.split_whitespace().any(|w| w == "const");
        }
        Some(Param {
            name,
            range: p.byte_range(),
            pointer,
            pointee_const,
            restrict,
            after_star,
        })
    }

    fn loops(&self, body: Node) -> Vec<Loop> {
        let mut out = Vec::new();
        walk(body, &mut |n| {
            if is_loop(n.kind()) {
                let mut inner = true;
                let mut c = n.walk();
                for ch in n.children(&mut c) {
                    walk(ch, &mut |m| {
                        if is_loop(m.kind()) {
                            inner = false;
                        }
                        inner
                    });
                }
                out.push(Loop {
                    range: n.byte_range(),
                    line: n.start_position().row + 1,
                    inner,
                    pragma: self.pragma_before(n.start_byte()),
                    in_block: n.parent().is_some_and(|p| p.kind() == "compound_statement"),
                });
            }
            true
        });
        out
    }

    /// The `#pragma unroll...` on the last non-blank line before `at` (read from
    /// the text: the grammar misplaces a pragma inside an unbraced loop body).
    fn pragma_before(&self, at: usize) -> Option<String> {
        let line_start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        if !self.text[line_start..at].trim().is_empty() {
            return None;
        }
        let before = self.text[..line_start].trim_end();
        let prev = before.rsplit('\n').next()?.trim();
        prev.strip_prefix("#pragma")
            .map(str::trim)
            .filter(|p| p.starts_with("unroll") || p.starts_with("nounroll"))
            .map(str::to_string)
    }
}

/// The identifier a function declarator declares.
fn function_name(decl: Node) -> Option<Node> {
    let mut d = decl;
    loop {
        if d.kind() == "function_declarator" {
            let inner = d.child_by_field_name("declarator")?;
            return (inner.kind() == "identifier").then_some(inner);
        }
        d = d.child_by_field_name("declarator")?;
    }
}
