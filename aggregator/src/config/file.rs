//! The `--config` TOML file: [`FileConfig`] (unknown keys rejected) and [`read_file`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::notify::config::{NotifyFlags, RawInhibit, RawNotify, RawReceiver};

/// The `--config` file; unknown keys are rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub state_url: Option<String>,
    pub state_password_file: Option<PathBuf>,
    pub replica_name: Option<String>,
    pub failover: Option<String>,
    pub history: Option<usize>,
    pub ack_every: Option<u32>,
    pub ack_delay: Option<String>,
    pub shutdown_grace: Option<String>,
    pub rules: Option<PathBuf>,
    pub language: Option<String>,
    pub evaluation_interval: Option<String>,
    pub forget_after: Option<String>,
    pub notify: Option<RawNotify>,
    pub receivers: Option<Vec<RawReceiver>>,
    pub inhibit_rules: Option<Vec<RawInhibit>>,
    pub ingest_tokens_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub protect_queries: Option<bool>,
    pub query_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// From the command line or FLUMEWATCH_ADMIN_TOKEN only (never in a config file).
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// From the command line or FLUMEWATCH_QUERY_TOKEN only (never in a config file).
    #[serde(skip)]
    pub query_token: Option<String>,
    /// From FLUMEWATCH_STATE_PASSWORD only.
    #[serde(skip)]
    pub state_password: Option<String>,
    /// From the command line only.
    #[serde(skip)]
    pub flags: NotifyFlags,
}

pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: flumewatch_process::describe_toml_error(&text, &e),
    })?;
    // A relative rule file is found next to the config that names it.
    if let (Some(rules), Some(dir)) = (&file.rules, path.parent()) {
        if rules.is_relative() {
            file.rules = Some(dir.join(rules));
        }
    }
    Ok(file)
}
