//! SIGTERM on the real aggregator: health turns NOT_SERVING for watchers, sidecar streams are
//! closed by the aggregator (not cut), a message DingTalk has not taken stays in the outbox and
//! is delivered once after the next start, and the process exits 0 within its grace period.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use common::*;
use flumewatch_sidecar::config::FileConfig as SidecarFile;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Forced};
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const RULES: &str = r#"
disable = ["SidecarSilent"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 80 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_keeps_the_outbox() {
    let dir = fresh_dir("fw-term");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-term", Some("SECterm"))
        .await
        .unwrap();
    fake.force(&[Forced::Http(503); 10_000]);
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"\nshutdown_grace = \"5s\"",
        "group_wait = \"0s\"\ngroup_interval = \"1s\"",
        &fake.webhook(),
        "SECterm",
    );
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
            .args(["--config", config.to_str().unwrap(), "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let output = Output::capture(&mut child);

    let body = Arc::new(filling_body());
    let flume = FakeFlume::start(Arc::new(move || Reply::Json(body.as_ref().clone())))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let sidecar = SidecarFile {
        aggregators: Some(vec![url.clone()]),
        flume: Some(vec![format!("a1={}", flume.url())]),
        interval: Some("200ms".into()),
        host: Some("h1".into()),
        reconnect_min: Some("50ms".into()),
        reconnect_max: Some("300ms".into()),
        ..SidecarFile::default()
    }
    .validate()
    .unwrap();
    let sidecar = tokio::spawn(flumewatch_sidecar::run(sidecar, stop.clone()));

    wait_for("a message waiting in the outbox", || async {
        receivers(&url)
            .await
            .filter(|r| r.failed_attempts >= 1 && r.queued >= 1)
    })
    .await;
    let mut health = wait_for("a health watch", || async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut client = HealthClient::new(channel);
        let mut watch = client
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?
            .into_inner();
        let first = watch.message().await.ok()??;
        (first.status == ServingStatus::Serving as i32).then_some(watch)
    })
    .await;

    let sent_term = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut statuses = Vec::new();
    while let Ok(Some(update)) = health.message().await {
        statuses.push(update.status);
    }
    let status = child.wait().unwrap();
    let stopped_in = sent_term.elapsed();
    let logs = output.finish();
    assert!(status.success(), "exit {status:?}\n{logs}");
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped in {stopped_in:?}"
    );
    assert_eq!(
        statuses,
        [ServingStatus::NotServing as i32],
        "watchers were told NOT_SERVING before the port closed"
    );
    let position = |needle: &str| {
        logs.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not logged:\n{logs}"))
    };
    assert!(
        logs.lines()
            .any(|l| l.contains("sidecar disconnected") && l.contains("aggregator stopping")),
        "the aggregator closed the sidecar's stream itself:\n{logs}"
    );
    let disconnected = position("aggregator stopping");
    assert!(position("undelivered messages stay in the outbox") > 0);
    assert!(position("aggregator stopped") > disconnected);
    assert!(fake.received().is_empty());

    // The next start delivers the kept message once.
    fake.clear_forced();
    let mut restarted = spawn(&config);
    let received = wait_for("the kept message delivered", || async {
        let r = fake.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(
        received[0].text.contains("**h1**/a1"),
        "{}",
        received[0].text
    );
    wait_for("the re-formed group found already notified", || async {
        receivers(&url).await.filter(|r| r.suppressed >= 1)
    })
    .await;
    assert_eq!(fake.received().len(), 1, "delivered exactly once");
    println!(
        "SIGTERM: exit 0 in {:.2} s, health NOT_SERVING seen by the watcher, stream closed by the aggregator, 1 kept message delivered once after restart",
        stopped_in.as_secs_f64()
    );
    stop.cancel();
    let _ = sidecar.await;
    restarted.kill().ok();
    restarted.wait().ok();
}
