//! The typed snapshot of one poll of one Flume agent: what the sidecar sends and the aggregator keeps.
//!
//! Nothing here holds a Flume string to be read later: values are numbers, enums and booleans.
//! Unknown attributes are kept verbatim in `unknown`, never dropped.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use crate::v1::{ComponentKind, Counter, Flag, Gauge};

/// Most components one snapshot may hold. Real agents have tens; a payload with more is
/// hostile or broken, and both ends refuse it rather than let it grow every history.
pub const MAX_COMPONENTS: usize = 1000;
/// Most unreadable or unknown attributes kept per component; the rest are counted in `problems`.
pub const MAX_UNKNOWN: usize = 64;
/// Longest text kept for one unknown attribute (bytes); longer text is cut and the cut noted.
pub const MAX_UNKNOWN_TEXT: usize = 256;
/// Longest component kind or name (bytes).
pub const MAX_NAME: usize = 256;

/// One poll of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Per sidecar instance, strictly increasing by one across every agent the sidecar polls.
    pub seq: u64,
    /// The agent's name as configured on the sidecar.
    pub agent: String,
    /// When the poll was sent.
    pub scraped_at: SystemTime,
    pub scrape_duration: Duration,
    pub outcome: ScrapeOutcome,
    /// Empty unless `outcome` is `Ok`.
    pub components: Vec<Component>,
    /// A replay: the sidecar already held a newer snapshot of this agent when it sent this one.
    /// Kept in history and windows, never judged on its own.
    pub backfill: bool,
}

/// How a poll went; every failure carries the reason as text for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeOutcome {
    Ok,
    ConnectionRefused(String),
    Timeout(String),
    HttpStatus { status: u16, error: String },
    BadPayload(String),
    ConnectionFailed(String),
}

impl ScrapeOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, ScrapeOutcome::Ok)
    }

    /// The reason a poll failed; empty for `Ok`.
    pub fn error(&self) -> &str {
        match self {
            ScrapeOutcome::Ok => "",
            ScrapeOutcome::ConnectionRefused(e)
            | ScrapeOutcome::Timeout(e)
            | ScrapeOutcome::BadPayload(e)
            | ScrapeOutcome::ConnectionFailed(e)
            | ScrapeOutcome::HttpStatus { error: e, .. } => e,
        }
    }

    /// Short stable name, for logs and tables.
    pub fn label(&self) -> &'static str {
        match self {
            ScrapeOutcome::Ok => "ok",
            ScrapeOutcome::ConnectionRefused(_) => "connection_refused",
            ScrapeOutcome::Timeout(_) => "timeout",
            ScrapeOutcome::HttpStatus { .. } => "http_status",
            ScrapeOutcome::BadPayload(_) => "bad_payload",
            ScrapeOutcome::ConnectionFailed(_) => "connection_failed",
        }
    }
}

/// One "TYPE.name" entry of Flume's response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Component {
    pub kind: ComponentKind,
    /// TYPE exactly as Flume printed it (the only way to tell unknown kinds apart).
    pub kind_name: String,
    pub name: String,
    /// Epoch milliseconds; a change means every counter restarted from 0.
    pub start_time_ms: Option<u64>,
    /// Epoch milliseconds; `None` while running (Flume prints "0").
    pub stop_time_ms: Option<u64>,
    /// Sorted by counter, each at most once. Absent means Flume did not print it (not zero).
    pub counters: Vec<(Counter, u64)>,
    pub gauges: Vec<(Gauge, f64)>,
    pub flags: Vec<(Flag, bool)>,
    /// Attributes flumewatch does not know, and known ones whose value could not be read.
    pub unknown: BTreeMap<String, String>,
    /// Why a known attribute landed in `unknown`.
    pub problems: Vec<String>,
}

impl Component {
    pub fn counter(&self, counter: Counter) -> Option<u64> {
        self.counters
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, v)| *v)
    }

    pub fn gauge(&self, gauge: Gauge) -> Option<f64> {
        self.gauges
            .iter()
            .find(|(g, _)| *g == gauge)
            .map(|(_, v)| *v)
    }

    pub fn flag(&self, flag: Flag) -> Option<bool> {
        self.flags.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v)
    }

    /// Stopped: a reload is in progress or left this component behind.
    pub fn is_stopped(&self) -> bool {
        self.stop_time_ms.is_some()
    }
}

impl Default for Snapshot {
    /// An empty buffer to decode into (`decode::decode_into`), not a valid snapshot: sequence
    /// numbers start at 1 and every snapshot names its agent.
    fn default() -> Self {
        Self {
            seq: 0,
            agent: String::new(),
            scraped_at: SystemTime::UNIX_EPOCH,
            scrape_duration: Duration::ZERO,
            outcome: ScrapeOutcome::Ok,
            components: Vec::new(),
            backfill: false,
        }
    }
}

impl Snapshot {
    /// A component by kind and name.
    pub fn component(&self, kind: ComponentKind, name: &str) -> Option<&Component> {
        self.components
            .iter()
            .find(|c| c.kind == kind && c.name == name)
    }
}
