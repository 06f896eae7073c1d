//! Notification settings: receivers (DingTalk robots, in [`receiver`]), the route tree,
//! grouping timers, inhibition rules and the history's retention → validated [`NotifyConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::matcher::Matcher;
use crate::rules::Language;

mod receiver;

pub use receiver::{RawReceiver, Receiver};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub receiver: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    /// Escalating reminders: the 1st reminder after the first, the 2nd after the second …,
    /// the last interval repeating (e.g. ["30m", "2h", "8h", "24h"]). Replaces repeat_interval.
    pub repeat_intervals: Option<Vec<String>>,
    pub send_resolved: Option<bool>,
    /// Messages per rolling minute per robot (DingTalk allows 20).
    pub rate_limit_per_minute: Option<u32>,
    /// How long a robot is left alone after DingTalk says "too fast" [default: 60s].
    pub throttle_pause: Option<String>,
    /// How long the history of sent messages is kept [default: 7d].
    pub history_retention: Option<String>,
    pub routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub matchers: Vec<String>,
    pub receiver: String,
    #[serde(rename = "continue")]
    pub continue_: Option<bool>,
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    pub repeat_intervals: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInhibit {
    pub source: Vec<String>,
    pub target: Vec<String>,
    pub equal: Vec<String>,
}

/// How one route groups and paces notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOpts {
    pub receiver: usize,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// Escalating reminder intervals; empty: every `repeat_interval`.
    pub repeat_intervals: Vec<Duration>,
    pub send_resolved: bool,
}

impl RouteOpts {
    /// How long after the last message the next reminder waits, `sent` reminders in.
    pub fn repeat_after(&self, sent: u32) -> Duration {
        match self.repeat_intervals.len() {
            0 => self.repeat_interval,
            n => self.repeat_intervals[(sent as usize).min(n - 1)],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub matchers: Vec<Matcher>,
    pub continue_: bool,
    pub opts: RouteOpts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// Validated notification settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub receivers: Vec<Receiver>,
    /// Child routes, first match wins unless it says `continue`.
    pub routes: Vec<Route>,
    /// The root route: where alerts no child route takes go.
    pub root: RouteOpts,
    pub inhibit: Vec<InhibitRule>,
    pub rate_limit_per_minute: u32,
    pub throttle_pause: Duration,
    /// Messages older than this leave the history.
    pub history_retention: Duration,
}

/// What the command line adds for the simple case (one robot).
#[derive(Debug, Default, Clone)]
pub struct NotifyFlags {
    pub dingtalk_webhook: Option<String>,
    pub dingtalk_secret: Option<String>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
}

type Invalid = (String, String);

const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_HISTORY_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

fn at(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
    (key.into(), reason.into())
}

fn duration(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, Invalid> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t.trim()).map_err(|e| at(key, format!("{t:?}: {e}"))),
    }
}

/// The inhibition every fleet wants: a silent sidecar or a down agent explains everything else
/// about its host or agent; a critical alert makes its own warning redundant.
pub fn default_inhibit() -> Vec<InhibitRule> {
    let m = |s: &str| Matcher::parse(s).expect("literal matcher");
    vec![
        InhibitRule {
            source: vec![m("alertname=SidecarSilent")],
            target: vec![m("alertname!=SidecarSilent")],
            equal: vec!["host".into()],
        },
        InhibitRule {
            source: vec![m("alertname=FlumeAgentDown")],
            target: vec![
                m("alertname!=FlumeAgentDown"),
                m("alertname!=SidecarSilent"),
            ],
            equal: vec!["host".into(), "agent".into()],
        },
        // Once a channel is full, "it will be full soon" has nothing to add.
        InhibitRule {
            source: vec![m("alertname=ChannelFilling"), m("severity=critical")],
            target: vec![m("alertname=ChannelFullSoon")],
            equal: vec!["host".into(), "agent".into(), "component".into()],
        },
        InhibitRule {
            source: vec![m("severity=critical")],
            target: vec![m("severity=warning")],
            equal: vec![
                "alertname".into(),
                "host".into(),
                "agent".into(),
                "component".into(),
            ],
        },
    ]
}

