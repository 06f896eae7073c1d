//! Building the alert a target shows: its labels (its identity), its annotations (summary,
//! description and figures for people) and its typed context (for notifications).

use std::collections::BTreeMap;
use std::time::SystemTime;

use flumewatch_proto::model::snapshot::{Component, ComponentKind, Gauge};

use super::template::{format_eta, format_value};
use super::{Language, Rule};
use crate::alert::{
    kind_label, Alert, AlertContext, AlertStatus, ChannelFill, ComponentRef, Labels,
};

/// What one alert is about: a component, an agent, a sidecar, or a group of agents.
pub(super) struct Target<'a> {
    pub host: &'a str,
    pub agent: Option<&'a str>,
    pub component: Option<&'a Component>,
    /// The agent's other component a leaf with `of` found (see `AlertContext::peer`).
    pub peer: Option<&'a Component>,
    pub group: Option<(&'a str, &'a str)>,
    pub labels: &'a BTreeMap<String, String>,
}

fn component_ref(component: &Component) -> ComponentRef {
    ComponentRef {
        kind: component.kind,
        kind_name: component.kind_name.clone(),
        name: component.name.clone(),
    }
}

/// A pending alert for `target`, with its labels and the target half of its context.
pub(super) fn new_alert(rule: &Rule, target: &Target<'_>, wall: SystemTime) -> Alert {
    let mut labels: BTreeMap<String, String> = match target.group {
        // A fleet-level alert is about the group, not about any one agent's labels.
        Some((label, value)) => BTreeMap::from([(label.to_owned(), value.to_owned())]),
        None => target.labels.clone(),
    };
    let context = AlertContext {
        host: Some(target.host.to_owned()).filter(|h| !h.is_empty()),
        agent: target.agent.map(str::to_owned),
        component: target.component.map(component_ref),
        peer: None,
        channel: None,
    };
    if let Some(host) = &context.host {
        labels.insert("host".into(), host.clone());
    }
    if let Some(agent) = &context.agent {
        labels.insert("agent".into(), agent.clone());
    }
    if let Some(component) = &context.component {
        labels.insert("kind".into(), component.kind_label());
        labels.insert("component".into(), component.name.clone());
    }
    labels.extend(rule.labels.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().to_owned());
    let labels = Labels(labels);
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: rule.name.clone(),
        severity: rule.severity,
        status: AlertStatus::Pending,
        labels,
        annotations: BTreeMap::new(),
        value: 0.0,
        active_since: wall,
        firing_since: None,
        resolved_at: None,
        context,
    }
}

