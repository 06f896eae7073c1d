//! `flumewatch-bench`: the side-by-side benchmarks that need real processes.
//!
//! - `footprint`: the release sidecar and the seed script's replica poll identical simulated
//!   agents at the same interval for the same time; CPU per scrape (from /proc schedstat),
//!   steady RSS, bytes sent upstream per snapshot.
//! - `alert-latency`: from a simulated agent crossing a threshold to the DingTalk POST arriving
//!   at the fake robot, over many incidents.
//!
//! Each prints its figures as Markdown table rows; tests/bench/run.sh runs them all.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
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

/// Nanoseconds on CPU of every thread of `pid` (schedstat: exact, unlike clock ticks).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `agents` simulated healthy agents; the returned counter counts their polls.
async fn simulated_agents(agents: usize) -> (Vec<FakeFlume>, Arc<AtomicU64>) {
    let polls = Arc::new(AtomicU64::new(0));
    let started = SystemTime::now() - Duration::from_secs(3600);
    let mut fakes = Vec::new();
    for i in 0..agents {
        let agent = SimAgent::new(
            Profile::Healthy {
                events_per_sec: 500.0 + 50.0 * i as f64,
                file_channel: i % 2 == 1,
            },
            started,
        );
        let polls = polls.clone();
        fakes.push(
            FakeFlume::start(Arc::new(move || {
                polls.fetch_add(1, Ordering::Relaxed);
                Reply::Json(agent.render(SystemTime::now()))
            }))
            .await
            .expect("fake flume binds"),
        );
    }
    (fakes, polls)
}

/// A TCP relay to `target` that counts the bytes clients send through it.
async fn counting_proxy(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let upstream = Arc::new(AtomicU64::new(0));
    let counted = upstream.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    (addr, upstream)
}

struct Measured {
    cpu_ns: u64,
    scrapes: u64,
    rss_kib: Vec<u64>,
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

async fn footprint(
    agents: usize,
    interval: Duration,
    duration: Duration,
    python: &str,
    replica: &str,
    sidecar_binary: std::path::PathBuf,
) {
    let aggregator = AggregatorHandle::start().await;
    let (proxy, upstream) = counting_proxy(aggregator.addr).await;
    let (sidecar_agents, sidecar_polls) = simulated_agents(agents).await;
    let (replica_agents, replica_polls) = simulated_agents(agents).await;
    let robot = FakeDingTalk::start("tok-bench", None)
        .await
        .expect("fake robot");

    let interval_text = format!("{}ms", interval.as_millis());
    let mut sidecar_args = vec![
        "--aggregator".to_owned(),
        format!("http://{proxy}"),
        "--host".into(),
        "bench-1".into(),
        "--interval".into(),
        interval_text,
        "--log-level".into(),
        "warn".into(),
    ];
    for (i, a) in sidecar_agents.iter().enumerate() {
        sidecar_args.extend(["--flume".into(), format!("a{i}={}", a.url())]);
    }
    let mut replica_args = vec![
        replica.to_owned(),
        "--interval".into(),
        interval.as_secs_f64().to_string(),
        "--webhook".into(),
        robot.webhook(),
    ];
    for a in &replica_agents {
        replica_args.extend(["--url".into(), a.url()]);
    }
    let spawn = |program: &str, args: &[String]| -> Child {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    };
    let mut sidecar = spawn(sidecar_binary.to_str().expect("utf-8 path"), &sidecar_args);
    let mut seed = spawn(python, &replica_args);
    eprintln!(
        "sidecar pid {}, seed replica pid {}",
        sidecar.id(),
        seed.id()
    );

    // Warm up (connections, interpreter imports), then measure over the same window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let measure = |pid: u32, polls: &AtomicU64| (cpu_ns(pid), polls.load(Ordering::Relaxed));
    let (s0, sp0) = measure(sidecar.id(), &sidecar_polls);
    let (r0, rp0) = measure(seed.id(), &replica_polls);
    let (u0, stored0) = (
        upstream.load(Ordering::Relaxed),
        aggregator.counters.snapshots_stored.load(Ordering::Relaxed),
    );
    let end = Instant::now() + duration;
    let (mut sidecar_rss, mut seed_rss) = (Vec::new(), Vec::new());
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sidecar_rss.extend(rss_kib(sidecar.id()));
        seed_rss.extend(rss_kib(seed.id()));
    }
    let (s1, sp1) = measure(sidecar.id(), &sidecar_polls);
    let (r1, rp1) = measure(seed.id(), &replica_polls);
    let (u1, stored1) = (
        upstream.load(Ordering::Relaxed),
        aggregator.counters.snapshots_stored.load(Ordering::Relaxed),
    );
    let _ = sidecar.kill();
    let _ = seed.kill();
    let _ = sidecar.wait();
    let _ = seed.wait();

    let results = [
        (
            "flumewatch-sidecar (release)",
            Measured {
                cpu_ns: s1 - s0,
                scrapes: sp1 - sp0,
                rss_kib: sidecar_rss,
            },
        ),
        (
            "seed script replica (Python 3.11, requests)",
            Measured {
                cpu_ns: r1 - r0,
                scrapes: rp1 - rp0,
                rss_kib: seed_rss,
            },
        ),
    ];
    let per_scrape = |m: &Measured| m.cpu_ns as f64 / m.scrapes.max(1) as f64 / 1000.0;
    println!(
        "| process | agents × interval × time | scrapes | CPU per scrape | steady RSS (median) | peak RSS | upstream per snapshot |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (i, (name, mut m)) in results.into_iter().enumerate() {
        let peak = m.rss_kib.iter().copied().max().unwrap_or(0);
        let steady = median(&mut m.rss_kib);
        let upstream = if i == 0 {
            format!(
                "{:.0} B ({} snapshots)",
                (u1 - u0) as f64 / (stored1 - stored0).max(1) as f64,
                stored1 - stored0
            )
        } else {
            "0 B (sends nothing but alerts)".to_owned()
        };
        println!(
            "| {name} | {agents} × {} × {} | {} | {:.1} µs | {:.2} MiB | {:.2} MiB | {upstream} |",
            humantime::format_duration(interval),
            humantime::format_duration(duration),
            m.scrapes,
            per_scrape(&m),
            steady as f64 / 1024.0,
            peak as f64 / 1024.0,
        );
    }
    drop((sidecar_agents, replica_agents));
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
        } => {
            let sidecar = sidecar.unwrap_or_else(|| sibling("flumewatch-sidecar"));
            footprint(
                agents,
                interval.into(),
                duration.into(),
                &python,
                &replica,
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
