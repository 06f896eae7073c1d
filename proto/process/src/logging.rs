//! Log set-up shared by both binaries: text for people, JSON for log collectors, the level from
//! the flag, else `RUST_LOG`, else a default.

/// A logging setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid `log_level`: {0}")]
    Level(String),
    #[error("invalid `log_format`: {0:?}: use text or json")]
    Format(String),
}

/// Installs the global subscriber.
pub fn init_logging(
    format: &str,
    level: Option<&str>,
    default_level: &str,
) -> Result<(), LogError> {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| LogError::Level(e.to_string()))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| default_level.into()),
    };
    match format {
        "text" => tracing_subscriber::fmt().with_env_filter(filter).init(),
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        other => return Err(LogError::Format(other.to_owned())),
    }
    Ok(())
}
