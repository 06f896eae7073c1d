//! Drives the real `Fleet` (ingest bookkeeping + rule engine) with snapshot sequences on tokio's
//! paused clock: one simulated sidecar per host, polls every `interval`, ticks in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_aggregator::alert::{Alert, AlertStatus};
use flumewatch_aggregator::fleet::{Fleet, Hello, Now, Registration};
use flumewatch_aggregator::rules::{Language, RuleSet};
use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};
use flumewatch_sidecar::flume::parse_metrics;
use tokio::time::Instant;

pub const T0: u64 = 1_795_596_368;

pub fn shared(path: &str) -> std::path::PathBuf {
    flumewatch_testkit::fixture("flume").join(path)
}

pub fn sample(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(shared(&format!("samples/{name}"))).unwrap()).unwrap()
}

/// Sets `attr` of `component` (e.g. "CHANNEL.mem1") in a Flume JSON body, as Flume would print it.
pub fn set(body: &mut serde_json::Value, component: &str, attr: &str, value: impl ToString) {
    body[component][attr] = serde_json::Value::String(value.to_string());
}

/// A fleet under test and a clock that starts at T0.
pub struct World {
    pub fleet: Fleet,
    start: Instant,
    sidecars: BTreeMap<String, (Registration, u64)>,
}

impl World {
    pub fn new() -> Self {
        Self::with_rules(RuleSet::defaults())
    }

    pub fn with_rules(rules: RuleSet) -> Self {
        Self {
            fleet: Fleet::new(4, Arc::new(rules), Language::En),
            start: Instant::now(),
            sidecars: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> Now {
        let elapsed = Instant::now() - self.start;
        Now {
            mono: Instant::now(),
            wall: UNIX_EPOCH + Duration::from_secs(T0) + elapsed,
        }
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.start
    }

    /// Connects a sidecar for `host` with a 10 s poll interval and these labels.
    pub fn connect(&mut self, host: &str, labels: &[(&str, &str)]) {
        let hello = Hello {
            host: host.into(),
            instance_id: format!("{host}-1"),
            agents: vec!["a1".into()],
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            version: "test".into(),
            poll_interval: Duration::from_secs(10),
        };
        let registration = self.fleet.connect(hello, self.now());
        self.sidecars.insert(host.into(), (registration, 0));
    }

    fn record(&mut self, host: &str, outcome: ScrapeOutcome, body: Option<&[u8]>) {
        let now = self.now();
        let (registration, seq) = self.sidecars.get_mut(host).expect("connected");
        *seq += 1;
        let components = body
            .map(|b| parse_metrics(b).expect("body parses"))
            .unwrap_or_default();
        let snapshot = Snapshot {
            outcome,
            ..flumewatch_testkit::snapshot::ok(*seq, now.wall, components)
        };
        self.fleet
            .record(host, registration.stream_id, snapshot, now);
    }

    /// One successful poll of `host` returning `body`.
    pub fn poll(&mut self, host: &str, body: &serde_json::Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.record(host, ScrapeOutcome::Ok, Some(&bytes));
    }

    pub fn poll_raw(&mut self, host: &str, body: &[u8]) {
        self.record(host, ScrapeOutcome::Ok, Some(body));
    }

    /// One failed poll (connection refused).
    pub fn poll_failed(&mut self, host: &str) {
        self.record(
            host,
            ScrapeOutcome::ConnectionRefused("connection refused".into()),
            None,
        );
    }

    /// Moves the clock, ticking the evaluator every 5 s on the way, as the server does.
    pub async fn advance(&self, by: Duration) {
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(5));
            tokio::time::advance(step).await;
            left -= step;
            self.fleet.tick(self.now());
        }
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.fleet.alerts()
    }

    /// "Name:severity:status[:component]" of every alert, sorted.
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .alerts()
            .iter()
            .map(|a| {
                let status = match a.status {
                    AlertStatus::Pending => "pending",
                    AlertStatus::Firing => "firing",
                    AlertStatus::Resolved => "resolved",
                };
                match a.labels.get("component") {
                    Some(c) => format!("{}:{}:{status}:{c}", a.alertname, a.severity),
                    None => format!("{}:{}:{status}", a.alertname, a.severity),
                }
            })
            .collect();
        out.sort();
        out
    }

    pub fn firing(&self, alertname: &str) -> Vec<Alert> {
        self.alerts()
            .into_iter()
            .filter(|a| a.alertname == alertname && a.status == AlertStatus::Firing)
            .collect()
    }

    pub fn status_of(&self, alertname: &str) -> Vec<AlertStatus> {
        self.alerts()
            .into_iter()
            .filter(|a| a.alertname == alertname)
            .map(|a| a.status)
            .collect()
    }
}

/// Polls `host` every 10 s for `duration` with the body `at(elapsed)` gives.
pub async fn run_for(
    world: &mut World,
    host: &str,
    duration: Duration,
    mut at: impl FnMut(Duration, SystemTime) -> serde_json::Value,
) {
    let end = world.elapsed() + duration;
    while world.elapsed() < end {
        let body = at(world.elapsed(), world.now().wall);
        world.poll(host, &body);
        world.advance(Duration::from_secs(10)).await;
    }
}

pub const SEC: Duration = Duration::from_secs(1);
pub const MIN: Duration = Duration::from_secs(60);

/// Bodies of a simulated agent with `profile`, started 15 s before the world's clock.
pub fn sim(
    profile: flumewatch_testkit::fake_flume::Profile,
) -> impl FnMut(Duration, SystemTime) -> serde_json::Value {
    let agent = flumewatch_testkit::fake_flume::SimAgent::new(
        profile,
        UNIX_EPOCH + Duration::from_secs(T0) - 15 * SEC,
    );
    move |_, now| serde_json::from_slice(&agent.render(now)).unwrap()
}
