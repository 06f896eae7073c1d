//! [`FileConfig::validate`]: defaults, checks and parsing that turn the merged settings into a
//! [`Config`]; each error names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::replication::RawReplication;
use super::secrets::{SecretFiles, Secrets};
use super::{
    invalid, AckPolicy, Config, ConfigError, FileConfig, DEFAULT_GRPC_LISTEN, DEFAULT_STATE_DIR,
};
use crate::notify::config as notify_config;
use crate::rules::{Language, RuleSet};

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.validate_with(true)
    }

    /// `probe_state_dir`: create the state directory and prove it writable (not for
    /// check-config, which must not touch the machine).
    pub fn validate_with(mut self, probe_state_dir: bool) -> Result<Config, ConfigError> {
        // Token and TLS files are read first; their errors wait for their turn below.
        let secret_files = SecretFiles::read(&mut self);
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
        let replication = RawReplication {
            state_url: self.state_url,
            state_password_file: self.state_password_file,
            state_password: self.state_password,
            replica_name: self.replica_name,
            failover: self.failover,
        }
        .validate()?;
        // Replicas keep nothing on local disk.
        if probe_state_dir && replication.is_none() {
            check_state_dir(&state_dir)?;
        }
        let history = self.history.unwrap_or(10);
        if history > 10_000 {
            return Err(invalid("history", "at most 10000 snapshots per agent"));
        }
        let ack_every = self.ack_every.unwrap_or(32);
        if !(1..=1024).contains(&ack_every) {
            return Err(invalid("ack_every", "between 1 and 1024 snapshots"));
        }
        let ack_delay = match self.ack_delay.as_deref() {
            Some(text) => parse_duration("ack_delay", text)?,
            None => Duration::ZERO,
        };
        if ack_delay > Duration::from_secs(1) {
            return Err(invalid(
                "ack_delay",
                "at most 1s: a sidecar keeps what is not acknowledged",
            ));
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
        let forget_after = match self.forget_after.as_deref() {
            Some("off") => None,
            Some(text) => Some(parse_duration("forget_after", text)?),
            None => Some(Duration::from_secs(7 * 24 * 3600)),
        };
        if forget_after.is_some_and(|d| d < Duration::from_secs(60)) {
            return Err(invalid(
                "forget_after",
                "must be at least 1m (or \"off\"): a restart or an outage is not a decommission",
            ));
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
        if let Some(replication) = &replication {
            // A message claimed by a sender that died waits out its POST's timeout before the
            // successor sends it: the lease must outlast a POST for failover to keep its bound.
            if let Some(receiver) = notify
                .receivers
                .iter()
                .find(|r| r.send_timeout > replication.ha.ttl())
            {
                return Err(invalid(
                    "failover",
                    format!(
                        "{} is too short for receiver {}'s send_timeout {}: the lease (two thirds of failover) must outlast a POST",
                        humantime::format_duration(replication.ha.failover),
                        receiver.name,
                        humantime::format_duration(receiver.send_timeout)
                    ),
                ));
            }
        }
        let Secrets {
            ingest_tokens,
            admin_token,
            query_tokens,
            tls,
        } = secret_files.check(self.protect_queries.unwrap_or(false))?;

        Ok(Config {
            tls,
            ingest_tokens,
            admin_token,
            query_tokens,
            notify,
            grpc_listen,
            http_listen,
            state_dir,
            replication,
            history,
            acks: AckPolicy {
                every: ack_every,
                delay: ack_delay,
            },
            shutdown_grace,
            rules,
            language,
            evaluation_interval,
            forget_after,
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

    /// Token and TLS files are read before any check, yet a config with several faults still
    /// names the one checked first.
    #[test]
    fn the_first_fault_in_check_order_is_named() {
        let missing =
            std::env::temp_dir().join(format!("fw-agg-cfg-{}-missing.pem", std::process::id()));
        let faulty = || FileConfig {
            grpc_listen: Some("nowhere".into()),
            ingest_tokens_file: Some(missing.clone()),
            admin_token: Some("short".into()),
            tls_cert: Some(missing.clone()),
            tls_key: Some(missing.clone()),
            ..FileConfig::default()
        };
        let named = |raw: FileConfig| raw.validate_with(false).expect_err("rejected").to_string();
        assert!(named(faulty()).contains("`grpc_listen`"));
        let faulty = || FileConfig {
            grpc_listen: None,
            ..faulty()
        };
        assert!(named(faulty()).contains("`ingest_tokens_file`"));
        let faulty = || FileConfig {
            ingest_tokens_file: None,
            ..faulty()
        };
        assert!(named(faulty()).contains("`admin_token`"));
        let faulty = || FileConfig {
            admin_token: None,
            ..faulty()
        };
        assert!(named(faulty()).contains("`tls_cert`"));
    }
}
