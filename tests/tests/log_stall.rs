//! A log consumer that stops reading costs log lines, never the service: the real aggregator
//! binary with stdout and stderr piped and left unread for 30 s, while 50 sidecars report and an
//! incident fires. Ingest continues, the DingTalk message is on time, the lost lines are counted
//! in /metrics and, once the pipe is read again, reported in a warning line. And a SIGTERM'd
//! aggregator whose stdout is blocked still exits on time.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::metrics::metric;
use flumewatch_testkit::{body_with_fill, wait_for, Output, TempDir};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "SEClogstall0123456789";
const SIDECARS: usize = 50;
/// How long nobody reads the aggregator's stdout and stderr (the scenario).
const STALL: Duration = Duration::from_secs(30);
/// Each simulated sidecar reports this often: 500 snapshots a second for the fleet.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// The receiver's group_wait: the message is due this long after the alert fires.
const GROUP_WAIT: Duration = Duration::from_secs(2);
/// What "on time" allows beyond group_wait: the rule's evaluation, the send, a loaded machine.
const ON_TIME_SLACK: Duration = Duration::from_secs(5);
const DROPPED: &str = "flumewatch_log_lines_dropped_total";
const WARNING: &str = "log lines dropped while the log consumer was stalled";

/// The aggregator child, killed when dropped so a failing test leaves nothing running.
struct Killed(Option<Child>);

