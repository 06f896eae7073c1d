//! The real `flumewatch-sidecar` binary: bad settings exit 64 naming the key; --help explains.

use std::process::Command;

fn sidecar(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flumewatch-sidecar"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn bad_flags_exit_64_and_name_the_key() {
    for (args, key) in [
        (&["--host", "h", "--interval", "often"][..], "`interval`"),
        (&["--host", "h", "--flume", "not a url"][..], "`flume`"),
        // Flume's metrics server is plain HTTP; the sidecar's client speaks nothing else.
        (
            &["--host", "h", "--flume", "https://127.0.0.1:41414/metrics"][..],
            "`flume`",
        ),
        (&["--host", "h", "--label", "cluster"][..], "`label`"),
        (
            &["--host", "h", "--aggregator", "grpc://x:1"][..],
            "`aggregator`",
        ),
        (
            &["--host", "h", "--interval", "1s", "--timeout", "2s"][..],
            "`timeout`",
        ),
    ] {
        let out = sidecar(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?} should name {key}: {stderr}");
    }
}

#[test]
fn unknown_config_keys_are_rejected() {
    let dir = flumewatch_testkit::TempDir::new("sidecar-cli");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "intervall = \"10s\"\n").unwrap();
    let out = sidecar(&["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("intervall"));
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_flumewatch-sidecar"))
        .arg("--help")
        .env("FLUMEWATCH_TOKEN", "sidecar-token-5a6b7c")
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--aggregator",
        "--flume",
        "--interval",
        "--host",
        "--label",
        "--config",
        "--timeout",
        "--buffer",
        "--replay-window",
        "--discover",
        "--discover-interval",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("http://127.0.0.1:41414/metrics"));
    assert!(help.contains("FLUMEWATCH_TOKEN"), "the variable is named");
    assert!(
        !help.contains("sidecar-token-5a6b7c"),
        "a token from the environment is never shown"
    );
}

#[test]
fn example_config_in_deploy_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sidecar.toml");
    let config = flumewatch_sidecar::config::Cli {
        config: Some(example.into()),
        ..Default::default()
    }
    .load()
    .expect("deploy/sidecar.toml is valid");
    assert_eq!(config.agents.len(), 1);
    assert_eq!(config.labels["cluster"], "bj-log");
}
