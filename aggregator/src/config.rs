//! Aggregator settings: command line and TOML file (flags win) → `validate()` → [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;

use crate::notify::config::{
    self as notify_config, NotifyConfig, NotifyFlags, RawInhibit, RawNotify, RawReceiver,
};
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

/// Command line of `flumewatch-aggregator`. Every flag can also be set in the `--config` file
/// (same name, with `_` for `-`); a flag given here wins.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "flumewatch-aggregator",
    version,
    about = "Receives snapshots from flumewatch sidecars, keeps the fleet's state and answers grpcurl"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for the gRPC port (Ingest, Fleet, health, reflection) [default: 0.0.0.0:50051].
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// Address for the HTTP port: /metrics (Prometheus), /-/healthy, /-/ready
    /// [default: 0.0.0.0:9651; "off" disables it].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Log format: text (default, for people) or json (for log collectors).
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub log_format: String,
    /// Log level or filter, e.g. info, debug, flumewatch_aggregator=debug [default: info, or
    /// the RUST_LOG environment variable].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Directory for the aggregator's durable state; created if missing
    /// [default: /var/lib/flumewatch].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Recent snapshots kept per agent for GetAgent's history [default: 10].
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// How long a stopping aggregator waits for streams to close [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Alert rule file (TOML); without one the default Flume policy applies.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Language of alert summaries: zh (default) or en.
    #[arg(long, value_name = "zh|en")]
    pub language: Option<String>,
    /// How often rules are re-evaluated without new data (hold-downs, silent sidecars,
    /// clusters) [default: 5s]. Every snapshot is also judged when it arrives.
    #[arg(long, value_name = "DURATION")]
    pub evaluation_interval: Option<String>,
    /// DingTalk robot webhook (https://oapi.dingtalk.com/robot/send?access_token=…) for the
    /// simple one-robot setup; more robots and routes go in the config file.
    #[arg(
        long,
        value_name = "URL",
        env = "FLUMEWATCH_DINGTALK_WEBHOOK",
        hide_env_values = true
    )]
    pub dingtalk_webhook: Option<String>,
    /// The robot's signing secret (SEC…), if 加签 is on.
    #[arg(
        long,
        value_name = "SECRET",
        env = "FLUMEWATCH_DINGTALK_SECRET",
        hide_env_values = true
    )]
    pub dingtalk_secret: Option<String>,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: sidecars must present a client certificate it signed (mTLS).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// File of accepted sidecar tokens (one per line, optionally followed by the only host it
    /// may report for); without it any sidecar may report.
    #[arg(long, value_name = "FILE")]
    pub ingest_tokens_file: Option<PathBuf>,
    /// Token required for silences and reload (read-only queries stay open).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLUMEWATCH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Read-only queries and reflection also need a token: the query token or the admin
    /// token (health stays open for probes).
    #[arg(long)]
    pub protect_queries: bool,
    /// Token for read-only queries when they are protected (the admin token works too).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLUMEWATCH_QUERY_TOKEN",
        hide_env_values = true
    )]
    pub query_token: Option<String>,
    /// How long a new alert group waits for more alerts before its first message [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub group_wait: Option<String>,
    /// How long a group waits before telling about changes [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub group_interval: Option<String>,
    /// How long before a still-firing group is notified again [default: 4h].
    #[arg(long, value_name = "DURATION")]
    pub repeat_interval: Option<String>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Validate aggregator config and rule files without starting: on error, exit 64 naming the
    /// file, the key and what is wrong; on success, print one line per rule.
    CheckConfig {
        /// Aggregator config files (their `rules` file is checked too) or rule files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// The `--config` file; unknown keys are rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub history: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub rules: Option<PathBuf>,
    pub language: Option<String>,
    pub evaluation_interval: Option<String>,
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
    /// From the command line only.
    #[serde(skip)]
    pub flags: NotifyFlags,
}

/// Validated aggregator settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    /// None: no HTTP port.
    pub http_listen: Option<SocketAddr>,
    pub state_dir: PathBuf,
    pub history: usize,
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
    CheckConfig(Vec<PathBuf>),
}

