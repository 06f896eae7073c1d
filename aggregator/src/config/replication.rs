//! Settings of a replicated aggregator: `state_url` (PostgreSQL shared with the other
//! replicas), its password from `state_password_file` or FLUMEWATCH_STATE_PASSWORD (never in
//! the URL or a config file), `replica_name` and `failover`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{invalid, ConfigError};
use crate::ha::HaConfig;

/// The environment variable a password may come from.
pub const PASSWORD_ENV: &str = "FLUMEWATCH_STATE_PASSWORD";

/// The raw keys, as merged from flags and file.
#[derive(Debug, Default, Clone)]
pub struct RawReplication {
    pub state_url: Option<String>,
    pub state_password_file: Option<PathBuf>,
    /// From FLUMEWATCH_STATE_PASSWORD.
    pub state_password: Option<String>,
    pub replica_name: Option<String>,
    pub failover: Option<String>,
}

/// A validated replicated setup.
#[derive(Clone)]
pub struct Replication {
    pub database: postgres::Config,
    pub ha: HaConfig,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("hosts", &self.database.get_hosts())
            .field("dbname", &self.database.get_dbname())
            .field("ha", &self.ha)
            .finish_non_exhaustive()
    }
}

impl RawReplication {
    /// `None` without `state_url` (one aggregator on SQLite); the other keys need it.
    pub fn validate(self) -> Result<Option<Replication>, ConfigError> {
        let Some(url) = self.state_url else {
            for (key, set) in [
                ("state_password_file", self.state_password_file.is_some()),
                ("replica_name", self.replica_name.is_some()),
                ("failover", self.failover.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "only means something with state_url"));
                }
            }
            return Ok(None);
        };
        // Never echoed: a URL may hold a password.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "state_url",
                "expected postgres://USER@HOST:PORT/DATABASE",
            ));
        }
        let mut database =
            postgres::Config::from_str(&url).map_err(|e| invalid("state_url", format!("{e}")))?;
        if database.get_ssl_mode() == postgres::config::SslMode::Require {
            return Err(invalid(
                "state_url",
                "sslmode=require: this aggregator talks to PostgreSQL without TLS (keep the database on a private network, or tunnel it)",
            ));
        }
        if database.get_password().is_some() {
            return Err(invalid(
                "state_url",
                format!("holds a password: give it in state_password_file or {PASSWORD_ENV}"),
            ));
        }
        let password = match (&self.state_password_file, self.state_password) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        invalid("state_password_file", format!("{}: {e}", path.display()))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, password) => password,
        };
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            database.password(password);
        }
        let replica = match self.replica_name {
            Some(name) => name,
            None => hostname()
                .ok_or_else(|| invalid("replica_name", "the host name cannot be read: set it"))?,
        };
        if replica.is_empty() || replica.len() > 200 || replica.chars().any(char::is_control) {
            return Err(invalid(
                "replica_name",
                format!("{replica:?}: 1 to 200 printable characters"),
            ));
        }
        let failover = match self.failover.as_deref() {
            Some(text) => humantime::parse_duration(text.trim())
                .map_err(|e| invalid("failover", format!("{text:?}: {e} (e.g. 15s)")))?,
            None => Duration::from_secs(15),
        };
        if !(Duration::from_secs(3)..=Duration::from_secs(600)).contains(&failover) {
            return Err(invalid("failover", "between 3s and 10m"));
        }
        Ok(Some(Replication {
            database,
            ha: HaConfig { replica, failover },
        }))
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(raw: RawReplication) -> String {
        raw.validate().expect_err("rejected").to_string()
    }

    #[test]
    fn without_a_url_there_is_no_replication_and_its_keys_are_refused() {
        assert!(RawReplication::default().validate().unwrap().is_none());
        let named = error(RawReplication {
            failover: Some("20s".into()),
            ..Default::default()
        });
        assert!(named.contains("`failover`"), "{named}");
    }

    #[test]
    fn a_url_gives_a_replica_with_defaults() {
        let replication = RawReplication {
            state_url: Some("postgres://flumewatch@db.example:5433/flumewatch".into()),
            replica_name: Some("agg-a".into()),
            state_password: Some("s3cret".into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
        .expect("replicated");
        assert_eq!(replication.ha.replica, "agg-a");
        assert_eq!(replication.ha.failover, Duration::from_secs(15));
        assert_eq!(replication.ha.ttl(), Duration::from_secs(10));
        assert_eq!(replication.database.get_ports(), [5433]);
        assert_eq!(replication.database.get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn bad_urls_passwords_and_bounds_name_their_key() {
        let url = |u: &str| RawReplication {
            state_url: Some(u.into()),
            replica_name: Some("a".into()),
            ..Default::default()
        };
        let scheme = error(url("mysql://u:hunter2@x/y"));
        assert!(
            scheme.contains("`state_url`") && !scheme.contains("hunter2"),
            "{scheme}"
        );
        assert!(error(url("postgres://u@h/db?sslmode=require")).contains("sslmode"));
        let with_password = error(url("postgres://u:pw@h/db"));
        assert!(
            with_password.contains("`state_url`") && with_password.contains(PASSWORD_ENV),
            "{with_password}"
        );
        let missing = error(RawReplication {
            state_password_file: Some("/nonexistent/flumewatch-pw".into()),
            ..url("postgres://u@h/db")
        });
        assert!(missing.contains("`state_password_file`"), "{missing}");
        let fast = error(RawReplication {
            failover: Some("1s".into()),
            ..url("postgres://u@h/db")
        });
        assert!(fast.contains("`failover`"), "{fast}");
    }
}
