//! The rule file (TOML) → validated [`Rule`]s, with errors naming the file, the key path and
//! what is wrong (`rules.toml: rule[2].condition.any[0].window: "5 min" is not a duration`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flumewatch_proto::model::snapshot::ComponentKind;
use flumewatch_proto::model::vocabulary::{self, Attribute};
use serde::Deserialize;

use super::condition::{full_level, Condition, CounterExpr, Func, Leaf, Metric, Op, Scope};
use super::state::Hold;
use super::template::Template;
use super::{Glob, Localized, Rule};
use crate::alert::Severity;

/// The embedded default policy.
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// A rule file that cannot be used. Not retryable: fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {reason}")]
pub struct RuleError {
    pub file: String,
    /// Key path inside the file, e.g. `rule[2].condition.threshold`.
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    use_defaults: Option<bool>,
    disable: Option<Vec<String>>,
    rule: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    severity: String,
    scope: Option<String>,
    kinds: Option<Vec<String>>,
    components: Option<String>,
    match_labels: Option<BTreeMap<String, String>>,
    group_by: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    for_polls: Option<u32>,
    keep_firing_for: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    summary: Option<RawText>,
    description: Option<RawText>,
    condition: RawCondition,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    zh: Option<String>,
    en: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    all: Option<Vec<RawCondition>>,
    any: Option<Vec<RawCondition>>,
    value: Option<String>,
    delta: Option<String>,
    increase: Option<String>,
    rate: Option<String>,
    slope: Option<String>,
    time_to_full: Option<String>,
    minus: Option<String>,
    window: Option<String>,
    offset: Option<String>,
    of: Option<String>,
    op: Option<String>,
    threshold: Option<RawThreshold>,
}

/// A number, or for time_to_full a duration ("10m").
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawThreshold {
    Number(f64),
    Text(String),
}

/// What a rule file asks of the defaults, and its own rules.
pub struct Parsed {
    pub use_defaults: bool,
    pub disable: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Parses and validates one rule file's text; `file` names it in errors and in `Rule::source`.
pub fn parse(file: &str, text: &str) -> Result<Parsed, RuleError> {
    let error = |path: String, reason: String| RuleError {
        file: file.to_owned(),
        path,
        reason,
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| error("(syntax)".into(), describe_toml(&e, text)))?;
    let raw: RawFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        error(
            if path == "." {
                "(top level)".into()
            } else {
                path
            },
            describe_toml(e.inner(), text),
        )
    })?;
    let mut rules = Vec::new();
    for (i, raw_rule) in raw.rule.unwrap_or_default().into_iter().enumerate() {
        let path = format!("rule[{i}]");
        rules.push(
            validate_rule(raw_rule, file)
                .map_err(|(key, reason)| error(format!("{path}.{key}"), reason))?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        if !seen.insert((rule.name.clone(), rule.severity)) {
            return Err(error(
                format!("rule[{i}].name"),
                format!("{} ({}) is defined twice", rule.name, rule.severity),
            ));
        }
    }
    Ok(Parsed {
        use_defaults: raw.use_defaults.unwrap_or(true),
        disable: raw.disable.unwrap_or_default(),
        rules,
    })
}

/// Reads a rule file from disk.
pub fn load(path: &Path) -> Result<Parsed, RuleError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleError {
        file: file.clone(),
        path: "(file)".into(),
        reason: e.to_string(),
    })?;
    parse(&file, &text)
}

fn describe_toml(e: &toml::de::Error, text: &str) -> String {
    flumewatch_process::describe_toml_error(text, e)
}

type Invalid = (String, String);

fn at(key: &str, reason: impl Into<String>) -> Invalid {
    (key.to_owned(), reason.into())
}

