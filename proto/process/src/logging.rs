//! Log set-up shared by both binaries: text for people, JSON for log collectors, the level from
//! the flag, else `RUST_LOG`, else a default; lines go through the non-blocking writer
//! (`log_writer.rs`) so a stalled stdout costs log lines, never the service.

use std::sync::OnceLock;

use crate::log_writer::{LogGuard, NonBlocking, DROP_REPORT_EVERY};

/// The installed writer, for [`log_lines_dropped`]: the subscriber is process-global, and so is
/// the one count of what it lost.
static INSTALLED: OnceLock<NonBlocking> = OnceLock::new();

/// A logging setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid `log_level`: {0}")]
    Level(String),
    #[error("invalid `log_format`: {0:?}: use text or json")]
    Format(String),
    #[error("cannot start the log writer thread: {0}")]
    Writer(#[source] std::io::Error),
}

/// Installs the global subscriber, writing to stdout through a queue of `queue_lines` lines
/// (allocated up front: the most a stalled stdout may cost). Keep the guard until exit:
/// dropping it waits (at most a couple of seconds) for queued lines to be written.
pub fn init_logging(
    format: &str,
    level: Option<&str>,
    default_level: &str,
    queue_lines: usize,
) -> Result<LogGuard, LogError> {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| LogError::Level(e.to_string()))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| default_level.into()),
    };
    if !matches!(format, "text" | "json") {
        return Err(LogError::Format(format.to_owned()));
    }
    let (writer, guard) = NonBlocking::new(
        std::io::stdout(),
        queue_lines,
        DROP_REPORT_EVERY,
        Box::new(|lost| {
            // Runs on the writer thread, whose own line goes through the (now drained) queue.
            tracing::warn!(
                dropped = lost,
                "{lost} log lines dropped while the log consumer was stalled"
            );
        }),
    )
    .map_err(LogError::Writer)?;
    let _ = INSTALLED.set(writer.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(guard)
}

/// Log lines dropped since start because stdout was not being read (0 before `init_logging`,
/// and in processes that never call it, such as tests running the library in-process).
pub fn log_lines_dropped() -> u64 {
    INSTALLED.get().map_or(0, NonBlocking::dropped)
}
