//! A poll round leaves the real sidecar binary together: ten agents polled at once, answering
//! up to 4.5 ms apart, reach the real aggregator as one write and are acknowledged about once
//! per round, not once per agent (issue 14: batch the gRPC sends of one poll round).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use flumewatch_e2e::*;
use flumewatch_testkit::fake_flume::Reply;

const AGENTS: usize = 10;
const ROUNDS: u64 = 8;

/// Kills the sidecar however the test ends.
struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_agents_polled_together_are_acknowledged_about_once_a_round() {
    let aggregator = AggregatorHandle::start().await;
    let mut agents = Vec::new();
    for k in 0..AGENTS {
        // Answers that arrive together would leave together anyway; these are spread as the
        // agents of one host answer, within the sidecar's hold of a round.
        agents.push(
            ScriptedFlume::start(Reply::Late {
                body: sample("steady-load-t15s.json"),
                after: Duration::from_micros(500) * k as u32,
            })
            .await,
        );
    }
    let mut args = vec![
        "--aggregator".to_owned(),
        aggregator.url(),
        "--host".into(),
        "rounds-1".into(),
        "--interval".into(),
        "500ms".into(),
    ];
    for (k, agent) in agents.iter().enumerate() {
        args.push("--flume".into());
        args.push(format!("a{k}={}", agent.url()));
    }
    let _sidecar = Sidecar(
        Command::new(sidecar_binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sidecar starts"),
    );
    let counters = aggregator.counters.clone();
    let wanted = ROUNDS * AGENTS as u64;
    let (stored, acks) = wait_for("eight rounds stored", || async {
        let stored = counters.snapshots_stored.load(Ordering::Relaxed);
        // Read together: an ack goes out right after the snapshots it covers are stored.
        let acks = counters.acks_sent.load(Ordering::Relaxed);
        (stored >= wanted).then_some((stored, acks))
    })
    .await;
    println!(
        "{stored} snapshots from {AGENTS} agents stored with {acks} acks ({:.1} per ack)",
        stored as f64 / acks.max(1) as f64
    );
    // One ack per snapshot is what sending each as its poll finishes costs; a round held
    // together is one ack, and a slow poll now and then makes a second.
    assert!(
        acks * 3 <= stored,
        "{acks} acks for {stored} snapshots: the rounds did not arrive together"
    );
    aggregator.stop().await;
}
