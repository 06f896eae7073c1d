//! `flumewatch-load`: simulate N sidecars against a running aggregator and print what it
//! sustained. With `--pid` and `--metrics` it also reads the aggregator's CPU, memory and its
//! own ingest→verdict histogram.

use std::time::Duration;

use clap::Parser;
use flumewatch_e2e::load::{self, LoadConfig};
use flumewatch_e2e::procstat;

#[derive(Parser)]
#[command(about = "Load an aggregator with simulated sidecar streams")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    aggregator: String,
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// Agents per stream, as a sidecar polling several Flume agents: each round sends one
    /// snapshot per agent together.
    #[arg(long, default_value_t = 1)]
    agents_per_stream: usize,
    /// Rounds per second per stream.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    #[arg(long, default_value_t = 10)]
    min_components: usize,
    #[arg(long, default_value_t = 30)]
    max_components: usize,
    /// Share of agents in trouble (filling channels).
    #[arg(long, default_value_t = 0.05)]
    trouble: f64,
    /// HTTP/2 connections shared by the streams [default: one per stream].
    #[arg(long)]
    connections: Option<usize>,
    #[arg(long, default_value_t = 2000)]
    ramp_per_second: usize,
    /// The aggregator's process id, for its CPU time and memory.
    #[arg(long)]
    pid: Option<u32>,
    /// The aggregator's HTTP address (host:port), for its own histogram and counters.
    #[arg(long)]
    metrics: Option<String>,
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    procstat::cpu_total(pid).map(|d| d.as_secs_f64())
}

fn rss_mib(pid: u32) -> Option<f64> {
    procstat::rss_kib(pid).map(|kib| kib as f64 / 1024.0)
}

fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, count)| *count >= q * total)
        .map(|(le, _)| *le)
}

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        // An empty sum is -0.0.
        + 0.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = LoadConfig {
        aggregator: args.aggregator,
        streams: args.streams,
        agents_per_stream: args.agents_per_stream,
        rate: args.rate,
        duration: args.duration.into(),
        min_components: args.min_components,
        max_components: args.max_components,
        trouble: args.trouble,
        connections: args.connections.unwrap_or(args.streams),
        ramp_per_second: args.ramp_per_second,
    };
    let before = match &args.metrics {
        Some(m) => flumewatch_testkit::metrics::scrape(m)
            .await
            .unwrap_or_default(),
        None => String::new(),
    };
    let cpu_before = args.pid.and_then(cpu_seconds);
    // RSS once a minute (and at the start): growth shows as a rising series.
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = args.pid.map(|pid| {
        let samples = samples.clone();
        tokio::spawn(async move {
            while let Some(rss) = rss_mib(pid) {
                samples.lock().expect("samples lock").push(rss);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        })
    });
    let report = load::run(&config).await?;
    let cpu = args
        .pid
        .and_then(cpu_seconds)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let rss_end = args.pid.and_then(rss_mib);
    if let Some(task) = sampler {
        task.abort();
    }
    let samples = samples.lock().expect("samples lock").clone();
    println!(
        "streams {} × {} agents × {}/s for {:?}: sent {}, acknowledged {} ({:.0}/s), send→ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.streams_opened,
        config.agents_per_stream,
        config.rate,
        config.duration,
        report.sent,
        report.acked,
        report.accepted_per_second(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.quantile_ms(1.0),
    );
    let by_minute = |q| {
        report
            .quantile_by_minute_ms(q)
            .iter()
            .map(|ms| format!("{ms:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "send→ack by minute sent (ms): p50 [{}], p99 [{}]",
        by_minute(0.5),
        by_minute(0.99)
    );
    let generator = report.generator_cpu.as_secs_f64();
    println!(
        "generator CPU {:.1} s over {:.1} s = {:.0}% of one core, {:.1} µs per snapshot sent",
        generator,
        report.elapsed.as_secs_f64(),
        100.0 * generator / report.elapsed.as_secs_f64(),
        1e6 * generator / report.sent.max(1) as f64
    );
    if let Some(cpu) = cpu {
        println!(
            "aggregator CPU {:.1} s over {:.1} s = {:.0}% of one core ({:.0}% of 2 cores), {:.1} µs per snapshot acknowledged",
            cpu,
            report.elapsed.as_secs_f64(),
            100.0 * cpu / report.elapsed.as_secs_f64(),
            50.0 * cpu / report.elapsed.as_secs_f64(),
            1e6 * cpu / report.acked.max(1) as f64
        );
    }
    if let Some(rss) = rss_end {
        println!(
            "aggregator RSS {:.1} MiB at the end ({:.1} KiB per agent); per minute: {:?}",
            rss,
            rss * 1024.0 / (config.streams * config.agents_per_stream.max(1)) as f64,
            samples
                .iter()
                .map(|s| (s * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
    }
    if let Some(m) = &args.metrics {
        let after = flumewatch_testkit::metrics::scrape(m)
            .await
            .unwrap_or_default();
        let name = "flumewatch_ingest_to_verdict_seconds";
        println!(
            "aggregator ingest→verdict (bucket upper bounds): p50 ≤ {:.3} ms, p99 ≤ {:.3} ms; stored {} snapshots; alerts firing {}; notifications sent {}",
            histogram_quantile(&after, name, 0.5).unwrap_or(f64::NAN) * 1000.0,
            histogram_quantile(&after, name, 0.99).unwrap_or(f64::NAN) * 1000.0,
            value(&after, "flumewatch_snapshots_stored_total") - value(&before, "flumewatch_snapshots_stored_total"),
            after
                .lines()
                .filter(|l| l.starts_with("flumewatch_alerts{") && l.contains("state=\"firing\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
                + 0.0,
            value(&after, "flumewatch_notifications_sent_total"),
        );
    }
    Ok(())
}
