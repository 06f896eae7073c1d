//! The real `flumewatch-aggregator` binary: bad settings exit 64 naming the key.

use std::process::Command;

use flumewatch_testkit::TempDir;

fn aggregator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn bad_flags_exit_64_and_name_the_key() {
    let dir = TempDir::new("agg-cli");
    let state = dir.join("state");
    let state = state.to_str().unwrap();
    for (args, key) in [
        (
            &["--grpc-listen", "everywhere", "--state-dir", state][..],
            "`grpc_listen`",
        ),
        (&["--state-dir", "/proc/nope/state"][..], "`state_dir`"),
        (
            &["--state-dir", state, "--history", "99999"][..],
            "`history`",
        ),
    ] {
        let out = aggregator(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?} should name {key}: {stderr}");
    }
}

#[test]
fn help_explains_every_flag() {
    let out = aggregator(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--grpc-listen",
        "--state-dir",
        "--config",
        "--history",
        "--protect-queries",
        "--query-token",
        "--admin-token",
        "--ingest-tokens-file",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

fn deploy(file: &str) -> String {
    format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_replica_example_without_touching_its_database() {
    let out = aggregator(&["check-config", &deploy("aggregator-replica.toml")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("state_url postgres://pg.example.internal/flumewatch")
            && stdout.contains("failover 15s"),
        "{stdout}"
    );
}

#[test]
fn check_config_accepts_the_deploy_examples_and_lists_every_rule() {
    let out = aggregator(&[
        "check-config",
        &deploy("aggregator.toml"),
        &deploy("rules.toml"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("aggregator config ok"), "{stdout}");
    assert!(
        stdout.contains("2 receivers (ops, bj-oncall), 1 routes, 4 inhibition rules"),
        "{stdout}"
    );
    // 14 default rules plus HdfsSinkStalled, listed once per file.
    assert_eq!(stdout.matches("15 rules").count(), 2, "{stdout}");
    let rule_lines = stdout.lines().filter(|l| l.starts_with("  ")).count();
    assert_eq!(rule_lines, 30);
    assert!(stdout.contains("HdfsSinkStalled"));
    assert!(
        stdout.contains("(ChannelFillPercentage >= 70 and ChannelCapacity > 0)"),
        "{stdout}"
    );
    // Each rule's detection time at the default 10 s poll, and at the interval asked for.
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {out}"))
            .to_owned()
    };
    assert!(stdout.contains("at 10s polls"), "{stdout}");
    let down = line(&stdout, "FlumeAgentDown");
    assert!(down.contains("detect ≤30s"), "{down}");
    let stalled = line(&stdout, "SinkStalled");
    assert!(
        stalled.contains("hold 2 polls") && stalled.contains("detect ≤30s"),
        "{stalled}"
    );
    let fast = aggregator(&[
        "check-config",
        "--poll-interval",
        "1s",
        &deploy("rules.toml"),
    ]);
    let fast = String::from_utf8_lossy(&fast.stdout).into_owned();
    assert!(
        line(&fast, "FlumeAgentDown").contains("detect ≤3s"),
        "{fast}"
    );
    assert!(line(&fast, "SinkStalled").contains("detect ≤12s"), "{fast}");
}

#[test]
fn check_config_names_the_file_the_key_and_the_problem() {
    let dir = TempDir::new("check");
    let good = std::fs::read_to_string(deploy("rules.toml")).unwrap();
    let cases = [
        (
            "unknown-key.toml",
            good.replacen("for = \"2m\"", "fore = \"2m\"", 1),
            "rule[0].fore",
            "unknown field `fore`",
        ),
        (
            "bad-duration.toml",
            good.replacen("for = \"2m\"", "for = \"2 minutes or so\"", 1),
            "rule[0].for",
            "not a duration",
        ),
        (
            "unknown-metric.toml",
            good.replacen("ChannelFillPercentage", "ChannelFullPercentage", 1),
            "rule[0].condition.all[0].value",
            "unknown metric",
        ),
        (
            "wrong-type.toml",
            good.replacen("threshold = 70", "threshold = \"70\"", 1),
            "rule[0].condition.all[0].threshold",
            "invalid type: string",
        ),
    ];
    for (name, text, path, reason) in cases {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = aggregator(&["check-config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: names the file: {stderr}");
        assert!(stderr.contains(path), "{name}: names {path}: {stderr}");
        assert!(stderr.contains(reason), "{name}: says {reason}: {stderr}");
    }
    // A config whose rules file is broken is refused too.
    let config = dir.join("aggregator.toml");
    std::fs::write(&config, "rules = \"unknown-metric.toml\"\n").unwrap();
    let out = aggregator(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown-metric.toml"));
}

#[test]
fn example_config_in_deploy_is_accepted() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/aggregator.toml"
    ))
    .unwrap();
    let file: flumewatch_aggregator::config::FileConfig = toml::from_str(&text).expect("parses");
    assert_eq!(file.grpc_listen.as_deref(), Some("0.0.0.0:50051"));
}
