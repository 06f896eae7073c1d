//! `flumewatch-replay TRACE.jsonl…`: replays recorded Flume traces through the real parser,
//! fleet and rules on a paused clock and prints each one's alert timeline in trace time.
//!
//! `cargo run --bin flumewatch-replay -- --interval 10s tests/fixtures/flume/incidents/sink-target-down.jsonl`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flumewatch_aggregator::alert::AlertStatus;
use flumewatch_aggregator::rules::{Language, RuleSet};
use flumewatch_e2e::replay::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "flumewatch-replay",
    about = "Replay {t, status, body} JSONL traces of a Flume agent through the alert policy"
)]
struct Args {
    /// Trace files (one JSON object per line: t, status, body).
    #[arg(required = true, value_name = "TRACE")]
    traces: Vec<PathBuf>,
    /// The sidecar's poll interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Trace time of the first poll (the phase of the sidecar's polls).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    first_poll: Duration,
    /// A rule file (as the aggregator's `rules`); the default policy without one.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Language of summaries: zh or en.
    #[arg(long, default_value = "zh")]
    language: String,
    /// Trace time the incident began: each rule's first firing is also shown relative to it.
    #[arg(long, value_name = "SECONDS")]
    onset: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.interval.is_zero() {
        eprintln!("flumewatch-replay: --interval must be above 0");
        return ExitCode::from(64);
    }
    let language = match args.language.as_str() {
        "zh" => Language::Zh,
        "en" => Language::En,
        other => {
            eprintln!("flumewatch-replay: language {other:?}: use zh or en");
            return ExitCode::from(64);
        }
    };
    let rules = match RuleSet::load(args.rules.as_deref()) {
        Ok(rules) => Arc::new(rules),
        Err(e) => {
            eprintln!("flumewatch-replay: {e}");
            return ExitCode::from(64);
        }
    };
    let options = Options {
        poll_interval: args.interval,
        first_poll: args.first_poll,
        rules,
        language,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    for path in &args.traces {
        let samples = match replay::load(path) {
            Ok(samples) => samples,
            Err(e) => {
                eprintln!("flumewatch-replay: {e}");
                return ExitCode::from(65);
            }
        };
        let events = runtime.block_on(replay::replay(&samples, &options));
        println!(
            "{} — {} samples, polled every {}",
            path.display(),
            samples.len(),
            humantime::format_duration(options.poll_interval)
        );
        if events.is_empty() {
            println!("  no alerts");
        }
        for event in &events {
            println!("  {event}");
        }
        if let Some(onset) = args.onset {
            let mut firsts: Vec<(String, f64)> = Vec::new();
            for event in events.iter().filter(|e| e.status == AlertStatus::Firing) {
                let key = format!("{}:{}", event.alertname, event.severity);
                if !firsts.iter().any(|(k, _)| *k == key) {
                    firsts.push((key, event.t));
                }
            }
            for (rule, t) in firsts {
                println!("  detection {rule}: {:.1} s after onset", t - onset);
            }
        }
    }
    ExitCode::SUCCESS
}
