//! The default policy, continued: SinkStalled (a sink that delivers nothing while its channel
//! fills), ClusterDegraded, and replayed snapshots. On tokio's paused clock through the real
//! `Fleet`.

#[path = "policy/harness.rs"]
#[allow(dead_code)] // shared with policy.rs, which uses the rest
mod harness;

use std::time::Duration;

use flumewatch_aggregator::alert::AlertStatus;
use flumewatch_testkit::fake_flume::Profile;
use harness::*;

// ── SinkStalled ─────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn a_dead_sink_is_stalled_within_three_polls_naming_its_channel() {
    let mut w = World::new();
    w.connect("h1", &[]);
    let mut body = sim(Profile::DeadSink {
        events_per_sec: 5.0,
    });
    // The sink is dead from the start: a full 10 s window without a drain, then a second poll.
    run_for(&mut w, "h1", 30 * SEC, &mut body).await;
    let stalled = w.firing("SinkStalled");
    assert_eq!(stalled.len(), 1, "{:?}", w.summary());
    assert_eq!(stalled[0].labels.get("component"), Some("k1"));
    assert_eq!(
        stalled[0].context.peer.as_ref().map(|p| p.name.as_str()),
        Some("c1"),
        "names the channel that fills"
    );
    assert!(
        stalled[0].annotations["summary"].contains("channel c1 holds"),
        "{}",
        stalled[0].annotations["summary"]
    );
    assert!(
        stalled[0].context.channel.is_some(),
        "the channel's figures go along"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_that_still_drains_is_not_stalled() {
    let mut w = World::new();
    w.connect("h1", &[]);
    let profile = Profile::SlowSink {
        events_per_sec: 20.0,
        after: Duration::ZERO,
        drain_share: 0.5,
    };
    run_for(&mut w, "h1", 10 * MIN, sim(profile)).await;
    assert!(w.status_of("SinkStalled").is_empty(), "{:?}", w.summary());
}

// ── ClusterDegraded ─────────────────────────────────────────────────────────────────────────

async fn cluster_with_failing(failing: usize) -> World {
    cluster_of(10, failing).await
}

async fn cluster_of(size: usize, failing: usize) -> World {
    let mut w = World::new();
    let hosts: Vec<String> = (0..size).map(|i| format!("bj-{i:04}")).collect();
    for host in &hosts {
        w.connect(host, &[("cluster", "bj-log")]);
    }
    for _ in 0..12 {
        for (i, host) in hosts.iter().enumerate() {
            if i < failing {
                w.poll_failed(host);
            } else {
                w.poll(host, &sample("steady-load-t15s.json"));
            }
        }
        w.advance(10 * SEC).await;
    }
    w
}

#[tokio::test(start_paused = true)]
async fn two_of_ten_agents_down_degrade_the_cluster() {
    let w = cluster_with_failing(2).await;
    let firing = w.firing("ClusterDegraded");
    assert_eq!(firing.len(), 1, "{:?}", w.summary());
    assert_eq!(firing[0].labels.get("cluster"), Some("bj-log"));
    assert_eq!(
        firing[0].labels.get("host"),
        None,
        "fleet-level: the grouping label only"
    );
    assert_eq!(firing[0].value, 20.0);
}

#[tokio::test(start_paused = true)]
async fn one_of_ten_agents_down_is_not_a_degraded_cluster() {
    let w = cluster_with_failing(1).await;
    assert_eq!(w.firing("FlumeAgentDown").len(), 1);
    assert!(
        w.status_of("ClusterDegraded").is_empty(),
        "{:?}",
        w.summary()
    );
}

#[tokio::test(start_paused = true)]
async fn a_cluster_larger_than_one_tick_slice_is_counted_whole() {
    // The tick judges agents a slice at a time (the fleet lock is let go in between): the
    // cluster's share must still count every agent of every slice once.
    let w = cluster_of(1_200, 300).await;
    assert_eq!(w.firing("FlumeAgentDown").len(), 300);
    let firing = w.firing("ClusterDegraded");
    assert_eq!(firing.len(), 1, "{:?}", w.summary());
    assert_eq!(firing[0].value, 25.0, "300 of 1 200 agents");
}

// ── Replays ─────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn backfill_never_fires_on_its_own() {
    use flumewatch_proto::model::snapshot::Snapshot;
    use flumewatch_sidecar::flume::parse_metrics;
    let mut w = World::new();
    w.connect("h1", &[]);
    w.poll("h1", &sample("multi-component-agent.json"));
    // A replayed old snapshot of a failed file channel, followed by the healthy newest one.
    let stream = w.fleet.connect(
        flumewatch_aggregator::fleet::Hello {
            host: "h1".into(),
            instance_id: "h1-1".into(),
            agents: vec!["a1".into()],
            labels: Default::default(),
            version: "test".into(),
            poll_interval: 10 * SEC,
        },
        w.now(),
    );
    let body = std::fs::read(shared("samples/file-channel-failed-to-start.json")).unwrap();
    let old = Snapshot {
        backfill: true,
        ..flumewatch_testkit::snapshot::ok(2, w.now().wall, parse_metrics(&body).unwrap())
    };
    w.fleet.record("h1", stream.stream_id, old, w.now());
    assert!(w.summary().is_empty(), "{:?}", w.summary());
}

