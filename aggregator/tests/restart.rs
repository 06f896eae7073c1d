//! The real binary, SIGKILLed with an undelivered DingTalk message in its outbox: after a
//! restart the message is delivered exactly once, the group is not notified again, and a
//! silence made before the kill still mutes.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Forced};
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;

const RULES: &str = r#"
disable = ["SidecarSilent"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 80 }
summary = { zh = "通道 {component} 使用率 {value}%" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_the_outbox_and_the_silences() {
    let dir = fresh_dir("fw-restart");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-kill", Some("SECkill"))
        .await
        .unwrap();
    fake.force(&[Forced::Http(500); 10_000]);
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"",
        "group_wait = \"1s\"\ngroup_interval = \"1s\"",
        &fake.webhook(),
        "SECkill",
    );
    let mut aggregator = spawn(&config);

    // A silence for the cluster under maintenance, made before anything fires.
    let silence = silence_cluster(&url, "maintenance").await;

    let body = Arc::new(filling_body());
    let stop = CancellationToken::new();
    let mut flumes = Vec::new();
    for (host, cluster) in [("bj-01", "bj-log"), ("mt-01", "maintenance")] {
        let body = body.clone();
        let flume = FakeFlume::start(Arc::new(move || Reply::Json(body.as_ref().clone())))
            .await
            .unwrap();
        start_sidecar(&url, host, cluster, flume.url(), &stop);
        flumes.push(flume);
    }

    wait_for("a message stuck in the outbox", || async {
        receivers(&url)
            .await
            .filter(|r| r.failed_attempts >= 1 && r.queued >= 1)
    })
    .await;
    let firing_before = wait_for("bj-01's alert firing", || async {
        firing_alert(&url, "bj-01").await?.firing_since
    })
    .await;
    aggregator.kill().expect("SIGKILL");
    aggregator.wait().unwrap();
    fake.clear_forced();
    assert!(fake.received().is_empty());
    // After the restart the rule holds for an hour before firing: a firing alert that still
    // holds must resume, not start over.
    std::fs::write(
        dir.join("rules.toml"),
        RULES.replace(
            "kinds = [\"channel\"]",
            "kinds = [\"channel\"]\nfor = \"1h\"",
        ),
    )
    .unwrap();

    let mut restarted = spawn(&config);
    let delivered = wait_for("the outbox delivered after the restart", || async {
        let r = fake.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    // The group forms again after the restart: it must be found already notified.
    wait_for(
        "the re-formed group flushed and found already notified",
        || async { receivers(&url).await.filter(|r| r.suppressed >= 1) },
    )
    .await;
    let received = fake.received();
    assert_eq!(
        received.len(),
        1,
        "delivered exactly once: {:?}",
        received.iter().map(|r| &r.title).collect::<Vec<_>>()
    );
    assert!(delivered[0].text.contains("**bj-01**/a1"));
    assert!(
        !received.iter().any(|r| r.text.contains("mt-01")),
        "the silence still mutes after the kill"
    );
    let mut client = FleetClient::connect(url.clone()).await.unwrap();
    let silences = client
        .list_silences(pb::ListSilencesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .silences;
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0].id, silence.id);
    assert!(silences[0].active);
    let resumed = wait_for("bj-01's alert resumed as firing", || {
        firing_alert(&url, "bj-01")
    })
    .await;
    // The state database keeps milliseconds.
    let ms = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000;
    assert_eq!(
        resumed.firing_since.as_ref().map(ms),
        Some(ms(&firing_before)),
        "firing since before the kill, despite for = 1h"
    );
    let alerts = client
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let muted = alerts
        .iter()
        .find(|a| a.labels["host"] == "mt-01")
        .expect("the muted alert is still listed");
    assert_eq!(muted.silenced_by, std::slice::from_ref(&silence.id));
    assert_eq!(fake.leaks(), 0);

    stop.cancel();
    restarted.kill().ok();
    restarted.wait().ok();
}

async fn rule_names(url: &str) -> Option<Vec<String>> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    Some(
        client
            .list_rules(pb::ListRulesRequest {})
            .await
            .ok()?
            .into_inner()
            .rules
            .into_iter()
            .map(|r| r.name)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_rules_and_refuses_a_broken_file() {
    let dir = fresh_dir("fw-sighup");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, http_port) = (free(), free());
    let url = format!("http://127.0.0.1:{port}");
    let http = format!("127.0.0.1:{http_port}");
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let config = dir.join("aggregator.toml");
    std::fs::write(&config, format!("grpc_listen = \"127.0.0.1:{port}\"\nhttp_listen = \"{http}\"\nstate_dir = {:?}\nrules = \"rules.toml\"\n", dir.join("state"))).unwrap();
    let mut aggregator = spawn(&config);
    let before = wait_for("the aggregator to answer", || rule_names(&url)).await;
    assert!(!before.iter().any(|n| n == "HdfsStalled"));

    let extra = "\n[[rule]]\nname = \"HdfsStalled\"\nseverity = \"warning\"\nkinds = [\"sink\"]\ncondition = { rate = \"EventDrainSuccessCount\", window = \"5m\", op = \"<\", threshold = 1 }\n";
    std::fs::write(dir.join("rules.toml"), format!("{RULES}{extra}")).unwrap();
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success())
    };
    hup(aggregator.id());
    wait_for("the new rule in force", || async {
        rule_names(&url)
            .await
            .filter(|n| n.iter().any(|n| n == "HdfsStalled"))
    })
    .await;
    assert_eq!(
        wait_for("reload metric", || metric(
            &http,
            "flumewatch_config_last_reload_successful"
        ))
        .await,
        1.0
    );

    std::fs::write(dir.join("rules.toml"), "[[rule]]\nname = 1\n").unwrap();
    hup(aggregator.id());
    wait_for("the refused reload counted", || async {
        metric(&http, "flumewatch_config_reload_failures_total")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        metric(&http, "flumewatch_config_last_reload_successful").await,
        Some(0.0)
    );
    let after = rule_names(&url).await.unwrap();
    assert!(
        after.iter().any(|n| n == "HdfsStalled"),
        "the previous rules stay in force"
    );
    assert!(aggregator.try_wait().unwrap().is_none(), "still running");
    aggregator.kill().ok();
    aggregator.wait().ok();
}
