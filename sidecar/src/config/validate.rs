//! [`FileConfig::validate`] → [`Config`]: defaults, ranges and the rules between settings. The
//! files it needs (token, PEMs) and the default hostname come through a [`Machine`].

use std::path::Path;
use std::time::Duration;

use super::file::{Machine, ThisMachine};
use super::targets::check_aggregators;
use super::values::{check_label, check_name, parse_agents, parse_duration};
use super::{
    invalid, Config, ConfigError, Discovery, FileConfig, SidecarTls, Token, DEFAULT_FLUME_URL,
    PROC_ROOT,
};
use crate::roster::MAX_AGENTS;

impl FileConfig {
    /// Fills in defaults, checks every setting and reads the token and PEM files named.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.validate_on(&ThisMachine)
    }

    fn validate_on(self, machine: &impl Machine) -> Result<Config, ConfigError> {
        let aggregators = check_aggregators(self.aggregators)?;
        let discover = match self.discover {
            Some(true) => Some(Discovery {
                interval: parse_duration(
                    "discover_interval",
                    self.discover_interval.as_deref(),
                    Duration::from_secs(30),
                )?,
                proc_root: PROC_ROOT.into(),
            }),
            // Without discovery the interval means nothing; it is not checked, so a file can
            // keep it while discovery is switched off.
            _ => None,
        };
        if discover
            .as_ref()
            .is_some_and(|d| d.interval < Duration::from_secs(1))
        {
            // Each scan reads every process's command line: keep it a background cost.
            return Err(invalid("discover_interval", "must be at least 1s"));
        }
        let agents = match self.flume {
            // Discovery alone: no default agent, which would be polled (and down) on hosts
            // whose Flume is elsewhere than 41414.
            None if discover.is_some() => Vec::new(),
            None => parse_agents(vec![DEFAULT_FLUME_URL.to_owned()])?,
            Some(specs) if specs.is_empty() && discover.is_some() => Vec::new(),
            Some(specs) => parse_agents(specs)?,
        };
        if agents.len() > MAX_AGENTS {
            return Err(invalid(
                "flume",
                format!("at most {MAX_AGENTS} agents per sidecar (the aggregator's limit)"),
            ));
        }
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
            None => machine
                .hostname()
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
                machine
                    .read_to_string(path)
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
            machine
                .read(path)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))
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
        // One set of TLS settings serves every aggregator: all https, or all plain http.
        if let Some(address) = aggregators
            .iter()
            .find(|a| tls.is_some() != a.starts_with("https://"))
        {
            return Err(invalid(
                "aggregator",
                format!("{address:?}: use https:// together with tls_ca, and http:// without it"),
            ));
        }
        Ok(Config {
            tls,
            aggregators,
            agents,
            discover,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;
    use std::path::PathBuf;

    use super::*;

    /// A machine without a hostname whose only files are those listed.
    struct Files(BTreeMap<PathBuf, &'static str>);

    impl Machine for Files {
        fn hostname(&self) -> Option<String> {
            None
        }

        fn read_to_string(&self, path: &Path) -> io::Result<String> {
            self.0
                .get(path)
                .map(|text| (*text).to_owned())
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.read_to_string(path).map(String::into_bytes)
        }
    }

    #[test]
    fn token_and_pem_files_are_read_through_the_machine() {
        let machine = Files(BTreeMap::from([
            (PathBuf::from("/tok"), " sidecar-token \n"),
            (PathBuf::from("/ca.pem"), "CA"),
        ]));
        let file = FileConfig {
            aggregators: Some(vec!["https://agg:50051".into()]),
            host: Some("h1".into()),
            token_file: Some("/tok".into()),
            tls_ca: Some("/ca.pem".into()),
            ..FileConfig::default()
        };
        let config = file.validate_on(&machine).expect("valid");
        assert_eq!(config.token.expect("token").expose(), "sidecar-token");
        assert_eq!(config.tls.expect("tls").ca, b"CA");

        let err = FileConfig::default()
            .validate_on(&machine)
            .expect_err("no hostname");
        assert!(err.to_string().contains("`host`"), "{err}");
        let err = FileConfig {
            host: Some("h1".into()),
            token_file: Some("/missing".into()),
            ..FileConfig::default()
        }
        .validate_on(&machine)
        .expect_err("no such file");
        assert!(err.to_string().contains("`token_file`"), "{err}");
    }
}
