//! What a person watching the run sees: on a terminal, one line per event and a
//! status line (kernel, iteration, best speedup so far, spend against budget, what
//! runs now) redrawn in place; elsewhere, the same lines as `tracing` events (JSON).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct View {
    tty: bool,
    /// The status line without the worker's progress.
    prefix: Arc<Mutex<String>>,
}

impl View {
    /// A terminal view when stderr is one.
    pub fn stderr() -> View {
        View {
            tty: std::io::stderr().is_terminal(),
            prefix: Arc::default(),
        }
    }

    /// No status line; lines go to `tracing` only (tests, `--json`).
    pub fn quiet() -> View {
        View {
            tty: false,
            prefix: Arc::default(),
        }
    }

    fn draw(&self, detail: &str) {
        if !self.tty {
            return;
        }
        let prefix = self
            .prefix
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut line = if detail.is_empty() {
            prefix
        } else {
            format!("{prefix} · {detail}")
        };
        let width = 140;
        if line.chars().count() > width {
            line = line.chars().take(width - 1).collect::<String>() + "…";
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    pub fn set_prefix(&self, s: &str) {
        *self.prefix.lock().unwrap_or_else(|p| p.into_inner()) = s.to_string();
        self.draw("");
    }

    /// One event of the run, kept in the scrollback above the status line.
    pub fn line(&self, s: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\r\x1b[2K{s}");
            drop(err);
            self.draw("");
        } else {
            tracing::info!("{s}");
        }
    }

    pub fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }

    /// The worker's progress (compiling, validating, measuring), after the status.
    pub fn progress(&self) -> Box<dyn FnMut(&str) + Send> {
        let v = self.clone();
        Box::new(move |s: &str| v.draw(s))
    }
}
