//! Sidecar settings: command line and TOML file (flags win) → `validate()` → [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

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

/// Command line of `flumewatch-sidecar`. Every flag can also be set in the `--config` file
/// (same name, with `_` for `-`); a flag given here wins.
#[derive(Debug, Default, Parser)]
#[command(
    name = "flumewatch-sidecar",
    version,
    about = "Polls the Flume agents on this host and streams typed snapshots to the flumewatch aggregator"
)]
pub struct Cli {
    /// TOML file with any of the settings below.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC address of the aggregator [default: http://127.0.0.1:50051].
    #[arg(long, value_name = "http://HOST:PORT")]
    pub aggregator: Option<String>,
    /// A Flume agent's metrics endpoint, optionally named (repeatable). The name defaults to
    /// "flume-PORT" [default: http://127.0.0.1:41414/metrics].
    #[arg(long = "flume", value_name = "[NAME=]URL")]
    pub flume: Vec<String>,
    /// How often each agent is polled [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Host name reported for these agents [default: this machine's hostname].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Label attached to every agent, e.g. cluster=bj-log or env=prod (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Per-poll timeout; must be shorter than the interval [default: 3s, or half the interval].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Largest metrics body accepted, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Snapshots kept while the aggregator has not acknowledged them; older ones are dropped
    /// (and counted) beyond this [default: 2000].
    #[arg(long, value_name = "N")]
    pub buffer: Option<usize>,
    /// How long acknowledged snapshots are kept (within --buffer) to replay to an aggregator
    /// that restarted and lost them; 0s turns it off [default: 2m].
    #[arg(long, value_name = "DURATION")]
    pub replay_window: Option<String>,
    /// First reconnect delay after losing the aggregator [default: 500ms].
    #[arg(long, value_name = "DURATION")]
    pub reconnect_min: Option<String>,
    /// Longest reconnect delay (the backoff doubles up to this, with jitter) [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub reconnect_max: Option<String>,
    /// Log format: text (default, for people) or json (for log collectors).
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub log_format: String,
    /// Log level or filter, e.g. info or debug [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// The token the aggregator enrolled this sidecar with (or FLUMEWATCH_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLUMEWATCH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A file holding that token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA that signed the aggregator's certificate (use an https:// --aggregator).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// The `--config` file; unknown keys are rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub aggregator: Option<String>,
    pub flume: Option<Vec<String>>,
    pub interval: Option<String>,
    pub host: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub timeout: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub buffer: Option<usize>,
    pub replay_window: Option<String>,
    pub reconnect_min: Option<String>,
    pub reconnect_max: Option<String>,
    pub token_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// From the command line or FLUMEWATCH_TOKEN only (never in a config file).
    #[serde(skip)]
    pub token: Option<String>,
}

/// One Flume agent to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlumeEndpoint {
    pub name: String,
    pub url: reqwest::Url,
}

/// Validated sidecar settings: everything downstream takes this, never the raw forms.
#[derive(Debug, Clone)]
pub struct Config {
    pub aggregator: String,
    pub agents: Vec<FlumeEndpoint>,
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

impl Cli {
    /// Reads the `--config` file if any, applies the flags over it and validates the result.
    pub fn load(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        self.merge(file)?.validate()
    }

