//! Sidecar settings: command line and TOML file (flags win) → `validate()` → [`Config`].
//!
//! - `settings`: every flag and file key, declared once, generating [`Cli`] and [`FileConfig`];
//! - `cli`: the command line over the `--config` file ([`Cli::load`]);
//! - `file`: reading files: the `--config` TOML, and the token, PEM and hostname validation needs;
//! - `targets`: the aggregators reported to (the file's string-or-list, no address twice);
//! - `validate`: [`FileConfig::validate`], defaults and rules between settings;
//! - `values`: parsing and checking single values (agents, URLs, names, labels, durations).
//!
//! This module holds what they produce: the validated [`Config`] and its parts, and [`ConfigError`].

mod cli;
mod file;
mod settings;
mod targets;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use settings::{Cli, FileConfig};
pub(crate) use values::is_plain_name;

pub const DEFAULT_FLUME_URL: &str = "http://127.0.0.1:41414/metrics";
pub const DEFAULT_AGGREGATOR: &str = "http://127.0.0.1:50051";

/// A setting that cannot be used, named by its key. Not retryable: fix the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One Flume agent to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlumeEndpoint {
    pub name: String,
    pub url: url::Url,
}

/// Validated sidecar settings: everything downstream takes this, never the raw forms.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every aggregator reported to, at least one, none twice: each gets every snapshot over
    /// its own stream, with its own buffer, replay window and backoff.
    pub aggregators: Vec<String>,
    /// The explicit `--flume` entries (empty when only discovery finds agents).
    pub agents: Vec<FlumeEndpoint>,
    /// `--discover`: also poll the Flume agents found in the process table.
    pub discover: Option<Discovery>,
    pub interval: Duration,
    pub host: String,
    pub labels: BTreeMap<String, String>,
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub buffer: usize,
    pub replay_window: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Sent as `authorization: Bearer …` on the ingest stream.
    pub token: Option<Token>,
    /// TLS to the aggregator (None: plaintext).
    pub tls: Option<SidecarTls>,
}

/// How `--discover` looks for agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// How often the process table is scanned again for agents started since.
    pub interval: Duration,
    /// The process table: [`PROC_ROOT`] outside tests, which point it at a directory of fake
    /// `<pid>/cmdline` files.
    pub proc_root: PathBuf,
}

/// Where the process table is read from.
pub const PROC_ROOT: &str = "/proc";

/// PEM contents for TLS to the aggregator, read at validation.
#[derive(Clone)]
pub struct SidecarTls {
    pub ca: Vec<u8>,
    /// Client certificate and key, for mTLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for SidecarTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarTls")
            .field("mtls", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// A sidecar token; prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
