//! Aggregator types ⇄ `flumewatch.v1` protobuf (snapshots themselves convert in the sidecar
//! crate's `convert`, shared by both ends).

use std::time::Duration;

use flumewatch_proto::model::time::{duration, from_duration, timestamp};
use flumewatch_proto::v1 as pb;

use crate::alert::{Alert, AlertStatus, Severity};
use crate::fleet::rates::ComponentRates;
use crate::fleet::{AgentView, Hello, RuleView};
use crate::notify::store::history::{DeliveryState, Notification};

/// Why a Hello cannot open a stream. Not retryable without fixing the sidecar's config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("hello has no host")]
    NoHost,
    #[error("hello has no instance_id")]
    NoInstance,
    #[error("hello field {field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("hello has more than {max} {field}")]
    TooMany { field: &'static str, max: usize },
}

const MAX_TEXT: usize = 256;
const MAX_AGENTS: usize = 64;
const MAX_LABELS: usize = 32;

impl TryFrom<pb::Hello> for Hello {
    type Error = HelloError;

    fn try_from(h: pb::Hello) -> Result<Self, HelloError> {
        if h.host.is_empty() {
            return Err(HelloError::NoHost);
        }
        if h.instance_id.is_empty() {
            return Err(HelloError::NoInstance);
        }
        let too_long = |field, text: &str| {
            (text.len() > MAX_TEXT).then_some(HelloError::TooLong {
                field,
                max: MAX_TEXT,
            })
        };
        if let Some(e) = too_long("host", &h.host)
            .or_else(|| too_long("instance_id", &h.instance_id))
            .or_else(|| too_long("sidecar_version", &h.sidecar_version))
            .or_else(|| h.agents.iter().find_map(|a| too_long("agents", a)))
            .or_else(|| {
                h.labels
                    .iter()
                    .find_map(|(k, v)| too_long("labels", k).or_else(|| too_long("labels", v)))
            })
        {
            return Err(e);
        }
        if h.agents.len() > MAX_AGENTS {
            return Err(HelloError::TooMany {
                field: "agents",
                max: MAX_AGENTS,
            });
        }
        if h.labels.len() > MAX_LABELS {
            return Err(HelloError::TooMany {
                field: "labels",
                max: MAX_LABELS,
            });
        }
        Ok(Hello {
            host: h.host,
            instance_id: h.instance_id,
            agents: h.agents,
            labels: h.labels.into_iter().collect(),
            version: h.sidecar_version,
            poll_interval: h
                .poll_interval
                .as_ref()
                .map(from_duration)
                .unwrap_or(Duration::ZERO),
        })
    }
}

pub fn agent_summary(view: &AgentView) -> pb::AgentSummary {
    let state = &view.state;
    let latest = state.latest.as_ref();
    let max_fill = latest
        .and_then(|s| s.max_channel_fill)
        .map_or(-1.0, |fill| fill.max(-1.0));
    pb::AgentSummary {
        host: state.host.clone(),
        agent: state.agent.clone(),
        labels: view.sidecar.hello.labels.clone().into_iter().collect(),
        connection: if view.sidecar.connected {
            pb::ConnectionState::Connected
        } else {
            pb::ConnectionState::Disconnected
        } as i32,
        connection_since: Some(timestamp(view.sidecar.since)),
        last_seen: state.last_seen.map(timestamp),
        last_outcome: latest.map(|s| pb::ScrapeOutcome::from(&s.outcome)),
        consecutive_failures: state.consecutive_failures,
        component_count: latest.map_or(0, |s| s.component_count),
        sidecar_version: view.sidecar.hello.version.clone(),
        poll_interval: Some(duration(view.sidecar.hello.poll_interval)),
        max_channel_fill_percentage: max_fill,
    }
}

