//! Typed snapshot ⇄ `flumewatch.v1` protobuf, both directions, for the sidecar and the aggregator.
//! The only place that touches the generated snapshot types.

use std::time::Duration;

use super::snapshot::{Component, ComponentKind, Counter, Flag, Gauge, ScrapeOutcome, Snapshot};
use super::time::{from_timestamp, millis_timestamp, timestamp, timestamp_millis};
use crate::v1 as pb;

/// A protobuf snapshot that cannot be a typed one. Not retryable: the same bytes fail again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("snapshot {seq} has no scraped_at")]
    MissingScrapeTime { seq: u64 },
    #[error("snapshot {seq} has no outcome")]
    MissingOutcome { seq: u64 },
    #[error("snapshot {seq} has an unknown scrape status {status}")]
    UnknownStatus { seq: u64, status: i32 },
    #[error("snapshot has sequence number 0 (sequence numbers start at 1)")]
    ZeroSeq,
    #[error("snapshot {seq} names no agent")]
    NoAgent { seq: u64 },
    #[error("{what} is not a valid timestamp")]
    BadTimestamp { what: &'static str },
    #[error("snapshot {seq} is over a limit: {what}")]
    OverLimit { seq: u64, what: String },
}

/// The limits a sidecar's parser keeps, checked again by the receiving end, which trusts no
/// sender: one oversized snapshot would otherwise live in every history it enters.
fn check_limits(s: &pb::Snapshot) -> Result<(), ConvertError> {
    let error = s.outcome.as_ref().map_or(0, |o| o.error.len());
    let over = |what: String| Err(ConvertError::OverLimit { seq: s.seq, what });
    if let Some(what) = snapshot_over_limit(s.agent.len(), s.components.len(), error) {
        return over(what);
    }
    for c in &s.components {
        let values = Values {
            counters: c.counters.len(),
            gauges: c.gauges.len(),
            flags: c.flags.len(),
        };
        if let Some(what) =
            component_over_limit(&c.kind_name, &c.name, values, &c.unknown, &c.problems)
        {
            return over(what);
        }
    }
    Ok(())
}

/// How many counter, gauge and flag values one component's message held (unknown enum values
/// included).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Values {
    pub counters: usize,
    pub gauges: usize,
    pub flags: usize,
}

/// The snapshot-wide limits; what is over, if anything.
pub(crate) fn snapshot_over_limit(agent: usize, components: usize, error: usize) -> Option<String> {
    use super::snapshot::{MAX_COMPONENTS, MAX_NAME, MAX_UNKNOWN_TEXT};
    if agent > MAX_NAME {
        return Some(format!("agent name longer than {MAX_NAME} bytes"));
    }
    if components > MAX_COMPONENTS {
        return Some(format!(
            "{components} components, more than {MAX_COMPONENTS}"
        ));
    }
    if error > 4 * MAX_UNKNOWN_TEXT {
        return Some(format!("error text of {error} bytes"));
    }
    None
}

/// One component's limits (`unknown` as received, before unknown enum values join it).
pub(crate) fn component_over_limit<'a>(
    kind_name: &str,
    name: &str,
    values: Values,
    unknown: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
    problems: &[String],
) -> Option<String> {
    use super::snapshot::{MAX_NAME, MAX_UNKNOWN, MAX_UNKNOWN_TEXT};
    // Every known value at most once, plus unknown enum values from newer sidecars.
    let max_values = 2 * MAX_UNKNOWN;
    if kind_name.len() > MAX_NAME || name.len() > MAX_NAME {
        return Some(format!("a component name longer than {MAX_NAME} bytes"));
    }
    if values.counters > max_values
        || values.gauges > max_values
        || values.flags > max_values
        || unknown.clone().into_iter().count() > MAX_UNKNOWN
        || problems.len() > MAX_UNKNOWN + 1
    {
        return Some(format!("component {name:?} has too many values"));
    }
    let long_unknown = unknown
        .into_iter()
        .any(|(k, v)| k.len() > MAX_NAME || v.len() > MAX_UNKNOWN_TEXT);
    let long_problem = problems.iter().any(|p| p.len() > 4 * MAX_UNKNOWN_TEXT);
    if long_unknown || long_problem {
        return Some(format!("component {name:?} has overlong text"));
    }
    None
}

