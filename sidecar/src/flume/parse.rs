//! Flume's all-string metrics JSON → typed components. The only place Flume's strings are read.
//!
//! A payload that is not an object of objects is rejected whole (`PayloadError`); a single value
//! that cannot be read is kept verbatim in the component's `unknown` map with a problem noted,
//! so one odd vendor attribute never hides the rest of the agent.

use std::borrow::Cow;

use serde_json::Value;

use super::json::{Body, Object, Scalar};

use flumewatch_proto::model::snapshot::{
    Component, Gauge, MAX_COMPONENTS, MAX_NAME, MAX_UNKNOWN, MAX_UNKNOWN_TEXT,
};
use flumewatch_proto::model::vocabulary::{self, Attribute};

/// Java's `Double.MAX_VALUE` as `Double.toString` prints it: Flume's fill percentage when the
/// capacity is 0 (Kafka channels, pseudo-transaction channels, a file channel that failed to start).
const JAVA_DOUBLE_MAX: f64 = f64::MAX;
/// Above this a double no longer holds every whole number exactly.
const EXACT_DOUBLE_MAX: f64 = 9_007_199_254_740_992.0;

/// Why a response body is not Flume metrics. Never retryable on the same body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("empty body")]
    Empty,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("expected a JSON object of components, got {0}")]
    NotAnObject(&'static str),
    #[error("component {key:?} is {found}, not an object of attributes")]
    ComponentNotAnObject { key: String, found: &'static str },
    #[error("{count} components, more than the {max} a snapshot may hold")]
    TooManyComponents { count: usize, max: usize },
    #[error("a component key is {len} bytes long, more than {max}")]
    NameTooLong { len: usize, max: usize },
}

/// Reads one `/metrics` body.
pub fn parse_metrics(body: &[u8]) -> Result<Vec<Component>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let Object(components) = serde_json::from_slice::<Body<'_>>(body)
        .map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let components = components.map_err(PayloadError::NotAnObject)?;
    if components.len() > MAX_COMPONENTS {
        return Err(PayloadError::TooManyComponents {
            count: components.len(),
            max: MAX_COMPONENTS,
        });
    }
    let mut parsed = Vec::with_capacity(components.len());
    for (key, attributes) in components {
        if key.len() > MAX_NAME {
            return Err(PayloadError::NameTooLong {
                len: key.len(),
                max: MAX_NAME,
            });
        }
        let Object(Ok(attributes)) = attributes else {
            return Err(PayloadError::ComponentNotAnObject {
                found: attributes.0.err().unwrap_or("an object"),
                key: shorten(&key).to_owned(),
            });
        };
        parsed.push(parse_component(&key, attributes));
    }
    // Flume prints components in HashMap order; a stable order makes snapshots comparable.
    parsed.sort_by(|a, b| (a.kind_name.as_str(), &a.name).cmp(&(b.kind_name.as_str(), &b.name)));
    Ok(parsed)
}

/// `attributes` sorted by name, duplicates resolved (see [`super::json`]).
fn parse_component(key: &str, attributes: Vec<(Cow<'_, str>, Scalar<'_>)>) -> Component {
    let (kind_name, name) = match key.split_once('.') {
        Some((kind, name)) => (kind.to_owned(), name.to_owned()),
        // Not Flume's "TYPE.name" form: fall back to the Type attribute, keep the key as the name.
        None => (
            attributes
                .iter()
                .find(|(name, _)| name == "Type")
                .and_then(|(_, value)| match value {
                    Scalar::Str(text) => Some(text.as_ref()),
                    _ => None,
                })
                .filter(|t| t.len() <= MAX_NAME)
                .unwrap_or("")
                .to_owned(),
            key.to_owned(),
        ),
    };
    let mut component = Component {
        kind: vocabulary::kind(&kind_name),
        kind_name,
        name,
        ..Component::default()
    };
    for (attribute, value) in attributes {
        let text = match value {
            Scalar::Str(text) => text,
            // Flume prints strings only; third-party counters may not. Read scalars by their text.
            Scalar::Printed(text) => Cow::Owned(text),
            Scalar::Other(other) => {
                note(
                    &mut component,
                    format!("{}: {} value", shorten(&attribute), json_type(&other)),
                );
                keep_unknown(&mut component, attribute.into_owned(), other.to_string());
                continue;
            }
        };
        read_attribute(&mut component, &attribute, &text);
    }
    component.counters.sort_by_key(|(c, _)| *c as i32);
    component.gauges.sort_by_key(|(g, _)| *g as i32);
    component
}

