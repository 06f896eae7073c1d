//! Reload: a valid change takes effect without any stream reconnecting; an invalid change is
//! refused, says why, and the old rules keep firing.

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;

fn rules(threshold: u32) -> String {
    format!(
        r#"disable = ["SidecarSilent"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = {{ value = "ChannelFillPercentage", op = ">=", threshold = {threshold} }}
"#
    )
}

async fn filling_state(
    client: &pb::fleet_client::FleetClient<tonic::transport::Channel>,
) -> Option<pb::AlertState> {
    let mut client = client.clone();
    let alerts = client
        .list_alerts(pb::ListAlertsRequest {
            // The default critical ChannelFilling (≥ 95 %, held 2 m) is not what this test reloads.
            labels: [
                ("alertname".to_owned(), "ChannelFilling".to_owned()),
                ("severity".to_owned(), "warning".to_owned()),
            ]
            .into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .alerts;
    alerts
        .first()
        .and_then(|a| pb::AlertState::try_from(a.state).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_applies_without_reconnects_and_a_bad_one_is_refused() {
    let dir = TempDir::new("reload");
    std::fs::write(dir.join("rules.toml"), rules(80)).unwrap();
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        format!(
            "rules = \"rules.toml\"\nstate_dir = {:?}\n",
            dir.join("state")
        ),
    )
    .unwrap();
    let aggregator = AggregatorHandle::start_file(&config).await;
    let flume = ScriptedFlume::start(flumewatch_testkit::fake_flume::Reply::Json(body_with_fill(
        85,
    )))
    .await;
    let sidecar = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "h1",
        &[("a1", flume.url())],
        &[("cluster", "bj-log")],
    ));
    let client = aggregator.client().await;
    wait_for(
        "ChannelFilling firing at 85 % with threshold 80",
        || async { (filling_state(&client).await == Some(pb::AlertState::Firing)).then_some(()) },
    )
    .await;

    // Raise the threshold: the alert resolves, no stream is reopened.
    std::fs::write(dir.join("rules.toml"), rules(90)).unwrap();
    let reply = client
        .clone()
        .reload(pb::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(reply.ok, "{}", reply.error);
    assert_eq!(
        reply.rules, 13,
        "the 14 defaults minus SidecarSilent, ChannelFilling:warning replaced"
    );
    wait_for(
        "ChannelFilling resolved under the new threshold",
        || async { (filling_state(&client).await == Some(pb::AlertState::Resolved)).then_some(()) },
    )
    .await;
    assert_eq!(
        aggregator
            .counters
            .streams_opened
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "no stream reconnected"
    );

    // A broken rule file is refused and named; the running rules stay.
    std::fs::write(
        dir.join("rules.toml"),
        rules(90).replace("ChannelFillPercentage", "ChannelFullPercentage"),
    )
    .unwrap();
    let reply = client
        .clone()
        .reload(pb::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.ok);
    assert!(
        reply.error.contains("rules.toml")
            && reply.error.contains("rule[0].condition.value")
            && reply.error.contains("unknown metric"),
        "{}",
        reply.error
    );
    flume.set(flumewatch_testkit::fake_flume::Reply::Json(body_with_fill(
        95,
    )));
    wait_for("the old rules (threshold 90) fire at 95 %", || async {
        (filling_state(&client).await == Some(pb::AlertState::Firing)).then_some(())
    })
    .await;
    let mut c = client.clone();
    let detail = get_agent(&mut c, "h1", 0).await.expect("agent");
    assert_eq!(
        detail.sidecar_stats.map(|s| s.connects),
        Some(1),
        "the sidecar never reconnected"
    );

    sidecar.stop().await;
    aggregator.stop().await;
}
