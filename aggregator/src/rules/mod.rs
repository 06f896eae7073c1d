//! Alert rules: the typed policy (loaded once, validated), the windows it needs, the
//! per-target lifecycle, and the evaluation that turns fleet state into alerts.
//!
//! Conditions are data (enums), not strings evaluated at run time; `file` is the only place
//! that reads rule text.

mod clocks;
mod compose;
pub mod condition;
mod counters;
mod detection;
pub mod engine;
mod facts;
pub mod file;
mod ring;
pub mod series;
pub mod state;
pub mod template;
mod tracked;
pub mod trend;

use std::collections::BTreeMap;
use std::path::Path;

use flumewatch_proto::model::snapshot::ComponentKind;

pub use condition::{Condition, Scope};
pub use file::RuleError;
use series::{SeriesSpec, Specs};
use state::Hold;
use template::Template;
use trend::GaugeSpec;

use crate::alert::Severity;
use condition::{Func, Metric};

/// Which language summaries and descriptions are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    Zh,
    En,
}

/// A text in both languages; a missing translation falls back to the other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Localized {
    pub zh: Option<Template>,
    pub en: Option<Template>,
}

impl Localized {
    pub fn get(&self, language: Language) -> Option<&Template> {
        match language {
            Language::Zh => self.zh.as_ref().or(self.en.as_ref()),
            Language::En => self.en.as_ref().or(self.zh.as_ref()),
        }
    }
}

/// A name pattern with `*` (any run) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn matches(&self, text: &str) -> bool {
        fn go(p: &[char], t: &[char]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
                Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
                Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
            }
        }
        if self.0 == "*" {
            return true;
        }
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        go(&p, &t)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub scope: Scope,
    /// Component rules: the kinds they apply to.
    pub kinds: Vec<ComponentKind>,
    /// Component rules: which component names.
    pub components: Glob,
    /// Only agents whose sidecar labels match all of these.
    pub match_labels: Vec<(String, Glob)>,
    /// Cluster rules: the label that groups agents.
    pub group_by: String,
    pub hold: Hold,
    /// Added to every alert of this rule.
    pub labels: BTreeMap<String, String>,
    pub summary: Localized,
    pub description: Localized,
    pub condition: Condition,
    /// "default" or the rule file's path.
    pub source: String,
}

impl Rule {
    pub fn applies_to_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, glob)| labels.get(k).is_some_and(|v| glob.matches(v)))
    }

    /// `name` or `name:severity`, as `disable` lists name rules.
    fn is_named(&self, key: &str) -> bool {
        match key.split_once(':') {
            Some((name, severity)) => self.name == name && self.severity.as_str() == severity,
            None => self.name == key,
        }
    }
}