pub fn component_rates(rates: &ComponentRates) -> pb::ComponentRates {
    pb::ComponentRates {
        kind: rates.kind as i32,
        name: rates.name.clone(),
        reset: rates.reset,
        rates: rates
            .rates
            .iter()
            .map(|r| pb::CounterRate {
                counter: r.counter as i32,
                per_second: r.per_second,
                increase: r.increase,
            })
            .collect(),
        interval: Some(duration(rates.interval)),
    }
}

pub fn agent_detail(view: &AgentView, history: usize) -> pb::GetAgentResponse {
    let state = &view.state;
    pb::GetAgentResponse {
        summary: Some(agent_summary(view)),
        latest: state.latest.as_ref().map(crate::fleet::Latest::proto),
        rates: state.rates().iter().map(component_rates).collect(),
        history: state.history.protos(history),
        snapshots_received: state.received,
        duplicates_ignored: state.duplicates,
        resets_seen: state.resets,
        sidecar_stats: view.sidecar.stats,
    }
}

pub fn severity(s: Severity) -> pb::Severity {
    match s {
        Severity::Info => pb::Severity::Info,
        Severity::Warning => pb::Severity::Warning,
        Severity::Critical => pb::Severity::Critical,
    }
}

pub fn alert_state(s: AlertStatus) -> pb::AlertState {
    match s {
        AlertStatus::Pending => pb::AlertState::Pending,
        AlertStatus::Firing => pb::AlertState::Firing,
        AlertStatus::Resolved => pb::AlertState::Resolved,
    }
}

pub fn alert(a: &Alert) -> pb::Alert {
    pb::Alert {
        fingerprint: format!("{:016x}", a.fingerprint),
        alertname: a.alertname.clone(),
        severity: severity(a.severity) as i32,
        state: alert_state(a.status) as i32,
        labels: a.labels.0.clone().into_iter().collect(),
        annotations: a.annotations.clone().into_iter().collect(),
        value: a.value,
        active_since: Some(timestamp(a.active_since)),
        firing_since: a.firing_since.map(timestamp),
        resolved_at: a.resolved_at.map(timestamp),
        silenced_by: Vec::new(),
        inhibited: false,
    }
}

pub fn rule(view: &RuleView) -> pb::Rule {
    let rule = &view.rule;
    pb::Rule {
        name: rule.name.clone(),
        severity: severity(rule.severity) as i32,
        scope: rule.scope.as_str().to_owned(),
        condition: rule.condition.to_string(),
        r#for: Some(duration(rule.hold.for_)),
        keep_firing_for: Some(duration(rule.hold.keep_firing_for)),
        labels: rule.labels.clone().into_iter().collect(),
        source: rule.source.clone(),
        last_evaluation: view.health.last_evaluation.map(timestamp),
        evaluations: view.health.evaluations,
        active_alerts: view.active_alerts,
        last_error: String::new(),
        for_polls: rule.hold.for_polls,
        detection: view
            .detection
            .iter()
            .map(|&(interval, detection)| pb::RuleDetection {
                poll_interval: Some(duration(interval)),
                detection: Some(duration(detection)),
            })
            .collect(),
    }
}

pub fn notification(n: &Notification) -> pb::Notification {
    pb::Notification {
        receiver: n.receiver.clone(),
        created_at: Some(timestamp(n.created_at)),
        sent_at: n.sent_at.map(timestamp),
        reason: n.reason.clone(),
        msg_uuid: n.msg_uuid.clone(),
        body_bytes: n.body_bytes,
        attempts: n.attempts,
        last_errcode: n.last_errcode,
        last_errmsg: n.last_errmsg.clone(),
        state: match n.state {
            DeliveryState::Queued => pb::NotificationState::Queued,
            DeliveryState::Sent => pb::NotificationState::Sent,
            DeliveryState::Dropped => pb::NotificationState::Dropped,
        } as i32,
        title: n.title.clone(),
        alerts: n
            .alerts
            .iter()
            .map(|a| pb::NotifiedAlert {
                fingerprint: format!("{:016x}", a.fingerprint),
                alertname: a.alertname.clone(),
                state: alert_state(a.status) as i32,
            })
            .collect(),
    }
}
