//! The default policy's detection time with real parts on real clocks: incident traces served
//! in real time over HTTP, a real sidecar polling every second, the real aggregator. The paused
//! -clock replays (`replay.rs`) cover every trace and phase; these show the same timing holds
//! with real polls, real gRPC and real evaluation.

use flumewatch_aggregator::alert::AlertStatus;
use flumewatch_e2e::replay;
use flumewatch_e2e::trace_player::TracePlayer;
use flumewatch_e2e::{sidecar_config, wait_for, AggregatorHandle, SidecarHandle};

fn incident(name: &str) -> Vec<replay::Sample> {
    replay::load(
        &flumewatch_testkit::fixture("flume")
            .join("incidents")
            .join(name),
    )
    .unwrap()
}

/// Starts the aggregator (default policy) and one sidecar polling `player` every `interval`.
async fn watch(
    player: &TracePlayer,
    host: &str,
    interval: u64,
) -> (AggregatorHandle, SidecarHandle) {
    let aggregator = AggregatorHandle::start().await;
    let mut config = sidecar_config(&aggregator.url(), host, &[("a1", player.url())], &[]);
    config.interval = Some(format!("{interval}s"));
    config.timeout = Some("800ms".into());
    let sidecar = SidecarHandle::start(config);
    (aggregator, sidecar)
}

/// Trace time at which `alertname` is first seen firing.
async fn fires(aggregator: &AggregatorHandle, player: &TracePlayer, alertname: &str) -> f64 {
    wait_for(&format!("{alertname} firing"), || async {
        aggregator
            .fleet
            .alerts()
            .iter()
            .any(|a| a.alertname == alertname && a.status == AlertStatus::Firing)
            .then(|| player.trace_time())
    })
    .await
}

/// kill -9 at t=60.3; every sample from t=61 is refused.
async fn killed_agent(interval: u64) {
    let player = TracePlayer::start(incident("kill-9.jsonl"), 56.0)
        .await
        .unwrap();
    let (aggregator, sidecar) = watch(&player, "live-kill", interval).await;
    let at = fires(&aggregator, &player, "FlumeAgentDown").await;
    let detection = at - 60.3;
    println!("FlumeAgentDown {detection:.1} s after the kill at {interval} s polls");
    // 3 refused polls: the first within an interval of t=61, two more, plus delivery.
    let bound = 3.0 * interval as f64 + 0.7 + 1.0;
    assert!(detection <= bound, "detected after {detection:.1} s");
    let firing: Vec<String> = aggregator
        .fleet
        .alerts()
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .map(|a| a.alertname.clone())
        .collect();
    assert_eq!(firing, ["FlumeAgentDown"], "nothing else");
    sidecar.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn a_killed_agent_is_down_within_three_polls_at_1s() {
    killed_agent(1).await;
}

#[tokio::test]
async fn a_killed_agent_is_down_within_three_polls_at_10s() {
    killed_agent(10).await;
}

#[tokio::test]
async fn a_dead_sink_target_is_alerted_before_the_channel_is_full() {
    // The receiver dies at t=30; mem1 is full at t=80 and the source refuses from t=86.
    let player = TracePlayer::start(incident("sink-target-down.jsonl"), 24.0)
        .await
        .unwrap();
    let (aggregator, sidecar) = watch(&player, "live-sink", 1).await;
    let soon = fires(&aggregator, &player, "ChannelFullSoon").await;
    let stalled = fires(&aggregator, &player, "SinkStalled").await;
    println!(
        "ChannelFullSoon {:.1} s and SinkStalled {:.1} s after the sink target died (full at +50 s)",
        soon - 30.0,
        stalled - 30.0
    );
    assert!(
        soon < 80.0 && stalled < 80.0,
        "before full: {soon:.1}, {stalled:.1}"
    );
    let alerts = aggregator.fleet.alerts();
    let stalled = alerts
        .iter()
        .find(|a| a.alertname == "SinkStalled")
        .expect("listed");
    assert_eq!(stalled.labels.get("component"), Some("http1"));
    assert!(
        stalled.annotations["summary"].contains("mem1"),
        "names the channel: {}",
        stalled.annotations["summary"]
    );
    assert_eq!(
        stalled.context.peer.as_ref().map(|p| p.name.as_str()),
        Some("mem1")
    );
    sidecar.stop().await;
    aggregator.stop().await;
}
