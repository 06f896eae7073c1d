//! One sidecar, several aggregators (`--aggregator` repeated, or a list in the file): each gets
//! every snapshot over its own stream, from its own buffer, with its own acknowledged position
//! and replay window; one that is down, or restarted, costs the others nothing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use flumewatch_e2e::*;

/// The real sidecar binary with these flags, polling every 100 ms with fast reconnects and
/// logging JSON; killed if the test fails before stopping it.
struct Sidecar {
    child: Option<Child>,
    output: Option<Output>,
}

impl Sidecar {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(sidecar_binary())
            .args(args)
            .args([
                "--interval",
                "100ms",
                "--reconnect-min",
                "20ms",
                "--reconnect-max",
                "200ms",
                "--log-format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sidecar starts");
        let output = Output::capture(&mut child);
        Self {
            child: Some(child),
            output: Some(output),
        }
    }

    /// SIGTERM, then everything it logged; it must exit cleanly.
    async fn stop(mut self) -> String {
        let child = self.child.take().expect("running");
        assert!(Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs")
            .success());
        let status = tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait().expect("sidecar exits")
        })
        .await
        .expect("waited");
        let logs = self.output.take().expect("captured").finish();
        assert!(status.success(), "{logs}");
        logs
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // Only after a failed assertion: `stop` took the child otherwise.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sequence numbers `aggregator` holds for `host`, oldest first, and how many duplicates it
/// ignored.
async fn held(aggregator: &AggregatorHandle, host: &str) -> (Vec<u64>, u64) {
    let mut client = aggregator.client().await;
    get_agent(&mut client, host, 1000)
        .await
        .map(|d| {
            (
                d.history.iter().map(|s| s.seq).collect(),
                d.duplicates_ignored,
            )
        })
        .unwrap_or_default()
}

/// Waits until `aggregator` holds snapshots of `host` up to at least `seq`.
async fn holds_up_to(aggregator: &AggregatorHandle, host: &str, seq: u64) -> Vec<u64> {
    wait_for(
        &format!("{host} up to {seq} at {}", aggregator.url()),
        || async {
            let (seqs, _) = held(aggregator, host).await;
            (seqs.last().copied().unwrap_or(0) >= seq).then_some(seqs)
        },
    )
    .await
}

fn assert_every_snapshot_from_1(seqs: &[u64], at: &str) {
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{at}: every snapshot from 1, in order, no gap, no duplicate"
    );
}

