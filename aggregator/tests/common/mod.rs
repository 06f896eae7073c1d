//! Helpers for tests that run the real `flumewatch-aggregator` binary.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;

pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/flume/samples/steady-load-t15s.json"
);

/// The steady-load sample with channel mem1 at `fill` percent of its 10 000 capacity.
pub fn body_with_fill(fill: u64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(SAMPLE).unwrap()).unwrap();
    body["CHANNEL.mem1"]["ChannelSize"] = (fill * 100).to_string().into();
    body["CHANNEL.mem1"]["ChannelFillPercentage"] = format!("{fill}.0").into();
    serde_json::to_vec(&body).unwrap()
}

pub fn filling_body() -> Vec<u8> {
    body_with_fill(85)
}

pub fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aggregator starts")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it yields `Some`; panics naming `what` after 40 s.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