impl From<&ScrapeOutcome> for pb::ScrapeOutcome {
    fn from(outcome: &ScrapeOutcome) -> Self {
        let (status, http_status) = match outcome {
            ScrapeOutcome::Ok => (pb::ScrapeStatus::Ok, 0),
            ScrapeOutcome::ConnectionRefused(_) => (pb::ScrapeStatus::ConnectionRefused, 0),
            ScrapeOutcome::Timeout(_) => (pb::ScrapeStatus::Timeout, 0),
            ScrapeOutcome::HttpStatus { status, .. } => {
                (pb::ScrapeStatus::HttpStatus, u32::from(*status))
            }
            ScrapeOutcome::BadPayload(_) => (pb::ScrapeStatus::BadPayload, 0),
            ScrapeOutcome::ConnectionFailed(_) => (pb::ScrapeStatus::ConnectionFailed, 0),
        };
        pb::ScrapeOutcome {
            status: status as i32,
            http_status,
            error: outcome.error().to_owned(),
        }
    }
}

impl From<&Snapshot> for pb::Snapshot {
    fn from(s: &Snapshot) -> Self {
        pb::Snapshot {
            seq: s.seq,
            agent: s.agent.clone(),
            scraped_at: Some(timestamp(s.scraped_at)),
            scrape_duration_ms: u32::try_from(s.scrape_duration.as_millis()).unwrap_or(u32::MAX),
            outcome: Some(pb::ScrapeOutcome::from(&s.outcome)),
            components: s.components.iter().map(pb::Component::from).collect(),
            backfill: s.backfill,
        }
    }
}

impl From<&Component> for pb::Component {
    fn from(c: &Component) -> Self {
        pb::Component {
            kind: c.kind as i32,
            kind_name: c.kind_name.clone(),
            name: c.name.clone(),
            start_time: c.start_time_ms.map(millis_timestamp),
            stop_time: c.stop_time_ms.map(millis_timestamp),
            counters: c
                .counters
                .iter()
                .map(|(counter, value)| pb::CounterValue {
                    counter: *counter as i32,
                    value: *value,
                })
                .collect(),
            gauges: c
                .gauges
                .iter()
                .map(|(gauge, value)| pb::GaugeValue {
                    gauge: *gauge as i32,
                    value: *value,
                })
                .collect(),
            flags: c
                .flags
                .iter()
                .map(|(flag, value)| pb::FlagValue {
                    flag: *flag as i32,
                    value: *value,
                })
                .collect(),
            unknown: c.unknown.clone().into_iter().collect(),
            problems: c.problems.clone(),
        }
    }
}

impl TryFrom<pb::Snapshot> for Snapshot {
    type Error = ConvertError;

    fn try_from(s: pb::Snapshot) -> Result<Self, ConvertError> {
        let seq = s.seq;
        if seq == 0 {
            return Err(ConvertError::ZeroSeq);
        }
        if s.agent.is_empty() {
            return Err(ConvertError::NoAgent { seq });
        }
        check_limits(&s)?;
        let scraped_at = from_timestamp(
            s.scraped_at
                .as_ref()
                .ok_or(ConvertError::MissingScrapeTime { seq })?,
            "scraped_at",
        )?;
        let outcome = s.outcome.ok_or(ConvertError::MissingOutcome { seq })?;
        let outcome = scrape_outcome(seq, outcome.status, outcome.http_status, outcome.error)?;
        Ok(Snapshot {
            seq,
            agent: s.agent,
            scraped_at,
            scrape_duration: Duration::from_millis(u64::from(s.scrape_duration_ms)),
            outcome,
            components: s.components.into_iter().map(Component::from).collect(),
            backfill: s.backfill,
        })
    }
}

