//! The command line: [`Cli`] and [`Command`], and laying the flags over the `--config` file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{read_file, ConfigError, FileConfig, Mode};
use crate::notify::config::NotifyFlags;

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
    /// PostgreSQL shared with other aggregator replicas (postgres://USER@HOST:PORT/DB):
    /// silences, notification log, outbox and history live there, and one replica at a time
    /// sends. The password comes from --state-password-file or FLUMEWATCH_STATE_PASSWORD.
    /// Without it, one aggregator keeps its state in SQLite under --state-dir.
    #[arg(long, value_name = "URL")]
    pub state_url: Option<String>,
    /// File holding the PostgreSQL password (one line).
    #[arg(long, value_name = "FILE")]
    pub state_password_file: Option<PathBuf>,
    /// This replica's name in the sender lease and Fleet/Status [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub replica_name: Option<String>,
    /// With --state-url: most time from the sender replica's death to the other one sending
    /// [default: 15s; the lease lasts two thirds of it].
    #[arg(long, value_name = "DURATION")]
    pub failover: Option<String>,
    /// Recent snapshots kept per agent for GetAgent's history; its rates are worked out from
    /// the two newest good ones, so 0 or 1 gives none [default: 10].
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// Acknowledge a sidecar's snapshots at most this many at a time: while more of its
    /// snapshots are already waiting to be read (a replay after an outage), they are stored
    /// first and acknowledged together [default: 32; 1 acks each one].
    #[arg(long, value_name = "N")]
    pub ack_every: Option<u32>,
    /// Wait this long for a sidecar's next snapshot before acknowledging, so a busy stream
    /// gets fewer acks [default: 0s: acknowledge as soon as nothing more is waiting].
    #[arg(long, value_name = "DURATION")]
    pub ack_delay: Option<String>,
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
    /// Agents whose sidecar has been gone this long leave the fleet, announced once
    /// [default: 7d; "off" keeps them for ever].
    #[arg(long, value_name = "DURATION")]
    pub forget_after: Option<String>,
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
        /// The sidecars' poll interval: each rule's detection time is shown at it.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        poll_interval: std::time::Duration,
    },
}

impl Cli {
    pub fn load(self) -> Result<Mode, ConfigError> {
        if let Some(Command::CheckConfig {
            files,
            poll_interval,
        }) = self.command
        {
            return Ok(Mode::CheckConfig(files, poll_interval));
        }
        Ok(Mode::Serve(Box::new(self.merge()?.validate()?)))
    }

    /// The config file (if any) with these flags laid over it, not yet validated: a caller
    /// such as the demo may fill in defaults of its own first.
    pub fn merge(self) -> Result<FileConfig, ConfigError> {
        // Every flag is named here, so a new one cannot be left out of the merge unnoticed.
        let Cli {
            command: _,
            config,
            grpc_listen,
            http_listen,
            log_format: _,
            log_level: _,
            state_dir,
            state_url,
            state_password_file,
            replica_name,
            failover,
            history,
            ack_every,
            ack_delay,
            shutdown_grace,
            rules,
            language,
            evaluation_interval,
            forget_after,
            dingtalk_webhook,
            dingtalk_secret,
            tls_cert,
            tls_key,
            tls_client_ca,
            ingest_tokens_file,
            admin_token,
            protect_queries,
            query_token,
            group_wait,
            group_interval,
            repeat_interval,
        } = self;
        let file = match &config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(FileConfig {
            grpc_listen: grpc_listen.or(file.grpc_listen),
            http_listen: http_listen.or(file.http_listen),
            state_dir: state_dir.or(file.state_dir),
            state_url: state_url.or(file.state_url),
            state_password_file: state_password_file.or(file.state_password_file),
            // From the environment only: a command line is visible to every user of the host.
            state_password: std::env::var(super::replication::PASSWORD_ENV).ok(),
            replica_name: replica_name.or(file.replica_name),
            failover: failover.or(file.failover),
            history: history.or(file.history),
            ack_every: ack_every.or(file.ack_every),
            ack_delay: ack_delay.or(file.ack_delay),
            shutdown_grace: shutdown_grace.or(file.shutdown_grace),
            rules: rules.or(file.rules),
            language: language.or(file.language),
            evaluation_interval: evaluation_interval.or(file.evaluation_interval),
            forget_after: forget_after.or(file.forget_after),
            notify: file.notify,
            receivers: file.receivers,
            inhibit_rules: file.inhibit_rules,
            ingest_tokens_file: ingest_tokens_file.or(file.ingest_tokens_file),
            admin_token_file: file.admin_token_file,
            protect_queries: protect_queries.then_some(true).or(file.protect_queries),
            query_token_file: file.query_token_file,
            tls_cert: tls_cert.or(file.tls_cert),
            tls_key: tls_key.or(file.tls_key),
            tls_client_ca: tls_client_ca.or(file.tls_client_ca),
            admin_token,
            query_token,
            flags: NotifyFlags {
                dingtalk_webhook,
                dingtalk_secret,
                group_wait,
                group_interval,
                repeat_interval,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Mode, ConfigError> {
        Cli::try_parse_from(std::iter::once("flumewatch-aggregator").chain(args.iter().copied()))
            .expect("flags parse")
            .load()
    }

    fn tmp(name: &str) -> flumewatch_testkit::TempDir {
        flumewatch_testkit::TempDir::new(&format!("agg-cfg-{name}"))
    }

    #[test]
    fn flags_and_file_merge_with_flags_winning() {
        let dir = tmp("merge");
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
    }
}
