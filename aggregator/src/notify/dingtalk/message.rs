//! One combined DingTalk markdown message for everything due to one receiver: a title with
//! counts by severity, per group the affected agents with value and duration, a resolved
//! section; names escaped; shortened to fit DingTalk's 20 000-byte body, never silently.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use super::sections;
use super::words::Words;
use crate::alert::{Alert, Severity};
use crate::notify::dispatch::Reason;
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
    /// Alerts told before that still fire but are silenced or inhibited now: not shown, but
    /// still on record as told, so their resolution can be announced.
    pub muted: std::collections::BTreeSet<u64>,
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
pub const TEMPLATE_PLACEHOLDERS: &[&str] = &["title", "reason", "firing", "resolved", "mentions"];

/// Checks a message template: every `{{name}}` must be known, and it must show the alerts.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("an unclosed {{")?;
        let name = after[..end].trim();
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}} (use {{{{title}}}}, {{{{reason}}}}, {{{{firing}}}}, {{{{resolved}}}}, {{{{mentions}}}})"
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
/// A message of flumewatch's own (the daily heartbeat): markdown `text` as it is, no
/// mentions, the robot's keyword kept.
pub fn plain_body(title: &str, text: &str, style: &Style) -> Vec<u8> {
    let mut text = text.to_owned();
    if let Some(keyword) = &style.keyword {
        if !text.contains(keyword.as_str()) {
            text.push_str(&format!("\n{}\n", escape(keyword)));
        }
    }
    let at = At {
        at_mobiles: Vec::new(),
        at_user_ids: Vec::new(),
        is_at_all: false,
    };
    serde_json::to_vec(&Body {
        msgtype: "markdown",
        markdown: Markdown { title, text: &text },
        at: &at,
    })
    .unwrap_or_default()
}

/// How an agent leaving the fleet reads in a message (one line, names escaped).
pub fn retirement(retired: &crate::fleet::Retired, language: Language) -> String {
    use crate::fleet::RetireReason;
    let place = format!("**{}**/{}", escape(&retired.host), escape(&retired.agent));
    match (language, retired.reason) {
        (Language::Zh, RetireReason::Operator) => format!("{place} 已从监控中移除(运维操作)"),
        (Language::Zh, RetireReason::Silent(after)) => format!(
            "{place} 已 {} 无消息,自动从监控中移除",
            humantime::format_duration(after)
        ),
        (Language::En, RetireReason::Operator) => {
            format!("{place} removed from the fleet by an operator")
        }
        (Language::En, RetireReason::Silent(after)) => format!(
            "{place} silent for {}: removed from the fleet",
            humantime::format_duration(after)
        ),
    }
}

/// Renders `groups`, and the fleet changes `notes` (already escaped lines), as one message at
/// `now`.
pub fn render(
    groups: &[GroupNotice],
    notes: &[String],
    style: &Style,
    now: SystemTime,
) -> Rendered {
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
    if !notes.is_empty() {
        let _ = write!(title, " {} {}", words.fleet_change, notes.len());
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
    // Fit: show at most `cap` alert lines per section, the rest counted. The resolved and
    // still-firing sections gather every group's lines, so the start is all of them: one
    // group's count would cut a message of several one-alert groups to a single line.
    let total_lines: usize = groups
        .iter()
        .map(|g| g.firing.len() + g.resolved.len() + g.notified.len())
        .sum();
    let mut cap = total_lines;
    // Every line is rendered once; only fitting them repeats.
    let prepared = sections::prepare(groups, &words, now);
    // Fewer lines per group first; when even one line per group is too much (a storm of
    // groups), fewer groups, the rest counted.
    let mut max_groups = prepared.groups();
    loop {
        let (text, omitted) = text(&prepared, notes, style, &title, &at, cap, max_groups);
        let body = serde_json::to_vec(&Body {
            msgtype: "markdown",
            markdown: Markdown {
                title: &title,
                text: &text,
            },
            at: &at,
        })
        .unwrap_or_default();
        if body.len() <= MAX_BODY_BYTES || (cap == 0 && max_groups == 0) {
            return Rendered {
                title,
                text,
                body,
                omitted,
                reason: Reason::of_message(
                    groups
                        .iter()
                        .map(|g| g.reason)
                        .chain((!notes.is_empty()).then_some(Reason::FleetChange)),
                ),
            };
        }
        if cap > 0 {
            cap = if cap > 64 { cap * 3 / 4 } else { cap - 1 };
        } else {
            max_groups = max_groups * 3 / 4;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn text(
    prepared: &sections::Prepared,
    notes: &[String],
    style: &Style,
    title: &str,
    at: &At,
    cap: usize,
    max_groups: usize,
) -> (String, usize) {
    let heading = format!("### {}\n\n", escape(title));
    let mut sections = prepared.assemble(cap, max_groups);
    if !notes.is_empty() {
        let words = Words::of(style.language);
        let mut changes = format!("#### {} ({})\n\n", words.fleet_change, notes.len());
        for note in notes {
            let _ = writeln!(changes, "- {note}");
        }
        changes.push('\n');
        // With the resolved section: both say what is no longer watched.
        sections.resolved.push_str(&changes);
    }
    let mentions: Vec<String> = at
        .at_mobiles
        .iter()
        .chain(&at.at_user_ids)
        .map(|m| format!("@{m}"))
        .collect();
    let mentions = mentions.join(" ");
    let mut out = match &style.template {
        Some(template) => {
            // What still fires goes with the firing section; so does the reason, first,
            // unless the layout places it with {{reason}}.
            let reason_first = if template.contains("{{reason}}") {
                ""
            } else {
                sections.reason.as_str()
            };
            let firing = format!("{reason_first}{}{}", sections.new, sections.still);
            let mut out = template
                .replace("{{title}}", &escape(title))
                .replace("{{reason}}", &sections.reason)
                .replace("{{firing}}", &firing)
                .replace("{{resolved}}", &sections.resolved)
                .replace("{{mentions}}", &mentions);
            // DingTalk highlights a mention only when the text holds it.
            if !mentions.is_empty() && !out.contains(&mentions) {
                let _ = writeln!(out, "\n{mentions}");
            }
            out
        }
        None => {
            let mut out = format!(
                "{heading}{}{}{}{}",
                sections.reason, sections.new, sections.resolved, sections.still
            );
            if !mentions.is_empty() {
                let _ = writeln!(out, "{mentions}");
            }
            out
        }
    };
    if let Some(keyword) = &style.keyword {
        if !out.contains(keyword.as_str()) {
            let _ = writeln!(out, "\n{}", escape(keyword));
        }
    }
    (out, sections.omitted)
}

/// Names and values come from operators and Flume: keep them from being read as markdown,
/// HTML or mentions.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '`' | '#' | '[' | ']' | '~' => {
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

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
