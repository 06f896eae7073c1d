//! Parsing and checking single values: agent endpoints (`[NAME=]URL`, plain http), http(s) URLs, host and
//! agent names, labels and durations. Each error names the setting it came from.

use std::time::Duration;

use super::{invalid, ConfigError, FlumeEndpoint};

pub(super) fn parse_agents(specs: Vec<String>) -> Result<Vec<FlumeEndpoint>, ConfigError> {
    if specs.is_empty() {
        return Err(invalid("flume", "at least one agent endpoint is needed"));
    }
    let mut agents: Vec<FlumeEndpoint> = Vec::new();
    for spec in specs {
        // "NAME=URL", but a URL may itself hold '=' in its query: only a prefix without ':' or '/' is a name.
        let (name, url_text) = match spec.split_once('=') {
            Some((name, url)) if !name.contains([':', '/']) => (Some(name.trim()), url.trim()),
            _ => (None, spec.trim()),
        };
        let url = check_http_url("flume", url_text)?;
        crate::flume::check_url(&url)
            .map_err(|e| invalid("flume", format!("{url_text:?}: {e}")))?;
        let name = match name {
            Some(name) => name.to_owned(),
            None => format!("flume-{}", url.port_or_known_default().unwrap_or(80)),
        };
        check_name("flume", &name)?;
        if agents.iter().any(|a| a.name == name) {
            return Err(invalid(
                "flume",
                format!("agent name {name:?} is used twice; name them with NAME=URL"),
            ));
        }
        agents.push(FlumeEndpoint { name, url });
    }
    Ok(agents)
}

pub(super) fn check_http_url(key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(text).map_err(|e| invalid(key, format!("{text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            key,
            format!("{text:?}: expected http://HOST:PORT or https://HOST:PORT"),
        ));
    }
    Ok(url)
}

/// Host and agent names end up in labels, messages and file names: keep them plain.
pub(super) fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if !is_plain_name(name) {
        return Err(invalid(
            key,
            format!("{name:?}: use 1-128 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// 1-128 letters, digits, '-', '_' or '.': what [`check_name`] accepts, for names that are not
/// settings (agents found by discovery).
pub(crate) fn is_plain_name(name: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !name.is_empty() && name.len() <= 128 && name.chars().all(plain)
}

pub(super) fn check_label(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || key.len() > 64 {
        return Err(invalid(
            "label",
            format!(
                "{key:?}: a label key is a letter or '_' then letters, digits or '_' (at most 64)"
            ),
        ));
    }
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(invalid(
            "label",
            format!("{key}: the value must be 1-256 characters without control characters"),
        ));
    }
    Ok(())
}

pub(super) fn parse_duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|e| invalid(key, format!("{text:?}: {e} (e.g. 10s, 500ms, 1m)"))),
    }
}