/// Validates; `language` comes from the aggregator's own setting.
pub fn validate(
    raw: RawNotify,
    receivers: Vec<RawReceiver>,
    inhibit: Option<Vec<RawInhibit>>,
    flags: NotifyFlags,
    language: Language,
) -> Result<NotifyConfig, Invalid> {
    let mut out_receivers = Vec::new();
    for (i, r) in receivers.into_iter().enumerate() {
        let key = |k: &str| format!("receivers[{i}].{k}");
        let (k, reason) = match receiver::validate(r, language) {
            Ok(receiver) => {
                if out_receivers
                    .iter()
                    .any(|x: &Receiver| x.name == receiver.name)
                {
                    return Err(at(
                        key("name"),
                        format!("{} is defined twice", receiver.name),
                    ));
                }
                out_receivers.push(receiver);
                continue;
            }
            Err(e) => e,
        };
        return Err(at(key(&k), reason));
    }
    if let Some(webhook) = flags.dingtalk_webhook {
        receiver::check_webhook("dingtalk_webhook", &webhook)?;
        out_receivers.retain(|r| r.name != "dingtalk");
        let secret = flags.dingtalk_secret;
        out_receivers.insert(0, Receiver::from_flags(webhook, secret, language));
    }
    let receiver_index = |key: &str, name: &str, receivers: &[Receiver]| {
        receivers
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| at(key, format!("no receiver named {name:?}")))
    };
    let root_receiver = match raw.receiver.as_deref() {
        Some(name) => receiver_index("notify.receiver", name, &out_receivers)?,
        None => 0,
    };
    // [] is one group for everything and ["..."] one group per alert, as in Alertmanager.
    let group_by = raw
        .group_by
        .unwrap_or_else(|| vec!["alertname".into(), "cluster".into()]);
    check_group_by("notify.group_by", &group_by)?;
    let root = RouteOpts {
        receiver: root_receiver,
        group_by,
        group_wait: duration(
            "group_wait",
            flags.group_wait.as_deref().or(raw.group_wait.as_deref()),
            Duration::from_secs(30),
        )?,
        group_interval: duration(
            "group_interval",
            flags
                .group_interval
                .as_deref()
                .or(raw.group_interval.as_deref()),
            // 1m, not Alertmanager's 5m: agents joining an incident after its first message
            // (a storm spreading over a minute) are told a minute later, not five.
            Duration::from_secs(60),
        )?,
        repeat_interval: duration(
            "repeat_interval",
            flags
                .repeat_interval
                .as_deref()
                .or(raw.repeat_interval.as_deref()),
            Duration::from_secs(4 * 3600),
        )?,
        repeat_intervals: Vec::new(),
        send_resolved: raw.send_resolved.unwrap_or(true),
    };
    if root.group_interval.is_zero() || root.repeat_interval < root.group_interval {
        return Err(at(
            "repeat_interval",
            "must be at least group_interval, which must be above 0",
        ));
    }
    let root = RouteOpts {
        repeat_intervals: repeat_intervals(
            "notify.repeat_intervals",
            raw.repeat_intervals,
            root.group_interval,
        )?,
        ..root
    };
    let mut routes = Vec::new();
    for (i, r) in raw.routes.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("notify.routes[{i}].{k}");
        let matchers = r
            .matchers
            .iter()
            .map(|m| Matcher::parse(m).map_err(|e| at(key("matchers"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let group_by = r.group_by.unwrap_or_else(|| root.group_by.clone());
        check_group_by(&key("group_by"), &group_by)?;
        let opts = RouteOpts {
            receiver: receiver_index(&key("receiver"), &r.receiver, &out_receivers)?,
            group_by,
            group_wait: duration(&key("group_wait"), r.group_wait.as_deref(), root.group_wait)?,
            group_interval: duration(
                &key("group_interval"),
                r.group_interval.as_deref(),
                root.group_interval,
            )?,
            repeat_interval: duration(
                &key("repeat_interval"),
                r.repeat_interval.as_deref(),
                root.repeat_interval,
            )?,
            repeat_intervals: Vec::new(),
            send_resolved: root.send_resolved,
        };
        // As for the root: a zero interval would have the notifier flush that group endlessly.
        if opts.group_interval.is_zero() || opts.repeat_interval < opts.group_interval {
            return Err(at(
                key("repeat_interval"),
                "must be at least group_interval, which must be above 0",
            ));
        }
        let opts = RouteOpts {
            repeat_intervals: match r.repeat_intervals {
                Some(list) => {
                    repeat_intervals(&key("repeat_intervals"), Some(list), opts.group_interval)?
                }
                None if r.repeat_interval.is_some() => Vec::new(),
                None => root.repeat_intervals.clone(),
            },
            ..opts
        };
        routes.push(Route {
            matchers,
            continue_: r.continue_.unwrap_or(false),
            opts,
        });
    }
    let inhibit = match inhibit {
        None => default_inhibit(),
        Some(rules) => rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let parse = |list: &[String], k: &str| {
                    list.iter()
                        .map(|m| {
                            Matcher::parse(m).map_err(|e| at(format!("inhibit_rules[{i}].{k}"), e))
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
                Ok(InhibitRule {
                    source: parse(&r.source, "source")?,
                    target: parse(&r.target, "target")?,
                    equal: r.equal,
                })
            })
            .collect::<Result<Vec<_>, Invalid>>()?,
    };
    let rate_limit_per_minute = raw.rate_limit_per_minute.unwrap_or(20);
    if !(1..=20).contains(&rate_limit_per_minute) {
        return Err(at(
            "notify.rate_limit_per_minute",
            "must be 1 to 20 (DingTalk allows 20 per minute per robot)",
        ));
    }
    let throttle_pause = duration(
        "notify.throttle_pause",
        raw.throttle_pause.as_deref(),
        Duration::from_secs(60),
    )?;
    if throttle_pause < Duration::from_secs(1) {
        return Err(at(
            "notify.throttle_pause",
            "must be at least 1s (DingTalk throttles for up to 10 minutes)",
        ));
    }
    let history_retention = duration(
        "notify.history_retention",
        raw.history_retention.as_deref(),
        DEFAULT_HISTORY_RETENTION,
    )?;
    if !(Duration::from_secs(60)..=MAX_HISTORY_RETENTION).contains(&history_retention) {
        return Err(at(
            "notify.history_retention",
            "must be between 1m and 365d (the history lives in the state database)",
        ));
    }
    Ok(NotifyConfig {
        receivers: out_receivers,
        routes,
        root,
        inhibit,
        rate_limit_per_minute,
        throttle_pause,
        history_retention,
    })
}

fn check_group_by(key: &str, group_by: &[String]) -> Result<(), Invalid> {
    if group_by.iter().any(|k| k == super::dispatch::GROUP_BY_ALL) && group_by.len() > 1 {
        return Err(at(key, "\"...\" (every label) stands alone"));
    }
    if group_by.iter().any(|k| k.is_empty()) {
        return Err(at(key, "an empty label name"));
    }
    Ok(())
}

/// Escalating reminder intervals: each at least `group_interval`, none shorter than the one
/// before.
fn repeat_intervals(
    key: &str,
    raw: Option<Vec<String>>,
    group_interval: Duration,
) -> Result<Vec<Duration>, Invalid> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Err(at(
            key,
            "give at least one interval, e.g. [\"30m\", \"2h\", \"8h\"]",
        ));
    }
    let mut out: Vec<Duration> = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let interval = duration(&format!("{key}[{i}]"), Some(text), Duration::ZERO)?;
        if interval < group_interval {
            return Err(at(format!("{key}[{i}]"), "must be at least group_interval"));
        }
        if out.last().is_some_and(|last| interval < *last) {
            return Err(at(
                format!("{key}[{i}]"),
                "reminders may only slow down: each interval at least the one before",
            ));
        }
        out.push(interval);
    }
    Ok(out)
}

