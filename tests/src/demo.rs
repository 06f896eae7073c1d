//! `flumewatch-demo`: a fleet on loopback — simulated Flume agents, real sidecars, this aggregator —
//! and a table of what the aggregator sees, read back over gRPC as grpcurl would.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::{ComponentKind, Counter};
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_sidecar::config::FileConfig as SidecarFile;
use flumewatch_testkit::fake_flume::{FakeFlume, Profile, Reply, SimAgent};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use flumewatch_aggregator::config::{Config, FileConfig};
use flumewatch_aggregator::notify::config::{
    self as notify_config, NotifyConfig, NotifyFlags, RawNotify, RawReceiver,
};
use flumewatch_aggregator::server::{Aggregator, RunError};
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;

const POLL: &str = "2s";
const REFRESH: Duration = Duration::from_secs(5);
/// When the demo's second Beijing agent goes down, and for how long (a Flume restart).
const OUTAGE_AT: Duration = Duration::from_secs(20);
const OUTAGE_FOR: Duration = Duration::from_secs(45);

const DEMO_TOKEN: &str = "demo-access-token";
const DEMO_SECRET: &str = "SECdemo0123456789";

/// The demo's notification settings: quick to show, otherwise the defaults.
fn demo_notify(webhook: &str, language: flumewatch_aggregator::rules::Language) -> NotifyConfig {
    let raw = RawNotify {
        group_wait: Some("5s".into()),
        group_interval: Some("1m".into()),
        ..RawNotify::default()
    };
    let receiver = RawReceiver {
        name: "demo-robot".into(),
        webhook: Some(webhook.to_owned()),
        secret: Some(DEMO_SECRET.into()),
        at_mobiles: Some([("critical".to_owned(), vec!["13800000000".to_owned()])].into()),
        ..RawReceiver::default()
    };
    notify_config::validate(raw, vec![receiver], None, NotifyFlags::default(), language)
        .expect("the demo's notification settings are valid")
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Aggregator(#[from] RunError),
    #[error("cannot start a simulated Flume agent: {0}")]
    Flume(std::io::Error),
    #[error("demo sidecar config: {0}")]
    Sidecar(#[from] flumewatch_sidecar::config::ConfigError),
}

struct DemoAgent {
    host: &'static str,
    cluster: &'static str,
    profile: Profile,
}

fn fleet() -> [DemoAgent; 4] {
    [
        DemoAgent {
            host: "bj-flume-01",
            cluster: "bj-log",
            profile: Profile::Healthy {
                events_per_sec: 120.0,
                file_channel: false,
            },
        },
        DemoAgent {
            host: "bj-flume-02",
            cluster: "bj-log",
            profile: Profile::Healthy {
                events_per_sec: 300.0,
                file_channel: true,
            },
        },
        DemoAgent {
            host: "sh-flume-01",
            cluster: "sh-log",
            profile: Profile::SlowSink {
                events_per_sec: 300.0,
                after: Duration::from_secs(15),
                drain_share: 0.2,
            },
        },
        DemoAgent {
            host: "sh-flume-02",
            cluster: "sh-log",
            profile: Profile::DeadSink {
                events_per_sec: 5.0,
            },
        },
    ]
}

/// The demo's own defaults under the flags and file it was given: loopback ports and a
/// throwaway state directory, returned so the caller removes it when the demo ends.
pub fn with_demo_defaults(mut raw: FileConfig) -> (FileConfig, Option<std::path::PathBuf>) {
    raw.grpc_listen
        .get_or_insert_with(|| "127.0.0.1:50051".into());
    raw.http_listen
        .get_or_insert_with(|| "127.0.0.1:9651".into());
    let throwaway = raw
        .state_dir
        .is_none()
        .then(|| std::env::temp_dir().join(format!("flumewatch-demo-{}", std::process::id())));
    if let Some(dir) = &throwaway {
        raw.state_dir = Some(dir.clone());
    }
    (raw, throwaway)
}

/// Runs the demo until `shutdown` or `run_for`.
pub async fn run(
    config: Config,
    run_for: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    let mut config = config;
    // Without a real robot, a local one that checks signatures as DingTalk does.
    let local_robot = if config.notify.receivers.is_empty() {
        let robot = FakeDingTalk::start(DEMO_TOKEN, Some(DEMO_SECRET))
            .await
            .map_err(DemoError::Flume)?;
        config.notify = demo_notify(&robot.webhook(), config.language);
        Some(robot)
    } else {
        None
    };
    let aggregator = match Aggregator::bind(config.clone()).await {
        Ok(aggregator) => aggregator,
        // The usual port is taken (another aggregator?): any free one will do for a demo.
        Err(RunError::Bind { .. }) => {
            let mut any_port = config;
            any_port.grpc_listen.set_port(0);
            if let Some(http) = any_port.http_listen.as_mut() {
                http.set_port(0);
            }
            Aggregator::bind(any_port).await?
        }
        Err(e) => return Err(e.into()),
    };
    let addr = aggregator.local_addr();
    let tasks = TaskTracker::new();
    let stop = shutdown.child_token();
    {
        let stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) = aggregator.run(stop).await {
                tracing::error!(error = %e, "demo aggregator failed");
            }
        });
    }

    let warm_start = SystemTime::now() - Duration::from_secs(15);
    let mut agents = Vec::new();
    for demo in fleet() {
        let sim = Arc::new(SimAgent::new(demo.profile, warm_start));
        let flume = FakeFlume::start(Arc::new(move || Reply::Json(sim.render(SystemTime::now()))))
            .await
            .map_err(DemoError::Flume)?;
        let sidecar = SidecarFile {
            aggregators: Some(vec![format!("http://{addr}")]),
            flume: Some(vec![format!("a1={}", flume.url())]),
            interval: Some(POLL.into()),
            host: Some(demo.host.into()),
            labels: Some(
                [
                    ("cluster".to_owned(), demo.cluster.to_owned()),
                    ("env".to_owned(), "demo".to_owned()),
                ]
                .into(),
            ),
            reconnect_max: Some("2s".into()),
            ..SidecarFile::default()
        }
        .validate()?;
        let stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) = flumewatch_sidecar::run(sidecar, stop).await {
                tracing::error!(error = %e, "demo sidecar failed");
            }
        });
        agents.push(flume);
    }

    println!("flumewatch demo: 4 simulated Flume agents → 4 sidecars → aggregator on {addr}");
    println!("  sh-flume-01's sink slows down (its channel fills in ~40s); sh-flume-02's sink target is down;");
    println!("  bj-flume-02's Flume is stopped at 20s and restarted 45s later.");
    println!("  The default alert policy judges them all: ChannelFullSoon forecasts sh-flume-01's full channel within seconds,");
    println!("  ChannelFilling warns at 80% and is critical when full; SinkStalled names sh-flume-02's dead sink within 3 polls;");
    println!("  FlumeAgentDown fires at the outage's 3rd failed poll; SinkErrors and ChannelNotDraining follow after 5m.");
    println!("  Ask the aggregator yourself while this runs:");
    println!("    grpcurl -plaintext {addr} list");
    println!("    grpcurl -plaintext -d '{{\"labels\":{{\"cluster\":\"sh-log\"}}}}' {addr} flumewatch.v1.Fleet/ListAgents");
    println!("    grpcurl -plaintext -d '{{\"host\":\"sh-flume-01\"}}' {addr} flumewatch.v1.Fleet/GetAgent");
    println!("    grpcurl -plaintext -d '{{\"states\":[\"ALERT_STATE_FIRING\"]}}' {addr} flumewatch.v1.Fleet/ListAlerts");
    println!();

    let started = tokio::time::Instant::now();
    let end = run_for.map(|d| started + d);
    let mut outage_started = false;
    let mut outage_over = false;
    let mut shown = 0;
    let mut ticker = tokio::time::interval(REFRESH);
    ticker.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until_opt(end) => break,
            _ = ticker.tick() => {}
        }
        let elapsed = started.elapsed();
        if !outage_started && elapsed >= OUTAGE_AT {
            agents[1].go_down();
            outage_started = true;
        }
        if !outage_over && elapsed >= OUTAGE_AT + OUTAGE_FOR {
            agents[1].come_back();
            outage_over = true;
        }
        match table(addr, elapsed).await {
            Ok(text) => println!("{text}"),
            Err(e) => println!("(aggregator not answering yet: {e})"),
        }
        if let Some(robot) = &local_robot {
            let received = robot.received();
            let history = if received.len() > shown {
                notifications(addr).await.unwrap_or_default()
            } else {
                Vec::new()
            };
            for (n, message) in received.iter().enumerate().skip(shown) {
                // Why it was sent, as the aggregator's history (ListNotifications) says.
                let reason = message
                    .msg_uuid
                    .as_deref()
                    .and_then(|uuid| history.iter().find(|h| h.msg_uuid == uuid))
                    .map_or("-", |h| h.reason.as_str());
                println!(
                    "── DingTalk message #{} (signed and accepted by the local robot, {} bytes, reason: {reason}) ──",
                    n + 1,
                    message.body_bytes
                );
                println!("{}\n", message.text.trim_end());
            }
            shown = received.len();
        }
    }
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The aggregator's notification history, over gRPC.
async fn notifications(
    addr: std::net::SocketAddr,
) -> Result<Vec<pb::Notification>, Box<dyn std::error::Error>> {
    let mut client = FleetClient::connect(format!("http://{addr}")).await?;
    Ok(client
        .list_notifications(pb::ListNotificationsRequest::default())
        .await?
        .into_inner()
        .notifications)
}

