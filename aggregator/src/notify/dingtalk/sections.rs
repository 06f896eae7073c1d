//! A message's body, what changed first: new alerts (a cluster's agents under its
//! ClusterDegraded headline), then what resolved, then what still fires, collapsed to a few
//! lines and a count. One line per agent and rule: components of one agent failing by the same
//! rule share it ("source r1 → channel c1: …").

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::ComponentKind;

use super::message::{escape, GroupNotice};
use super::words::{severity_look, short_duration, Words};
use crate::alert::Alert;
use crate::notify::dispatch::Reason;
use crate::rules::template::Value;
use crate::rules::Language;

/// Still-firing lines shown before the rest is only counted.
const STILL_SHOWN: usize = 3;
/// The fleet-level rule whose alert heads its cluster's agents.
const CLUSTER_HEADLINE: &str = "ClusterDegraded";

/// The rendered sections, and how many lines the size cap left out.
pub(super) struct Sections {
    pub reason: String,
    pub new: String,
    pub resolved: String,
    pub still: String,
    pub omitted: usize,
}

/// Alerts of one agent and one rule, shown as one line.
struct Line<'a> {
    alerts: Vec<&'a Alert>,
}

fn lines<'a>(alerts: impl IntoIterator<Item = &'a Alert>) -> Vec<Line<'a>> {
    let mut out: Vec<Line<'a>> = Vec::new();
    // (rule, host, agent) → line; fleet-level alerts (no host) are about their group: one
    // line each.
    let mut index: HashMap<(&'a str, &'a str, &'a str), usize> = HashMap::new();
    for alert in alerts {
        let place = match (&alert.context.host, &alert.context.agent) {
            (Some(host), agent) => Some((
                alert.alertname.as_str(),
                host.as_str(),
                agent.as_deref().unwrap_or(""),
            )),
            (None, _) => None,
        };
        match place.and_then(|p| index.get(&p)) {
            Some(&i) => out[i].alerts.push(alert),
            None => {
                if let Some(p) = place {
                    index.insert(p, out.len());
                }
                out.push(Line {
                    alerts: vec![alert],
                });
            }
        }
    }
    out
}

fn cluster_of(alert: &Alert) -> &str {
    alert.labels.get("cluster").unwrap_or("")
}

/// Flume's flow order: where events enter, where they wait, where they leave.
fn flow_rank(kind: ComponentKind) -> u8 {
    match kind {
        ComponentKind::Source => 0,
        ComponentKind::Channel => 1,
        ComponentKind::Sink => 2,
        _ => 3,
    }
}

/// Part of the new-alerts section.
enum Block {
    /// A cluster's ClusterDegraded alert, over its agents' groups.
    Headline(String),
    Group {
        header: String,
        description: Option<String>,
        lines: Vec<String>,
    },
}

impl Prepared {
    /// Groups in the new-alerts section.
    pub fn groups(&self) -> usize {
        self.new
            .iter()
            .filter(|b| matches!(b, Block::Group { .. }))
            .count()
    }
}

/// Every line of a message rendered once; [`Prepared::assemble`] fits them to a size cap.
pub(super) struct Prepared {
    reason: String,
    new: Vec<Block>,
    resolved_header: String,
    resolved: Vec<String>,
    still_header: String,
    /// The first few still-firing lines; `still_total` counts them all.
    still: Vec<String>,
    still_total: usize,
    language: Language,
}

