//! A simulated Flume agent (source → channel → sink) whose counters move with time the way a
//! real agent's do, rendered as Flume's all-string JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// How the simulated agent behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// The sink keeps up with `events_per_sec` (±20 % over a few minutes).
    Healthy {
        events_per_sec: f64,
        file_channel: bool,
    },
    /// Healthy until `after`, then the sink drains only `drain_share` of the input: the channel
    /// fills, and once full the source's puts start failing.
    SlowSink {
        events_per_sec: f64,
        after: Duration,
        drain_share: f64,
    },
    /// The sink's downstream is down: it fails one write every 5 s and drains nothing.
    DeadSink { events_per_sec: f64 },
}

/// One simulated agent; `render` is a pure function of the time since the agent started.
#[derive(Debug, Clone)]
pub struct SimAgent {
    profile: Profile,
    capacity: u64,
    started: SystemTime,
}

impl SimAgent {
    /// When the agent started: its counters count from here.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn new(profile: Profile, started: SystemTime) -> Self {
        Self {
            profile,
            capacity: 10_000,
            started,
        }
    }

    /// Flume's `/metrics` body at `now`.
    pub fn render(&self, now: SystemTime) -> Vec<u8> {
        let t = now
            .duration_since(self.started)
            .unwrap_or_default()
            .as_secs_f64();
        let start_ms = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let flow = self.flow(t);
        let mut root = Map::new();
        root.insert(
            "SOURCE.r1".into(),
            Value::Object(component(
                "SOURCE",
                start_ms + 12,
                &[
                    ("EventReceivedCount", flow.received),
                    ("EventAcceptedCount", flow.put_ok),
                    ("AppendBatchReceivedCount", flow.received / 20),
                    ("AppendBatchAcceptedCount", flow.put_ok / 20),
                    ("AppendReceivedCount", 0),
                    ("AppendAcceptedCount", 0),
                    ("OpenConnectionCount", 0),
                    ("EventReadFail", 0),
                    ("ChannelWriteFail", 0),
                    ("GenericProcessingFail", 0),
                ],
            )),
        );
        let size = flow.put_ok - flow.taken;
        let fill = size as f64 / self.capacity as f64 * 100.0;
        let mut channel = component(
            "CHANNEL",
            start_ms,
            &[
                ("ChannelSize", size),
                ("ChannelCapacity", self.capacity),
                ("EventPutAttemptCount", flow.put_attempts),
                ("EventPutSuccessCount", flow.put_ok),
                // Sinks poll an empty channel: take attempts run ahead of successes when idle.
                ("EventTakeAttemptCount", flow.taken + t as u64),
                ("EventTakeSuccessCount", flow.taken),
            ],
        );
        channel.insert(
            "ChannelFillPercentage".into(),
            Value::String(java_double(fill)),
        );
        if matches!(
            self.profile,
            Profile::Healthy {
                file_channel: true,
                ..
            }
        ) {
            for (k, v) in [("Open", "true"), ("Closed", "0"), ("Unhealthy", "0")] {
                channel.insert(k.into(), Value::String(v.into()));
            }
            for k in [
                "EventPutErrorCount",
                "EventTakeErrorCount",
                "CheckpointWriteErrorCount",
                "CheckpointBackupWriteErrorCount",
            ] {
                channel.insert(k.into(), Value::String("0".into()));
            }
        }
        root.insert("CHANNEL.c1".into(), Value::Object(channel));
        root.insert(
            "SINK.k1".into(),
            Value::Object(component(
                "SINK",
                start_ms + 10,
                &[
                    ("ConnectionCreatedCount", 1),
                    ("ConnectionClosedCount", 0),
                    ("ConnectionFailedCount", flow.write_failures),
                    ("BatchEmptyCount", t as u64),
                    ("BatchUnderflowCount", flow.taken / 100),
                    ("BatchCompleteCount", flow.taken / 100),
                    ("EventDrainAttemptCount", flow.taken + flow.write_failures),
                    ("EventDrainSuccessCount", flow.taken),
                    ("EventWriteFail", flow.write_failures),
                    ("ChannelReadFail", 0),
                ],
            )),
        );
        serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
    }

    fn flow(&self, t: f64) -> Flow {
        let arrived = |rate: f64| {
            // The integral of rate·(1 + 0.2·sin(t/60)): a slowly breathing, always rising load.
            (rate * t + 0.2 * rate * 60.0 * (1.0 - (t / 60.0).cos())) as u64
        };
        match self.profile {
            Profile::Healthy { events_per_sec, .. } => {
                let n = arrived(events_per_sec);
                Flow {
                    received: n,
                    put_attempts: n,
                    put_ok: n,
                    taken: n,
                    write_failures: 0,
                }
            }
            Profile::SlowSink {
                events_per_sec,
                after,
                drain_share,
            } => {
                let received = arrived(events_per_sec);
                let cutoff = after.as_secs_f64().min(t);
                let drained_before = arrived(events_per_sec).min((events_per_sec * cutoff) as u64);
                let taken =
                    drained_before + (events_per_sec * drain_share * (t - cutoff)).max(0.0) as u64;
                let put_ok = received.min(taken + self.capacity);
                // Each refused batch of 20 is retried: attempts run ahead of successes.
                let put_attempts = put_ok + (received - put_ok) * 2;
                Flow {
                    received,
                    put_attempts,
                    put_ok,
                    taken: taken.min(put_ok),
                    write_failures: 0,
                }
            }
            Profile::DeadSink { events_per_sec } => {
                let received = arrived(events_per_sec);
                let put_ok = received.min(self.capacity);
                Flow {
                    received,
                    put_attempts: put_ok + (received - put_ok) * 2,
                    put_ok,
                    taken: 0,
                    write_failures: (t / 5.0) as u64,
                }
            }
        }
    }
}

struct Flow {
    received: u64,
    put_attempts: u64,
    put_ok: u64,
    taken: u64,
    write_failures: u64,
}

fn component(kind: &str, start_ms: u64, counters: &[(&str, u64)]) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("Type".into(), Value::String(kind.into()));
    map.insert("StartTime".into(), Value::String(start_ms.to_string()));
    map.insert("StopTime".into(), Value::String("0".into()));
    for (name, value) in counters {
        map.insert((*name).into(), Value::String(value.to_string()));
    }
    map
}

/// Java's `Double.toString` for the values a fill percentage takes ("0.0", "47.7", "100.0").
fn java_double(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}
