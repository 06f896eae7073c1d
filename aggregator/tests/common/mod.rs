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

/// An empty directory of its own for this test process.
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// Silences `cluster` for an hour once the aggregator answers; returns the silence.
pub async fn silence_cluster(url: &str, cluster: &str) -> pb::Silence {
    until("the aggregator to answer", || async {
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

/// Collects a child's stdout and stderr as they come (a full pipe would stall its logging).
pub struct Output {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Output {
    pub fn capture(child: &mut Child) -> Self {
        use std::io::Read;
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sources: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout piped")),
            Box::new(child.stderr.take().expect("stderr piped")),
        ];
        let readers = sources
            .into_iter()
            .map(|mut from| {
                let into = text.clone();
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n) = from.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        into.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                })
            })
            .collect();
        Self { text, readers }
    }

    pub fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Everything, once the child has exited.
    pub fn finish(self) -> String {
        for reader in self.readers {
            reader.join().unwrap();
        }
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }
}

/// A value from the aggregator's /metrics at `http` (host:port).
pub async fn metric(http: &str, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