fn validate_rule(raw: RawRule, source: &str) -> Result<Rule, Invalid> {
    let name_ok = raw
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(at(
            "name",
            format!(
                "{:?}: use letters, digits and '_', starting with a letter",
                raw.name
            ),
        ));
    }
    let severity: Severity = raw
        .severity
        .parse()
        .map_err(|e: String| at("severity", e))?;
    let condition =
        validate_condition(raw.condition).map_err(|(k, r)| (format!("condition{k}"), r))?;
    let leaves = condition.leaves();
    let scope = match raw.scope.as_deref() {
        None if raw.kinds.is_some() => Scope::Component,
        None => leaves
            .first()
            .map_or(Scope::Component, |l| l.metric.scope()),
        Some("component") => Scope::Component,
        Some("agent") => Scope::Agent,
        Some("sidecar") => Scope::Sidecar,
        Some("cluster") => Scope::Cluster,
        Some(other) => {
            return Err(at(
                "scope",
                format!("{other:?} is not component, agent, sidecar or cluster"),
            ))
        }
    };
    if let Some(leaf) = leaves.iter().find(|l| l.metric.scope() != scope) {
        return Err(at(
            "condition",
            format!(
                "{} is a {} metric, but the rule's scope is {}",
                leaf.metric,
                leaf.metric.scope().as_str(),
                scope.as_str()
            ),
        ));
    }
    let kinds = match (&raw.kinds, scope) {
        (Some(kinds), Scope::Component) => kinds
            .iter()
            .map(|k| match vocabulary::kind(&k.to_ascii_uppercase()) {
                ComponentKind::Unspecified => Err(at(
                    "kinds",
                    format!("{k:?} is not a Flume component kind (source, channel, sink …)"),
                )),
                kind => Ok(kind),
            })
            .collect::<Result<Vec<_>, _>>()?,
        (None, Scope::Component) => {
            return Err(at(
                "kinds",
                "a component rule names the kinds it applies to, e.g. kinds = [\"channel\"]",
            ))
        }
        (Some(_), _) => return Err(at("kinds", "only component rules select kinds")),
        (None, _) => Vec::new(),
    };
    if raw.components.is_some() && scope != Scope::Component {
        return Err(at("components", "only component rules select components"));
    }
    let group_by = match (raw.group_by, scope) {
        (Some(label), Scope::Cluster) => label,
        (None, Scope::Cluster) => "cluster".to_owned(),
        (Some(_), _) => return Err(at("group_by", "only cluster rules group agents")),
        (None, _) => String::new(),
    };
    let hold = Hold {
        for_: duration("for", raw.for_.as_deref())?,
        for_polls: raw.for_polls.unwrap_or(1),
        keep_firing_for: duration("keep_firing_for", raw.keep_firing_for.as_deref())?,
    };
    if hold.for_polls == 0 {
        return Err(at("for_polls", "must be at least 1"));
    }
    let text = |key: &str, raw: Option<RawText>| -> Result<Localized, Invalid> {
        let raw = raw.unwrap_or(RawText { zh: None, en: None });
        let zh = raw
            .zh
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| at(&format!("{key}.zh"), e))?;
        let en = raw
            .en
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| at(&format!("{key}.en"), e))?;
        Ok(Localized { zh, en })
    };
    Ok(Rule {
        summary: text("summary", raw.summary)?,
        description: text("description", raw.description)?,
        name: raw.name,
        severity,
        scope,
        kinds,
        components: Glob::new(raw.components.as_deref().unwrap_or("*")),
        match_labels: raw
            .match_labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Glob::new(&v)))
            .collect(),
        group_by,
        hold,
        labels: raw.labels.unwrap_or_default(),
        condition,
        source: source.to_owned(),
    })
}

fn duration(key: &str, text: Option<&str>) -> Result<Duration, Invalid> {
    match text {
        None => Ok(Duration::ZERO),
        Some(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            at(
                key,
                format!("{text:?} is not a duration ({e}); write e.g. 30s, 5m, 1h"),
            )
        }),
    }
}

