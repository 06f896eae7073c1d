//! Aggregator settings: the validated [`Config`], what `main` runs ([`Mode`]) and [`ConfigError`].
//!
//! ```text
//!  cli.rs       Cli (flags) ──merge──▶ FileConfig ◀── file.rs (the --config file)
//!  validate.rs  FileConfig::validate ──▶ Config     (secrets.rs: token and TLS files)
//! ```
//!
//! A flag wins over the same key in the file.

mod cli;
mod file;
pub mod replication;
mod secrets;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use cli::{Cli, Command};
pub use file::{read_file, FileConfig};

use crate::notify::config::NotifyConfig;
use crate::rules::{Language, RuleError, RuleSet};

pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50051";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flumewatch";

/// A setting that cannot be used, named by its key. Not retryable: fix the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error("invalid `{key}`: {reason}")]
    InvalidAt { key: String, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Validated aggregator settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    /// None: no HTTP port.
    pub http_listen: Option<SocketAddr>,
    pub state_dir: PathBuf,
    /// Shared state in PostgreSQL, with other replicas (`None`: SQLite in `state_dir`).
    pub replication: Option<replication::Replication>,
    pub history: usize,
    pub acks: AckPolicy,
    pub shutdown_grace: Duration,
    /// The policy in force (defaults, or adjusted by the rule file).
    pub rules: Arc<RuleSet>,
    /// Receivers, routes, grouping and inhibition (no receivers: nothing is sent).
    pub notify: NotifyConfig,
    /// Sidecar tokens (empty: ingest open).
    pub ingest_tokens: crate::auth::IngestTokens,
    /// Needed for silences and reload when set.
    pub admin_token: Option<crate::secret::Secret>,
    /// Tokens any of which opens read-only queries and reflection; None: they are open.
    pub query_tokens: Option<Vec<crate::secret::Secret>>,
    /// TLS for the gRPC port (None: plaintext).
    pub tls: Option<TlsFiles>,
    pub language: Language,
    pub evaluation_interval: Duration,
    /// Sidecars gone this long are retired (`None`: never).
    pub forget_after: Option<Duration>,
}

/// When the Ingest service acknowledges a stream's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckPolicy {
    /// Most snapshots stored before an ack goes out.
    pub every: u32,
    /// How long to wait for a stream's next snapshot before acknowledging.
    pub delay: Duration,
}

impl Default for AckPolicy {
    fn default() -> Self {
        Self {
            every: 32,
            delay: Duration::ZERO,
        }
    }
}

/// PEM contents for the gRPC port's TLS, read at validation.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// Client certificates must chain to this (mTLS).
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("mtls", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// What `main` should run.
#[derive(Debug, Clone)]
pub enum Mode {
    Serve(Box<Config>),
    /// Files to check, and the poll interval detection times are shown at.
    CheckConfig(Vec<PathBuf>, std::time::Duration),
}