    fn merge(self, file: FileConfig) -> Result<FileConfig, ConfigError> {
        let mut labels = file.labels.unwrap_or_default();
        for pair in self.label {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid("label", format!("{pair:?}: expected KEY=VALUE")))?;
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(FileConfig {
            aggregator: self.aggregator.or(file.aggregator),
            flume: if self.flume.is_empty() {
                file.flume
            } else {
                Some(self.flume)
            },
            interval: self.interval.or(file.interval),
            host: self.host.or(file.host),
            labels: Some(labels),
            timeout: self.timeout.or(file.timeout),
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes),
            buffer: self.buffer.or(file.buffer),
            replay_window: self.replay_window.or(file.replay_window),
            reconnect_min: self.reconnect_min.or(file.reconnect_min),
            reconnect_max: self.reconnect_max.or(file.reconnect_max),
            token_file: self.token_file.or(file.token_file),
            tls_ca: self.tls_ca.or(file.tls_ca),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            token: self.token,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: flumewatch_process::describe_toml_error(&text, &e),
    })
}

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let aggregator = self
            .aggregator
            .unwrap_or_else(|| DEFAULT_AGGREGATOR.to_owned());
        check_http_url("aggregator", &aggregator)?;
        let agents = parse_agents(
            self.flume
                .unwrap_or_else(|| vec![DEFAULT_FLUME_URL.to_owned()]),
        )?;
        let interval = parse_duration(
            "interval",
            self.interval.as_deref(),
            Duration::from_secs(10),
        )?;
        if interval < Duration::from_millis(100) {
            return Err(invalid("interval", "must be at least 100ms"));
        }
        let default_timeout = Duration::from_secs(3).min(interval / 2);
        let timeout = parse_duration("timeout", self.timeout.as_deref(), default_timeout)?;
        if timeout.is_zero() || timeout >= interval {
            return Err(invalid(
                "timeout",
                format!(
                    "must be above 0 and shorter than the interval ({})",
                    humantime::format_duration(interval)
                ),
            ));
        }
        let host = match self.host {
            Some(host) => host,
            None => local_hostname()
                .ok_or_else(|| invalid("host", "the hostname could not be read; set --host"))?,
        };
        check_name("host", &host)?;
        let labels = self.labels.unwrap_or_default();
        for (key, value) in &labels {
            check_label(key, value)?;
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        let buffer = self.buffer.unwrap_or(2000);
        if buffer == 0 {
            return Err(invalid("buffer", "must be at least 1"));
        }
        let replay_window = parse_duration(
            "replay_window",
            self.replay_window.as_deref(),
            Duration::from_secs(120),
        )?;
        let reconnect_min = parse_duration(
            "reconnect_min",
            self.reconnect_min.as_deref(),
            Duration::from_millis(500),
        )?;
        let reconnect_max = parse_duration(
            "reconnect_max",
            self.reconnect_max.as_deref(),
            Duration::from_secs(30),
        )?;
        if reconnect_min.is_zero() || reconnect_min > reconnect_max {
            return Err(invalid(
                "reconnect_min",
                "must be above 0 and not above reconnect_max",
            ));
        }
        let token = match (self.token, &self.token_file) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid("token_file", format!("{}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid("token", "must be one word without spaces"));
        }
        let token = token.map(Token);
        let read = |key: &str, path: &Path| {
            std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((read("tls_cert", cert)?, read("tls_key", key)?)),
            (None, None) => None,
            _ => return Err(invalid("tls_cert", "give both tls_cert and tls_key")),
        };
        let tls = match &self.tls_ca {
            Some(ca) => Some(SidecarTls {
                ca: read("tls_ca", ca)?,
                identity,
            }),
            None if identity.is_some() => {
                return Err(invalid(
                    "tls_ca",
                    "a client certificate needs the aggregator's CA (tls_ca)",
                ))
            }
            None => None,
        };
        if tls.is_some() != aggregator.starts_with("https://") {
            return Err(invalid(
                "aggregator",
                "use https:// together with tls_ca, and http:// without it",
            ));
        }
        Ok(Config {
            tls,
            aggregator,
            agents,
            interval,
            host,
            labels,
            timeout,
            max_body_bytes,
            buffer,
            replay_window,
            reconnect_min,
            reconnect_max,
            token,
        })
    }
}

fn parse_agents(specs: Vec<String>) -> Result<Vec<FlumeEndpoint>, ConfigError> {
    if specs.is_empty() {
        return Err(invalid("flume", "at least one agent endpoint is needed"));
    }
    let mut agents: Vec<FlumeEndpoint> = Vec::new();
    for spec in specs {
        // "NAME=URL", but a URL may itself hold '=' in its query: only a prefix without ':' or '/' is a name.
        let (name, url_text) = match spec.split_once('=') {
            Some((name, url)) if !name.contains([':', '/']) => (Some(name.trim()), url.trim()),
            _ => (None, spec.trim()),
        };
        let url = check_http_url("flume", url_text)?;
        let name = match name {
            Some(name) => name.to_owned(),
            None => format!("flume-{}", url.port_or_known_default().unwrap_or(80)),
        };
        check_name("flume", &name)?;
        if agents.iter().any(|a| a.name == name) {
            return Err(invalid(
                "flume",
                format!("agent name {name:?} is used twice; name them with NAME=URL"),
            ));
        }
        agents.push(FlumeEndpoint { name, url });
    }
    Ok(agents)
}

fn check_http_url(key: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text).map_err(|e| invalid(key, format!("{text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            key,
            format!("{text:?}: expected http://HOST:PORT or https://HOST:PORT"),
        ));
    }
    Ok(url)
}