/// A loopback port with nothing listening on it (bound once to pick it, then released).
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_each_get_every_snapshot() {
    let (a, b) = (
        AggregatorHandle::start().await,
        AggregatorHandle::start().await,
    );
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    let sidecar = Sidecar::start(&[
        "--aggregator",
        &a.url(),
        "--aggregator",
        &b.url(),
        "--flume",
        &format!("a1={}", flume.url()),
        "--host",
        "h1",
    ]);
    holds_up_to(&a, "h1", 20).await;
    holds_up_to(&b, "h1", 20).await;
    let logs = sidecar.stop().await;

    // Both drained on the way out: each holds exactly what the other does.
    let (at_a, duplicates_a) = held(&a, "h1").await;
    let (at_b, duplicates_b) = held(&b, "h1").await;
    assert_every_snapshot_from_1(&at_a, "aggregator A");
    assert_every_snapshot_from_1(&at_b, "aggregator B");
    assert_eq!(at_a, at_b, "the same snapshots under the same numbers");
    assert_eq!((duplicates_a, duplicates_b), (0, 0));
    for aggregator in [&a, &b] {
        let address = format!("\"aggregator\":\"{}\"", aggregator.url());
        let connected = logs
            .lines()
            .find(|l| l.contains("connected to the aggregator") && l.contains(&address));
        assert!(
            connected.is_some(),
            "no connect line naming {address}:\n{logs}"
        );
        let stopped = logs
            .lines()
            .find(|l| l.contains("uplink stopped") && l.contains(&address))
            .unwrap_or_else(|| panic!("no stop line naming {address}:\n{logs}"));
        assert!(stopped.contains("\"unsent\":0"), "{stopped}");
    }
    println!(
        "two aggregators: {} snapshots each, identical, none missing",
        at_a.len()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_aggregator_costs_the_other_nothing_and_gets_the_backlog_later() {
    let live = AggregatorHandle::start().await;
    let away = closed_port();
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    // The list form of the file's `aggregator`; the unreachable one first, so that an uplink
    // waiting on it before serving the next would show.
    let dir = TempDir::new("multi-aggregator");
    let config = dir.write(
        "sidecar.toml",
        format!(
            "aggregator = [\"http://{away}\", \"{}\"]\nhost = \"h2\"\nflume = [\"a1={}\"]\n",
            live.url(),
            flume.url()
        ),
    );
    let sidecar = Sidecar::start(&["--config", config.to_str().expect("utf-8 path")]);

    wait_for("twenty polls", || async {
        (flume.polls() >= 20).then_some(())
    })
    .await;
    // Everything polled so far reaches the live aggregator, while the other refuses every connect.
    let polled = flume.polls();
    let at_live = holds_up_to(&live, "h2", polled).await;
    assert_every_snapshot_from_1(&at_live, "the live aggregator");
    let mut client = live.client().await;
    let stats = get_agent(&mut client, "h2", 0)
        .await
        .and_then(|d| d.sidecar_stats)
        .expect("stats reported");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.connects, 1, "one stream, never broken: {stats:?}");

    // The other comes up: it gets every snapshot taken while it was away, from the first.
    let late = AggregatorHandle::start_on(away).await;
    let at_late = holds_up_to(&late, "h2", polled).await;
    assert_every_snapshot_from_1(&at_late, "the late aggregator");
    let (_, duplicates) = held(&late, "h2").await;
    assert_eq!(duplicates, 0);

    let logs = sidecar.stop().await;
    let (at_live, _) = held(&live, "h2").await;
    let (at_late, _) = held(&late, "h2").await;
    assert_every_snapshot_from_1(&at_live, "the live aggregator, at the end");
    assert_eq!(at_live, at_late, "caught up, and drained on the way out");
    assert!(
        logs.lines()
            .any(|l| l.contains("connected to the aggregator")
                && l.contains(&format!("\"aggregator\":\"http://{away}\""))),
        "the late connect names its aggregator:\n{logs}"
    );
    println!(
        "one aggregator away for {polled} polls: the other had all {polled} meanwhile; \
         the late one got all {} from seq 1",
        at_late.len()
    );
    live.stop().await;
    late.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_aggregator_gets_its_own_replay_window_and_the_other_nothing_twice() {
    let steady = AggregatorHandle::start().await;
    let first = AggregatorHandle::start().await;
    let addr = first.addr;
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    // The library entry point, with a `FileConfig` built in code.
    let mut config = sidecar_config(&steady.url(), "h3", &[("a1", flume.url())], &[]);
    config.aggregators = Some(vec![steady.url(), first.url()]);
    let sidecar = SidecarHandle::start(config);
    holds_up_to(&first, "h3", 10).await;
    first.stop().await;

    let polls = flume.polls();
    wait_for("ten polls while one aggregator is down", || async {
        (flume.polls() >= polls + 10).then_some(())
    })
    .await;
    // The restarted one lost everything: the sidecar replays its window (2 min) from the first.
    let polled = flume.polls();
    let second = AggregatorHandle::start_on(addr).await;
    let restarted = holds_up_to(&second, "h3", polled).await;
    assert_every_snapshot_from_1(&restarted, "the restarted aggregator");

    sidecar.stop().await;
    let (at_steady, duplicates) = held(&steady, "h3").await;
    assert_every_snapshot_from_1(&at_steady, "the steady aggregator");
    assert_eq!(duplicates, 0, "the steady one was replayed nothing");
    let mut client = steady.client().await;
    let stats = get_agent(&mut client, "h3", 0)
        .await
        .and_then(|d| d.sidecar_stats)
        .expect("stats reported");
    assert_eq!(stats.connects, 1, "its stream never broke: {stats:?}");
    let (at_second, _) = held(&second, "h3").await;
    assert_eq!(at_steady, at_second);
    steady.stop().await;
    second.stop().await;
}

#[test]
fn a_repeated_aggregator_is_rejected_naming_the_key() {
    let dir = TempDir::new("multi-aggregator-dup");
    let file = dir.write(
        "sidecar.toml",
        "host = \"h\"\naggregator = [\"http://127.0.0.1:50051\", \"http://127.0.0.1:50051\"]\n",
    );
    let from_file = ["--config", file.to_str().expect("utf-8 path")];
    let from_flags = [
        "--host",
        "h",
        "--aggregator",
        "http://127.0.0.1:50051",
        "--aggregator",
        "http://127.0.0.1:50051/",
    ];
    for args in [&from_file[..], &from_flags[..]] {
        let out = Command::new(sidecar_binary())
            .args(args)
            .output()
            .expect("binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("`aggregator`") && stderr.contains("listed twice"),
            "{args:?}: {stderr}"
        );
    }
}
