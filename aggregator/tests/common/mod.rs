//! Helpers for tests that run the real `flumewatch-aggregator` binary.
#![allow(dead_code, unused_imports)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;

pub use flumewatch_testkit::metrics::metric;
pub use flumewatch_testkit::{body_with_fill, wait_for, Output, TempDir};

pub fn filling_body() -> Vec<u8> {
    body_with_fill(85)
}

pub fn spawn(config: &std::path::Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aggregator starts"),
    )
}

/// A child process that is killed when dropped, so a failing test leaves no aggregator behind.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An empty directory of its own for this test, removed with all in it when dropped: keep it
/// until every aggregator using it has stopped.
pub fn fresh_dir(name: &str) -> TempDir {
    TempDir::new(name.trim_start_matches("fw-"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The firing alert of `host`, if any.
pub async fn firing_alert(url: &str, host: &str) -> Option<pb::Alert> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    let alerts = client
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .ok()?
        .into_inner()
        .alerts;
    alerts
        .into_iter()
        .find(|a| a.labels["host"] == host && a.state == pb::AlertState::Firing as i32)
}

pub async fn receivers(url: &str) -> Option<pb::ReceiverStatus> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    client
        .list_receivers(pb::ListReceiversRequest {})
        .await
        .ok()?
        .into_inner()
        .receivers
        .into_iter()
        .next()
}

/// Silences `cluster` for an hour once the aggregator answers; returns the silence.
pub async fn silence_cluster(url: &str, cluster: &str) -> pb::Silence {
    wait_for("the aggregator to answer", || async {
        let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
        let request = pb::CreateSilenceRequest {
            matchers: vec![pb::Matcher {
                name: "cluster".into(),
                value: cluster.into(),
                op: pb::MatchOp::Equal as i32,
            }],
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            creator: "ops".into(),
            comment: "planned work".into(),
            ..Default::default()
        };
        client
            .create_silence(request)
            .await
            .ok()
            .map(|r| r.into_inner())
    })
    .await
}

/// Writes an aggregator config for loopback `port` with state and rules in `dir`, these
/// `[notify]` settings and one receiver `ops` for `webhook` signed with `secret`.
pub fn write_config(
    dir: &std::path::Path,
    port: u16,
    top: &str,
    notify: &str,
    webhook: &str,
    secret: &str,
) -> std::path::PathBuf {
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen = \"127.0.0.1:{port}\"\nstate_dir = {:?}\nrules = \"rules.toml\"\nevaluation_interval = \"100ms\"\n{top}\n\
             [notify]\n{notify}\n[[receivers]]\nname = \"ops\"\nwebhook = {webhook:?}\nsecret = {secret:?}\n",
            dir.join("state"),
        ),
    )
    .unwrap();
    config
}

/// A real sidecar (in this process) polling `flume_url` every 200 ms as `host` in `cluster`,
/// reporting to the aggregator at `url` until `stop`.
pub fn start_sidecar(
    url: &str,
    host: &str,
    cluster: &str,
    flume_url: String,
    stop: &tokio_util::sync::CancellationToken,
) {
    let sidecar = flumewatch_sidecar::config::FileConfig {
        aggregators: Some(vec![url.to_owned()]),
        flume: Some(vec![format!("a1={flume_url}")]),
        interval: Some("200ms".into()),
        timeout: Some("150ms".into()),
        host: Some(host.into()),
        labels: Some([("cluster".to_owned(), cluster.to_owned())].into()),
        reconnect_min: Some("50ms".into()),
        reconnect_max: Some("300ms".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    tokio::spawn(flumewatch_sidecar::run(sidecar, stop.clone()));
}
