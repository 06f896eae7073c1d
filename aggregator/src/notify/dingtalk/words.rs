//! The words of a message in each language: severities, section names, reasons, units.

use std::time::Duration;

use crate::alert::Severity;
use crate::notify::dispatch::Reason;
use crate::rules::Language;

pub(super) struct Words {
    pub title_prefix: &'static str,
    pub critical: &'static str,
    pub warning: &'static str,
    pub info: &'static str,
    pub resolved: &'static str,
    pub new: &'static str,
    pub still_firing: &'static str,
    pub fleet_change: &'static str,
    pub lasted: &'static str,
    pub channel_size: &'static str,
    pub channel_capacity: &'static str,
    language: Language,
}

impl Words {
    pub fn of(language: Language) -> Self {
        match language {
            Language::Zh => Words {
                title_prefix: "【Flume 告警】",
                critical: "严重",
                warning: "警告",
                info: "提示",
                resolved: "已恢复",
                new: "新增",
                still_firing: "仍在告警",
                fleet_change: "监控变更",
                lasted: "持续",
                channel_size: "积压",
                channel_capacity: "容量",
                language,
            },
            Language::En => Words {
                title_prefix: "[Flume alerts]",
                critical: "critical",
                warning: "warning",
                info: "info",
                resolved: "resolved",
                new: "new",
                still_firing: "still firing",
                fleet_change: "fleet changes",
                lasted: "for",
                channel_size: "size",
                channel_capacity: "capacity",
                language,
            },
        }
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// Why the message was sent.
    pub fn reason(&self, reason: Reason) -> &'static str {
        match (self.language, reason) {
            (Language::Zh, Reason::FirstNotification) => "首次通知",
            (Language::Zh, Reason::NewAlerts) => "有新告警",
            (Language::Zh, Reason::SomeResolved) => "部分恢复",
            (Language::Zh, Reason::AllResolved) => "全部恢复",
            (Language::Zh, Reason::Reminder) => "提醒:告警仍未恢复",
            (Language::Zh, Reason::FleetChange) => "监控范围变更",
            (Language::Zh, Reason::Heartbeat) => "每日心跳",
            (Language::En, Reason::FirstNotification) => "First notification",
            (Language::En, Reason::NewAlerts) => "New alerts",
            (Language::En, Reason::SomeResolved) => "Some resolved",
            (Language::En, Reason::AllResolved) => "All resolved",
            (Language::En, Reason::Reminder) => "Reminder: still firing",
            (Language::En, Reason::FleetChange) => "Fleet changes",
            (Language::En, Reason::Heartbeat) => "Daily heartbeat",
        }
    }

    /// Lines left out to fit DingTalk's size limit.
    pub fn more(&self, n: usize) -> String {
        match self.language {
            Language::Zh => format!("……另有 {n} 条未列出"),
            Language::En => format!("…and {n} more"),
        }
    }

    /// Whole groups left out to fit DingTalk's size limit.
    pub fn more_groups(&self, groups: usize, lines: usize) -> String {
        match self.language {
            Language::Zh => format!("……另有 {groups} 组共 {lines} 条未列出"),
            Language::En => format!("…and {groups} more groups, {lines} lines in all"),
        }
    }

    /// Still-firing lines only counted (they were listed in an earlier message).
    pub fn more_still(&self, n: usize) -> String {
        match self.language {
            Language::Zh => format!("……另有 {n} 条仍在告警(此前已通知)"),
            Language::En => format!("…and {n} more still firing (notified before)"),
        }
    }
}

pub(super) fn severity_look(severity: Severity, words: &Words) -> (&'static str, &'static str) {
    match severity {
        Severity::Critical => ("#FF0000", words.critical),
        Severity::Warning => ("#FF8C00", words.warning),
        Severity::Info => ("#1E90FF", words.info),
    }
}

pub(super) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}