/// The wire's status, HTTP status and error text as a typed outcome.
pub(crate) fn scrape_outcome(
    seq: u64,
    status: i32,
    http_status: u32,
    error: String,
) -> Result<ScrapeOutcome, ConvertError> {
    Ok(match pb::ScrapeStatus::try_from(status) {
        Ok(pb::ScrapeStatus::Ok) => ScrapeOutcome::Ok,
        Ok(pb::ScrapeStatus::ConnectionRefused) => ScrapeOutcome::ConnectionRefused(error),
        Ok(pb::ScrapeStatus::Timeout) => ScrapeOutcome::Timeout(error),
        Ok(pb::ScrapeStatus::HttpStatus) => ScrapeOutcome::HttpStatus {
            status: u16::try_from(http_status).unwrap_or(0),
            error,
        },
        Ok(pb::ScrapeStatus::BadPayload) => ScrapeOutcome::BadPayload(error),
        Ok(pb::ScrapeStatus::ConnectionFailed) => ScrapeOutcome::ConnectionFailed(error),
        Ok(pb::ScrapeStatus::Unspecified) | Err(_) => {
            return Err(ConvertError::UnknownStatus { seq, status })
        }
    })
}

impl From<pb::Component> for Component {
    /// Values from a newer sidecar that this build does not know are kept in `unknown`.
    fn from(c: pb::Component) -> Self {
        let mut component = Component {
            kind: ComponentKind::try_from(c.kind).unwrap_or(ComponentKind::Unspecified),
            kind_name: c.kind_name,
            name: c.name,
            start_time_ms: c.start_time.as_ref().and_then(timestamp_millis),
            stop_time_ms: c.stop_time.as_ref().and_then(timestamp_millis),
            unknown: c.unknown.into_iter().collect(),
            problems: c.problems,
            ..Component::default()
        };
        for v in c.counters {
            match Counter::try_from(v.counter) {
                Ok(counter) if counter != Counter::Unspecified => {
                    component.counters.push((counter, v.value))
                }
                _ => drop(
                    component
                        .unknown
                        .insert(format!("counter#{}", v.counter), v.value.to_string()),
                ),
            }
        }
        for v in c.gauges {
            match Gauge::try_from(v.gauge) {
                Ok(gauge) if gauge != Gauge::Unspecified => component.gauges.push((gauge, v.value)),
                _ => drop(
                    component
                        .unknown
                        .insert(format!("gauge#{}", v.gauge), v.value.to_string()),
                ),
            }
        }
        for v in c.flags {
            match Flag::try_from(v.flag) {
                Ok(flag) if flag != Flag::Unspecified => component.flags.push((flag, v.value)),
                _ => drop(
                    component
                        .unknown
                        .insert(format!("flag#{}", v.flag), v.value.to_string()),
                ),
            }
        }
        component
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn failures_keep_their_reason() {
        let snapshot = Snapshot {
            seq: 1,
            agent: "a1".into(),
            scraped_at: SystemTime::now(),
            scrape_duration: Duration::ZERO,
            outcome: ScrapeOutcome::HttpStatus {
                status: 404,
                error: "HTTP 404".into(),
            },
            components: vec![],
            backfill: false,
        };
        let mut wire = pb::Snapshot::from(&snapshot);
        let back = Snapshot::try_from(wire.clone()).expect("converts");
        assert_eq!(back.outcome, snapshot.outcome);
        wire.outcome = None;
        assert_eq!(
            Snapshot::try_from(wire),
            Err(ConvertError::MissingOutcome { seq: 1 })
        );
    }

    #[test]
    fn unknown_enum_values_from_newer_sidecars_are_kept() {
        let component = Component::from(pb::Component {
            counters: vec![pb::CounterValue {
                counter: 999,
                value: 5,
            }],
            ..Default::default()
        });
        assert_eq!(component.unknown["counter#999"], "5");
    }
}