/// Host and agent names end up in labels, messages and file names: keep them plain.
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 128 || !name.chars().all(plain) {
        return Err(invalid(
            key,
            format!("{name:?}: use 1-128 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

fn check_label(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || key.len() > 64 {
        return Err(invalid(
            "label",
            format!(
                "{key:?}: a label key is a letter or '_' then letters, digits or '_' (at most 64)"
            ),
        ));
    }
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(invalid(
            "label",
            format!("{key}: the value must be 1-256 characters without control characters"),
        ));
    }
    Ok(())
}

fn parse_duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|e| invalid(key, format!("{text:?}: {e} (e.g. 10s, 500ms, 1m)"))),
    }
}

fn local_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("flumewatch-sidecar").chain(args.iter().copied()))
            .expect("flags parse")
    }

    fn error(args: &[&str]) -> String {
        cli(args)
            .load()
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn defaults_are_usable() {
        let config = cli(&["--host", "h1"]).load().expect("valid");
        assert_eq!(config.agents.len(), 1);
        assert_eq!(config.agents[0].name, "flume-41414");
        assert_eq!(config.agents[0].url.as_str(), DEFAULT_FLUME_URL);
        assert_eq!(config.interval, Duration::from_secs(10));
        assert_eq!(config.timeout, Duration::from_secs(3));
    }

    #[test]
    fn flags_name_agents_and_labels() {
        let config = cli(&[
            "--host",
            "h1",
            "--flume",
            "a1=http://127.0.0.1:34545/metrics",
            "--flume",
            "http://127.0.0.1:41414/metrics?x=1",
            "--label",
            "cluster=bj-log",
            "--interval",
            "2s",
        ])
        .load()
        .expect("valid");
        assert_eq!(config.agents[0].name, "a1");
        assert_eq!(config.agents[1].name, "flume-41414");
        assert_eq!(config.labels["cluster"], "bj-log");
        assert_eq!(config.timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert!(error(&["--interval", "soon"]).contains("`interval`"));
        assert!(
            error(&["--host", "h", "--interval", "2s", "--timeout", "5s"]).contains("`timeout`")
        );
        assert!(error(&["--host", "h", "--flume", "ftp://x/metrics"]).contains("`flume`"));
        assert!(error(&["--host", "h", "--label", "nolabel"]).contains("`label`"));
        assert!(error(&["--host", "h", "--label", "1x=y"]).contains("`label`"));
        assert!(error(&["--host", "bad host"]).contains("`host`"));
        assert!(error(&["--host", "h", "--aggregator", "localhost:50051"]).contains("`aggregator`"));
        assert!(error(&[
            "--host",
            "h",
            "--flume",
            "a=http://x:1/metrics",
            "--flume",
            "a=http://x:2/metrics"
        ])
        .contains("used twice"));
    }

    #[test]
    fn file_settings_apply_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("fw-sidecar-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("sidecar.toml");
        std::fs::write(
            &path,
            "host = \"from-file\"\ninterval = \"5s\"\nflume = [\"a1=http://127.0.0.1:1/metrics\"]\n[labels]\ncluster = \"c1\"\n",
        )
        .expect("write");
        let config = cli(&["--config", path.to_str().unwrap(), "--interval", "20s"])
            .load()
            .expect("valid");
        assert_eq!(config.host, "from-file");
        assert_eq!(config.interval, Duration::from_secs(20));
        assert_eq!(config.labels["cluster"], "c1");

        std::fs::write(&path, "hots = \"typo\"\n").expect("write");
        let err = cli(&["--config", path.to_str().unwrap()])
            .load()
            .expect_err("unknown key");
        assert!(err.to_string().contains("hots"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
