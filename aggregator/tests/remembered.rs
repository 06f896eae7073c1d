//! The real binary stopped and started again while the fleet moves on: a sidecar killed while
//! the aggregator was down is missed (SidecarSilent within the usual time), and an alert that
//! cleared meanwhile gets its resolved notice.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;

/// The default policy (SidecarSilent included) with ChannelFilling at once, no forecast.
const RULES: &str = r#"
disable = ["ChannelFullSoon"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 80 }
summary = { zh = "通道 {component} 使用率 {value}%" }
"#;

async fn firing(url: &str, alertname: &str, host: &str) -> Option<pb::Alert> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    client
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .ok()?
        .into_inner()
        .alerts
        .into_iter()
        .find(|a| {
            a.alertname == alertname
                && a.labels.get("host").map(String::as_str) == Some(host)
                && a.state == pb::AlertState::Firing as i32
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_misses_the_sidecar_that_died_and_resolves_what_cleared() {
    let dir = fresh_dir("fw-remembered");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-remember", Some("SECremember"))
        .await
        .unwrap();
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"",
        "group_wait = \"1s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"",
        &fake.webhook(),
        "SECremember",
    );
    let mut aggregator = spawn(&config);

    // h-a's channel is full; h-b is healthy.
    let a_full = Arc::new(AtomicBool::new(true));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let mut flumes = Vec::new();
    for (host, full, stop) in [
        ("h-a", Some(a_full.clone()), &stop_a),
        ("h-b", None, &stop_b),
    ] {
        let (filling, healthy) = (body_with_fill(85), body_with_fill(10));
        let flume = FakeFlume::start(Arc::new(move || {
            let is_full = full.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
            Reply::Json(if is_full {
                filling.clone()
            } else {
                healthy.clone()
            })
        }))
        .await
        .unwrap();
        start_sidecar(&url, host, "bj-log", flume.url(), stop);
        flumes.push(flume);
    }
    let told = wait_for("h-a's full channel told", || async {
        let r = fake.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(told[0].text.contains("**h-a**/a1"), "{}", told[0].text);
    wait_for("both sidecars known", || async {
        let mut client = FleetClient::connect(url.clone()).await.ok()?;
        let agents = client
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .ok()?
            .into_inner()
            .agents;
        (agents.len() == 2).then_some(())
    })
    .await;

    // The aggregator stops; meanwhile h-b's sidecar dies and h-a's channel drains.
    assert!(Command::new("kill")
        .args(["-TERM", &aggregator.id().to_string()])
        .status()
        .unwrap()
        .success());
    aggregator.wait().unwrap();
    stop_b.cancel();
    a_full.store(false, Ordering::SeqCst);

    let _restarted = spawn(&config);
    let restarted_at = tokio::time::Instant::now();
    let resolved = wait_for("h-a's resolved notice", || async {
        fake.received()
            .into_iter()
            .skip(1)
            .find(|m| m.text.contains("[已恢复]") && m.text.contains("**h-a**/a1"))
    })
    .await;
    println!(
        "resolved notice {:?} after the restart:\n{}",
        resolved.at - restarted_at,
        resolved.text
    );
    let silent = wait_for("SidecarSilent for the sidecar that died", || {
        firing(&url, "SidecarSilent", "h-b")
    })
    .await;
    let after = restarted_at.elapsed();
    println!("SidecarSilent for h-b {after:?} after the restart");
    // Three poll intervals of at least 10 s, counted from the restart.
    assert!(
        after.as_secs_f64() >= 29.0,
        "not before its time: {after:?}"
    );
    assert_eq!(silent.severity, pb::Severity::Critical as i32);
    assert!(
        firing(&url, "SidecarSilent", "h-a").await.is_none(),
        "the sidecar that came back is not missed"
    );
    stop_a.cancel();
}
