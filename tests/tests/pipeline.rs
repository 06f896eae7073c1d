//! Fake Flume agents (real HTTP, chunked, all-string JSON) → several sidecars → aggregator →
//! ListAgents / GetAgent over a real tonic client.

use std::collections::HashMap;

use flumewatch_e2e::*;
use flumewatch_proto::model::snapshot::{Component, Snapshot};
use flumewatch_proto::v1 as pb;
use flumewatch_sidecar::flume::parse_metrics;
use flumewatch_testkit::fake_flume::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_report_typed_snapshots_of_the_real_samples() {
    let aggregator = AggregatorHandle::start().await;
    let agents = [
        ("bj-01", "bj", "multi-component-agent.json"),
        ("bj-02", "bj", "slow-sink-filling-t22s.json"),
        ("sh-01", "sh", "file-channel-failed-to-start.json"),
    ];
    let mut flumes = Vec::new();
    let mut sidecars = Vec::new();
    for (host, cluster, file) in agents {
        let flume = ScriptedFlume::serving_sample(file).await;
        sidecars.push(SidecarHandle::start(sidecar_config(
            &aggregator.url(),
            host,
            &[("a1", flume.url())],
            &[("cluster", cluster), ("env", "test")],
        )));
        flumes.push(flume);
    }

    let mut client = aggregator.client().await;
    let listed = wait_for("three agents with a successful poll", || {
        let mut client = client.clone();
        async move {
            let agents = client
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .ok()?
                .into_inner()
                .agents;
            (agents.len() == 3 && agents.iter().all(|a| status_of(a) == pb::ScrapeStatus::Ok))
                .then_some(agents)
        }
    })
    .await;
    let hosts: Vec<&str> = listed.iter().map(|a| a.host.as_str()).collect();
    assert_eq!(hosts, ["bj-01", "bj-02", "sh-01"]);
    for agent in &listed {
        assert_eq!(agent.connection, pb::ConnectionState::Connected as i32);
        assert_eq!(agent.labels["env"], "test");
        assert_eq!(agent.agent, "a1");
    }
    let fills: HashMap<&str, f64> = listed
        .iter()
        .map(|a| (a.host.as_str(), a.max_channel_fill_percentage))
        .collect();
    assert_eq!(fills["bj-02"], 100.0, "blockedmem is full");
    assert_eq!(
        fills["bj-01"], 0.0,
        "pseudo1's Double.MAX_VALUE is unknown, not full"
    );
    assert_eq!(
        fills["sh-01"], -1.0,
        "the failed file channel has no known fill"
    );

    let bj = client
        .list_agents(pb::ListAgentsRequest {
            labels: [("cluster".to_owned(), "bj".to_owned())].into(),
            host: String::new(),
        })
        .await
        .expect("list by label")
        .into_inner()
        .agents;
    assert_eq!(bj.len(), 2);

    // The aggregator holds exactly what Flume said, typed.
    for (host, _, file) in agents {
        let detail = get_agent(&mut client, host, 0).await.expect("agent known");
        let latest = Snapshot::try_from(detail.latest.expect("latest snapshot")).expect("typed");
        let expected: Vec<Component> = parse_metrics(&sample(file)).expect("sample parses");
        assert_eq!(
            latest.components, expected,
            "{host}: components as parsed from {file}"
        );
    }

    // Rates appear once two polls are in; a sample served unchanged has zero rates, no resets.
    let detail = wait_for("rates for bj-02", || {
        let mut client = client.clone();
        async move {
            get_agent(&mut client, "bj-02", 5)
                .await
                .filter(|d| !d.rates.is_empty())
        }
    })
    .await;
    assert_eq!(detail.rates.len(), 6);
    for rates in &detail.rates {
        assert!(!rates.reset);
        assert!(
            rates
                .rates
                .iter()
                .all(|r| r.per_second == 0.0 && r.increase == 0),
            "{rates:?}"
        );
    }
    assert!(!detail.history.is_empty() && detail.history.len() <= 5);
    let seqs: Vec<u64> = detail.history.iter().map(|s| s.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "history in order: {seqs:?}"
    );

    // Moving counters give positive rates: switch bj-02 from the t=12s to the t=22s sample.
    flumes[1].set(Reply::Json(sample("slow-sink-filling-t12s.json")));
    let polls = flumes[1].polls();
    wait_for("a poll of the t=12s sample", || async {
        (flumes[1].polls() > polls + 1).then_some(())
    })
    .await;
    flumes[1].set(Reply::Json(sample("slow-sink-filling-t22s.json")));
    let moving = wait_for("positive rates for slowmem", || {
        let mut client = client.clone();
        async move {
            let detail = get_agent(&mut client, "bj-02", 0).await?;
            let slow = detail.rates.iter().find(|r| r.name == "slowmem")?;
            let put = slow
                .rates
                .iter()
                .find(|r| r.counter == pb::Counter::EventPutSuccessCount as i32)?;
            (put.increase == 600).then_some(*put)
        }
    })
    .await;
    assert!(moving.per_second > 0.0);

    // The sidecars' own counters travel with them.
    let detail = wait_for("sidecar stats", || {
        let mut client = client.clone();
        async move {
            get_agent(&mut client, "sh-01", 0)
                .await
                .filter(|d| d.sidecar_stats.is_some_and(|s| s.polls > 0))
        }
    })
    .await;
    let stats = detail.sidecar_stats.expect("stats");
    assert_eq!(stats.connects, 1);
    assert_eq!(stats.dropped, 0);

    for sidecar in sidecars {
        sidecar.stop().await;
    }
    wait_for("agents disconnected", || {
        let mut client = client.clone();
        async move {
            let agents = client
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .ok()?
                .into_inner()
                .agents;
            agents
                .iter()
                .all(|a| a.connection == pb::ConnectionState::Disconnected as i32)
                .then_some(())
        }
    })
    .await;
    aggregator.stop().await;
}
