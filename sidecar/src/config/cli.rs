//! The command line over the `--config` file: [`Cli::load`] reads the file, lets every flag given
//! win over it and validates the result.

use super::file::read_file;
use super::{invalid, Cli, Config, ConfigError, FileConfig};

impl Cli {
    /// Reads the `--config` file if any, applies the flags over it and validates the result.
    pub fn load(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        self.merge(file)?.validate()
    }

    fn merge(mut self, mut file: FileConfig) -> Result<FileConfig, ConfigError> {
        let mut labels = file.labels.take().unwrap_or_default();
        for pair in std::mem::take(&mut self.label) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid("label", format!("{pair:?}: expected KEY=VALUE")))?;
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        file.labels = Some(labels);
        self.overlay_shared(&mut file);
        if !self.flume.is_empty() {
            file.flume = Some(self.flume);
        }
        file.token = self.token;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::config::DEFAULT_FLUME_URL;

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