/// The fleet as the aggregator reports it over gRPC.
async fn table(
    addr: std::net::SocketAddr,
    elapsed: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut client = FleetClient::connect(format!("http://{addr}")).await?;
    let agents = client
        .list_agents(pb::ListAgentsRequest::default())
        .await?
        .into_inner()
        .agents;
    let mut out = String::new();
    writeln!(
        out,
        "── t={:>3}s ── {} agents ──",
        elapsed.as_secs(),
        agents.len()
    )?;
    writeln!(
        out,
        "{:<12} {:<7} {:<10} {:<19} {:>6} {:>8} {:>8} {:>9}",
        "HOST", "CLUSTER", "SIDECAR", "LAST POLL", "FILL%", "IN/s", "OUT/s", "SINKERR/s"
    )?;
    for agent in agents {
        let detail = client
            .get_agent(pb::GetAgentRequest {
                host: agent.host.clone(),
                agent: agent.agent.clone(),
                history: 0,
            })
            .await?
            .into_inner();
        // The detail's own summary, so every column describes the same moment.
        let agent = detail.summary.clone().unwrap_or(agent);
        let rate = |kind: ComponentKind, counter: Counter| {
            detail
                .rates
                .iter()
                .filter(|r| r.kind == kind as i32)
                .flat_map(|r| &r.rates)
                .filter(|r| r.counter == counter as i32)
                .map(|r| r.per_second)
                .sum::<f64>()
        };
        let outcome = agent.last_outcome.clone().unwrap_or_default();
        let poll = match pb::ScrapeStatus::try_from(outcome.status) {
            Ok(pb::ScrapeStatus::Ok) => "ok".to_owned(),
            Ok(status) => format!("{} ×{}", short(status), agent.consecutive_failures),
            Err(_) => "-".to_owned(),
        };
        let link = match pb::ConnectionState::try_from(agent.connection) {
            Ok(pb::ConnectionState::Connected) => "connected",
            _ => "lost",
        };
        let fill = if agent.max_channel_fill_percentage < 0.0 {
            "-".to_owned()
        } else {
            format!("{:.1}", agent.max_channel_fill_percentage)
        };
        let (rate_in, rate_out, sink_err) = if detail.rates.is_empty() {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            (
                format!(
                    "{:.1}",
                    rate(ComponentKind::Source, Counter::EventAcceptedCount)
                ),
                format!(
                    "{:.1}",
                    rate(ComponentKind::Sink, Counter::EventDrainSuccessCount)
                ),
                format!("{:.2}", rate(ComponentKind::Sink, Counter::EventWriteFail)),
            )
        };
        let cluster = agent.labels.get("cluster").map_or("-", String::as_str);
        writeln!(
            out,
            "{:<12} {:<7} {:<10} {:<19} {:>6} {:>8} {:>8} {:>9}",
            agent.host, cluster, link, poll, fill, rate_in, rate_out, sink_err
        )?;
    }
    let alerts = client
        .list_alerts(pb::ListAlertsRequest::default())
        .await?
        .into_inner()
        .alerts;
    let count = |state: pb::AlertState| alerts.iter().filter(|a| a.state == state as i32).count();
    writeln!(
        out,
        "alerts: {} firing, {} pending, {} resolved",
        count(pb::AlertState::Firing),
        count(pb::AlertState::Pending),
        count(pb::AlertState::Resolved)
    )?;
    for alert in &alerts {
        let state = match pb::AlertState::try_from(alert.state) {
            Ok(pb::AlertState::Firing) => "FIRING",
            Ok(pb::AlertState::Pending) => "pending",
            Ok(pb::AlertState::Resolved) => "resolved",
            _ => "?",
        };
        let label = |name: &str| alert.labels.get(name).map_or("", String::as_str);
        let target = if label("host").is_empty() {
            label("cluster")
        } else {
            label("host")
        };
        let summary = alert.annotations.get("summary").map_or("", String::as_str);
        writeln!(
            out,
            "  {state:<8} {:<8} {:<22} {target:<12} {summary}",
            label("severity"),
            alert.alertname
        )?;
    }
    Ok(out)
}

fn short(status: pb::ScrapeStatus) -> &'static str {
    match status {
        pb::ScrapeStatus::ConnectionRefused => "refused",
        pb::ScrapeStatus::Timeout => "timeout",
        pb::ScrapeStatus::HttpStatus => "http error",
        pb::ScrapeStatus::BadPayload => "bad payload",
        pb::ScrapeStatus::ConnectionFailed => "conn failed",
        pb::ScrapeStatus::Ok | pb::ScrapeStatus::Unspecified => "ok",
    }
}