impl Cli {
    pub fn load(self) -> Result<Mode, ConfigError> {
        if let Some(Command::CheckConfig { files }) = self.command {
            return Ok(Mode::CheckConfig(files));
        }
        Ok(Mode::Serve(Box::new(self.merge()?.validate()?)))
    }

    /// The config file (if any) with these flags laid over it, not yet validated: a caller
    /// such as the demo may fill in defaults of its own first.
    pub fn merge(self) -> Result<FileConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(FileConfig {
            grpc_listen: self.grpc_listen.or(file.grpc_listen),
            http_listen: self.http_listen.or(file.http_listen),
            state_dir: self.state_dir.or(file.state_dir),
            history: self.history.or(file.history),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace),
            rules: self.rules.or(file.rules),
            language: self.language.or(file.language),
            evaluation_interval: self.evaluation_interval.or(file.evaluation_interval),
            notify: file.notify,
            receivers: file.receivers,
            inhibit_rules: file.inhibit_rules,
            ingest_tokens_file: self.ingest_tokens_file.or(file.ingest_tokens_file),
            admin_token_file: file.admin_token_file,
            protect_queries: self
                .protect_queries
                .then_some(true)
                .or(file.protect_queries),
            query_token_file: file.query_token_file,
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            admin_token: self.admin_token,
            query_token: self.query_token,
            flags: NotifyFlags {
                dingtalk_webhook: self.dingtalk_webhook,
                dingtalk_secret: self.dingtalk_secret,
                group_wait: self.group_wait,
                group_interval: self.group_interval,
                repeat_interval: self.repeat_interval,
            },
        })
    }
}

/// A token given directly (flag or environment) or in a file; at least 16 characters.
fn token_from(
    key: &'static str,
    direct: Option<String>,
    file_key: &'static str,
    file: Option<&Path>,
) -> Result<Option<crate::secret::Secret>, ConfigError> {
    let token = match (direct, file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| invalid(file_key, format!("{}: {e}", path.display())))?
            .trim()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if token.len() < 16 {
        return Err(invalid(key, "must be at least 16 characters"));
    }
    Ok(Some(crate::secret::Secret::new(token)))
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

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.validate_with(true)
    }

    /// `probe_state_dir`: create the state directory and prove it writable (not for
    /// check-config, which must not touch the machine).
    pub fn validate_with(self, probe_state_dir: bool) -> Result<Config, ConfigError> {
        let listen = self.grpc_listen.as_deref().unwrap_or(DEFAULT_GRPC_LISTEN);
        let grpc_listen: SocketAddr = listen
            .parse()
            .map_err(|_| invalid("grpc_listen", format!("{listen:?} is not IP:PORT")))?;
        let http_listen = match self.http_listen.as_deref().unwrap_or("0.0.0.0:9651") {
            "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid("http_listen", format!("{text:?} is not IP:PORT (or off)"))
            })?),
        };
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        if probe_state_dir {
            check_state_dir(&state_dir)?;
        }
        let history = self.history.unwrap_or(10);
        if history > 10_000 {
            return Err(invalid("history", "at most 10000 snapshots per agent"));
        }
        let shutdown_grace = match self.shutdown_grace.as_deref() {
            Some(text) => parse_duration("shutdown_grace", text)?,
            None => Duration::from_secs(5),
        };
        let language = match self.language.as_deref() {
            None | Some("zh") => Language::Zh,
            Some("en") => Language::En,
            Some(other) => return Err(invalid("language", format!("{other:?}: use zh or en"))),
        };
        let evaluation_interval = match self.evaluation_interval.as_deref() {
            Some(text) => parse_duration("evaluation_interval", text)?,
            None => Duration::from_secs(5),
        };
        if evaluation_interval < Duration::from_millis(100) {
            return Err(invalid("evaluation_interval", "must be at least 100ms"));
        }
        let rules = Arc::new(RuleSet::load(self.rules.as_deref())?);
        let notify = notify_config::validate(
            self.notify.unwrap_or_default(),
            self.receivers.unwrap_or_default(),
            self.inhibit_rules,
            self.flags,
            language,
        )
        .map_err(|(key, reason)| ConfigError::InvalidAt { key, reason })?;
        let ingest_tokens = match &self.ingest_tokens_file {
            None => crate::auth::IngestTokens::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("ingest_tokens_file", format!("{}: {e}", path.display()))
                })?;
                crate::auth::IngestTokens::parse(&text).map_err(|e| {
                    invalid("ingest_tokens_file", format!("{}: {e}", path.display()))
                })?
            }
        };
        let admin_token = token_from(
            "admin_token",
            self.admin_token,
            "admin_token_file",
            self.admin_token_file.as_deref(),
        )?;
        let query_token = token_from(
            "query_token",
            self.query_token,
            "query_token_file",
            self.query_token_file.as_deref(),
        )?;
        let query_tokens = if self.protect_queries.unwrap_or(false) {
            let tokens: Vec<_> = admin_token.iter().chain(&query_token).cloned().collect();
            if tokens.is_empty() {
                return Err(invalid(
                    "protect_queries",
                    "needs a query token or an admin token to protect the queries with",
                ));
            }
            Some(tokens)
        } else {
            if query_token.is_some() {
                tracing::warn!(
                    "a query token is set but protect_queries is off: queries stay open"
                );
            }
            None
        };
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: read("tls_cert", cert)?,
                key: read("tls_key", key)?,
                client_ca: self
                    .tls_client_ca
                    .as_deref()
                    .map(|p| read("tls_client_ca", p))
                    .transpose()?,
            }),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(invalid("tls_client_ca", "needs tls_cert and tls_key"))
            }
            (None, None) => None,
            _ => return Err(invalid("tls_cert", "give both tls_cert and tls_key")),
        };

        Ok(Config {
            tls,
            ingest_tokens,
            admin_token,
            query_tokens,
            notify,
            grpc_listen,
            http_listen,
            state_dir,
            history,
            shutdown_grace,
            rules,
            language,
            evaluation_interval,
        })
    }
}

