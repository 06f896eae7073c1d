//! `flumewatch-bench`: the side-by-side benchmarks that need real processes.
//!
//! - `footprint`: the release sidecar and the seed script's replica poll identical simulated
//!   agents at the same interval for the same time, against each kind of fake Flume server in
//!   turn (a Jetty-like one and Python's http.server by default); CPU and context switches per
//!   scrape (from /proc schedstat and status), steady and peak RSS, bytes sent upstream per
//!   snapshot, and the replica-to-sidecar CPU ratio.
//! - `alert-latency`: from a simulated agent crossing a threshold to the DingTalk POST arriving
//!   at the fake robot, over many incidents.
//!
//! Each prints its figures as Markdown table rows; tests/bench/run.sh runs them all.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use flumewatch_e2e::jetty_fake::JettyFake;
use flumewatch_e2e::procstat::{memory, rss_kib, usage, Memory};
use flumewatch_e2e::relay::counting_proxy;
use flumewatch_e2e::*;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::fake_flume::{FakeFlume, Profile, Reply, SimAgent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Sidecar vs the seed script's replica on identical simulated agents.
    Footprint {
        #[arg(long, default_value_t = 10)]
        agents: usize,
        #[arg(long, default_value = "1s")]
        interval: humantime::Duration,
        #[arg(long, default_value = "60s")]
        duration: humantime::Duration,
        /// Python with requests and DingtalkChatbot installed.
        #[arg(long, default_value = ".venv/bin/python")]
        python: String,
        #[arg(long, default_value = "tests/bench/seed_replica.py")]
        replica: String,
        /// The sidecar binary [default: the one built beside this one].
        #[arg(long)]
        sidecar: Option<std::path::PathBuf>,
        /// The kinds of fake Flume to measure against, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "jetty,python")]
        servers: Vec<Server>,
        /// The Python http.server fake (stdlib only), run with --python.
        #[arg(long, default_value = "tests/bench/flume_http_server.py")]
        server_script: String,
    },
    /// Threshold crossing → DingTalk POST, over `incidents` agents crossing one after another.
    AlertLatency {
        #[arg(long, default_value_t = 20)]
        incidents: usize,
        #[arg(long, default_value = "1s")]
        poll: humantime::Duration,
        #[arg(long, default_value = "1s")]
        group_wait: humantime::Duration,
        /// Time between incidents (DingTalk takes 20 messages a minute).
        #[arg(long, default_value = "3500ms")]
        spacing: humantime::Duration,
    },
}

/// A binary built beside this one (`cargo build --release --workspace --bins`).
fn sibling(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("bin dir");
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "{name} not found beside {}: build the workspace's binaries first",
        exe.display()
    );
}

/// The kinds of fake Flume the footprint is measured against: how a server writes its answer
/// changes what a poll costs the client (reads, wake-ups), so the sidecar is measured against
/// more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Server {
    /// Writes like Jetty 9.4: keep-alive, head then one chunked body write (`jetty_fake`).
    Jetty,
    /// Python's `http.server` (ThreadingHTTPServer, HTTP/1.1, chunked), a separate process.
    Python,
    /// The test suite's own fake (`FakeFlume`): head and body in one write.
    Testkit,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Jetty => "Jetty-like (tokio TCP)",
            Server::Python => "Python http.server",
            Server::Testkit => "testkit FakeFlume",
        }
    }
}

/// `agents` fake Flume endpoints of one kind, serving simulated healthy agents.
enum Agents {
    Jetty(Vec<JettyFake>),
    Testkit(Vec<FakeFlume>, Arc<AtomicU64>),
    Python {
        process: Child,
        ports: Vec<u16>,
        /// Holds the body file the Python server serves.
        _dir: TempDir,
    },
}

fn sim_agent(i: usize) -> SimAgent {
    SimAgent::new(
        Profile::Healthy {
            events_per_sec: 500.0 + 50.0 * i as f64,
            file_channel: i % 2 == 1,
        },
        SystemTime::now() - Duration::from_secs(3600),
    )
}

