//! The `nightshift` binary: parses arguments and maps the outcome to an exit code.
use std::io::IsTerminal;

fn main() {
    // The daemon logs what it does; other commands only warn. NIGHTSHIFT_LOG
    // (e.g. `nightshift=debug`) overrides.
    let daemon = std::env::args().nth(1).as_deref() == Some("run");
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
        .unwrap_or_else(|_| if daemon { "nightshift=info" } else { "warn" }.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        // Structured logs where no one is watching: one JSON object per line.
        builder.json().init();
    }
    std::process::exit(nightshift::cli::main());
}
