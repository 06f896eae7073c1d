//! The default policy judged on traces: the two real traces and the incident library
//! (`tests/fixtures/flume/incidents`, see its manifest), each replayed through the real parser,
//! fleet and rules on the paused clock at 1 s and 10 s polls, at several poll phases.
//!
//! Every incident is alerted (detection time after onset printed per rule); channel incidents
//! before the channel is full and before the source refuses events; an agent that is gone is
//! FlumeAgentDown by its 3rd failed poll; healthy, restart, reload, burst and idle traces raise
//! no channel, sink or source alert (the manifest's `expect_alert`), and FlumeAgentDown exactly
//! where the polls found 3 refusals in a row (an 11 s restart polled every second).

use std::path::PathBuf;
use std::time::Duration;

use flumewatch_aggregator::alert::AlertStatus;
use flumewatch_e2e::replay::{self, Answer, Event, Options, Sample};
use serde_json::Value;

fn incidents() -> PathBuf {
    flumewatch_testkit::fixture("flume").join("incidents")
}

struct Entry {
    file: String,
    class: String,
    onset: Option<f64>,
    full_at: Option<f64>,
    refusing_at: Option<f64>,
    expect_alert: bool,
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(incidents().join("manifest.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let list = value
        .as_array()
        .or_else(|| value["traces"].as_array())
        .expect("a list of traces");
    list.iter()
        .map(|e| Entry {
            file: e["file"].as_str().unwrap().to_owned(),
            class: e["class"].as_str().unwrap().to_owned(),
            onset: e["onset"].as_f64(),
            full_at: e["full_at"].as_f64(),
            refusing_at: e["refusing_at"].as_f64(),
            expect_alert: e["expect_alert"].as_bool().unwrap(),
        })
        .collect()
}

/// The longest run of polls that find the agent not answering, at this interval and phase.
fn longest_failed_run(samples: &[Sample], interval: f64, first: f64) -> usize {
    let end = samples.last().unwrap().t;
    let (mut run, mut longest) = (0, 0);
    let mut at = first;
    while at <= end + interval {
        let sample = samples
            .iter()
            .rev()
            .find(|s| s.t <= at)
            .unwrap_or(&samples[0]);
        if matches!(sample.answer, Answer::Body(_)) {
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
        at += interval;
    }
    longest
}

fn firsts(events: &[Event]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for e in events.iter().filter(|e| e.status == AlertStatus::Firing) {
        let key = format!("{}:{}", e.alertname, e.severity);
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, e.t));
        }
    }
    out
}

const INTERVALS: [(u64, &[f64]); 2] = [(1, &[0.0, 0.5]), (10, &[0.0, 3.3, 6.6, 9.9])];

#[tokio::test(start_paused = true)]
async fn the_default_policy_on_every_trace() {
    let mut report = String::new();
    let mut failures = Vec::new();
    let entries = manifest();
    assert!(entries.len() >= 9, "the library has its traces");
    for entry in &entries {
        let samples = replay::load(&incidents().join(&entry.file)).unwrap();
        for (interval, phases) in INTERVALS {
            for &phase in phases {
                let mut options = Options::new(Duration::from_secs(interval));
                options.first_poll = Duration::from_secs_f64(phase);
                let events = replay::replay(&samples, &options).await;
                let firsts = firsts(&events);
                let failed_run = longest_failed_run(&samples, interval as f64, phase);
                let mut fail = |why: String| {
                    failures.push(format!(
                        "{} @{interval}s phase {phase}: {why}\n{}",
                        entry.file,
                        events
                            .iter()
                            .map(|e| format!("    {e}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ))
                };
                // FlumeAgentDown is exactly "3 failed polls in a row": expected where the
                // polls found 3, never otherwise.
                let down = firsts.iter().find(|(k, _)| k.starts_with("FlumeAgentDown"));
                match (failed_run >= 3, down) {
                    (true, None) => fail(format!("{failed_run} failed polls, no FlumeAgentDown")),
                    (false, Some(_)) => {
                        fail(format!("FlumeAgentDown after {failed_run} failed polls"))
                    }
                    _ => {}
                }
                let at = |rule: &str| firsts.iter().find(|(k, _)| k == rule).map(|(_, t)| *t);
                if entry.class == "agent_killed" {
                    let onset = entry.onset.expect("a kill has an onset");
                    match at("FlumeAgentDown:critical") {
                        Some(t) if t - onset <= 3.0 * interval as f64 + 1.0 => {
                            report.push_str(&format!(
                                "{:<28} {:>3}s phase {:>3.1}: FlumeAgentDown:critical +{:.1}s\n",
                                entry.file,
                                interval,
                                phase,
                                t - onset
                            ));
                        }
                        other => fail(format!("FlumeAgentDown at {other:?}, killed at {onset}")),
                    }
                }
                let others: Vec<&(String, f64)> = firsts
                    .iter()
                    .filter(|(k, _)| !k.starts_with("FlumeAgentDown"))
                    .collect();
                if !entry.expect_alert {
                    if !others.is_empty() {
                        fail(format!("false alerts {others:?}"));
                    }
                    continue;
                }
                let onset = entry.onset.expect("an incident has an onset");
                let Some((first_rule, first_at)) = firsts.first() else {
                    fail("nothing fired".into());
                    continue;
                };
                let mut line = format!(
                    "{:<28} {:>3}s phase {:>3.1}: first {first_rule} +{:.1}s",
                    entry.file,
                    interval,
                    phase,
                    first_at - onset
                );
                for (limit, what) in [(entry.full_at, "full"), (entry.refusing_at, "refusing")] {
                    if let Some(limit) = limit {
                        line.push_str(&format!(", lead before {what} {:.1}s", limit - first_at));
                        if *first_at >= limit {
                            fail(format!(
                                "first alert at {first_at}, channel {what} at {limit}"
                            ));
                        }
                    }
                }
                let per_rule: Vec<String> = firsts
                    .iter()
                    .map(|(k, t)| format!("{k} +{:.1}s", t - onset))
                    .collect();
                line.push_str(&format!("  [{}]", per_rule.join(", ")));
                report.push_str(&line);
                report.push('\n');
                match entry.class.as_str() {
                    "dead_sink" => {
                        match at("SinkStalled:critical") {
                            Some(t) if t - onset <= 3.0 * interval as f64 + 12.0 => {}
                            other => fail(format!("SinkStalled at {other:?}, onset {onset}")),
                        }
                        let names_channel = events.iter().any(|e| {
                            e.alertname == "SinkStalled"
                                && e.component == "http1"
                                && e.summary.contains("mem1")
                        });
                        if !names_channel {
                            fail("SinkStalled does not name sink http1 and channel mem1".into());
                        }
                    }
                    "slow_sink" if at("ChannelFullSoon:warning").is_none() => {
                        fail("no ChannelFullSoon".into());
                    }
                    _ => {}
                }
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
