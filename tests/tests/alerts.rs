//! End to end: a simulated agent's channel fills behind a stalled sink → ChannelFilling pending,
//! then firing after its hold-down, seen over tonic and the real grpcurl; the sink recovers →
//! resolved.

use std::process::Command;
use std::sync::Arc;

use flumewatch_aggregator::rules::RuleSet;
use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_flume::Reply;
use serde_json::Value;

/// The default policy with ChannelFilling held 2 s instead of 2 m, so the test runs in seconds.
const FAST_FILLING: &str = r#"
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
for = "2s"
condition = { all = [
  { value = "ChannelFillPercentage", op = ">=", threshold = 80 },
  { value = "ChannelCapacity", op = ">", threshold = 0 },
] }
summary = { zh = "通道 {component} 使用率 {value}%", en = "Channel {component} is {value}% full" }
"#;

fn body(fill_percent: u64) -> Reply {
    let mut body: Value = serde_json::from_slice(&sample("steady-load-t15s.json")).unwrap();
    let size = fill_percent * 100;
    body["CHANNEL.mem1"]["ChannelSize"] = Value::String(size.to_string());
    body["CHANNEL.mem1"]["ChannelFillPercentage"] = Value::String(format!("{}.0", fill_percent));
    Reply::Json(serde_json::to_vec(&body).unwrap())
}

async fn alerts(
    client: &mut pb::fleet_client::FleetClient<tonic::transport::Channel>,
) -> Vec<pb::Alert> {
    client
        .list_alerts(pb::ListAlertsRequest {
            labels: [("alertname".to_owned(), "ChannelFilling".to_owned())].into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().alerts)
        .unwrap_or_default()
}

fn state_of(alerts: &[pb::Alert]) -> Option<pb::AlertState> {
    alerts
        .first()
        .and_then(|a| pb::AlertState::try_from(a.state).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_channel_goes_pending_firing_resolved_and_grpcurl_sees_it() {
    let rules = Arc::new(RuleSet::from_text("fast.toml", FAST_FILLING).expect("rules"));
    let aggregator = AggregatorHandle::start_with("127.0.0.1:0".parse().unwrap(), rules).await;
    let flume = ScriptedFlume::start(body(10)).await;
    let sidecar = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "bj-flume-03",
        &[("a1", flume.url())],
        &[("cluster", "bj-log")],
    ));
    let client = aggregator.client().await;
    let polls = flume.polls();
    wait_for("a few healthy polls", || async {
        (flume.polls() > polls + 3).then_some(())
    })
    .await;
    assert!(alerts(&mut client.clone()).await.is_empty());

    flume.set(body(85)); // the sink stalls; the channel fills
    let pending = wait_for("ChannelFilling pending", || {
        let mut client = client.clone();
        async move {
            let a = alerts(&mut client).await;
            (state_of(&a) == Some(pb::AlertState::Pending)).then_some(a)
        }
    })
    .await;
    assert_eq!(pending[0].labels["component"], "mem1");
    let firing = wait_for("ChannelFilling firing", || {
        let mut client = client.clone();
        async move {
            let a = alerts(&mut client).await;
            (state_of(&a) == Some(pb::AlertState::Firing)).then_some(a)
        }
    })
    .await;
    let alert = &firing[0];
    let held = alert.firing_since.unwrap().seconds - alert.active_since.unwrap().seconds;
    assert!((2..=3).contains(&held), "fired {held}s after going pending");
    assert_eq!(alert.annotations["summary"], "通道 mem1 使用率 85%");
    assert_eq!(alert.labels["host"], "bj-flume-03");
    assert_eq!(alert.labels["cluster"], "bj-log");
    assert_eq!(alert.value, 85.0);

    // The same through grpcurl, filtered by state and label.
    let addr = aggregator.addr.to_string();
    let listed = tokio::task::spawn_blocking(move || {
        let out = Command::new(grpcurl())
            .args([
                "-plaintext",
                "-d",
                r#"{"states":["ALERT_STATE_FIRING"],"labels":{"cluster":"bj-log"}}"#,
                &addr,
                "flumewatch.v1.Fleet/ListAlerts",
            ])
            .output()
            .expect("grpcurl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rules = Command::new(grpcurl())
            .args(["-plaintext", &addr, "flumewatch.v1.Fleet/ListRules"])
            .output()
            .expect("grpcurl runs");
        assert!(rules.status.success());
        (
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
            serde_json::from_slice::<Value>(&rules.stdout).unwrap(),
        )
    })
    .await
    .unwrap();
    let (listed, rules) = listed;
    assert_eq!(listed["alerts"][0]["alertname"], "ChannelFilling");
    assert_eq!(listed["alerts"][0]["state"], "ALERT_STATE_FIRING");
    assert_eq!(listed["alerts"][0]["severity"], "SEVERITY_WARNING");
    let filling = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ChannelFilling" && r["severity"] == "SEVERITY_WARNING")
        .expect("rule listed");
    assert_eq!(filling["source"], "fast.toml");
    assert_eq!(filling["activeAlerts"], 1);
    assert!(
        filling["evaluations"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "SidecarSilent"),
        "defaults kept"
    );
    // Each rule's detection time at the interval the fleet polls at (100 ms here).
    let down = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "FlumeAgentDown")
        .expect("a default rule");
    assert_eq!(
        down["detection"],
        serde_json::json!([{"pollInterval": "0.100s", "detection": "0.300s"}]),
        "3 failed polls at 100 ms: {down}"
    );
    assert_eq!(filling["forPolls"], 1);

    flume.set(body(10)); // the sink recovers
    wait_for("ChannelFilling resolved", || {
        let mut client = client.clone();
        async move {
            (state_of(&alerts(&mut client).await) == Some(pb::AlertState::Resolved)).then_some(())
        }
    })
    .await;
    sidecar.stop().await;
    aggregator.stop().await;
}