/// The rules in force and the windows they need.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Counter windows and gauge trends to track per agent, derived from the component rules.
    pub specs: Specs,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut specs: Vec<SeriesSpec> = Vec::new();
        let mut gauges: Vec<GaugeSpec> = Vec::new();
        for rule in rules.iter().filter(|r| r.scope == Scope::Component) {
            for leaf in rule.condition.leaves() {
                // A leaf reading the agent's other components tracks those.
                let kinds = match leaf.of {
                    Some(kind) => vec![kind],
                    None => rule.kinds.clone(),
                };
                if let (Metric::Gauge(gauge), true) = (leaf.metric, leaf.func.is_trend()) {
                    for &kind in &kinds {
                        let index = match gauges
                            .iter()
                            .position(|s| s.kind == kind && s.gauge == gauge)
                        {
                            Some(index) => index,
                            None => {
                                gauges.push(GaugeSpec::new(kind, gauge));
                                gauges.len() - 1
                            }
                        };
                        gauges[index].serve(leaf.func);
                    }
                    continue;
                }
                let Metric::Counter(expr) = leaf.metric else {
                    continue;
                };
                if leaf.func == Func::Value {
                    continue;
                }
                for &kind in &kinds {
                    let index = match specs
                        .iter()
                        .position(|s| s.kind == kind && s.expr == expr && s.fits(leaf.func))
                    {
                        Some(index) => index,
                        None => {
                            specs.push(SeriesSpec {
                                kind,
                                expr,
                                retention: Default::default(),
                                resolution: Default::default(),
                            });
                            specs.len() - 1
                        }
                    };
                    specs[index].serve(leaf.func);
                }
            }
        }
        Self {
            rules,
            specs: Specs {
                counters: specs,
                gauges,
            },
        }
    }

    /// The default policy.
    pub fn defaults() -> Self {
        Self::new(
            file::parse("default", file::DEFAULT_RULES)
                .expect("the embedded default policy is valid")
                .rules,
        )
    }

    /// The default policy, adjusted by a rule file when one is given.
    pub fn load(path: Option<&Path>) -> Result<Self, RuleError> {
        let Some(path) = path else {
            return Ok(Self::defaults());
        };
        let parsed = file::load(path)?;
        Self::combine(parsed, &path.display().to_string())
    }

    fn combine(parsed: file::Parsed, file: &str) -> Result<Self, RuleError> {
        let mut rules = if parsed.use_defaults {
            Self::defaults().rules
        } else {
            Vec::new()
        };
        for (i, key) in parsed.disable.iter().enumerate() {
            if !rules.iter().any(|r| r.is_named(key)) {
                return Err(RuleError {
                    file: file.to_owned(),
                    path: format!("disable[{i}]"),
                    reason: format!("no default rule {key:?}"),
                });
            }
            rules.retain(|r| !r.is_named(key));
        }
        for rule in parsed.rules {
            rules.retain(|r| !(r.name == rule.name && r.severity == rule.severity));
            rules.push(rule);
        }
        Ok(Self::new(rules))
    }

    /// Parses rule-file text (for tests and check-config).
    pub fn from_text(file: &str, text: &str) -> Result<Self, RuleError> {
        Self::combine(file::parse(file, text)?, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_loads_with_every_rule() {
        let set = RuleSet::defaults();
        let names: Vec<String> = set
            .rules
            .iter()
            .map(|r| format!("{}:{}", r.name, r.severity))
            .collect();
        assert_eq!(
            names,
            [
                "FlumeAgentDown:critical",
                "SidecarSilent:critical",
                "ChannelFullSoon:warning",
                "ChannelFilling:warning",
                "ChannelFilling:critical",
                "SinkStalled:critical",
                "ChannelPutsFailing:critical",
                "ChannelNotDraining:critical",
                "SinkErrors:warning",
                "SinkConnectionFailures:warning",
                "FileChannelUnhealthy:critical",
                "SourceQuiet:warning",
                "AgentRestartFlapping:warning",
                "ClusterDegraded:critical",
            ]
        );
        // SourceQuiet's two windows get a track each: the last 10 minutes at 30 s, the hour
        // before them at 3 minutes (one track would keep 70 minutes at 30 s).
        let received: Vec<(u64, u64)> = set
            .specs
            .counters
            .iter()
            .filter(|s| {
                s.kind == ComponentKind::Source
                    && s.expr.counter
                        == flumewatch_proto::model::snapshot::Counter::EventReceivedCount
                    && s.expr.minus.is_none()
            })
            .map(|s| (s.retention.as_secs(), s.resolution.as_secs()))
            .collect();
        assert_eq!(received, vec![(600, 30), (4200, 180)]);
    }

    #[test]
    fn a_rule_file_overrides_disables_and_adds() {
        let text = r#"
disable = ["SourceQuiet", "ChannelFilling:warning"]
[[rule]]
name = "ChannelFilling"
severity = "critical"
kinds = ["channel"]
for = "1m"
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 90 }
"#;
        let set = RuleSet::from_text("r.toml", text).unwrap();
        assert!(!set.rules.iter().any(|r| r.name == "SourceQuiet"));
        let filling: Vec<&Rule> = set
            .rules
            .iter()
            .filter(|r| r.name == "ChannelFilling")
            .collect();
        assert_eq!(filling.len(), 1);
        assert_eq!(filling[0].hold.for_.as_secs(), 60);
        assert_eq!(filling[0].source, "r.toml");
        let none = RuleSet::from_text("r.toml", "use_defaults = false\n").unwrap();
        assert!(none.rules.is_empty());
    }

    #[test]
    fn globs() {
        assert!(Glob::new("*").matches("anything"));
        assert!(Glob::new("mem*").matches("mem1"));
        assert!(!Glob::new("mem*").matches("file1"));
        assert!(Glob::new("c?").matches("c1"));
        assert!(Glob::new("bj-*-log").matches("bj-east-log"));
    }
}
