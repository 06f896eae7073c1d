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
        // Like --flume: the flags given replace the file's whole list.
        if !self.aggregator.is_empty() {
            file.aggregators = Some(self.aggregator);
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
    fn discover_replaces_the_default_agent_and_keeps_explicit_ones() {
        let config = cli(&["--host", "h1", "--discover"]).load().expect("valid");
        assert!(config.agents.is_empty(), "no default 41414 agent");
        let discovery = config.discover.expect("on");
        assert_eq!(discovery.interval, Duration::from_secs(30));
        assert_eq!(discovery.proc_root, std::path::Path::new("/proc"));

        let config = cli(&[
            "--host",
            "h1",
            "--discover=true",
            "--discover-interval",
            "1m",
            "--flume",
            "a1=http://127.0.0.1:34545/metrics",
        ])
        .load()
        .expect("valid");
        assert_eq!(config.agents.len(), 1);
        assert_eq!(
            config.discover.map(|d| d.interval),
            Some(Duration::from_secs(60))
        );

        // The interval alone does nothing, and is not checked until discovery is on.
        let config = cli(&["--host", "h1", "--discover-interval", "1ms"])
            .load()
            .expect("valid");
        assert!(config.discover.is_none());
        assert_eq!(config.agents.len(), 1, "the default agent");
        assert!(
            error(&["--host", "h", "--discover", "--discover-interval", "500ms"])
                .contains("`discover_interval`")
        );
        assert!(
            error(&["--host", "h", "--discover", "--discover-interval", "x"])
                .contains("`discover_interval`")
        );
    }

    #[test]
    fn at_most_as_many_agents_as_a_hello_may_list() {
        let flags: Vec<String> = (0..=crate::roster::MAX_AGENTS)
            .flat_map(|i| {
                [
                    "--flume".to_owned(),
                    format!("a{i}=http://127.0.0.1:{}/metrics", 1000 + i),
                ]
            })
            .collect();
        let mut args = vec!["--host", "h"];
        args.extend(flags.iter().map(String::as_str));
        assert!(error(&args).contains("at most 64"));
    }

    #[test]
    fn aggregator_may_be_repeated_but_not_duplicated() {
        let config = cli(&["--host", "h1"]).load().expect("valid");
        assert_eq!(config.aggregators, [crate::config::DEFAULT_AGGREGATOR]);

        let config = cli(&[
            "--host",
            "h1",
            "--aggregator",
            "http://agg-a:50051",
            "--aggregator",
            "http://agg-b:50051",
        ])
        .load()
        .expect("valid");
        assert_eq!(
            config.aggregators,
            ["http://agg-a:50051", "http://agg-b:50051"]
        );

        let err = error(&[
            "--host",
            "h1",
            "--aggregator",
            "http://agg-a:50051",
            "--aggregator",
            "http://agg-a:50051/",
        ]);
        assert!(
            err.contains("`aggregator`") && err.contains("listed twice"),
            "{err}"
        );
        // Every one is checked, not only the first.
        assert!(error(&[
            "--host",
            "h1",
            "--aggregator",
            "http://agg-a:50051",
            "--aggregator",
            "agg-b:50051",
        ])
        .contains("`aggregator`"));
        // One TLS setting for all: a plain-http one among https ones is named.
        let dir = flumewatch_testkit::TempDir::new("sidecar-cfg-tls");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "CA").expect("write");
        let err = error(&[
            "--host",
            "h1",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--aggregator",
            "https://agg-a:50051",
            "--aggregator",
            "http://agg-b:50051",
        ]);
        assert!(
            err.contains("`aggregator`") && err.contains("http://agg-b:50051"),
            "{err}"
        );
    }

    #[test]
    fn the_file_takes_one_aggregator_or_a_list_and_flags_replace_it() {
        let dir = flumewatch_testkit::TempDir::new("sidecar-cfg-aggregators");
        let path = dir.join("sidecar.toml");
        let load = |args: &[&str]| {
            let mut all = vec!["--config", path.to_str().unwrap()];
            all.extend_from_slice(args);
            cli(&all).load()
        };

        std::fs::write(&path, "host = \"h\"\naggregator = \"http://one:50051\"\n").expect("write");
        assert_eq!(load(&[]).expect("valid").aggregators, ["http://one:50051"]);

        std::fs::write(
            &path,
            "host = \"h\"\naggregator = [\"http://a:50051\", \"http://b:50051\"]\n",
        )
        .expect("write");
        assert_eq!(
            load(&[]).expect("valid").aggregators,
            ["http://a:50051", "http://b:50051"]
        );
        assert_eq!(
            load(&["--aggregator", "http://c:50051"])
                .expect("valid")
                .aggregators,
            ["http://c:50051"],
            "the flags replace the file's list"
        );

        std::fs::write(
            &path,
            "host = \"h\"\naggregator = [\"http://a:50051\", \"http://a:50051\"]\n",
        )
        .expect("write");
        let err = load(&[]).expect_err("duplicate").to_string();
        assert!(
            err.contains("`aggregator`") && err.contains("listed twice"),
            "{err}"
        );
        std::fs::write(&path, "host = \"h\"\naggregator = []\n").expect("write");
        let err = load(&[]).expect_err("empty").to_string();
        assert!(err.contains("`aggregator`"), "{err}");
        std::fs::write(&path, "host = \"h\"\naggregator = 50051\n").expect("write");
        let err = load(&[]).expect_err("a number").to_string();
        assert!(err.contains("aggregator"), "{err}");
    }

    #[test]
    fn file_settings_apply_and_flags_win() {
        let dir = flumewatch_testkit::TempDir::new("sidecar-cfg");
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
        assert!(config.discover.is_none());

        std::fs::write(
            &path,
            "host = \"h\"\ndiscover = true\ndiscover_interval = \"10s\"\n",
        )
        .expect("write");
        let config = cli(&["--config", path.to_str().unwrap()])
            .load()
            .expect("valid");
        assert_eq!(
            config.discover.map(|d| d.interval),
            Some(Duration::from_secs(10))
        );
        assert!(config.agents.is_empty());
        let config = cli(&["--config", path.to_str().unwrap(), "--discover=false"])
            .load()
            .expect("valid");
        assert!(config.discover.is_none(), "the flag turns the file's off");

        std::fs::write(&path, "hots = \"typo\"\n").expect("write");
        let err = cli(&["--config", path.to_str().unwrap()])
            .load()
            .expect_err("unknown key");
        assert!(err.to_string().contains("hots"), "{err}");
    }
}
