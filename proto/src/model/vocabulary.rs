//! Flume's attribute names and what each one is: the only table that knows Flume's spelling.

use crate::v1::{ComponentKind, Counter, Flag, Gauge};

/// What a known attribute holds, and so how its string value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// The component's TYPE, repeated inside the object.
    Type,
    /// Epoch milliseconds the component was started.
    StartTime,
    /// Epoch milliseconds the component was stopped; `"0"` while it runs.
    StopTime,
    Counter(Counter),
    Gauge(Gauge),
    Flag(Flag),
}

const COUNTERS: &[(&str, Counter)] = &[
    ("EventReceivedCount", Counter::EventReceivedCount),
    ("EventAcceptedCount", Counter::EventAcceptedCount),
    ("AppendReceivedCount", Counter::AppendReceivedCount),
    ("AppendAcceptedCount", Counter::AppendAcceptedCount),
    (
        "AppendBatchReceivedCount",
        Counter::AppendBatchReceivedCount,
    ),
    (
        "AppendBatchAcceptedCount",
        Counter::AppendBatchAcceptedCount,
    ),
    ("EventReadFail", Counter::EventReadFail),
    ("ChannelWriteFail", Counter::ChannelWriteFail),
    ("GenericProcessingFail", Counter::GenericProcessingFail),
    ("KafkaEventGetTimer", Counter::KafkaEventGetTimer),
    ("KafkaCommitTimer", Counter::KafkaCommitTimer),
    ("KafkaEmptyCount", Counter::KafkaEmptyCount),
    ("KafkaEventSendTimer", Counter::KafkaEventSendTimer),
    ("RollbackCount", Counter::RollbackCount),
    ("EventPutAttemptCount", Counter::EventPutAttemptCount),
    ("EventPutSuccessCount", Counter::EventPutSuccessCount),
    ("EventTakeAttemptCount", Counter::EventTakeAttemptCount),
    ("EventTakeSuccessCount", Counter::EventTakeSuccessCount),
    ("EventPutErrorCount", Counter::EventPutErrorCount),
    ("EventTakeErrorCount", Counter::EventTakeErrorCount),
    (
        "CheckpointWriteErrorCount",
        Counter::CheckpointWriteErrorCount,
    ),
    (
        "CheckpointBackupWriteErrorCount",
        Counter::CheckpointBackupWriteErrorCount,
    ),
    ("ConnectionCreatedCount", Counter::ConnectionCreatedCount),
    ("ConnectionClosedCount", Counter::ConnectionClosedCount),
    ("ConnectionFailedCount", Counter::ConnectionFailedCount),
    ("BatchEmptyCount", Counter::BatchEmptyCount),
    ("BatchUnderflowCount", Counter::BatchUnderflowCount),
    ("BatchCompleteCount", Counter::BatchCompleteCount),
    ("EventDrainAttemptCount", Counter::EventDrainAttemptCount),
    ("EventDrainSuccessCount", Counter::EventDrainSuccessCount),
    ("EventWriteFail", Counter::EventWriteFail),
    ("ChannelReadFail", Counter::ChannelReadFail),
];

const GAUGES: &[(&str, Gauge)] = &[
    ("ChannelSize", Gauge::ChannelSize),
    ("ChannelCapacity", Gauge::ChannelCapacity),
    ("ChannelFillPercentage", Gauge::ChannelFillPercentage),
    ("OpenConnectionCount", Gauge::OpenConnectionCount),
    ("Closed", Gauge::Closed),
    ("Unhealthy", Gauge::Unhealthy),
];

const FLAGS: &[(&str, Flag)] = &[("Open", Flag::Open)];

const KINDS: &[(&str, ComponentKind)] = &[
    ("SOURCE", ComponentKind::Source),
    ("CHANNEL", ComponentKind::Channel),
    ("SINK", ComponentKind::Sink),
    ("CHANNEL_PROCESSOR", ComponentKind::ChannelProcessor),
    ("SINK_PROCESSOR", ComponentKind::SinkProcessor),
    ("INTERCEPTOR", ComponentKind::Interceptor),
    ("SERIALIZER", ComponentKind::Serializer),
    ("OTHER", ComponentKind::Other),
];

/// The attribute Flume spells `name`, if flumewatch knows it (names are case-sensitive, as in Flume).
pub fn attribute(name: &str) -> Option<Attribute> {
    match name {
        "Type" => return Some(Attribute::Type),
        "StartTime" => return Some(Attribute::StartTime),
        "StopTime" => return Some(Attribute::StopTime),
        _ => {}
    }
    lookup(COUNTERS, name)
        .map(Attribute::Counter)
        .or_else(|| lookup(GAUGES, name).map(Attribute::Gauge))
        .or_else(|| lookup(FLAGS, name).map(Attribute::Flag))
}

/// The kind Flume spells `name`; `Unspecified` for a TYPE flumewatch does not know.
pub fn kind(name: &str) -> ComponentKind {
    lookup(KINDS, name).unwrap_or(ComponentKind::Unspecified)
}

/// Flume's own spelling of a counter, for people and for exposition.
pub fn counter_name(counter: Counter) -> &'static str {
    reverse(COUNTERS, counter).unwrap_or("Unknown")
}

/// Flume's own spelling of a gauge.
pub fn gauge_name(gauge: Gauge) -> &'static str {
    reverse(GAUGES, gauge).unwrap_or("Unknown")
}

/// Flume's own spelling of a flag.
pub fn flag_name(flag: Flag) -> &'static str {
    reverse(FLAGS, flag).unwrap_or("Unknown")
}

/// Flume's own spelling of a kind (`""` for an unknown one: use the raw text kept with it).
pub fn kind_name(kind: ComponentKind) -> &'static str {
    reverse(KINDS, kind).unwrap_or("")
}

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn reverse<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> Option<&'static str> {
    table.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for (name, counter) in COUNTERS {
            assert_eq!(attribute(name), Some(Attribute::Counter(*counter)));
            assert_eq!(counter_name(*counter), *name);
        }
        for (name, gauge) in GAUGES {
            assert_eq!(attribute(name), Some(Attribute::Gauge(*gauge)));
            assert_eq!(gauge_name(*gauge), *name);
        }
        assert_eq!(attribute("Open"), Some(Attribute::Flag(Flag::Open)));
        assert_eq!(kind("SINK"), ComponentKind::Sink);
        assert_eq!(kind("sink"), ComponentKind::Unspecified);
        assert_eq!(attribute("ChannelStoreSize"), None);
    }

    #[test]
    fn every_proto_counter_has_a_flume_name() {
        for value in 1..=32 {
            let counter = Counter::try_from(value).expect("counter enum is dense 1..=32");
            assert_ne!(counter_name(counter), "Unknown", "{counter:?}");
        }
    }
}
