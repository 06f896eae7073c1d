//! SIGTERM on the real sidecar binary: what the aggregator has not acknowledged is handed over
//! before it exits — also when the aggregator only just became reachable while the sidecar was
//! waiting out its reconnect backoff.

use std::process::{Command, Stdio};

use flumewatch_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_the_buffer_when_the_aggregator_is_back() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    let child = Command::new(sidecar_binary())
        .args([
            "--aggregator",
            &format!("http://{addr}"),
            "--flume",
            &format!("a1={}", flume.url()),
            "--host",
            "h1",
            "--interval",
            "100ms",
            // Long backoff: the aggregator comes back while the sidecar is waiting.
            "--reconnect-min",
            "30s",
            "--reconnect-max",
            "60s",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sidecar starts");
    wait_for(
        "ten polls buffered while the aggregator is away",
        || async { (flume.polls() >= 10).then_some(()) },
    )
    .await;
    let aggregator = AggregatorHandle::start_on(addr).await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let polls = flume.polls();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    let stopped = logs
        .lines()
        .find(|l| l.contains("sidecar stopped"))
        .unwrap_or_else(|| panic!("no stop line:\n{logs}"));
    assert!(stopped.contains("\"unsent\":0"), "{stopped}");
    let mut client = aggregator.client().await;
    let held: Vec<u64> = get_agent(&mut client, "h1", 1000)
        .await
        .expect("h1 reported")
        .history
        .iter()
        .map(|s| s.seq)
        .collect();
    assert!(held.len() as u64 >= polls.min(10), "{held:?}");
    assert_eq!(
        held,
        (1..=held.len() as u64).collect::<Vec<_>>(),
        "every buffered snapshot, in order"
    );
    println!(
        "sidecar SIGTERM: {} buffered snapshots handed over on the way out (unsent 0)",
        held.len()
    );
    aggregator.stop().await;
}
