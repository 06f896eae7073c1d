//! Faults over real sockets: Flume down or misbehaving, aggregator restarted, sidecar restarted,
//! buffer overflow while the aggregator is away.

use std::collections::BTreeSet;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_flume::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_failures_show_as_outcomes_while_the_sidecar_stays_connected() {
    let aggregator = AggregatorHandle::start().await;
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    let sidecar = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "h1",
        &[("a1", flume.url())],
        &[],
    ));
    let client = aggregator.client().await;
    let summary_when = |what: &'static str, status: pb::ScrapeStatus, min_failures: u32| {
        let client = client.clone();
        async move {
            wait_for(what, || {
                let mut client = client.clone();
                async move {
                    let summary = get_agent(&mut client, "h1", 0).await?.summary?;
                    (status_of(&summary) == status && summary.consecutive_failures >= min_failures)
                        .then_some(summary)
                }
            })
            .await
        }
    };
    summary_when("a successful poll", pb::ScrapeStatus::Ok, 0).await;

    flume.server.go_down();
    let down = summary_when(
        "connection refused, 3 polls in a row",
        pb::ScrapeStatus::ConnectionRefused,
        3,
    )
    .await;
    assert_eq!(
        down.connection,
        pb::ConnectionState::Connected as i32,
        "the sidecar itself is fine"
    );
    assert!(down.last_outcome.unwrap().error.contains("refused"));
    flume.server.come_back();
    summary_when("recovery", pb::ScrapeStatus::Ok, 0).await;

    flume.set(Reply::Status(503));
    let http = summary_when("HTTP 503", pb::ScrapeStatus::HttpStatus, 1).await;
    assert_eq!(http.last_outcome.unwrap().http_status, 503);

    flume.set(Reply::Json(b"<html>not json</html>".to_vec()));
    let bad = summary_when("bad payload", pb::ScrapeStatus::BadPayload, 1).await;
    assert!(bad.last_outcome.unwrap().error.contains("not JSON"));

    flume.set(Reply::Hang);
    summary_when("timeout", pb::ScrapeStatus::Timeout, 1).await;

    flume.set(Reply::Json(sample("steady-load-t15s.json")));
    let ok = summary_when("recovery again", pb::ScrapeStatus::Ok, 0).await;
    assert_eq!(ok.component_count, 3);
    sidecar.stop().await;
    aggregator.stop().await;
}

/// Sequence numbers the aggregator holds for host `h1`, oldest first.
async fn held_seqs(aggregator: &AggregatorHandle) -> Vec<u64> {
    let mut client = aggregator.client().await;
    get_agent(&mut client, "h1", 1000)
        .await
        .map(|d| d.history.iter().map(|s| s.seq).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_restart_replays_what_was_taken_meanwhile_once_in_order() {
    let first = AggregatorHandle::start().await;
    let addr = first.addr;
    let flume = ScriptedFlume::serving_sample("steady-load-t15s.json").await;
    let sidecar = SidecarHandle::start(sidecar_config(
        &first.url(),
        "h1",
        &[("a1", flume.url())],
        &[],
    ));
    wait_for("five snapshots stored", || async {
        (first
            .fleet
            .agents(&Default::default(), None)
            .first()?
            .state
            .received
            >= 5)
            .then_some(())
    })
    .await;
    let before = held_seqs(&first).await;
    first.stop().await;

    let polls = flume.polls();
    wait_for("ten polls while the aggregator is down", || async {
        (flume.polls() >= polls + 10).then_some(())
    })
    .await;

    let second = AggregatorHandle::start_on(addr).await;
    let last_before = *before.last().expect("some stored before");
    let after = wait_for("the snapshots taken meanwhile", || {
        let second = &second;
        async move {
            let seqs = held_seqs(second).await;
            (seqs.last().copied().unwrap_or(0) >= last_before + 10).then_some(seqs)
        }
    })
    .await;

    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap, no duplicate: {after:?}"
    );
    assert!(
        after[0] <= last_before + 1,
        "starts right after what the first aggregator held: {after:?} vs {before:?}"
    );
    let all: BTreeSet<u64> = before.iter().chain(&after).copied().collect();
    let max = *all.last().unwrap();
    assert_eq!(
        all,
        (1..=max).collect(),
        "every snapshot reached an aggregator"
    );
    let mut client = second.client().await;
    let detail = get_agent(&mut client, "h1", 0).await.expect("known");
    assert_eq!(detail.duplicates_ignored, 0);
    assert!(detail.sidecar_stats.is_some_and(|s| s.connects >= 2));
    sidecar.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sidecar_is_not_taken_for_a_duplicate() {
    let aggregator = AggregatorHandle::start().await;
    let flume = ScriptedFlume::serving_sample("idle-agent-exec-memory-http.json").await;
    let config = || sidecar_config(&aggregator.url(), "h1", &[("a1", flume.url())], &[]);
    let sidecar = SidecarHandle::start(config());
    let received = || {
        let fleet = aggregator.fleet.clone();
        move || {
            let fleet = fleet.clone();
            async move {
                fleet
                    .agent("h1", "a1")
                    .ok()
                    .map(|v| (v.state.received, v.state.duplicates))
            }
        }
    };
    wait_for("three snapshots", || {
        let r = received();
        async move { r().await.filter(|(n, _)| *n >= 3) }
    })
    .await;
    sidecar.stop().await;
    let (stored_before, _) = received()().await.expect("known");

    let restarted = SidecarHandle::start(config());
    let (stored_after, duplicates) = wait_for("three more snapshots from the new instance", || {
        let r = received();
        async move { r().await.filter(|(n, _)| *n >= stored_before + 3) }
    })
    .await;
    assert!(stored_after >= stored_before + 3);
    assert_eq!(duplicates, 0, "sequence 1 of a new instance is new");
    restarted.stop().await;
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest_and_says_so() {
    // Reserve a port, then leave it closed: the sidecar starts with no aggregator.
    let placeholder = AggregatorHandle::start().await;
    let addr = placeholder.addr;
    placeholder.stop().await;

    let flume = ScriptedFlume::serving_sample("idle-agent-exec-memory-http.json").await;
    let mut config = sidecar_config(&format!("http://{addr}"), "h1", &[("a1", flume.url())], &[]);
    config.buffer = Some(5);
    let sidecar = SidecarHandle::start(config);
    wait_for("twelve polls with nowhere to send them", || async {
        (flume.polls() >= 12).then_some(())
    })
    .await;

    let aggregator = AggregatorHandle::start_on(addr).await;
    let client = aggregator.client().await;
    let detail = wait_for("drops reported", || {
        let mut client = client.clone();
        async move {
            get_agent(&mut client, "h1", 1000).await.filter(|d| {
                d.sidecar_stats.is_some_and(|s| s.dropped >= 7)
                    && d.history.last().is_some_and(|s| s.seq >= 12)
            })
        }
    })
    .await;
    let seqs: Vec<u64> = detail.history.iter().map(|s| s.seq).collect();
    assert!(
        seqs[0] >= 8,
        "the oldest were dropped, the newest kept: {seqs:?}"
    );
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    sidecar.stop().await;
    aggregator.stop().await;
}
