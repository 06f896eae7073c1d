//! Trace replay: a recorded `{t, status, body}` JSONL trace of one Flume agent goes through the
//! real parser (the sidecar's), the real fleet and the real rules on tokio's paused clock, as
//! a sidecar polling every `poll_interval` would see it; out comes the alert timeline in trace
//! time. Runs only inside a paused runtime (`start_paused`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_aggregator::alert::{Alert, AlertStatus};
use flumewatch_aggregator::fleet::{Fleet, Hello, Now};
use flumewatch_aggregator::rules::{Language, RuleSet};
use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};
use flumewatch_sidecar::flume::parse_metrics;
use tokio::time::Instant;

/// Wall-clock time of trace second 0 (the real traces were recorded on 2026-11-25).
const WALL0: u64 = 1_795_596_368;
/// The aggregator's default evaluation tick.
const TICK: Duration = Duration::from_secs(5);

/// What one sample says the agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Body(String),
    Refused,
    Timeout,
    Http(u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the trace started.
    pub t: f64,
    pub answer: Answer,
}

/// A trace file that cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Reads a JSONL trace (samples in time order).
pub fn load(path: &Path) -> Result<Vec<Sample>, TraceError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::File {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let mut samples: Vec<Sample> = Vec::new();
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |reason: String| TraceError::Line {
            path: name.clone(),
            line: index + 1,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let t = value["t"]
            .as_f64()
            .ok_or_else(|| bad("no number \"t\"".into()))?;
        if samples.last().is_some_and(|s| s.t > t) {
            return Err(bad(format!("t={t} goes back in time")));
        }
        let status = value["status"].as_str().unwrap_or_default();
        let answer = match status {
            "ok" => Answer::Body(
                value["body"]
                    .as_str()
                    .ok_or_else(|| bad("status ok without a body".into()))?
                    .to_owned(),
            ),
            "refused" => Answer::Refused,
            "timeout" => Answer::Timeout,
            other => match other.strip_prefix("http_").and_then(|c| c.parse().ok()) {
                Some(code) => Answer::Http(code),
                None => return Err(bad(format!("unknown status {other:?}"))),
            },
        };
        samples.push(Sample { t, answer });
    }
    if samples.is_empty() {
        return Err(TraceError::File {
            path: name,
            reason: "no samples".into(),
        });
    }
    Ok(samples)
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct Options {
    pub poll_interval: Duration,
    /// Trace time of the first poll: real sidecars poll at any phase of the agent's second.
    pub first_poll: Duration,
    pub rules: Arc<RuleSet>,
    pub language: Language,
}

impl Options {
    pub fn new(poll_interval: Duration) -> Self {
        Self {
            poll_interval,
            first_poll: Duration::ZERO,
            rules: Arc::new(RuleSet::defaults()),
            language: Language::Zh,
        }
    }
}

/// One change of one alert, at trace time `t`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t: f64,
    pub status: AlertStatus,
    pub alertname: String,
    pub severity: String,
    /// The component, or "" for agent-level alerts.
    pub component: String,
    pub summary: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        write!(
            f,
            "t={:>7.1}s  {:<8} {:<28} {:<10}  {}",
            self.t,
            status,
            format!("{}:{}", self.alertname, self.severity),
            self.component,
            self.summary
        )
    }
}

/// Replays `samples` and returns every alert change in trace time order. Polls land at
/// `first_poll + k × poll_interval` and see the newest sample at or before that moment; the
/// fleet is ticked every 5 s in between, as the aggregator does.
pub async fn replay(samples: &[Sample], options: &Options) -> Vec<Event> {
    let fleet = Fleet::new(4, options.rules.clone(), options.language);
    let start = Instant::now();
    let now = || {
        let elapsed = Instant::now() - start;
        Now {
            mono: Instant::now(),
            wall: UNIX_EPOCH + Duration::from_secs(WALL0) + elapsed,
        }
    };
    let hello = Hello {
        host: "replay".into(),
        instance_id: "replay-1".into(),
        agents: vec!["a1".into()],
        labels: Default::default(),
        version: "replay".into(),
        poll_interval: options.poll_interval,
    };
    let stream = fleet.connect(hello, now()).stream_id;
    let end = Duration::from_secs_f64(samples.last().map_or(0.0, |s| s.t));
    let mut seen: Vec<Alert> = Vec::new();
    let mut events = Vec::new();
    let mut next_poll = options.first_poll;
    let mut next_tick = TICK;
    let mut seq = 0;
    loop {
        let at = next_poll.min(next_tick);
        if at > end + options.poll_interval {
            break;
        }
        let elapsed = Instant::now() - start;
        if at > elapsed {
            tokio::time::advance(at - elapsed).await;
        }
        if at == next_poll {
            seq += 1;
            let sample = samples
                .iter()
                .rev()
                .find(|s| s.t <= at.as_secs_f64())
                .unwrap_or(&samples[0]);
            let snapshot = scrape(sample, seq, now().wall);
            fleet.record("replay", stream, snapshot, now());
            next_poll += options.poll_interval;
        } else {
            fleet.tick(now());
            next_tick += TICK;
        }
        diff(&mut seen, fleet.alerts(), at.as_secs_f64(), &mut events);
    }
    events
}

/// What the sidecar would have made of one answer.
fn scrape(sample: &Sample, seq: u64, wall: SystemTime) -> Snapshot {
    let (outcome, components) = match &sample.answer {
        Answer::Body(body) => match parse_metrics(body.as_bytes()) {
            Ok(components) => (ScrapeOutcome::Ok, components),
            Err(e) => (ScrapeOutcome::BadPayload(e.to_string()), Vec::new()),
        },
        Answer::Refused => (
            ScrapeOutcome::ConnectionRefused("connection refused".into()),
            Vec::new(),
        ),
        Answer::Timeout => (ScrapeOutcome::Timeout("timed out".into()), Vec::new()),
        Answer::Http(status) => (
            ScrapeOutcome::HttpStatus {
                status: *status,
                error: format!("HTTP {status}"),
            },
            Vec::new(),
        ),
    };
    Snapshot {
        outcome,
        ..flumewatch_testkit::snapshot::ok(seq, wall, components)
    }
}

fn diff(seen: &mut Vec<Alert>, now: Vec<Alert>, t: f64, events: &mut Vec<Event>) {
    for alert in &now {
        let before = seen.iter().find(|a| a.fingerprint == alert.fingerprint);
        if before.is_some_and(|b| b.status == alert.status) {
            continue;
        }
        events.push(Event {
            t,
            status: alert.status,
            alertname: alert.alertname.clone(),
            severity: alert.severity.as_str().to_owned(),
            component: alert.labels.get("component").unwrap_or_default().to_owned(),
            summary: alert
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_default(),
        });
    }
    *seen = now;
}

/// The first time `alertname` (any severity when `severity` is None) fired.
pub fn first_firing(events: &[Event], alertname: &str, severity: Option<&str>) -> Option<f64> {
    events
        .iter()
        .find(|e| {
            e.status == AlertStatus::Firing
                && e.alertname == alertname
                && severity.is_none_or(|s| e.severity == s)
        })
        .map(|e| e.t)
}

/// A channel's fill in percent in one sample's body, when it has one.
pub fn channel_fill(sample: &Sample, channel: &str) -> Option<f64> {
    let Answer::Body(body) = &sample.answer else {
        return None;
    };
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value[format!("CHANNEL.{channel}")]["ChannelFillPercentage"]
        .as_str()?
        .parse()
        .ok()
}
