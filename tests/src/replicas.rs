//! Harness for the replica tests (`tests/ha.rs`): aggregator binaries as replicas of one
//! throwaway PostgreSQL, simulated hosts whose sidecars report to every replica, and what the
//! robot's messages say.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::postgres::PgCluster;
use flumewatch_testkit::rules::FILLING_ONLY;
use tonic::transport::Channel;

use crate::{body_with_fill, sidecar_config, wait_for, workspace_binary};
use crate::{ScriptedFlume, SidecarHandle, TempDir};

pub const SECRET: &str = "SEChareplicas0123456789";

/// Per-alert groups: each alert is told firing once and resolved once, whoever sends, so two
/// runs can be compared alert by alert whatever their timing.
pub fn notify_toml(webhook: &str) -> String {
    format!(
        "[notify]\ngroup_by = [\"...\"]\ngroup_wait = \"2s\"\ngroup_interval = \"5s\"\n\
         repeat_interval = \"1h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {webhook:?}\nsecret = {SECRET:?}\n"
    )
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// One aggregator binary, replica `name`, its log in a file (a pipe nobody reads could stall
/// it). Killed on drop.
pub struct Replica {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// `None` once killed (or taken by a test that stops it its own way).
    pub child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
}

impl Replica {
    pub fn spawn(name: &str, dir: &TempDir, database: &str, notify: &str) -> Self {
        let grpc = free_addr();
        let http = free_addr();
        let rules = dir.write(format!("{name}-rules.toml"), FILLING_ONLY);
        let config = dir.write(
            format!("{name}.toml"),
            format!(
                "grpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\nstate_url = {database:?}\n\
                 replica_name = {name:?}\nrules = {:?}\nevaluation_interval = \"200ms\"\n{notify}",
                rules.display().to_string()
            ),
        );
        let mut replica = Self {
            name: name.to_owned(),
            grpc,
            http,
            child: None,
            log: dir.path().join(format!("{name}.log")),
            config,
        };
        replica.start();
        replica
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(workspace_binary("flumewatch-aggregator"))
            .args([
                "--config",
                self.config.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("aggregator starts");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn client(&self) -> FleetClient<Channel> {
        let url = self.url();
        wait_for(&format!("replica {} answering", self.name), || {
            let url = url.clone();
            async move { FleetClient::connect(url).await.ok() }
        })
        .await
    }

    pub async fn status(&self) -> Option<pb::StatusResponse> {
        let mut client = FleetClient::connect(self.url()).await.ok()?;
        Some(client.status(pb::StatusRequest {}).await.ok()?.into_inner())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that say what the replica did with the lease and the database.
    pub fn lease_story(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| {
                [
                    "sender",
                    "lease",
                    "PostgreSQL",
                    "state database",
                    "resuming",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                format!(
                    "{} {}",
                    v["timestamp"].as_str().unwrap_or(""),
                    v["fields"]["message"].as_str().unwrap_or(l)
                )
            })
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- replica {} log (last 60 lines, newest first):",
                self.name
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A throwaway PostgreSQL, the robot, and two replicas on them (replicas first in drop order:
/// they stop before the database and their directory go).
pub async fn two_replicas(tag: &str) -> (PgCluster, TempDir, FakeDingTalk, [Replica; 2]) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let dir = TempDir::new(&format!("ha-{tag}"));
    let robot = FakeDingTalk::start(&format!("tok-{tag}"), Some(SECRET))
        .await
        .unwrap();
    let notify = notify_toml(&robot.webhook());
    let replicas = [
        Replica::spawn("agg-a", &dir, &cluster.url(), &notify),
        Replica::spawn("agg-b", &dir, &cluster.url(), &notify),
    ];
    (cluster, dir, robot, replicas)
}

/// The replica that holds the sender role now, once exactly one does.
pub async fn sender(replicas: &[&Replica]) -> usize {
    wait_for("exactly one sender", || async {
        let mut senders = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if r.status().await.is_some_and(|s| s.role == "sender") {
                senders.push(i);
            }
        }
        (senders.len() == 1).then(|| senders[0])
    })
    .await
}

/// Hosts, each a simulated agent with a real sidecar reporting to every target.
pub struct Hosts {
    pub flumes: Vec<ScriptedFlume>,
    sidecars: Vec<SidecarHandle>,
    pub names: Vec<String>,
}

impl Hosts {
    pub async fn start(count: usize, targets: &[String]) -> Self {
        let mut hosts = Self {
            flumes: Vec::new(),
            sidecars: Vec::new(),
            names: Vec::new(),
        };
        for i in 0..count {
            let name = format!("bj-flume-{:02}", i + 1);
            let flume = ScriptedFlume::start(flumewatch_testkit::fake_flume::Reply::Json(
                body_with_fill(10),
            ))
            .await;
            // One sidecar per host, reporting to every aggregator.
            let mut config = sidecar_config(
                &targets[0],
                &name,
                &[("a1", flume.url())],
                &[("cluster", "bj-log")],
            );
            config.aggregators = Some(targets.to_vec());
            config.interval = Some("500ms".into());
            config.timeout = Some("400ms".into());
            hosts.sidecars.push(SidecarHandle::start(config));
            hosts.flumes.push(flume);
            hosts.names.push(name);
        }
        hosts
    }

    pub fn fill(&self, host: usize, percent: u64) {
        self.flumes[host].set(flumewatch_testkit::fake_flume::Reply::Json(body_with_fill(
            percent,
        )));
    }

    pub async fn stop(self) {
        for sidecar in self.sidecars {
            sidecar.stop().await;
        }
    }
}

/// Per alert (fingerprint) and status, how many delivered messages carried it.
pub type Told = BTreeMap<(String, String), usize>;

pub async fn told(client: &mut FleetClient<Channel>) -> (Told, Vec<String>) {
    let listed = client
        .list_notifications(pb::ListNotificationsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("notification history")
        .into_inner()
        .notifications;
    let mut told = Told::new();
    let mut uuids = Vec::new();
    for n in listed
        .iter()
        .filter(|n| n.state == pb::NotificationState::Sent as i32)
    {
        uuids.push(n.msg_uuid.clone());
        for a in &n.alerts {
            *told
                .entry((a.fingerprint.clone(), format!("{:?}", a.state())))
                .or_default() += 1;
        }
    }
    (told, uuids)
}

/// The robot's messages: none twice (by msgUuid), and the text of each.
pub fn delivered_once(robot: &FakeDingTalk) -> Vec<String> {
    let received = robot.received();
    let uuids: Vec<String> = received
        .iter()
        .map(|m| m.msg_uuid.clone().expect("every message has a msgUuid"))
        .collect();
    let unique: BTreeSet<&String> = uuids.iter().collect();
    assert_eq!(
        unique.len(),
        uuids.len(),
        "a msgUuid delivered twice: {uuids:?}"
    );
    received.into_iter().map(|m| m.text).collect()
}

/// How many alert lines (the rule files here have one rule) of the messages name `host`, as firing (`resolved` false) or under
/// a message's [已恢复] heading.
pub fn lines_naming(texts: &[String], host: &str, resolved: bool) -> usize {
    let mut count = 0;
    for text in texts {
        let mut in_resolved = false;
        for line in text.lines() {
            // "#### " opens a state's section ("##### " is a rule's heading within it).
            if line.starts_with("#### ") {
                in_resolved = line.contains("[已恢复]");
            } else if line.starts_with("- ") && line.contains(&format!("**{host}**")) {
                count += usize::from(in_resolved == resolved);
            }
        }
    }
    count
}

pub fn texts(robot: &FakeDingTalk) -> Vec<String> {
    robot.received().into_iter().map(|m| m.text).collect()
}