/// Created if missing and proven writable now, not at the first write hours later.
fn check_state_dir(dir: &Path) -> Result<(), ConfigError> {
    let fail = |why: String| invalid("state_dir", format!("{}: {why}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = dir.join(".flumewatch-write-probe");
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn parse_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| invalid(key, format!("{text:?}: {e} (e.g. 10s, 500ms, 1m)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Mode, ConfigError> {
        Cli::try_parse_from(std::iter::once("flumewatch-aggregator").chain(args.iter().copied()))
            .expect("flags parse")
            .load()
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("fw-agg-cfg-{}-{name}", std::process::id()))
    }

    #[test]
    fn flags_and_file_merge_with_flags_winning() {
        let dir = tmp("merge");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("aggregator.toml");
        std::fs::write(
            &file,
            format!(
                "grpc_listen = \"127.0.0.1:6000\"\nhistory = 3\nstate_dir = {:?}\n",
                dir.join("state")
            ),
        )
        .unwrap();
        let Mode::Serve(config) =
            load(&["--config", file.to_str().unwrap(), "--history", "7"]).unwrap()
        else {
            panic!("not serve mode")
        };
        assert_eq!(config.grpc_listen.port(), 6000);
        assert_eq!(config.history, 7);
        assert!(dir.join("state").is_dir());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tmp("bad");
        let state = dir.to_str().unwrap();
        let err = |args: &[&str]| load(args).expect_err("rejected").to_string();
        assert!(err(&["--grpc-listen", "nowhere", "--state-dir", state]).contains("`grpc_listen`"));
        assert!(err(&["--state-dir", "/proc/flumewatch"]).contains("`state_dir`"));
        assert!(err(&["--state-dir", state, "--shutdown-grace", "x"]).contains("`shutdown_grace`"));
        let file = dir.join("typo.toml");
        std::fs::write(&file, "grpc_lisen = \"x\"\n").unwrap();
        assert!(err(&["--config", file.to_str().unwrap()]).contains("grpc_lisen"));
        std::fs::remove_dir_all(dir).ok();
    }
}
