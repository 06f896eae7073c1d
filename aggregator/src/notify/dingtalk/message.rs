//! One combined DingTalk markdown message for everything due to one receiver: a title with
//! counts by severity, per group the affected agents with value and duration, a resolved
//! section; names escaped; shortened to fit DingTalk's 20 000-byte body, never silently.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::alert::{Alert, Severity};
use crate::notify::dispatch::Reason;
use crate::rules::template::Value;
use crate::rules::Language;

/// Bodies are kept under this (DingTalk refuses over 20 000 bytes; leave room for headroom).
pub const MAX_BODY_BYTES: usize = 18_000;

/// One alert group's part of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNotice {
    /// The labels the group is keyed by (e.g. alertname, cluster).
    pub group_labels: BTreeMap<String, String>,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
    /// Why this group is in the message.
    pub reason: Reason,
    /// Firing alerts the previous message of this group named: the rest of `firing` is new.
    pub notified: std::collections::BTreeSet<u64>,
}

/// Who to mention and how the message is worded, per receiver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Style {
    pub language: Language,
    /// Must appear in every message when the robot's security setting asks for it.
    pub keyword: Option<String>,
    /// Mentioned when an alert of at least that severity fires.
    pub at_mobiles: BTreeMap<Severity, Vec<String>>,
    pub at_user_ids: BTreeMap<Severity, Vec<String>>,
    /// @all when a critical alert fires.
    pub at_all_on_critical: bool,
    /// Operator's layout: `{{title}}`, `{{firing}}`, `{{resolved}}` and `{{mentions}}` stand
    /// for the sections of the default layout.
    pub template: Option<String>,
}

/// The placeholders a message template may use.
pub const TEMPLATE_PLACEHOLDERS: &[&str] = &["title", "firing", "resolved", "mentions"];

/// Checks a message template: every `{{name}}` must be known, and it must show the alerts.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("an unclosed {{")?;
        let name = after[..end].trim();
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}} (use {{{{title}}}}, {{{{firing}}}}, {{{{resolved}}}}, {{{{mentions}}}})"
            ));
        }
        rest = &after[end + 2..];
    }
    if !template.contains("{{firing}}") {
        return Err("the template must show {{firing}}".into());
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Body<'a> {
    msgtype: &'static str,
    markdown: Markdown<'a>,
    at: &'a At,
}

#[derive(Debug, Serialize)]
struct Markdown<'a> {
    title: &'a str,
    text: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct At {
    at_mobiles: Vec<String>,
    at_user_ids: Vec<String>,
    is_at_all: bool,
}

/// A message ready to POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub title: String,
    pub text: String,
    /// The serialized JSON body.
    pub body: Vec<u8>,
    /// Alert lines left out to fit the size limit (their count is in the text).
    pub omitted: usize,
    /// The weightiest reason of its groups.
    pub reason: Reason,
}