impl Agents {
    async fn start(server: Server, agents: usize, python: &str, script: &str) -> Self {
        match server {
            Server::Jetty => {
                let mut fakes = Vec::new();
                for i in 0..agents {
                    let agent = sim_agent(i);
                    let body = Arc::new(move || agent.render(SystemTime::now()));
                    fakes.push(JettyFake::start(body).await.expect("jetty fake binds"));
                }
                Agents::Jetty(fakes)
            }
            Server::Testkit => {
                let polls = Arc::new(AtomicU64::new(0));
                let mut fakes = Vec::new();
                for i in 0..agents {
                    let agent = sim_agent(i);
                    let polls = polls.clone();
                    let responder = Arc::new(move || {
                        polls.fetch_add(1, Ordering::Relaxed);
                        Reply::Json(agent.render(SystemTime::now()))
                    });
                    fakes.push(FakeFlume::start(responder).await.expect("fake flume binds"));
                }
                Agents::Testkit(fakes, polls)
            }
            Server::Python => {
                let dir = TempDir::new("bench-python-flume");
                let body = dir.join("metrics.json");
                std::fs::write(&body, sim_agent(0).render(SystemTime::now())).expect("body file");
                let mut process = Command::new(python)
                    .arg(script)
                    .args(["--agents", &agents.to_string(), "--body"])
                    .arg(&body)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
                let mut line = String::new();
                let stdout = process.stdout.take().expect("piped");
                std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                    .expect("reads the ports");
                let ports = line
                    .strip_prefix("PORTS ")
                    .unwrap_or_else(|| panic!("{script} printed {line:?}"))
                    .split_whitespace()
                    .map(|p| p.parse().expect("port"))
                    .collect();
                Agents::Python {
                    process,
                    ports,
                    _dir: dir,
                }
            }
        }
    }

    fn urls(&self) -> Vec<String> {
        match self {
            Agents::Jetty(fakes) => fakes.iter().map(JettyFake::url).collect(),
            Agents::Testkit(fakes, _) => fakes.iter().map(FakeFlume::url).collect(),
            Agents::Python { ports, .. } => ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/metrics"))
                .collect(),
        }
    }