pub(super) fn prepare(groups: &[GroupNotice], words: &Words, now: SystemTime) -> Prepared {
    let is_new = |g: &GroupNotice, a: &Alert| !g.notified.contains(&a.fingerprint);
    // Headlines: a cluster's ClusterDegraded alert, wherever it is in the message.
    let headlines: Vec<&Alert> = groups
        .iter()
        .flat_map(|g| &g.firing)
        .filter(|a| a.alertname == CLUSTER_HEADLINE)
        .collect();
    let headline_of = |cluster: &str| headlines.iter().find(|a| cluster_of(a) == cluster).copied();

    // New: per cluster (in order of appearance), the headline, then each group's new lines.
    let mut new = Vec::new();
    let mut clusters: Vec<&str> = Vec::new();
    for group in groups {
        for alert in group.firing.iter().filter(|a| is_new(group, a)) {
            if !clusters.contains(&cluster_of(alert)) {
                clusters.push(cluster_of(alert));
            }
        }
    }
    let mut headlined: BTreeSet<u64> = BTreeSet::new();
    let mut new_count = 0;
    for cluster in &clusters {
        let level = match headline_of(cluster) {
            Some(h) => {
                let (color, word) = severity_look(h.severity, words);
                let summary = h
                    .annotations
                    .get("summary")
                    .map_or(h.alertname.as_str(), String::as_str);
                new.push(Block::Headline(format!(
                    "#### <font color={color}>[{word}]</font> {}\n\n",
                    escape(summary)
                )));
                headlined.insert(h.fingerprint);
                new_count += usize::from(groups.iter().any(|g| {
                    g.firing
                        .iter()
                        .any(|a| a.fingerprint == h.fingerprint && is_new(g, a))
                }));
                "#####"
            }
            None => "####",
        };
        for group in groups {
            let fresh: Vec<&Alert> = group
                .firing
                .iter()
                .filter(|a| {
                    is_new(group, a) && cluster_of(a) == *cluster && a.alertname != CLUSTER_HEADLINE
                })
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let fresh = lines(fresh);
            new_count += fresh.len();
            let lead = fresh[0].alerts[0];
            let top = fresh
                .iter()
                .flat_map(|l| &l.alerts)
                .map(|a| a.severity)
                .max()
                .unwrap_or(lead.severity);
            let (color, word) = severity_look(top, words);
            let labels: Vec<String> = group
                .group_labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            new.push(Block::Group {
                header: format!(
                    "{level} <font color={color}>[{word}]</font> {} {} ({})\n\n",
                    escape(&lead.alertname),
                    labels.join(" "),
                    fresh.len()
                ),
                description: lead
                    .annotations
                    .get("description")
                    .map(|d| format!("> {}\n\n", escape(d))),
                lines: fresh
                    .iter()
                    .map(|line| line_text(line, words, now, false))
                    .collect(),
            });
        }
    }

    let gone = lines(groups.iter().flat_map(|g| &g.resolved));
    let resolved: Vec<String> = gone
        .iter()
        .map(|line| {
            let until = line.alerts[0].resolved_at.unwrap_or(now);
            line_text(line, words, until, true)
        })
        .collect();

    let headlined = &headlined;
    let old = lines(groups.iter().flat_map(|g| {
        g.firing.iter().filter(move |a| {
            g.notified.contains(&a.fingerprint) && !headlined.contains(&a.fingerprint)
        })
    }));
    // Only the shown few are rendered: the rest is a count.
    let still: Vec<String> = old
        .iter()
        .take(STILL_SHOWN)
        .map(|line| line_text(line, words, now, true))
        .collect();

    let why = Reason::of_message(groups.iter().map(|g| g.reason));
    let mut reason = format!("**{}**", words.reason(why));
    for (n, word) in [
        (new_count, words.new),
        (gone.len(), words.resolved),
        (old.len(), words.still_firing),
    ] {
        if n > 0 {
            let _ = write!(reason, " · {word} {n}");
        }
    }
    reason.push_str("\n\n");
    Prepared {
        reason,
        new,
        resolved_header: format!(
            "#### <font color=#008000>[{}]</font> ({})\n\n",
            words.resolved,
            gone.len()
        ),
        resolved,
        still_header: format!("#### {} ({})\n\n", words.still_firing, old.len()),
        still_total: old.len(),
        still,
        language: words.language(),
    }
}

