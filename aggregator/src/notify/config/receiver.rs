//! A receiver's settings: its DingTalk robot (webhook and signing secret from the file, an
//! environment variable or a file of their own; they never print), mentions, layout, send
//! timeout and whether muted alerts' resolutions are told.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{at, duration, Invalid};
use crate::alert::Severity;
use crate::notify::dingtalk::client::Robot;
use crate::notify::dingtalk::message::Style;
use crate::rules::Language;
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    pub name: String,
    pub webhook: Option<String>,
    pub webhook_env: Option<String>,
    pub webhook_file: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub keyword: Option<String>,
    pub at_mobiles: Option<BTreeMap<String, Vec<String>>>,
    pub at_user_ids: Option<BTreeMap<String, Vec<String>>>,
    pub at_all_on_critical: Option<bool>,
    /// A message layout file (see `dingtalk::message::check_template`).
    pub template_file: Option<String>,
    /// How long one POST to the robot may take before it is given up and retried [default: 10s].
    pub send_timeout: Option<String>,
    /// Announce the resolution of an alert that was notified and then silenced
    /// [default: true]: whoever was paged should learn it is over.
    pub send_resolved_when_muted: Option<bool>,
    /// A short daily message with the fleet's state, at this time of day ("09:00") [default:
    /// none]: a group that stops getting it knows flumewatch itself is in trouble.
    pub heartbeat: Option<String>,
    /// The UTC offset `heartbeat` is read at [default: "+08:00"].
    pub heartbeat_utc_offset: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub robot: Robot,
    pub style: Style,
    /// Each POST is given up after this (and retried with the same msgUuid).
    pub send_timeout: Duration,
    /// See [`RawReceiver::send_resolved_when_muted`].
    pub send_resolved_when_muted: bool,
    pub heartbeat: Option<crate::notify::heartbeat::Heartbeat>,
}

const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A robot that needs longer is down; the message waits in the outbox for the retry.
const MAX_SEND_TIMEOUT: Duration = Duration::from_secs(60);

impl Receiver {
    /// The simple case's robot, from `--dingtalk-webhook` and `--dingtalk-secret`.
    pub(super) fn from_flags(webhook: String, secret: Option<String>, language: Language) -> Self {
        Receiver {
            name: "dingtalk".into(),
            robot: Robot {
                webhook: Secret::new(webhook),
                secret: secret.map(Secret::new),
            },
            style: Style {
                language,
                ..Style::default()
            },
            send_timeout: DEFAULT_SEND_TIMEOUT,
            send_resolved_when_muted: true,
            heartbeat: None,
        }
    }
}

fn secret(
    key: &str,
    value: Option<String>,
    env: Option<String>,
    file: Option<String>,
) -> Result<Option<Secret>, Invalid> {
    match (value, env, file) {
        (Some(v), None, None) => Ok(Some(Secret::new(v))),
        (None, Some(var), None) => std::env::var(&var)
            .map(|v| Some(Secret::new(v.trim())))
            .map_err(|_| {
                at(
                    format!("{key}_env"),
                    format!("environment variable {var} is not set"),
                )
            }),
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map(|v| Some(Secret::new(v.trim())))
            .map_err(|e| at(format!("{key}_file"), format!("{path}: {e}"))),
        (None, None, None) => Ok(None),
        _ => Err(at(
            key,
            format!("give one of {key}, {key}_env or {key}_file"),
        )),
    }
}

fn severity_lists(
    key: &str,
    raw: Option<BTreeMap<String, Vec<String>>>,
) -> Result<BTreeMap<Severity, Vec<String>>, Invalid> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(s, list)| {
            s.parse::<Severity>()
                .map(|s| (s, list))
                .map_err(|e| at(format!("{key}.{s}"), e))
        })
        .collect()
}

pub(super) fn check_webhook(key: &str, url: &str) -> Result<(), Invalid> {
    // The URL holds the access token: say what is wrong without repeating it.
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(at(key, "not an http(s) URL")),
    }
}

pub(super) fn validate(r: RawReceiver, language: Language) -> Result<Receiver, Invalid> {
    let webhook = secret("webhook", r.webhook, r.webhook_env, r.webhook_file)?
        .ok_or_else(|| at("webhook", "a receiver needs its robot's webhook URL"))?;
    check_webhook("webhook", webhook.expose())?;
    let secret = secret("secret", r.secret, r.secret_env, r.secret_file)?;
    let template = match &r.template_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| at("template_file", format!("{path}: {e}")))?;
            crate::notify::dingtalk::message::check_template(&text)
                .map_err(|e| at("template_file", format!("{path}: {e}")))?;
            Some(text)
        }
    };
    let send_timeout = duration(
        "send_timeout",
        r.send_timeout.as_deref(),
        DEFAULT_SEND_TIMEOUT,
    )?;
    if send_timeout.is_zero() || send_timeout > MAX_SEND_TIMEOUT {
        return Err(at("send_timeout", "must be above 0 and at most 60s"));
    }
    Ok(Receiver {
        name: r.name,
        robot: Robot { webhook, secret },
        send_timeout,
        style: Style {
            language,
            keyword: r.keyword,
            at_mobiles: severity_lists("at_mobiles", r.at_mobiles)?,
            at_user_ids: severity_lists("at_user_ids", r.at_user_ids)?,
            at_all_on_critical: r.at_all_on_critical.unwrap_or(false),
            template,
        },
        send_resolved_when_muted: r.send_resolved_when_muted.unwrap_or(true),
        heartbeat: match r.heartbeat.as_deref() {
            None => None,
            Some(at) => Some(
                crate::notify::heartbeat::Heartbeat::parse(
                    at,
                    r.heartbeat_utc_offset.as_deref().unwrap_or("+08:00"),
                )
                .map_err(|e| ("heartbeat".to_owned(), e))?,
            ),
        },
    })
}