/// A digest of everything [`update`] reads. Rendering the annotations takes dozens of
/// allocations, and a firing alert's figures rarely change from one poll to the next: an
/// alert is rendered again only when its digest does.
pub(super) fn render_inputs(target: &Target<'_>, value: f64, language: Language) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.to_bits().hash(&mut hasher);
    (language as u8).hash(&mut hasher);
    target.host.hash(&mut hasher);
    target.agent.hash(&mut hasher);
    target.group.hash(&mut hasher);
    target.labels.hash(&mut hasher);
    for component in [target.component, target.peer] {
        let Some(c) = component else {
            0u8.hash(&mut hasher);
            continue;
        };
        (c.kind as i32).hash(&mut hasher);
        c.kind_name.hash(&mut hasher);
        c.name.hash(&mut hasher);
        for gauge in [
            Gauge::ChannelSize,
            Gauge::ChannelCapacity,
            Gauge::ChannelFillPercentage,
        ] {
            c.gauge(gauge).map(f64::to_bits).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The condition holds with `value`: the alert shows it, and what the target looks like now.
pub(super) fn update(
    alert: &mut Alert,
    rule: &Rule,
    target: &Target<'_>,
    value: f64,
    language: Language,
) {
    alert.value = value;
    alert.annotations = annotations(rule, target, value, language);
    alert.context.peer = target.peer.map(component_ref);
    alert.context.channel = target
        .component
        .and_then(channel_fill)
        .or_else(|| target.peer.and_then(channel_fill));
}

/// A channel's size, capacity and fill, when it reported the first two.
fn channel_fill(component: &Component) -> Option<ChannelFill> {
    if component.kind != ComponentKind::Channel {
        return None;
    }
    Some(ChannelFill {
        size: component.gauge(Gauge::ChannelSize)?,
        capacity: component.gauge(Gauge::ChannelCapacity)?,
        fill_percent: component.gauge(Gauge::ChannelFillPercentage),
    })
}

fn annotations(
    rule: &Rule,
    target: &Target<'_>,
    value: f64,
    language: Language,
) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    fields.insert("alertname", rule.name.clone());
    fields.insert("severity", rule.severity.as_str().to_owned());
    fields.insert("host", target.host.to_owned());
    fields.insert("value", format_value(value));
    fields.insert("threshold", format_value(rule.condition.threshold()));
    if let Some(agent) = target.agent {
        fields.insert("agent", agent.to_owned());
    }
    if let Some(component) = target.component {
        fields.insert("kind", kind_label(component.kind, &component.kind_name));
        fields.insert("component", component.name.clone());
    }
    if let Some(peer) = target.peer {
        fields.insert("peer_kind", kind_label(peer.kind, &peer.kind_name));
        fields.insert("peer", peer.name.clone());
    }
    let fill = [target.component, target.peer]
        .into_iter()
        .flatten()
        .find(|c| c.kind == ComponentKind::Channel)
        .and_then(|c| c.gauge(Gauge::ChannelFillPercentage))
        .filter(|f| *f <= 100.0);
    if let Some(fill) = fill {
        fields.insert("fill", format!("{fill:.1}"));
    }
    fields.insert("eta", format_eta(value, language));
    let cluster = match target.group {
        Some((_, value)) => Some(value.to_owned()),
        None => target.labels.get("cluster").cloned(),
    };
    if let Some(cluster) = cluster {
        fields.insert("cluster", cluster);
    }
    let mut out = BTreeMap::new();
    if let Some(t) = rule.summary.get(language) {
        out.insert("summary".to_owned(), t.render(&fields, target.labels));
    }
    if let Some(t) = rule.description.get(language) {
        out.insert("description".to_owned(), t.render(&fields, target.labels));
    }
    out.insert("value".to_owned(), format_value(value));
    // What the old script showed for every channel alert; shown by queries, never read back
    // (notifications use the alert's context).
    if let Some(c) = target
        .component
        .filter(|c| c.kind == ComponentKind::Channel)
    {
        for (key, gauge) in [
            ("channel_size", Gauge::ChannelSize),
            ("channel_capacity", Gauge::ChannelCapacity),
            ("channel_fill_percentage", Gauge::ChannelFillPercentage),
        ] {
            if let Some(v) = c.gauge(gauge) {
                out.insert(key.to_owned(), format_value(v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn channel(gauges: Vec<(Gauge, f64)>) -> Component {
        Component {
            kind: ComponentKind::Channel,
            kind_name: "CHANNEL".into(),
            name: "c1".into(),
            gauges,
            ..Component::default()
        }
    }

    #[test]
    fn the_context_is_typed_and_the_figures_are_still_shown() {
        let rules = RuleSet::defaults();
        let rule = rules
            .rules
            .iter()
            .find(|r| r.name == "ChannelFilling")
            .expect("a default rule");
        let sidecar_labels = BTreeMap::from([("cluster".to_owned(), "bj-log".to_owned())]);
        let full = channel(vec![
            (Gauge::ChannelSize, 9700.0),
            (Gauge::ChannelCapacity, 10000.0),
            (Gauge::ChannelFillPercentage, 97.0),
        ]);
        let target = Target {
            host: "h1",
            agent: Some("a1"),
            component: Some(&full),
            peer: None,
            group: None,
            labels: &sidecar_labels,
        };
        let mut alert = new_alert(rule, &target, SystemTime::UNIX_EPOCH);
        update(&mut alert, rule, &target, 97.0, Language::Zh);
        let context = &alert.context;
        assert_eq!(context.host.as_deref(), Some("h1"));
        assert_eq!(context.agent.as_deref(), Some("a1"));
        let component = context.component.as_ref().expect("a component rule");
        assert_eq!(component.kind, ComponentKind::Channel);
        assert_eq!(component.kind_label(), "channel");
        assert_eq!(alert.labels.get("kind"), Some("channel"));
        assert_eq!(alert.labels.get("component"), Some("c1"));
        assert_eq!(alert.labels.get("cluster"), Some("bj-log"));
        assert_eq!(
            context.channel,
            Some(ChannelFill {
                size: 9700.0,
                capacity: 10000.0,
                fill_percent: Some(97.0),
            })
        );
        assert_eq!(alert.annotations["channel_size"], "9700");
        assert_eq!(alert.annotations["channel_fill_percentage"], "97");

        // Without a capacity there is nothing to show as a fill; the size is still listed.
        let no_capacity = channel(vec![(Gauge::ChannelSize, 5.0)]);
        let target = Target {
            component: Some(&no_capacity),
            ..target
        };
        update(&mut alert, rule, &target, 97.0, Language::Zh);
        assert_eq!(alert.context.channel, None);
        assert_eq!(alert.annotations["channel_size"], "5");
        assert!(!alert.annotations.contains_key("channel_capacity"));
    }
}