impl Prepared {
    /// The sections with at most `cap` lines per group (and in the resolved section), the
    /// rest counted.
    /// With `max_groups`, the new-alerts section shows that many groups and counts the rest
    /// (for a storm of so many groups that even their headers do not fit); descriptions go
    /// when `cap` is 0.
    pub fn assemble(&self, cap: usize, max_groups: usize) -> Sections {
        let words = Words::of(self.language);
        let mut omitted = 0;
        let mut new = String::new();
        let mut shown_groups = 0;
        let (mut hidden_groups, mut hidden_lines) = (0, 0);
        for block in &self.new {
            match block {
                Block::Headline(text) => new.push_str(text),
                Block::Group { lines, .. } if shown_groups >= max_groups => {
                    hidden_groups += 1;
                    hidden_lines += lines.len();
                }
                Block::Group {
                    header,
                    description,
                    lines,
                } => {
                    shown_groups += 1;
                    new.push_str(header);
                    if let Some(d) = description.as_ref().filter(|_| cap > 0) {
                        new.push_str(d);
                    }
                    for line in lines.iter().take(cap) {
                        let _ = writeln!(new, "- {line}");
                    }
                    if lines.len() > cap {
                        omitted += lines.len() - cap;
                        let _ = writeln!(new, "- {}", words.more(lines.len() - cap));
                    }
                    new.push('\n');
                }
            }
        }
        if hidden_groups > 0 {
            omitted += hidden_lines;
            let _ = writeln!(
                new,
                "- {}\n",
                words.more_groups(hidden_groups, hidden_lines)
            );
        }
        let mut resolved = String::new();
        if !self.resolved.is_empty() {
            resolved.push_str(&self.resolved_header);
            for line in self.resolved.iter().take(cap) {
                let _ = writeln!(resolved, "- {line}");
            }
            if self.resolved.len() > cap {
                omitted += self.resolved.len() - cap;
                let _ = writeln!(resolved, "- {}", words.more(self.resolved.len() - cap));
            }
            resolved.push('\n');
        }
        let mut still = String::new();
        if self.still_total > 0 {
            still.push_str(&self.still_header);
            let shown = cap.min(self.still.len());
            for line in &self.still[..shown] {
                let _ = writeln!(still, "- {line}");
            }
            if self.still_total > shown {
                let _ = writeln!(still, "- {}", words.more_still(self.still_total - shown));
            }
            still.push('\n');
        }
        Sections {
            reason: self.reason.clone(),
            new,
            resolved,
            still,
            omitted,
        }
    }
}

/// One agent's alerts of one rule: where, which components, the lead alert's summary and
/// channel figures, how long.
fn line_text(line: &Line<'_>, words: &Words, until: SystemTime, with_name: bool) -> String {
    // The lead: the most severe, a channel's first (its figures say how full).
    let lead = line
        .alerts
        .iter()
        .max_by_key(|a| (a.severity, a.context.channel.is_some()))
        .copied()
        .unwrap_or(line.alerts[0]);
    let context = &lead.context;
    let mut out = String::new();
    if with_name {
        let _ = write!(out, "{} ", escape(&lead.alertname));
    }
    match (&context.host, &context.agent) {
        (Some(h), Some(a)) => {
            let _ = write!(out, "**{}**/{}", escape(h), escape(a));
        }
        (Some(h), None) => {
            let _ = write!(out, "**{}**", escape(h));
        }
        _ => {
            if let Some(cluster) = lead.labels.get("cluster") {
                let _ = write!(out, "**{}**", escape(cluster));
            }
        }
    }
    let mut components: Vec<_> = line
        .alerts
        .iter()
        .filter_map(|a| a.context.component.as_ref())
        .collect();
    components.sort_by(|a, b| (flow_rank(a.kind), &a.name).cmp(&(flow_rank(b.kind), &b.name)));
    components.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    let mut summary = lead.annotations.get("summary").cloned();
    match components.as_slice() {
        [] => {}
        // Summaries usually name their component already.
        [one]
            if summary
                .as_deref()
                .is_some_and(|s| s.contains(one.name.as_str())) => {}
        many => {
            let mut joined = String::new();
            for (i, c) in many.iter().enumerate() {
                if i > 0 {
                    let flows = flow_rank(many[i - 1].kind) != flow_rank(c.kind);
                    joined.push_str(if flows { " → " } else { ", " });
                }
                let _ = write!(joined, "{} {}", escape(&c.kind_label()), escape(&c.name));
            }
            let _ = write!(out, " {joined}");
            // "channel c1 cannot put …" reads "source r1 → channel c1: cannot put …".
            if let (Some(text), Some(c)) = (summary.as_deref(), lead.context.component.as_ref()) {
                let prefix = format!("{} {}", c.kind_label(), c.name);
                if let Some(rest) = text.strip_prefix(&prefix) {
                    summary = Some(rest.trim_start().to_owned());
                }
            }
        }
    }
    if let Some(summary) = summary {
        let _ = write!(out, ": {}", escape(&summary));
    }
    if let Some(channel) = line.alerts.iter().find_map(|a| a.context.channel.as_ref()) {
        let _ = write!(
            out,
            " ({} {} / {} {} / ",
            words.channel_size,
            Value(channel.size),
            words.channel_capacity,
            Value(channel.capacity)
        );
        let _ = match channel.fill_percent {
            Some(fill) => write!(out, "{}%)", Value(fill)),
            None => write!(out, "-%)"),
        };
    }
    let since = line.alerts.iter().filter_map(|a| a.firing_since).min();
    if let Some(since) = since {
        let held = until.duration_since(since).unwrap_or(Duration::ZERO);
        let _ = write!(out, " · {} {}", words.lasted, short_duration(held));
    }
    out
}