// ── Restarts ────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn an_alert_that_cleared_while_the_aggregator_was_down_resolves_at_its_first_look() {
    // Before the restart: a full channel fires.
    let mut before = World::new();
    before.connect("h1", &[]);
    let mut full = sample("steady-load-t15s.json");
    set(&mut full, "CHANNEL.mem1", "ChannelFillPercentage", "99.5");
    run_for(&mut before, "h1", 30 * SEC, |_, _| full.clone()).await;
    let firing = before.firing("ChannelFilling");
    assert!(!firing.is_empty(), "{:?}", before.summary());
    let restored: Vec<_> = firing
        .iter()
        .map(|a| {
            (
                a.fingerprint,
                a.active_since,
                a.firing_since.unwrap(),
                "h1\ta1".to_owned(),
            )
        })
        .collect();

    // After: the channel drained while the aggregator was down.
    let mut after = World::new();
    after.fleet.restore_firing(restored.clone());
    after.connect("h1", &[]);
    after.poll("h1", &sample("steady-load-t15s.json"));
    let resolved: Vec<_> = after
        .alerts()
        .into_iter()
        .filter(|a| a.alertname == "ChannelFilling")
        .collect();
    assert_eq!(resolved.len(), firing.len(), "{:?}", after.summary());
    for alert in &resolved {
        assert_eq!(alert.status, AlertStatus::Resolved);
        assert!(
            firing
                .iter()
                .any(|f| f.fingerprint == alert.fingerprint && f.firing_since == alert.firing_since),
            "keeps its old times"
        );
    }

    // A failed first poll says nothing: the restored alert is not resolved by it.
    let mut down = World::new();
    down.fleet.restore_firing(restored);
    down.connect("h1", &[]);
    down.poll_failed("h1");
    assert!(down.summary().is_empty(), "{:?}", down.summary());
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_known_before_the_restart_that_never_returns_is_silent() {
    let mut w = World::new();
    let hello = |host: &str| flumewatch_aggregator::fleet::Hello {
        host: host.into(),
        instance_id: format!("{host}-1"),
        agents: vec!["a1".into()],
        labels: [("cluster".to_owned(), "bj".to_owned())].into(),
        version: "test".into(),
        poll_interval: 10 * SEC,
    };
    w.fleet
        .remember(vec![hello("gone"), hello("back")], w.now());
    assert_eq!(w.fleet.known_sidecars().len(), 2);
    w.advance(20 * SEC).await;
    w.connect("back", &[("cluster", "bj")]);
    for _ in 0..2 {
        w.poll("back", &sample("steady-load-t15s.json"));
        w.advance(10 * SEC).await;
    }
    let silent = w.firing("SidecarSilent");
    assert_eq!(silent.len(), 1, "{:?}", w.summary());
    assert_eq!(silent[0].labels.get("host"), Some("gone"));
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_gone_longer_than_forget_after_leaves_the_fleet_announced_once() {
    let mut w = World::new();
    w.connect("stays", &[]);
    w.fleet.remember(
        vec![flumewatch_aggregator::fleet::Hello {
            host: "gone".into(),
            instance_id: "gone-1".into(),
            agents: vec!["a1".into()],
            labels: Default::default(),
            version: "test".into(),
            poll_interval: 10 * SEC,
        }],
        w.now(),
    );
    let after = 10 * MIN;
    w.advance(9 * MIN).await;
    assert!(w.fleet.forget_silent(after, w.now()).is_empty(), "not yet");
    w.advance(2 * MIN).await;
    assert_eq!(w.fleet.forget_silent(after, w.now()), ["gone/a1"]);
    let announced = w.fleet.take_announcements();
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].reason,
        flumewatch_aggregator::fleet::RetireReason::Silent(after)
    );
    assert!(w.fleet.take_announcements().is_empty(), "once");
    let known: Vec<String> = w
        .fleet
        .known_sidecars()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(known, ["stays"], "the connected one stays");
}
