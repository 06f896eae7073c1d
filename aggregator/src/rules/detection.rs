//! A rule's effective detection time at a poll interval: how long after a fault begins the
//! rule fires at worst, when its condition is true from the fault's first poll on. Shown by
//! check-config and ListRules, so operators see what `for_polls = 2` means at their interval.

use std::time::Duration;

use super::condition::{Condition, Func, Leaf, Metric};
use super::{Rule, Scope};

/// A sidecar's silence is measured in intervals of at least this long (see the engine).
const MIN_POLL_FOR_SILENCE: Duration = Duration::from_secs(10);

impl Rule {
    /// Worst case from onset to firing at `interval`: up to one interval until the first poll
    /// that sees the fault, what the condition itself needs (N failed polls, a window that
    /// must stay empty), then the hold-down (`for`, or `for_polls` − 1 further intervals).
    pub fn detection(&self, interval: Duration) -> Duration {
        let hold = self
            .hold
            .for_
            .max(interval * self.hold.for_polls.saturating_sub(1));
        let first_poll = match self.scope {
            // Silence and cluster shares are judged on the aggregator's ticks, not on polls.
            Scope::Sidecar | Scope::Cluster => Duration::ZERO,
            Scope::Component | Scope::Agent => interval,
        };
        first_poll
            .saturating_add(needs(&self.condition, interval))
            .saturating_add(hold)
    }
}

/// What a condition needs beyond the first poll that sees the fault.
fn needs(condition: &Condition, interval: Duration) -> Duration {
    match condition {
        Condition::Leaf(leaf) => leaf_needs(leaf, interval),
        Condition::All(parts) => parts
            .iter()
            .map(|p| needs(p, interval))
            .max()
            .unwrap_or_default(),
        Condition::Any(parts) => parts
            .iter()
            .map(|p| needs(p, interval))
            .min()
            .unwrap_or_default(),
    }
}

fn leaf_needs(leaf: &Leaf, interval: Duration) -> Duration {
    // A silly threshold (1e20 polls) must not panic a check: it saturates.
    let polls = |n: f64| {
        Duration::try_from_secs_f64(interval.as_secs_f64() * (n - 1.0).max(0.0))
            .unwrap_or(Duration::MAX)
    };
    match (leaf.metric, leaf.func) {
        (Metric::FailedPolls, _) => polls(leaf.threshold.ceil()),
        (Metric::StalePolls, _) => Duration::try_from_secs_f64(
            interval.max(MIN_POLL_FOR_SILENCE).as_secs_f64() * leaf.threshold.ceil().max(0.0),
        )
        .unwrap_or(Duration::MAX),
        // "Nothing happened over the window" needs the whole window to pass.
        (_, Func::Increase { window, .. } | Func::Rate { window })
            if leaf.op.fires_on_low_values() =>
        {
            window
        }
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn detection(name: &str, severity: &str, interval_secs: u64) -> u64 {
        let rules = RuleSet::defaults();
        let rule = rules
            .rules
            .iter()
            .find(|r| r.name == name && r.severity.as_str() == severity)
            .expect("a default rule");
        rule.detection(Duration::from_secs(interval_secs)).as_secs()
    }

    #[test]
    fn default_rules_detect_within_a_few_polls() {
        // Three failed polls: the first within one interval, two more.
        assert_eq!(detection("FlumeAgentDown", "critical", 10), 30);
        assert_eq!(detection("FlumeAgentDown", "critical", 1), 3);
        assert_eq!(detection("FlumeAgentDown", "critical", 30), 90);
        // Two polls in a row.
        assert_eq!(detection("ChannelFilling", "critical", 10), 20);
        assert_eq!(detection("ChannelFullSoon", "warning", 10), 20);
        // A 10 s window without a drain, then a second poll.
        assert_eq!(detection("SinkStalled", "critical", 10), 30);
        assert_eq!(detection("SinkStalled", "critical", 1), 12);
        // Silence is counted in intervals of at least 10 s.
        assert_eq!(detection("SidecarSilent", "critical", 1), 30);
        // Ten quiet minutes, however fast the polls.
        assert_eq!(detection("SourceQuiet", "warning", 10), 610);
    }
}
