//! Test harness: start the real aggregator and sidecars (library entry points) on loopback,
//! serve the captured Flume samples over real HTTP, query over real gRPC, find grpcurl.
//! Waiting is always "poll with a deadline", never a fixed sleep.

pub mod demo;
pub mod jetty_fake;
pub mod load;
pub mod procstat;
pub mod relay;
pub mod replay;
pub mod replicas;
pub mod trace_player;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flumewatch_aggregator::fleet::Fleet;
use flumewatch_aggregator::rules::{Language, RuleSet};
use flumewatch_aggregator::{Aggregator, Config};
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_sidecar::config::FileConfig as SidecarFile;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use flumewatch_testkit::{body_with_fill, sample, wait_for, Output, TempDir, DEADLINE};

/// A running aggregator.
pub struct AggregatorHandle {
    pub addr: SocketAddr,
    /// The HTTP port (/metrics).
    pub http_addr: Option<SocketAddr>,
    pub fleet: Fleet,
    pub counters: Arc<flumewatch_aggregator::IngestCounters>,
    pub notify: flumewatch_aggregator::notify::NotifyHandle,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// The state directory the harness made (none when the config names one: the test owns
    /// that); removed when the handle goes, whether or not the test called `stop`.
    _state: Option<TempDir>,
}

impl AggregatorHandle {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("literal")).await
    }

    /// Binds `addr` (retrying while the port of a just-stopped aggregator is released).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::start_with(addr, Arc::new(RuleSet::defaults())).await
    }

    /// With these rules, evaluated every 100 ms besides on every snapshot.
    pub async fn start_with(addr: SocketAddr, rules: Arc<RuleSet>) -> Self {
        let state = TempDir::new("e2e-state");
        let config = Config {
            grpc_listen: addr,
            http_listen: Some("127.0.0.1:0".parse().expect("literal")),
            state_dir: state.path().to_owned(),
            replication: None,
            history: 1000,
            acks: Default::default(),
            shutdown_grace: Duration::from_secs(5),
            rules,
            language: Language::Zh,
            evaluation_interval: Duration::from_millis(100),
            forget_after: None,
            notify: flumewatch_aggregator::notify::config::NotifyConfig::disabled(),
            ingest_tokens: Default::default(),
            admin_token: None,
            query_tokens: None,
            tls: None,
        };
        Self::start_with_source(config, None, Some(state)).await
    }

    /// From aggregator config text (TOML, as operators write it); listens on a free loopback
    /// port, keeps state in a fresh directory and evaluates every 100 ms unless the text says
    /// otherwise.
    pub async fn start_toml(text: &str) -> Self {
        let mut file: flumewatch_aggregator::config::FileConfig =
            toml::from_str(text).expect("valid TOML config");
        file.grpc_listen.get_or_insert_with(|| "127.0.0.1:0".into());
        file.http_listen.get_or_insert_with(|| "127.0.0.1:0".into());
        file.evaluation_interval
            .get_or_insert_with(|| "100ms".into());
        let state = file.state_dir.is_none().then(|| TempDir::new("e2e-state"));
        if let Some(state) = &state {
            file.state_dir = Some(state.path().to_owned());
        }
        Self::start_with_source(file.validate().expect("valid config"), None, state).await
    }

    /// From a config file on disk, as `--config FILE` does; `Fleet/Reload` re-reads it.
    pub async fn start_file(path: &std::path::Path) -> Self {
        let path = path.to_owned();
        let load = move || -> Result<Config, flumewatch_aggregator::config::ConfigError> {
            let mut file = flumewatch_aggregator::config::read_file(&path)?;
            file.grpc_listen.get_or_insert_with(|| "127.0.0.1:0".into());
            file.http_listen.get_or_insert_with(|| "off".into());
            file.evaluation_interval
                .get_or_insert_with(|| "100ms".into());
            file.validate()
        };
        let config = load().expect("valid config file");
        Self::start_with_source(config, Some(Arc::new(load)), None).await
    }

    /// With this config; its state directory is the caller's (kept, not removed).
    pub async fn start_config(config: Config) -> Self {
        Self::start_with_source(config, None, None).await
    }

    async fn start_with_source(
        config: Config,
        source: Option<flumewatch_aggregator::reload::ConfigSource>,
        state: Option<TempDir>,
    ) -> Self {
        let aggregator = wait_for("the aggregator port", || {
            let config = config.clone();
            async move { Aggregator::bind(config).await.ok() }
        })
        .await;
        let aggregator = match source {
            Some(source) => aggregator.with_config_source(source),
            None => aggregator,
        };
        let addr = aggregator.local_addr();
        let http_addr = aggregator.http_addr();
        let fleet = aggregator.fleet();
        let counters = aggregator.counters();
        let notify = aggregator.notify();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { aggregator.run(stop).await.expect("aggregator runs") }
        });
        Self {
            addr,
            http_addr,
            fleet,
            counters,
            notify,
            stop,
            task,
            _state: state,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> FleetClient<Channel> {
        FleetClient::connect(self.url())
            .await
            .expect("fleet client connects")
    }

    /// Stops it and waits until it has let go of its port.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("aggregator stops within the deadline")
            .expect("aggregator task did not panic");
        // Dropping self now removes the state directory the harness made.
    }
}

