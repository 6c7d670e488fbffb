//! Logging: JSON lines (what CloudWatch and Lambda's JSON log format expect),
//! level from `RUST_LOG` (default `info`), no timestamps of our own since the
//! platform adds them, and no ANSI colours.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init() {
    let filter =
        EnvFilter::try_from_env(crate::config::RUST_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}