fn read_attribute(component: &mut Component, attribute: &str, text: &str) {
    let Some(known) = vocabulary::attribute(attribute) else {
        keep_unknown(component, attribute.to_owned(), text.to_owned());
        return;
    };
    let trimmed = text.trim();
    let problem = match known {
        Attribute::Type => {
            if trimmed != component.kind_name {
                keep_unknown(component, attribute.to_owned(), text.to_owned());
            }
            return;
        }
        Attribute::StartTime => match read_u64(trimmed) {
            Ok(ms) => {
                component.start_time_ms = (ms != 0).then_some(ms);
                return;
            }
            Err(why) => why,
        },
        Attribute::StopTime => match read_u64(trimmed) {
            Ok(ms) => {
                component.stop_time_ms = (ms != 0).then_some(ms);
                return;
            }
            Err(why) => why,
        },
        Attribute::Counter(counter) => match read_u64(trimmed) {
            Ok(v) => {
                component.counters.push((counter, v));
                return;
            }
            Err(why) => why,
        },
        Attribute::Gauge(gauge) if gauge != Gauge::ChannelFillPercentage => {
            // Sizes and counts are Java longs.
            match read_u64(trimmed) {
                Ok(v) if v <= i64::MAX as u64 => {
                    component.gauges.push((gauge, v as f64));
                    return;
                }
                Ok(_) => "too large for a Java long",
                Err(why) => why,
            }
        }
        Attribute::Gauge(gauge) => match trimmed.parse::<f64>() {
            Ok(v) if v == JAVA_DOUBLE_MAX => {
                // "unknown" (capacity 0), never "full": no gauge, raw text kept.
                keep_unknown(component, attribute.to_owned(), text.to_owned());
                return;
            }
            // A share of a size: never below zero.
            Ok(v) if !v.is_finite() => "not a finite number",
            Ok(v) if v < 0.0 => "negative",
            Ok(v) => {
                if v > 100.0 {
                    // Kept: a channel reported over-full must still raise its alert.
                    note(component, format!("{attribute}: above 100: {v}"));
                }
                component.gauges.push((gauge, v));
                return;
            }
            Err(_) => "not a number",
        },
        Attribute::Flag(flag) => match trimmed.to_ascii_lowercase().as_str() {
            "true" => {
                component.flags.push((flag, true));
                return;
            }
            "false" => {
                component.flags.push((flag, false));
                return;
            }
            _ => "not true or false",
        },
    };
    note(
        component,
        format!("{}: {problem}: {:?}", shorten(attribute), shorten(text)),
    );
    keep_unknown(component, attribute.to_owned(), text.to_owned());
}

/// Keeps an attribute this build cannot read, within limits: a hostile agent must not be able
/// to make every snapshot (and every history entry upstream) huge.
fn keep_unknown(component: &mut Component, mut attribute: String, mut text: String) {
    if component.unknown.len() >= MAX_UNKNOWN {
        note(
            component,
            format!("more than {MAX_UNKNOWN} unknown attributes; the rest are dropped"),
        );
        return;
    }
    if attribute.len() > MAX_NAME {
        note(
            component,
            format!(
                "an attribute name is {} bytes long; cut to {MAX_NAME}",
                attribute.len()
            ),
        );
        attribute.truncate(floor_char_boundary(&attribute, MAX_NAME));
    }
    if text.len() > MAX_UNKNOWN_TEXT {
        note(
            component,
            format!(
                "{}: value is {} bytes long; cut to {MAX_UNKNOWN_TEXT}",
                shorten(&attribute),
                text.len()
            ),
        );
        text.truncate(floor_char_boundary(&text, MAX_UNKNOWN_TEXT));
    }
    component.unknown.insert(attribute, text);
}

/// Notes a problem once, and at most `MAX_UNKNOWN` of them (the last says more were left out).
fn note(component: &mut Component, problem: String) {
    let problems = &mut component.problems;
    if problems.len() > MAX_UNKNOWN || problems.contains(&problem) {
        return;
    }
    if problems.len() == MAX_UNKNOWN {
        problems.push("more problems left out".into());
    } else {
        problems.push(problem);
    }
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    (0..=max.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// Reads a Java long that must not be negative. Accepts an integral double form (`"5.0"`)
/// because some third-party counters are doubles.
fn read_u64(text: &str) -> Result<u64, &'static str> {
    if let Ok(v) = text.parse::<u64>() {
        return Ok(v);
    }
    if text.starts_with('-') && text.parse::<i64>().is_ok() {
        return Err("negative");
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= EXACT_DOUBLE_MAX => {
            Ok(v as u64)
        }
        Ok(v) if v.is_finite() && v >= 0.0 && v > EXACT_DOUBLE_MAX => {
            Err("too large to be read exactly in this form")
        }
        Ok(_) => Err("not a whole non-negative number"),
        Err(_) => Err("not a number"),
    }
}

fn shorten(text: &str) -> &str {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
