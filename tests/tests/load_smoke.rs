//! A small run of the load generator against the real aggregator: 200 streams × 1 snapshot/s
//! for 10 s, every snapshot acknowledged (so stored and judged), the troubled agents alerting.
//! The full-size runs (10 000 streams, 5 minutes) are in tests/bench/run.sh, not here.

use std::time::Duration;

use flumewatch_e2e::load::{self, LoadConfig};
use flumewatch_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_for_ten_seconds_are_all_judged() {
    let aggregator = AggregatorHandle::start().await;
    let config = LoadConfig {
        aggregator: aggregator.url(),
        streams: 200,
        rate: 1.0,
        duration: Duration::from_secs(10),
        trouble: 0.1,
        connections: 200,
        ..LoadConfig::default()
    };
    let report = load::run(&config).await.expect("load runs");
    println!(
        "load smoke: {} streams, sent {}, acknowledged {} ({:.0}/s), send→ack p50 {:.2} ms, p99 {:.2} ms",
        report.streams_opened,
        report.sent,
        report.acked,
        report.accepted_per_second(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99)
    );
    assert_eq!(report.streams_opened, 200);
    assert!(report.sent >= 200 * 9, "{} sent", report.sent);
    assert_eq!(report.acked, report.sent, "every snapshot acknowledged");
    assert_eq!(report.latencies_us.len() as u64, report.sent);
    let stored = aggregator
        .counters
        .snapshots_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stored, report.sent, "every snapshot stored and judged");
    let agents = aggregator.fleet.agents(&Default::default(), None);
    assert_eq!(agents.len(), 200);
    let components: Vec<usize> = agents
        .iter()
        .map(|a| a.state.latest.as_ref().unwrap().snapshot().components.len())
        .collect();
    assert!(components.iter().all(|n| (10..=30).contains(n)));
    assert_eq!(components.iter().min(), Some(&10));
    assert_eq!(components.iter().max(), Some(&30));
    // One agent in ten has full channels: the default ChannelFilling holds 2 minutes, so
    // within 10 s they are pending.
    let alerting: std::collections::BTreeSet<String> = aggregator
        .fleet
        .alerts()
        .iter()
        .filter(|a| a.alertname == "ChannelFilling")
        .map(|a| a.labels.0["host"].clone())
        .collect();
    assert_eq!(alerting.len(), 20, "{alerting:?}");
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sidecars_of_ten_agents_are_judged_per_agent_and_acknowledged_per_round() {
    let aggregator = AggregatorHandle::start().await;
    let config = LoadConfig {
        aggregator: aggregator.url(),
        streams: 20,
        agents_per_stream: 10,
        rate: 1.0,
        duration: Duration::from_secs(5),
        trouble: 0.1,
        connections: 20,
        ..LoadConfig::default()
    };
    let report = load::run(&config).await.expect("load runs");
    let counters = &aggregator.counters;
    let stored = counters
        .snapshots_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    let acks = counters
        .acks_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "load smoke, 20 streams × 10 agents: sent {}, acknowledged {}, {acks} acks, send→ack p99 {:.2} ms",
        report.sent,
        report.acked,
        report.quantile_ms(0.99)
    );
    assert_eq!(report.streams_opened, 20);
    assert!(report.sent >= 20 * 10 * 4, "{} sent", report.sent);
    assert_eq!(report.acked, report.sent, "every snapshot acknowledged");
    assert_eq!(stored, report.sent, "every snapshot stored and judged");
    // A round is queued whole before it is encoded: it arrives in one read, is stored
    // together and acknowledged once.
    assert!(
        acks * 3 <= stored,
        "{acks} acks for {stored} snapshots: rounds were not acknowledged together"
    );
    let agents = aggregator.fleet.agents(&Default::default(), None);
    assert_eq!(agents.len(), 200, "each of a stream's agents is its own");
    let troubled: std::collections::BTreeSet<(String, String)> = aggregator
        .fleet
        .alerts()
        .iter()
        .filter(|a| a.alertname == "ChannelFilling")
        .map(|a| (a.labels.0["host"].clone(), a.labels.0["agent"].clone()))
        .collect();
    assert_eq!(troubled.len(), 20, "one agent in ten: {troubled:?}");
    aggregator.stop().await;
}