impl Killed {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still owned")
    }

    /// The child, no longer killed on drop: the caller stops it.
    fn take(mut self) -> Child {
        self.0.take().expect("still owned")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Every agent of the fleet as ListAgents shows it.
async fn agents(url: &str) -> Option<Vec<pb::AgentSummary>> {
    let mut client = pb::fleet_client::FleetClient::connect(url.to_owned())
        .await
        .ok()?;
    let request = pb::ListAgentsRequest::default();
    Some(client.list_agents(request).await.ok()?.into_inner().agents)
}

/// Waits until every one of the fleet's agents has a snapshot received after `since`.
async fn all_reported_since(url: &str, since: SystemTime, what: &str) {
    wait_for(what, || async {
        let agents = agents(url).await?;
        let fresh = agents
            .iter()
            .filter(|a| {
                a.last_seen
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .is_some_and(|t| t > since)
            })
            .count();
        (fresh == SIDECARS).then_some(())
    })
    .await
}

/// The real aggregator logging at debug with stdout and stderr piped and never read (once the
/// kernel's 64 KiB are full, a blocking logger stalls), with the FILLING_ONLY rules and `extra`.
fn spawn_unread(dir: &TempDir, extra: &str) -> (Killed, String, String) {
    let rules = dir.write("rules.toml", flumewatch_testkit::rules::FILLING_ONLY);
    let (grpc, http) = (free_port(), free_port());
    let config = dir.write(
        "aggregator.toml",
        format!(
            "grpc_listen = \"127.0.0.1:{grpc}\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
             state_dir = {:?}\nrules = {rules:?}\nevaluation_interval = \"500ms\"\n{extra}",
            dir.join("state"),
        ),
    );
    let child = Command::new(workspace_binary("flumewatch-aggregator"))
        .args(["--config", config.to_str().unwrap(), "--log-level", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aggregator starts");
    (
        Killed(Some(child)),
        format!("http://127.0.0.1:{grpc}"),
        format!("127.0.0.1:{http}"),
    )
}

/// Waits until the aggregator has dropped log lines: its pipe and its writer's queue are full.
async fn stalled(http: &str) -> f64 {
    wait_for("log lines to be dropped", || async {
        metric(http, DROPPED).await.filter(|n| *n > 0.0)
    })
    .await
}

/// [`SIDECARS`] simulated sidecars `{prefix}-flume-NN` reporting every [`REPORT_EVERY`] until
/// `stop`; the first one's channel is 85 % full once `incident` is set, the others stay at 10 %.
async fn report(
    url: &str,
    prefix: &str,
    stop: &CancellationToken,
    incident: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let cluster = format!("{prefix}-log");
    let mut reporters = Vec::new();
    for i in 0..SIDECARS {
        let host = format!("{prefix}-flume-{i:02}");
        let mut sidecar = StreamSidecar::connect(url, &host, &[("cluster", &cluster)]).await;
        let (stop, incident) = (stop.clone(), incident.clone());
        reporters.push(tokio::spawn(async move {
            let (calm, filling) = (body_with_fill(10), body_with_fill(85));
            let mut tick = tokio::time::interval(REPORT_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let body = if i == 0 && incident.load(Ordering::Relaxed) {
                    &filling
                } else {
                    &calm
                };
                // Waits when the aggregator stops acknowledging: exactly what must not happen.
                sidecar.report(body).await;
            }
        }));
    }
    reporters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stdout_costs_log_lines_not_ingest_or_the_dingtalk_message() {
    let robot = FakeDingTalk::start("tok-logstall", Some(SECRET))
        .await
        .unwrap();
    let dir = TempDir::new("log-stall");
    let (mut aggregator, url, http) = spawn_unread(
        &dir,
        &format!(
            "[notify]\ngroup_wait = \"{}s\"\ngroup_interval = \"5s\"\nrepeat_interval = \"1h\"\n\
             [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\n",
            GROUP_WAIT.as_secs(),
            robot.webhook(),
        ),
    );
    // Exported from the start, at 0.
    wait_for("the aggregator's /metrics", || metric(&http, DROPPED)).await;

    let stop = CancellationToken::new();
    let incident = Arc::new(AtomicBool::new(false));
    let reporters = report(&url, "bj", &stop, &incident).await;

    let dropped_at_start = stalled(&http).await;
    let stall_began = Instant::now();
    let stored = |http: String| async move {
        metric(&http, "flumewatch_snapshots_stored_total")
            .await
            .unwrap_or(0.0)
    };
    let stored_at_start = stored(http.clone()).await;

    incident.store(true, Ordering::Relaxed);
    let fired = Instant::now();
    let message = wait_for("the incident's DingTalk message", || async {
        robot.received().into_iter().next()
    })
    .await;
    let delay = message.at.duration_since(fired);
    assert!(
        message.text.contains("bj-flume-00"),
        "the message names the filling host: {}",
        message.text
    );
    assert!(
        delay <= GROUP_WAIT + ON_TIME_SLACK,
        "the message took {delay:?} while stdout was stalled"
    );

    // Everything else is polled; the stall itself is the scenario's 30 s.
    tokio::time::sleep_until(stall_began + STALL).await;
    let stall_ended = SystemTime::now();
    all_reported_since(
        &url,
        stall_ended - Duration::from_secs(5),
        "every sidecar's snapshots ingested at the end of the stall",
    )
    .await;
    let stored_during = stored(http.clone()).await - stored_at_start;
    let dropped = metric(&http, DROPPED)
        .await
        .expect("dropped lines exported");
    // A quarter of what the fleet sends (a loaded CI machine slows the senders too); a
    // blocked aggregator stores none.
    let sent = SIDECARS as f64 * STALL.as_secs_f64() / REPORT_EVERY.as_secs_f64();
    assert!(
        stored_during >= sent / 4.0,
        "ingest went on during the stall: {stored_during} snapshots stored"
    );
    assert!(dropped >= dropped_at_start && dropped > 0.0);
    let output = Output::capture(aggregator.child());
    let warning = wait_for(
        "the dropped-lines warning once stdout is read again",
        || async {
            output
                .so_far()
                .lines()
                .find(|l| l.contains(WARNING))
                .map(str::to_owned)
        },
    )
    .await;
    println!(
        "stall {:?}: {dropped} log lines dropped, {stored_during} snapshots stored, message {delay:?} after the alert's condition; {warning}",
        stall_began.elapsed()
    );
    assert!(warning.contains("WARN"), "a warning: {warning}");

    stop.cancel();
    for reporter in reporters {
        let _ = reporter.await;
    }
    drop(aggregator);
    let _ = output.finish();
}

/// Longest a SIGTERM'd aggregator may take with its stdout blocked: the shutdown grace (1 s),
/// the log flush's bounded wait (2 s) and a loaded machine's slack.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_aggregator_exits_on_time_with_its_stdout_unread() {
    let dir = TempDir::new("log-stall-exit");
    let (aggregator, url, http) = spawn_unread(&dir, "shutdown_grace = \"1s\"\n");
    wait_for("the aggregator's /metrics", || metric(&http, DROPPED)).await;
    let stop = CancellationToken::new();
    let reporters = report(&url, "sh", &stop, &Arc::new(AtomicBool::new(false))).await;
    stalled(&http).await;
    // The writer stays blocked on the full pipe and the queue stays full without more traffic.
    stop.cancel();
    for reporter in reporters {
        let _ = reporter.await;
    }

    let mut child = aggregator.take();
    let pid = child.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(signalled.is_ok_and(|s| s.success()), "SIGTERM sent");
    let begun = Instant::now();
    let waited = tokio::time::timeout(
        EXIT_LIMIT,
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await;
    if waited.is_err() {
        // The blocking wait holds the child: stop it by pid so nothing is left running.
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the aggregator did not exit within {EXIT_LIMIT:?} of SIGTERM with stdout unread");
    }
    let status = waited.unwrap().expect("wait joins").expect("wait succeeds");
    println!(
        "exited {status} {:?} after SIGTERM with stdout unread",
        begun.elapsed()
    );
    assert!(status.success(), "a clean stop: {status}");
}