    /// `/metrics` requests served so far, by every endpoint of the set.
    async fn polls(&self) -> u64 {
        match self {
            Agents::Jetty(fakes) => fakes.iter().map(JettyFake::polls).sum(),
            Agents::Testkit(_, polls) => polls.load(Ordering::Relaxed),
            Agents::Python { ports, .. } => {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", ports[0]))
                    .await
                    .expect("python server reachable");
                stream
                    .write_all(b"GET /-/polls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .expect("asks");
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.expect("reads");
                let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
                body.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("poll count: {answer:?}"))
            }
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        if let Agents::Python { process, .. } = self {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// One process measured against one kind of server.
struct Measured {
    server: Server,
    process: &'static str,
    cpu_ns: u64,
    switches: u64,
    scrapes: u64,
    rss_kib: Vec<u64>,
    /// At the end of the window.
    end: Memory,
    /// Bytes sent to the aggregator and snapshots it stored (the sidecar only).
    upstream: Option<(u64, u64)>,
}

impl Measured {
    fn cpu_per_scrape_us(&self) -> f64 {
        self.cpu_ns as f64 / self.scrapes.max(1) as f64 / 1000.0
    }
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// What every phase of the footprint run shares.
struct FootprintRun<'a> {
    agents: usize,
    interval: Duration,
    duration: Duration,
    python: &'a str,
    replica: &'a str,
    server_script: &'a str,
    sidecar: &'a std::path::Path,
    aggregator: &'a AggregatorHandle,
    proxy: std::net::SocketAddr,
    upstream: &'a AtomicU64,
    webhook: String,
}

/// The sidecar and the replica, side by side, each polling its own `agents` endpoints of kind
/// `server` for the same window.
async fn footprint_against(bench: &FootprintRun<'_>, server: Server) -> [Measured; 2] {
    let sidecar_agents =
        Agents::start(server, bench.agents, bench.python, bench.server_script).await;
    let replica_agents =
        Agents::start(server, bench.agents, bench.python, bench.server_script).await;

    let mut sidecar_args = vec![
        "--aggregator".to_owned(),
        format!("http://{}", bench.proxy),
        "--host".into(),
        format!("bench-{server:?}").to_lowercase(),
        "--interval".into(),
        format!("{}ms", bench.interval.as_millis()),
        "--log-level".into(),
        "warn".into(),
    ];
    for (i, url) in sidecar_agents.urls().into_iter().enumerate() {
        sidecar_args.extend(["--flume".into(), format!("a{i}={url}")]);
    }
    let mut replica_args = vec![
        bench.replica.to_owned(),
        "--interval".into(),
        bench.interval.as_secs_f64().to_string(),
        "--webhook".into(),
        bench.webhook.clone(),
    ];
    for url in replica_agents.urls() {
        replica_args.extend(["--url".into(), url]);
    }
    let spawn = |program: &str, args: &[String]| -> Child {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    };
    let mut sidecar = spawn(bench.sidecar.to_str().expect("utf-8 path"), &sidecar_args);
    let mut seed = spawn(bench.python, &replica_args);
    eprintln!(
        "{}: sidecar pid {}, seed replica pid {}",
        server.label(),
        sidecar.id(),
        seed.id()
    );

    // Warm up (connections, interpreter imports), then measure over the same window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (s0, sp0) = (usage(sidecar.id()), sidecar_agents.polls().await);
    let (r0, rp0) = (usage(seed.id()), replica_agents.polls().await);
    let stored = || {
        bench
            .aggregator
            .counters
            .snapshots_stored
            .load(Ordering::Relaxed)
    };
    let (u0, stored0) = (bench.upstream.load(Ordering::Relaxed), stored());
    let end = Instant::now() + bench.duration;
    let (mut sidecar_rss, mut seed_rss) = (Vec::new(), Vec::new());
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sidecar_rss.extend(rss_kib(sidecar.id()));
        seed_rss.extend(rss_kib(seed.id()));
    }
    let (sidecar_end, seed_end) = (memory(sidecar.id()), memory(seed.id()));
    let (s1, sp1) = (usage(sidecar.id()), sidecar_agents.polls().await);
    let (r1, rp1) = (usage(seed.id()), replica_agents.polls().await);
    let (u1, stored1) = (bench.upstream.load(Ordering::Relaxed), stored());
    for child in [&mut sidecar, &mut seed] {
        let _ = child.kill();
        let _ = child.wait();
    }
    [
        Measured {
            server,
            process: "flumewatch-sidecar (release)",
            cpu_ns: s1.cpu_ns - s0.cpu_ns,
            switches: s1.switches - s0.switches,
            scrapes: sp1 - sp0,
            rss_kib: sidecar_rss,
            end: sidecar_end,
            upstream: Some((u1 - u0, stored1 - stored0)),
        },
        Measured {
            server,
            process: "seed script replica (Python 3.11, requests)",
            cpu_ns: r1.cpu_ns - r0.cpu_ns,
            switches: r1.switches - r0.switches,
            scrapes: rp1 - rp0,
            rss_kib: seed_rss,
            end: seed_end,
            upstream: None,
        },
    ]
}

#[allow(clippy::too_many_arguments)]
async fn footprint(
    servers: &[Server],
    agents: usize,
    interval: Duration,
    duration: Duration,
    python: &str,
    replica: &str,
    server_script: &str,
    sidecar: std::path::PathBuf,
) {
    let aggregator = AggregatorHandle::start().await;
    let (proxy, upstream) = counting_proxy(aggregator.addr).await;
    let robot = FakeDingTalk::start("tok-bench", None)
        .await
        .expect("fake robot");
    let bench = FootprintRun {
        agents,
        interval,
        duration,
        python,
        replica,
        server_script,
        sidecar: &sidecar,
        aggregator: &aggregator,
        proxy,
        upstream: &upstream,
        webhook: robot.webhook(),
    };
    let mut rows = Vec::new();
    for &server in servers {
        rows.extend(footprint_against(&bench, server).await);
    }

    let window = format!(
        "{agents} × {} × {}",
        humantime::format_duration(interval),
        humantime::format_duration(duration)
    );
    println!(
        "| server | process | agents × interval × time | scrapes | CPU per scrape | context switches per scrape | steady RSS (median) | peak RSS | at the end: RSS = file-backed + anonymous; PSS | upstream per snapshot |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &mut rows {
        let peak = m.rss_kib.iter().copied().max().unwrap_or(0);
        let steady = median(&mut m.rss_kib);
        let upstream = match m.upstream {
            Some((bytes, stored)) => format!(
                "{:.0} B ({stored} snapshots)",
                bytes as f64 / stored.max(1) as f64
            ),
            None => "0 B (sends nothing but alerts)".to_owned(),
        };
        println!(
            "| {} | {} | {window} | {} | {:.1} µs | {:.1} | {:.2} MiB | {:.2} MiB | {:.2} = {:.2} + {:.2} MiB; {:.2} MiB | {upstream} |",
            m.server.label(),
            m.process,
            m.scrapes,
            m.cpu_per_scrape_us(),
            m.switches as f64 / m.scrapes.max(1) as f64,
            steady as f64 / 1024.0,
            peak as f64 / 1024.0,
            m.end.rss as f64 / 1024.0,
            (m.end.rss - m.end.anon.min(m.end.rss)) as f64 / 1024.0,
            m.end.anon as f64 / 1024.0,
            m.end.pss as f64 / 1024.0,
        );
    }
    println!();
    println!("| server | replica CPU per scrape ÷ sidecar's (target ≥ 20×) |");
    println!("|---|---:|");
    for pair in rows.chunks(2) {
        let [sidecar, replica] = pair else { continue };
        println!(
            "| {} | {:.1}× |",
            sidecar.server.label(),
            replica.cpu_per_scrape_us() / sidecar.cpu_per_scrape_us().max(f64::MIN_POSITIVE)
        );
    }
    aggregator.stop().await;
}

async fn alert_latency(incidents: usize, poll: Duration, group_wait: Duration, spacing: Duration) {
    let robot = FakeDingTalk::start("tok-latency", Some("SEClatency"))
        .await
        .expect("fake robot");
    let rules = std::env::temp_dir().join(format!("fw-latency-rules-{}.toml", std::process::id()));
    std::fs::write(
        &rules,
        "use_defaults = false\n[[rule]]\nname = \"ChannelFilling\"\nseverity = \"warning\"\nkinds = [\"channel\"]\n\
         condition = { value = \"ChannelFillPercentage\", op = \">=\", threshold = 80 }\n",
    )
    .expect("rules written");
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {rules:?}\n[notify]\ngroup_by = [\"host\"]\ngroup_wait = \"{}ms\"\ngroup_interval = \"1m\"\nrepeat_interval = \"4h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = \"SEClatency\"\n",
        group_wait.as_millis(),
        robot.webhook()
    ))
    .await;
    let mut agents = Vec::new();
    let mut sidecars = Vec::new();
    for i in 0..incidents {
        let flume = ScriptedFlume::start(Reply::Json(body_with_fill(10))).await;
        let mut config = sidecar_config(
            &aggregator.url(),
            &format!("lat-{i:02}"),
            &[("a1", flume.url())],
            &[],
        );
        config.interval = Some(format!("{}ms", poll.as_millis()));
        config.timeout = Some(format!("{}ms", (poll / 2).as_millis()));
        sidecars.push(SidecarHandle::start(config));
        agents.push(flume);
    }
    // Every sidecar reporting before the first incident.
    let fleet = aggregator.fleet.clone();
    wait_for("every sidecar reporting", || async {
        (0..incidents)
            .all(|i| {
                fleet
                    .agent(&format!("lat-{i:02}"), "a1")
                    .is_ok_and(|v| v.state.received >= 2)
            })
            .then_some(())
    })
    .await;
    let mut latencies = Vec::new();
    for (i, flume) in agents.iter().enumerate() {
        let crossed = Instant::now();
        flume.set(Reply::Json(body_with_fill(95)));
        let needle = format!("**lat-{i:02}**/a1");
        let arrived = wait_for("the incident's DingTalk message", || {
            let robot = &robot;
            let needle = &needle;
            async move {
                robot
                    .received()
                    .iter()
                    .find(|m| m.text.contains(needle.as_str()))
                    .map(|m| m.at)
            }
        })
        .await;
        latencies.push(arrived.duration_since(crossed));
        let next = crossed + spacing;
        tokio::time::sleep_until(next).await;
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let target = poll + group_wait + Duration::from_millis(200);
    println!(
        "| incidents | poll | group_wait | p50 | p99 | max | target (poll + group_wait + 200 ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {incidents} | {} | {} | {} ms | {} ms | {} ms | {} ms |",
        humantime::format_duration(poll),
        humantime::format_duration(group_wait),
        q(0.5).as_millis(),
        q(0.99).as_millis(),
        sorted.last().map_or(0, |d| d.as_millis()),
        target.as_millis()
    );
    for s in sidecars {
        s.stop().await;
    }
    aggregator.stop().await;
    let _ = std::fs::remove_file(rules);
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Bench::Footprint {
            agents,
            interval,
            duration,
            python,
            replica,
            sidecar,
            servers,
            server_script,
        } => {
            let sidecar = sidecar.unwrap_or_else(|| sibling("flumewatch-sidecar"));
            footprint(
                &servers,
                agents,
                interval.into(),
                duration.into(),
                &python,
                &replica,
                &server_script,
                sidecar,
            )
            .await
        }
        Bench::AlertLatency {
            incidents,
            poll,
            group_wait,
            spacing,
        } => alert_latency(incidents, poll.into(), group_wait.into(), spacing.into()).await,
    }
}