fn validate_condition(raw: RawCondition) -> Result<Condition, Invalid> {
    let groups = [raw.all.is_some(), raw.any.is_some()];
    let funcs = [
        &raw.value,
        &raw.delta,
        &raw.increase,
        &raw.rate,
        &raw.slope,
        &raw.time_to_full,
    ]
    .iter()
    .filter(|f| f.is_some())
    .count();
    let group_count = groups.iter().filter(|g| **g).count();
    if group_count + usize::from(funcs > 0) != 1 || funcs > 1 {
        return Err(at(
            "",
            "give exactly one of all, any, value, delta, increase, rate, slope or time_to_full",
        ));
    }
    let children = |parts: Vec<RawCondition>, word: &str| -> Result<Vec<Condition>, Invalid> {
        if parts.is_empty() {
            return Err(at(&format!(".{word}"), "is empty"));
        }
        parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                validate_condition(part).map_err(|(k, r)| (format!(".{word}[{i}]{k}"), r))
            })
            .collect()
    };
    if let Some(parts) = raw.all {
        return Ok(Condition::All(children(parts, "all")?));
    }
    if let Some(parts) = raw.any {
        return Ok(Condition::Any(children(parts, "any")?));
    }
    let (key, name) = [
        ("value", &raw.value),
        ("delta", &raw.delta),
        ("increase", &raw.increase),
        ("rate", &raw.rate),
        ("slope", &raw.slope),
        ("time_to_full", &raw.time_to_full),
    ]
    .into_iter()
    .find_map(|(k, v)| v.as_ref().map(|v| (k, v.clone())))
    .expect("one function was given");
    let window = || -> Result<Duration, Invalid> {
        let text = raw.window.as_deref().ok_or_else(|| {
            at(
                ".window",
                format!("{key} needs a window, e.g. window = \"5m\""),
            )
        })?;
        let window = duration(".window", Some(text))?;
        if window.is_zero() {
            return Err(at(".window", "must be above 0"));
        }
        Ok(window)
    };
    let func = match key {
        "value" => Func::Value,
        "delta" => Func::Delta,
        "increase" => Func::Increase {
            window: window()?,
            offset: duration(".offset", raw.offset.as_deref())?,
        },
        "rate" => Func::Rate { window: window()? },
        "slope" => Func::Slope { window: window()? },
        _ => Func::TimeToFull { window: window()? },
    };
    if raw.offset.is_some() && !matches!(func, Func::Increase { .. }) {
        return Err(at(".offset", "only increase takes an offset"));
    }
    if raw.window.is_some() && matches!(func, Func::Value | Func::Delta) {
        return Err(at(".window", format!("{key} takes no window")));
    }
    let metric = metric(&format!(".{key}"), &name, raw.minus.as_deref(), func)?;
    if let (Func::TimeToFull { .. }, Metric::Gauge(gauge)) = (func, metric) {
        if full_level(gauge).is_none() {
            return Err(at(
                ".time_to_full",
                format!("{name} has no full level (use ChannelSize or ChannelFillPercentage)"),
            ));
        }
    }
    let of = match raw.of.as_deref() {
        None => None,
        Some(_)
            if !matches!(
                metric,
                Metric::Gauge(_) | Metric::Flag(_) | Metric::Counter(_)
            ) =>
        {
            return Err(at(".of", format!("{name} is not a component metric")))
        }
        Some(kind) => match vocabulary::kind(&kind.to_ascii_uppercase()) {
            ComponentKind::Unspecified => {
                return Err(at(
                    ".of",
                    format!("{kind:?} is not a Flume component kind (source, channel, sink …)"),
                ))
            }
            kind => Some(kind),
        },
    };
    let op = match raw.op.as_deref() {
        Some(">") => Op::Gt,
        Some(">=") => Op::Ge,
        Some("<") => Op::Lt,
        Some("<=") => Op::Le,
        Some("==") => Op::Eq,
        Some("!=") => Op::Ne,
        Some(other) => {
            return Err(at(
                ".op",
                format!("{other:?} is not one of > >= < <= == !="),
            ))
        }
        None => return Err(at(".op", "missing (one of > >= < <= == !=)")),
    };
    let threshold = match raw.threshold {
        None => return Err(at(".threshold", "missing")),
        Some(RawThreshold::Number(n)) => n,
        Some(RawThreshold::Text(text)) if matches!(func, Func::TimeToFull { .. }) => {
            duration(".threshold", Some(&text))?.as_secs_f64()
        }
        Some(RawThreshold::Text(text)) => {
            return Err(at(
                ".threshold",
                format!("invalid type: string {text:?}, expected a number (only time_to_full takes a duration such as \"10m\")"),
            ))
        }
    };
    if !threshold.is_finite() {
        return Err(at(".threshold", "must be a finite number"));
    }
    Ok(Condition::Leaf(Leaf {
        func,
        metric,
        of,
        op,
        threshold,
    }))
}

fn metric(key: &str, name: &str, minus: Option<&str>, func: Func) -> Result<Metric, Invalid> {
    let builtin = match name {
        "failed_polls" => Some(Metric::FailedPolls),
        "resets" => Some(Metric::Resets),
        "stale_polls" => Some(Metric::StalePolls),
        "critical_agents" => Some(Metric::CriticalAgents),
        "critical_agents_percent" => Some(Metric::CriticalAgentsPercent),
        _ => None,
    };
    if let Some(metric) = builtin {
        let fits = match metric {
            Metric::Resets => matches!(func, Func::Increase { .. }),
            _ => func == Func::Value,
        };
        if !fits || minus.is_some() {
            let how = if metric == Metric::Resets {
                "increase with a window"
            } else {
                "value"
            };
            return Err(at(key, format!("{name} is read with {how} only")));
        }
        return Ok(metric);
    }
    let counter = |name: &str, key: &str| match vocabulary::attribute(name) {
        Some(Attribute::Counter(c)) => Ok(c),
        Some(_) => Err(at(key, format!("{name} is not a counter"))),
        None => Err(at(key, format!("unknown metric {name:?}"))),
    };
    match (vocabulary::attribute(name), func) {
        (None | Some(Attribute::Type | Attribute::StartTime | Attribute::StopTime), _) => Err(at(
            key,
            format!("unknown metric {name:?} (a Flume attribute such as ChannelFillPercentage or EventPutSuccessCount, or failed_polls, resets, stale_polls, critical_agents, critical_agents_percent)"),
        )),
        (Some(Attribute::Gauge(g)), Func::Value | Func::Slope { .. } | Func::TimeToFull { .. }) if minus.is_none() => Ok(Metric::Gauge(g)),
        (Some(Attribute::Flag(f)), Func::Value) if minus.is_none() => Ok(Metric::Flag(f)),
        (Some(Attribute::Gauge(_) | Attribute::Flag(_)), _) => Err(at(key, format!("{name} is a level: read it with value, slope or time_to_full, without minus"))),
        (Some(Attribute::Counter(_)), Func::Value | Func::Slope { .. } | Func::TimeToFull { .. }) => Err(at(key, format!("{name} is a lifetime total; judge it with delta, increase or rate"))),
        (Some(Attribute::Counter(c)), _) => {
            let minus = minus.map(|m| counter(m, ".minus")).transpose()?;
            Ok(Metric::Counter(CounterExpr { counter: c, minus }))
        }
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
