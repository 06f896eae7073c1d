//! `--discover` end to end: real processes whose command lines carry flume-ng's flags, a fake
//! Flume on each of their ports, the real sidecar scanning the real `/proc`, and the real
//! aggregator (library entry) saying which agents are polled and which are down.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use flumewatch_aggregator::Aggregator;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use flumewatch_testkit::{sample, wait_for, TempDir};
use tokio_util::sync::CancellationToken;

/// A process whose command line mimics the java process flume-ng execs; killed and reaped when
/// dropped, so a failing test leaves none behind.
struct FlumeProcess(Child);

impl FlumeProcess {
    /// `sh -c 'read _'` blocks on its stdin in a builtin: one process with no children, whose
    /// `/proc/<pid>/cmdline` ends with the arguments given after the script.
    fn spawn(name: &str, port: u16) -> Self {
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                "read _",
                "java",
                "-Xmx2000m",
                "-Dflume.monitoring.type=http",
            ])
            .arg(format!("-Dflume.monitoring.port={port}"))
            .args(["-cp", "/opt/flume/conf:/opt/flume/lib/*"])
            .args(["org.apache.flume.node.Application", "-n", name])
            .args(["-f", "conf/flume.conf"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for FlumeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One agent on this machine: its process and the Flume that serves its port.
struct Agent {
    name: String,
    process: FlumeProcess,
    flume: FakeFlume,
}

impl Agent {
    async fn start(name: String) -> Self {
        let body = sample("multi-component-agent.json");
        let flume = FakeFlume::start(Arc::new(move || Reply::Json(body.clone())))
            .await
            .expect("fake flume binds");
        let process = FlumeProcess::spawn(&name, flume.addr().port());
        Self {
            name,
            process,
            flume,
        }
    }
}

/// The agents the aggregator lists for `host`, by name.
async fn agents(
    client: &mut FleetClient<tonic::transport::Channel>,
    host: &str,
) -> BTreeMap<String, pb::AgentSummary> {
    let request = pb::ListAgentsRequest {
        host: host.to_owned(),
        ..Default::default()
    };
    match client.list_agents(request).await {
        Ok(response) => response
            .into_inner()
            .agents
            .into_iter()
            .map(|a| (a.agent.clone(), a))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn polled_ok(agent: Option<&pb::AgentSummary>) -> bool {
    agent.is_some_and(|a| {
        a.component_count > 0
            && a.last_outcome.as_ref().map(|o| o.status) == Some(pb::ScrapeStatus::Ok as i32)
    })
}

#[tokio::test]
async fn three_found_agents_are_polled_and_the_one_that_exits_is_down() {
    let tag = format!("fwdisc{}", std::process::id());
    let host = format!("{tag}-host");
    let dir = TempDir::new("discover");

    // The aggregator as an operator configures it (TOML), judging every 100 ms.
    let config: flumewatch_aggregator::config::FileConfig = toml::from_str(&format!(
        "grpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"off\"\nevaluation_interval = \"100ms\"\nstate_dir = {:?}\n",
        dir.join("state")
    ))
    .expect("aggregator config parses");
    let aggregator = Aggregator::bind(config.validate().expect("valid aggregator config"))
        .await
        .expect("aggregator binds");
    let url = format!("http://{}", aggregator.local_addr());
    let stop_aggregator = CancellationToken::new();
    let aggregator = tokio::spawn(aggregator.run(stop_aggregator.clone()));

    // Two agents run before the sidecar starts; the third starts later.
    let mut first = Agent::start(format!("{tag}-a1")).await;
    let second = Agent::start(format!("{tag}-a2")).await;

    let sidecar = flumewatch_sidecar::config::FileConfig {
        aggregators: Some(vec![url.clone()]),
        discover: Some(true),
        discover_interval: Some("1s".into()),
        interval: Some("200ms".into()),
        timeout: Some("150ms".into()),
        host: Some(host.clone()),
        reconnect_min: Some("20ms".into()),
        reconnect_max: Some("200ms".into()),
        ..Default::default()
    }
    .validate()
    .expect("valid sidecar config");
    let stop_sidecar = CancellationToken::new();
    let sidecar = tokio::spawn(flumewatch_sidecar::run(sidecar, stop_sidecar.clone()));

    let mut client = wait_for("the aggregator to answer", || {
        let url = url.clone();
        async move { FleetClient::connect(url).await.ok() }
    })
    .await;
    // Other processes on a shared machine may carry Flume's flags too: only this test's agents
    // are looked at.
    let names = [first.name.clone(), second.name.clone()];
    wait_for("the two running agents to be polled", || {
        let (mut client, host, names) = (client.clone(), host.clone(), names.clone());
        async move {
            let listed = agents(&mut client, &host).await;
            names
                .iter()
                .all(|name| polled_ok(listed.get(name)))
                .then_some(())
        }
    })
    .await;

    // Found by a later scan and polled without restarting anything.
    let third = Agent::start(format!("{tag}-a3")).await;
    wait_for("the agent started later to be found and polled", || {
        let (mut client, host, name) = (client.clone(), host.clone(), third.name.clone());
        async move { polled_ok(agents(&mut client, &host).await.get(&name)).then_some(()) }
    })
    .await;

    // The first agent's JVM exits: its process is gone and nothing answers on its port.
    first.process.kill();
    first.flume.go_down();
    let down = first.name.clone();
    wait_for(
        "the exited agent's polls to fail three times in a row",
        || {
            let (mut client, host, down) = (client.clone(), host.clone(), down.clone());
            async move {
                let listed = agents(&mut client, &host).await;
                (listed.get(&down)?.consecutive_failures >= 3).then_some(())
            }
        },
    )
    .await;
    let alert = wait_for("FlumeAgentDown for the exited agent", || {
        let (mut client, down) = (client.clone(), down.clone());
        async move {
            client
                .list_alerts(pb::ListAlertsRequest::default())
                .await
                .ok()?
                .into_inner()
                .alerts
                .into_iter()
                .find(|a| {
                    a.alertname == "FlumeAgentDown"
                        && a.labels.get("agent") == Some(&down)
                        && a.state == pb::AlertState::Firing as i32
                })
        }
    })
    .await;
    assert_eq!(alert.labels.get("host"), Some(&host));

    // Still listed, and the other two still polled.
    let listed = agents(&mut client, &host).await;
    assert!(listed.contains_key(&first.name), "the exited agent is kept");
    assert!(
        polled_ok(listed.get(&second.name)),
        "{:?}",
        listed.get(&second.name)
    );
    assert!(
        polled_ok(listed.get(&third.name)),
        "{:?}",
        listed.get(&third.name)
    );
    let exited = listed.get(&first.name).expect("listed");
    assert_ne!(
        exited.last_outcome.as_ref().map(|o| o.status),
        Some(pb::ScrapeStatus::Ok as i32)
    );

    stop_sidecar.cancel();
    sidecar
        .await
        .expect("sidecar task")
        .expect("sidecar ran without error");
    stop_aggregator.cancel();
    aggregator
        .await
        .expect("aggregator task")
        .expect("aggregator ran without error");
    drop((first, second, third));
    drop(dir);
}
