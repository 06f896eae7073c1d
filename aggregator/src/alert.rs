//! What an alert is: severity, labels with a stable fingerprint, lifecycle state, annotations,
//! and the typed context (host, agent, component, channel figures) notifications render from.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use flumewatch_proto::model::vocabulary;
use flumewatch_proto::model::ComponentKind;

/// How urgent an alert is; ordered so that `Critical > Warning > Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!("{other:?} is not critical, warning or info")),
        }
    }
}

/// Where an alert is in its lifecycle (inactive alerts are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// The condition holds, but not yet for the rule's `for`.
    Pending,
    Firing,
    /// Stopped holding; kept for a while so the notification can say so.
    Resolved,
}

/// An alert's labels, sorted; their hash is the alert's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// FNV-1a 64 over the sorted `name=value` pairs: stable across builds and restarts (unlike
    /// std's hasher), so a fingerprint can be stored and compared later.
    pub fn fingerprint(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        for (name, value) in &self.0 {
            for byte in name
                .bytes()
                .chain([0xff])
                .chain(value.bytes())
                .chain([0xfe])
            {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
        hash
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every `(name, value)` of `wanted` is present here.
    pub fn matches(&self, wanted: &BTreeMap<String, String>) -> bool {
        wanted.iter().all(|(k, v)| self.get(k) == Some(v.as_str()))
    }
}

/// One alert as queries and notifications see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: u64,
    pub alertname: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub labels: Labels,
    /// summary, description (in the configured language), value; for channels also
    /// channel_size, channel_capacity, channel_fill_percentage. For people (queries show
    /// them); code reads [`Alert::context`] instead.
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub active_since: SystemTime,
    pub firing_since: Option<SystemTime>,
    pub resolved_at: Option<SystemTime>,
    /// What the alert is about, typed. Not part of its identity (that is `labels`).
    pub context: AlertContext,
}

/// The target of an alert and the figures a notification shows, as the rule engine saw them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertContext {
    /// The sidecar's host; `None` for a fleet-level (cluster) alert.
    pub host: Option<String>,
    /// The Flume agent; `None` for sidecar and cluster alerts.
    pub agent: Option<String>,
    /// The component, for component rules.
    pub component: Option<ComponentRef>,
    /// Another component of the agent the rule judged alongside (the channel a stalled sink
    /// leaves filling): Flume does not say which channel feeds which sink.
    pub peer: Option<ComponentRef>,
    /// A channel's figures at the last evaluation where the condition held: the component's,
    /// or else its peer's; `None` unless that channel reported both its size and capacity.
    pub channel: Option<ChannelFill>,
}

/// One Flume component of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRef {
    pub kind: ComponentKind,
    /// TYPE exactly as Flume printed it (names kinds flumewatch does not know).
    pub kind_name: String,
    pub name: String,
}

impl ComponentRef {
    /// The kind as the `kind` label spells it: Flume's name for it, lowercased.
    pub fn kind_label(&self) -> String {
        kind_label(self.kind, &self.kind_name)
    }
}

/// A component kind as the `kind` label spells it: Flume's name for it, lowercased
/// (`kind_name`, Flume's TYPE as printed, for kinds flumewatch does not know).
pub fn kind_label(kind: ComponentKind, kind_name: &str) -> String {
    match vocabulary::kind_name(kind) {
        "" => kind_name.to_ascii_lowercase(),
        name => name.to_ascii_lowercase(),
    }
}

/// How full a channel was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelFill {
    /// Events in the channel (Flume's ChannelSize).
    pub size: f64,
    /// Flume's ChannelCapacity.
    pub capacity: f64,
    /// Flume's ChannelFillPercentage; `None` when Flume did not print it.
    pub fill_percent: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_every_label_and_nothing_else() {
        let a = Labels(BTreeMap::from([
            ("alertname".into(), "X".into()),
            ("host".into(), "h1".into()),
        ]));
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.0.insert("host".into(), "h2".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
        // Boundaries matter: {ab=c} is not {a=bc}.
        let ab = Labels(BTreeMap::from([("ab".into(), "c".into())]));
        let a_bc = Labels(BTreeMap::from([("a".into(), "bc".into())]));
        assert_ne!(ab.fingerprint(), a_bc.fingerprint());
        // Pinned: a change here breaks stored fingerprints.
        assert_eq!(Labels::default().fingerprint(), 0xcbf2_9ce4_8422_2325);
    }
}