impl NotifyConfig {
    /// How long the notification log remembers a group after its last message: Alertmanager's
    /// 120 h, or twice the longest repeat interval when that is longer (a firing group is
    /// reminded, so refreshed, at least that often).
    pub fn log_retention(&self) -> std::time::Duration {
        let longest = self
            .routes
            .iter()
            .map(|r| &r.opts)
            .chain(std::iter::once(&self.root))
            .flat_map(|o| {
                o.repeat_intervals
                    .iter()
                    .copied()
                    .chain([o.repeat_interval])
            })
            .max()
            .unwrap_or_default();
        std::time::Duration::from_secs(120 * 3600).max(longest * 2)
    }

    /// No receivers: alerts are judged and listed, nothing is sent.
    pub fn disabled() -> Self {
        validate(
            RawNotify::default(),
            Vec::new(),
            None,
            NotifyFlags::default(),
            Language::Zh,
        )
        .expect("the defaults are valid")
    }

    /// The routes an alert with these labels takes (the root when no child route matches).
    pub fn routes_for(&self, labels: &BTreeMap<String, String>) -> Vec<&RouteOpts> {
        let mut out = Vec::new();
        for route in &self.routes {
            if crate::matcher::all_match(&route.matchers, labels) {
                out.push(&route.opts);
                if !route.continue_ {
                    return out;
                }
            }
        }
        if out.is_empty() {
            out.push(&self.root);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> RawReceiver {
        RawReceiver {
            name: "ops".into(),
            webhook: Some("https://oapi.dingtalk.com/robot/send?access_token=t".into()),
            ..RawReceiver::default()
        }
    }

    #[test]
    fn a_route_with_a_zero_group_interval_is_refused_like_the_root() {
        let route = |group_interval: &str| RawNotify {
            routes: Some(vec![RawRoute {
                matchers: vec!["severity=critical".into()],
                receiver: "ops".into(),
                continue_: None,
                group_by: None,
                group_wait: None,
                group_interval: Some(group_interval.into()),
                repeat_interval: None,
                repeat_intervals: None,
            }]),
            ..RawNotify::default()
        };
        let check = |raw| {
            validate(
                raw,
                vec![receiver()],
                None,
                NotifyFlags::default(),
                Language::default(),
            )
        };
        let (key, reason) = check(route("0s")).expect_err("refused");
        assert_eq!(key, "notify.routes[0].repeat_interval", "{reason}");
        assert!(check(route("1m")).is_ok());
    }

    #[test]
    fn send_timeout_and_history_retention_have_defaults_and_bounds() {
        let check = |notify: RawNotify, receiver: RawReceiver| {
            validate(
                notify,
                vec![receiver],
                None,
                NotifyFlags::default(),
                Language::default(),
            )
        };
        let config = check(RawNotify::default(), receiver()).expect("defaults");
        assert_eq!(config.receivers[0].send_timeout, Duration::from_secs(10));
        assert_eq!(config.history_retention, Duration::from_secs(7 * 24 * 3600));
        let timeout = |t: &str| {
            check(
                RawNotify::default(),
                RawReceiver {
                    send_timeout: Some(t.into()),
                    ..receiver()
                },
            )
        };
        assert_eq!(
            timeout("1s").unwrap().receivers[0].send_timeout,
            Duration::from_secs(1)
        );
        for bad in ["0s", "61s", "soon"] {
            let (key, reason) = timeout(bad).expect_err(bad);
            assert_eq!(key, "receivers[0].send_timeout", "{bad}: {reason}");
        }
        let retention = |r: &str| {
            check(
                RawNotify {
                    history_retention: Some(r.into()),
                    ..RawNotify::default()
                },
                receiver(),
            )
        };
        assert_eq!(
            retention("30d").unwrap().history_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        for bad in ["0s", "30s", "400d", "a week"] {
            let (key, reason) = retention(bad).expect_err(bad);
            assert_eq!(key, "notify.history_retention", "{bad}: {reason}");
        }
    }
}