/// Renders `groups` as one message at `now`.
pub fn render(groups: &[GroupNotice], style: &Style, now: SystemTime) -> Rendered {
    let words = Words::of(style.language);
    let firing: Vec<&Alert> = groups.iter().flat_map(|g| &g.firing).collect();
    let resolved_count: usize = groups.iter().map(|g| g.resolved.len()).sum();
    let count = |s: Severity| firing.iter().filter(|a| a.severity == s).count();
    let mut title = format!(
        "{}{}",
        words.title_prefix,
        style
            .keyword
            .as_deref()
            .map(|k| format!(" {k}"))
            .unwrap_or_default()
    );
    for (severity, word) in [
        (Severity::Critical, words.critical),
        (Severity::Warning, words.warning),
        (Severity::Info, words.info),
    ] {
        let n = count(severity);
        if n > 0 {
            let _ = write!(title, " {word} {n}");
        }
    }
    if resolved_count > 0 {
        let _ = write!(title, " {} {resolved_count}", words.resolved);
    }
    let top = firing.iter().map(|a| a.severity).max();
    let pick = |lists: &BTreeMap<Severity, Vec<String>>| -> Vec<String> {
        let mut out: Vec<String> = lists
            .iter()
            .filter(|(s, _)| top.is_some_and(|t| t >= **s))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let at = At {
        at_mobiles: pick(&style.at_mobiles),
        at_user_ids: pick(&style.at_user_ids),
        is_at_all: style.at_all_on_critical && top == Some(Severity::Critical),
    };
    // Fit: show at most `cap` alert lines per group section, the rest counted.
    let total_lines = groups
        .iter()
        .map(|g| g.firing.len().max(g.resolved.len()))
        .max()
        .unwrap_or(0);
    let mut cap = total_lines;
    loop {
        let (text, omitted) = text(groups, style, &words, &title, &at, cap, now);
        let body = serde_json::to_vec(&Body {
            msgtype: "markdown",
            markdown: Markdown {
                title: &title,
                text: &text,
            },
            at: &at,
        })
        .unwrap_or_default();
        if body.len() <= MAX_BODY_BYTES || cap == 0 {
            return Rendered {
                title,
                text,
                body,
                omitted,
                reason: groups
                    .iter()
                    .map(|g| g.reason)
                    .max()
                    .unwrap_or(Reason::Reminder),
            };
        }
        cap = if cap > 64 { cap * 3 / 4 } else { cap - 1 };
    }
}

#[allow(clippy::too_many_arguments)]
fn text(
    groups: &[GroupNotice],
    style: &Style,
    words: &Words,
    title: &str,
    at: &At,
    cap: usize,
    now: SystemTime,
) -> (String, usize) {
    let heading = format!("### {}\n\n", escape(title));
    let mut out = String::new();
    let mut omitted = 0;
    for group in groups.iter().filter(|g| !g.firing.is_empty()) {
        let first = &group.firing[0];
        let (color, severity_word) = severity_look(first.severity, words);
        let labels: Vec<String> = group
            .group_labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect();
        let _ = writeln!(
            out,
            "#### <font color={color}>[{severity_word}]</font> {} {} ({})\n",
            escape(&first.alertname),
            labels.join(" "),
            group.firing.len()
        );
        if let Some(description) = first.annotations.get("description") {
            let _ = writeln!(out, "> {}\n", escape(description));
        }
        for alert in group.firing.iter().take(cap) {
            let _ = writeln!(
                out,
                "- {}",
                alert_line(alert, words, now, alert.firing_since)
            );
        }
        if group.firing.len() > cap {
            let left = group.firing.len() - cap;
            omitted += left;
            let _ = writeln!(out, "- {}", words.more(left));
        }
        out.push('\n');
    }
    let firing_section = std::mem::take(&mut out);
    let resolved: Vec<&Alert> = groups.iter().flat_map(|g| &g.resolved).collect();
    if !resolved.is_empty() {
        let _ = writeln!(
            out,
            "#### <font color=#008000>[{}]</font> ({})\n",
            words.resolved,
            resolved.len()
        );
        for alert in resolved.iter().take(cap) {
            let _ = writeln!(
                out,
                "- {} {}",
                escape(&alert.alertname),
                alert_line(
                    alert,
                    words,
                    alert.resolved_at.unwrap_or(now),
                    alert.firing_since
                )
            );
        }
        if resolved.len() > cap {
            let left = resolved.len() - cap;
            omitted += left;
            let _ = writeln!(out, "- {}", words.more(left));
        }
        out.push('\n');
    }
    let resolved_section = std::mem::take(&mut out);
    let mentions: Vec<String> = at
        .at_mobiles
        .iter()
        .chain(&at.at_user_ids)
        .map(|m| format!("@{m}"))
        .collect();
    let mentions = mentions.join(" ");
    match &style.template {
        Some(template) => {
            out = template
                .replace("{{title}}", &escape(title))
                .replace("{{firing}}", &firing_section)
                .replace("{{resolved}}", &resolved_section)
                .replace("{{mentions}}", &mentions);
            // DingTalk highlights a mention only when the text holds it.
            if !mentions.is_empty() && !out.contains(&mentions) {
                let _ = writeln!(out, "\n{mentions}");
            }
        }
        None => {
            out = format!("{heading}{firing_section}{resolved_section}");
            if !mentions.is_empty() {
                let _ = writeln!(out, "{mentions}");
            }
        }
    }
    if let Some(keyword) = &style.keyword {
        if !out.contains(keyword.as_str()) {
            let _ = writeln!(out, "\n{}", escape(keyword));
        }
    }
    (out, omitted)
}

fn alert_line(
    alert: &Alert,
    words: &Words,
    until: SystemTime,
    since: Option<SystemTime>,
) -> String {
    let context = &alert.context;
    let mut where_ = String::new();
    match (&context.host, &context.agent) {
        (Some(h), Some(a)) => {
            let _ = write!(where_, "**{}**/{}", escape(h), escape(a));
        }
        (Some(h), None) => {
            let _ = write!(where_, "**{}**", escape(h));
        }
        _ => {
            // A fleet-level alert: its group is one of its labels.
            if let Some(cluster) = alert.labels.get("cluster") {
                let _ = write!(where_, "**{}**", escape(cluster));
            }
        }
    }
    let summary = alert.annotations.get("summary");
    if let Some(component) = &context.component {
        // Summaries usually name the component already.
        if !summary.is_some_and(|s| s.contains(component.name.as_str())) {
            let _ = write!(
                where_,
                " {} {}",
                escape(&component.kind_label()),
                escape(&component.name)
            );
        }
    }
    let mut line = where_;
    if let Some(summary) = summary {
        let _ = write!(line, ": {}", escape(summary));
    }
    if let Some(channel) = &context.channel {
        let _ = write!(
            line,
            " ({} {} / {} {} / ",
            words.channel_size,
            Value(channel.size),
            words.channel_capacity,
            Value(channel.capacity)
        );
        let _ = match channel.fill_percent {
            Some(fill) => write!(line, "{}%)", Value(fill)),
            None => write!(line, "-%)"),
        };
    }
    if let Some(since) = since {
        let held = until.duration_since(since).unwrap_or_default();
        let _ = write!(line, " · {} {}", words.lasted, short_duration(held));
    }
    line
}

/// Names and values come from operators and Flume: keep them from being read as markdown,
/// HTML or mentions.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '_' | '`' | '#' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A mention only works as "@" followed by the number; a zero-width space breaks it.
            '@' => out.push_str("@\u{200b}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn severity_look(severity: Severity, words: &Words) -> (&'static str, &'static str) {
    match severity {
        Severity::Critical => ("#FF0000", words.critical),
        Severity::Warning => ("#FF8C00", words.warning),
        Severity::Info => ("#1E90FF", words.info),
    }
}

struct Words {
    title_prefix: &'static str,
    critical: &'static str,
    warning: &'static str,
    info: &'static str,
    resolved: &'static str,
    lasted: &'static str,
    channel_size: &'static str,
    channel_capacity: &'static str,
    more_zh: bool,
}

impl Words {
    fn of(language: Language) -> Self {
        match language {
            Language::Zh => Words {
                title_prefix: "【Flume 告警】",
                critical: "严重",
                warning: "警告",
                info: "提示",
                resolved: "已恢复",
                lasted: "持续",
                channel_size: "积压",
                channel_capacity: "容量",
                more_zh: true,
            },
            Language::En => Words {
                title_prefix: "[Flume alerts]",
                critical: "critical",
                warning: "warning",
                info: "info",
                resolved: "resolved",
                lasted: "for",
                channel_size: "size",
                channel_capacity: "capacity",
                more_zh: false,
            },
        }
    }

    fn more(&self, n: usize) -> String {
        if self.more_zh {
            format!("……另有 {n} 条未列出")
        } else {
            format!("…and {n} more")
        }
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
