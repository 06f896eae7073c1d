//! The README's first command, the real `flumewatch-demo` binary: a demo fleet on loopback that
//! the real aggregator sees, judges and reports to a local signature-checking robot.

use std::process::Command;

use flumewatch_testkit::TempDir;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flumewatch-demo"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// The README's first command, bounded: the demo fleet comes up and the aggregator sees it.
#[test]
fn demo_shows_the_fleet() {
    let state = TempDir::new("agg-demo");
    let out = demo(&[
        "--for",
        "16s",
        "--grpc-listen",
        "127.0.0.1:0",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last_table = stdout.rsplit("── t=").next().expect("a table was printed");
    assert!(last_table.contains("4 agents"), "{stdout}");
    for host in ["bj-flume-01", "bj-flume-02", "sh-flume-01", "sh-flume-02"] {
        let row = last_table
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("{host} missing: {stdout}"));
        assert!(row.contains("connected"), "{row}");
        assert!(row.contains(" ok "), "{row}");
    }
    // The default policy is already judging: sh-flume-02's sink target is down.
    assert!(last_table.contains("alerts: "), "{stdout}");
    let sink_alert = last_table
        .lines()
        .find(|l| l.contains("SinkErrors") && l.contains("sh-flume-02"))
        .unwrap_or_else(|| panic!("no SinkErrors alert for sh-flume-02: {stdout}"));
    // The trend warning comes while sh-flume-01's channel is still filling, well before full.
    let forecast = last_table
        .lines()
        .find(|l| l.contains("ChannelFullSoon") && l.contains("sh-flume-01"))
        .unwrap_or_else(|| panic!("no ChannelFullSoon for sh-flume-01: {stdout}"));
    assert!(forecast.contains("FIRING"), "{forecast}");
    let fill: f64 = last_table
        .lines()
        .find(|l| l.starts_with("sh-flume-01"))
        .and_then(|row| row.split_whitespace().nth(4))
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no fill for sh-flume-01: {stdout}"));
    assert!(fill < 90.0, "forecast before full: fill {fill}% — {stdout}");
    // …and tells the local DingTalk robot, which checks the signature before accepting.
    assert!(
        stdout.contains("── DingTalk message #1 (signed and accepted by the local robot"),
        "{stdout}"
    );
    // …and says why it was sent (the aggregator's notification history).
    assert!(
        stdout.contains("reason: first_notification) ──"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SinkConnectionFailures cluster=sh-log"),
        "{stdout}"
    );
    assert!(
        sink_alert.contains("pending") || sink_alert.contains("FIRING"),
        "{sink_alert}"
    );
}

#[test]
fn a_bad_duration_exits_64_naming_the_flag() {
    let out = demo(&["--for", "soon"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`for`"));
}

/// Without `--state-dir` the demo keeps its state in a throwaway directory and removes it.
#[test]
fn the_default_state_directory_is_removed_at_the_end() {
    let child = Command::new(env!("CARGO_BIN_EXE_flumewatch-demo"))
        .args([
            "--for",
            "1s",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("demo starts");
    let dir = std::env::temp_dir().join(format!("flumewatch-demo-{}", child.id()));
    let out = child.wait_with_output().expect("demo ends");
    assert!(out.status.success());
    assert!(!dir.exists(), "{} left behind", dir.display());
}