/// A running sidecar.
pub struct SidecarHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Sidecar settings for tests: fast polls, fast reconnects.
pub fn sidecar_config(
    aggregator: &str,
    host: &str,
    flume: &[(&str, String)],
    labels: &[(&str, &str)],
) -> SidecarFile {
    SidecarFile {
        aggregators: Some(vec![aggregator.to_owned()]),
        flume: Some(
            flume
                .iter()
                .map(|(name, url)| format!("{name}={url}"))
                .collect(),
        ),
        interval: Some("100ms".into()),
        timeout: Some("80ms".into()),
        host: Some(host.to_owned()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        reconnect_min: Some("20ms".into()),
        reconnect_max: Some("200ms".into()),
        ..SidecarFile::default()
    }
}

impl SidecarHandle {
    pub fn start(config: SidecarFile) -> Self {
        let config = config.validate().expect("valid sidecar config");
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                flumewatch_sidecar::run(config, stop)
                    .await
                    .expect("sidecar runs")
            }
        });
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("sidecar stops within the deadline")
            .expect("sidecar task did not panic");
    }
}

/// A fake Flume agent whose reply can be changed while it runs, counting the polls it answered.
pub struct ScriptedFlume {
    pub server: FakeFlume,
    reply: Arc<Mutex<Reply>>,
    polls: Arc<AtomicU64>,
}

impl ScriptedFlume {
    pub async fn start(reply: Reply) -> Self {
        let reply = Arc::new(Mutex::new(reply));
        let polls = Arc::new(AtomicU64::new(0));
        let responder = {
            let reply = reply.clone();
            let polls = polls.clone();
            Arc::new(move || {
                polls.fetch_add(1, Ordering::SeqCst);
                reply.lock().expect("reply lock").clone()
            })
        };
        let server = FakeFlume::start(responder).await.expect("fake flume binds");
        Self {
            server,
            reply,
            polls,
        }
    }

    pub async fn serving_sample(name: &str) -> Self {
        Self::start(Reply::Json(sample(name))).await
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().expect("reply lock") = reply;
    }

    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// `GetAgent` for `host`'s only agent, once it exists.
pub async fn get_agent(
    client: &mut FleetClient<Channel>,
    host: &str,
    history: u32,
) -> Option<pb::GetAgentResponse> {
    client
        .get_agent(pb::GetAgentRequest {
            host: host.into(),
            agent: String::new(),
            history,
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

pub fn status_of(summary: &pb::AgentSummary) -> pb::ScrapeStatus {
    summary
        .last_outcome
        .as_ref()
        .and_then(|o| pb::ScrapeStatus::try_from(o.status).ok())
        .unwrap_or(pb::ScrapeStatus::Unspecified)
}

/// The grpcurl our users have: `$GRPCURL`, else the repo's `.venv/bin/grpcurl` that the test
/// command installs. Missing grpcurl fails the test: it is part of what we promise.
pub fn grpcurl() -> PathBuf {
    venv_tool("GRPCURL", "grpcurl")
}

/// A tool the test command installs from PyPI: `$var` when set (tests/run.sh sets it), else the
/// repo's `.venv/bin/name`. A missing tool fails the test rather than skipping the check.
pub fn venv_tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        venv.exists(),
        "{name} not found: run the test command (tests/run.sh), which installs it into .venv, or set {var}"
    );
    venv
}

/// A sidecar simulated at the gRPC level: one real Ingest stream, snapshots built from Flume
/// bodies. For fleets too large to run a real sidecar and fake Flume per host.
pub struct StreamSidecar {
    tx: tokio::sync::mpsc::Sender<pb::ReportRequest>,
    seq: u64,
    _acks: JoinHandle<()>,
}

impl StreamSidecar {
    pub async fn connect(aggregator: &str, host: &str, labels: &[(&str, &str)]) -> Self {
        use flumewatch_proto::v1::ingest_client::IngestClient;
        use pb::report_request::Message;
        let channel = tonic::transport::Endpoint::from_shared(aggregator.to_owned())
            .expect("url")
            .connect()
            .await
            .expect("connects");
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let hello = pb::Hello {
            host: host.into(),
            instance_id: format!("{host}-stream"),
            agents: vec!["a1".into()],
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            sidecar_version: "test".into(),
            poll_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        };
        tx.send(pb::ReportRequest {
            message: Some(Message::Hello(hello)),
        })
        .await
        .expect("queued");
        let mut acks = IngestClient::new(channel)
            .report(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("opens")
            .into_inner();
        let acks = tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
        Self {
            tx,
            seq: 0,
            _acks: acks,
        }
    }

    /// Sends one successful poll returning `body`.
    pub async fn report(&mut self, body: &[u8]) {
        self.seq += 1;
        let snapshot = flumewatch_testkit::snapshot::ok(
            self.seq,
            std::time::SystemTime::now(),
            flumewatch_sidecar::flume::parse_metrics(body).expect("body parses"),
        );
        let message = pb::report_request::Message::Snapshot(pb::Snapshot::from(&snapshot));
        self.tx
            .send(pb::ReportRequest {
                message: Some(message),
            })
            .await
            .expect("stream open");
    }
}

/// The real sidecar binary, built beside this test binary by `cargo build --workspace` (the
/// test command builds every target first).
pub fn sidecar_binary() -> PathBuf {
    workspace_binary("flumewatch-sidecar")
}

/// A binary of the workspace (`flumewatch-sidecar`, `flumewatch-aggregator`), built beside this
/// test binary: nextest builds every target of the workspace before it runs a test.
pub fn workspace_binary(name: &str) -> PathBuf {
    // target/debug/deps/<test> → target/debug/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: build the workspace (cargo build --workspace) first",
        path.display()
    );
    path
}
