//! Silences (operator-made, time-bounded) and inhibition (one firing alert explaining others):
//! the alerts they cover are listed but not sent.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::config::InhibitRule;
use crate::alert::{Alert, AlertStatus};
use crate::matcher::{all_match, Matcher};

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
    pub creator: String,
    pub comment: String,
    pub created_at: SystemTime,
}

impl Silence {
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: SystemTime) -> bool {
        self.is_active(now) && all_match(&self.matchers, labels)
    }
}

/// Ids of the active silences that mute these labels.
pub fn silenced_by(
    silences: &[Silence],
    labels: &BTreeMap<String, String>,
    now: SystemTime,
) -> Vec<String> {
    silences
        .iter()
        .filter(|s| s.mutes(labels, now))
        .map(|s| s.id.clone())
        .collect()
}

/// Whether a firing alert among `alerts` inhibits `target` under `rules`.
pub fn inhibited(target: &Alert, alerts: &[Alert], rules: &[InhibitRule]) -> bool {
    rules.iter().any(|rule| {
        all_match(&rule.target, &target.labels.0)
            && alerts.iter().any(|source| {
                source.fingerprint != target.fingerprint
                    && source.status == AlertStatus::Firing
                    && all_match(&rule.source, &source.labels.0)
                    && rule.equal.iter().all(|l| {
                        source.labels.get(l).unwrap_or("") == target.labels.get(l).unwrap_or("")
                    })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Labels, Severity};
    use crate::notify::config::default_inhibit;

    fn alert(name: &str, severity: Severity, host: &str, component: &str) -> Alert {
        let labels = Labels(BTreeMap::from([
            ("alertname".to_owned(), name.to_owned()),
            ("severity".to_owned(), severity.as_str().to_owned()),
            ("host".to_owned(), host.to_owned()),
            ("agent".to_owned(), "a1".to_owned()),
            ("component".to_owned(), component.to_owned()),
        ]));
        Alert {
            fingerprint: labels.fingerprint(),
            alertname: name.into(),
            severity,
            status: AlertStatus::Firing,
            labels,
            annotations: BTreeMap::new(),
            value: 1.0,
            active_since: SystemTime::UNIX_EPOCH,
            firing_since: None,
            resolved_at: None,
            context: Default::default(),
        }
    }

    #[test]
    fn default_inhibition() {
        let rules = default_inhibit();
        let silent = {
            let mut a = alert("SidecarSilent", Severity::Critical, "h1", "");
            a.labels.0.remove("agent");
            a.labels.0.remove("component");
            a
        };
        let filling = alert("ChannelFilling", Severity::Warning, "h1", "c1");
        let filling_critical = alert("ChannelFilling", Severity::Critical, "h1", "c1");
        let elsewhere = alert("ChannelFilling", Severity::Warning, "h2", "c1");
        let all = vec![
            silent.clone(),
            filling.clone(),
            filling_critical.clone(),
            elsewhere.clone(),
        ];
        assert!(inhibited(&filling, &all, &rules));
        assert!(
            inhibited(&filling_critical, &all, &rules),
            "a silent sidecar explains its host's alerts"
        );
        assert!(!inhibited(&silent, &all, &rules), "never inhibits itself");
        assert!(
            !inhibited(&elsewhere, &all, &rules),
            "other hosts are not affected"
        );
        let no_silence = vec![filling.clone(), filling_critical.clone()];
        assert!(
            inhibited(&filling, &no_silence, &rules),
            "critical inhibits the same warning"
        );
        assert!(!inhibited(&filling_critical, &no_silence, &rules));
    }

    #[test]
    fn silences_are_time_bounded() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let s = Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse("cluster=bj-log").unwrap()],
            starts_at: now - std::time::Duration::from_secs(10),
            ends_at: now + std::time::Duration::from_secs(10),
            creator: "ops".into(),
            comment: "maintenance".into(),
            created_at: now,
        };
        let labels = BTreeMap::from([("cluster".to_owned(), "bj-log".to_owned())]);
        assert!(s.mutes(&labels, now));
        assert!(!s.mutes(&labels, now + std::time::Duration::from_secs(10)));
        assert_eq!(silenced_by(std::slice::from_ref(&s), &labels, now), ["s1"]);
    }
}
