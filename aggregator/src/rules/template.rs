//! Summary and description templates: `{host}`, `{value}` … checked when loaded, filled per alert.

use std::collections::BTreeMap;

/// Names a template may use; `{label.NAME}` reads any alert label.
pub const PLACEHOLDERS: &[&str] = &[
    "alertname",
    "severity",
    "host",
    "agent",
    "cluster",
    "kind",
    "component",
    "value",
    "threshold",
    "peer",
    "peer_kind",
    "fill",
    "eta",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    Label(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    if let Some(label) = name.strip_prefix("label.") {
                        parts.push(Part::Label(label.to_owned()));
                    } else if PLACEHOLDERS.contains(&name.as_str()) {
                        parts.push(Part::Field(name));
                    } else {
                        return Err(format!(
                            "unknown placeholder {{{name}}} (use {} or {{label.NAME}})",
                            PLACEHOLDERS
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                '}' => return Err("a lone '}' (write '}}' for a literal brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// Fills the template; a field or label the alert does not have renders as "-".
    pub fn render(
        &self,
        fields: &BTreeMap<&str, String>,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => {
                    out.push_str(fields.get(name.as_str()).map_or("-", String::as_str))
                }
                Part::Label(name) => out.push_str(labels.get(name).map_or("-", String::as_str)),
            }
        }
        out
    }
}

/// A number the way operators read it: integers without decimals, others to two places.
pub fn format_value(value: f64) -> String {
    Value(value).to_string()
}

/// A number of seconds as a rough span in the message language ("4 分钟", "about 4 min"):
/// how long until a channel is full is an estimate, not a timestamp.
pub fn format_eta(seconds: f64, language: super::Language) -> String {
    let seconds = seconds.max(0.0);
    let (n, zh, en) = if seconds < 90.0 {
        (seconds.round(), "秒", "s")
    } else if seconds < 90.0 * 60.0 {
        ((seconds / 60.0).round(), "分钟", "min")
    } else {
        ((seconds / 3600.0).round(), "小时", "h")
    };
    match language {
        super::Language::Zh => format!("{} {zh}", n as i64),
        super::Language::En => format!("{} {en}", n as i64),
    }
}

/// A value as people read it, written straight into a message: whole numbers without a
/// fraction (through the integer formatter: precision formatting of floats is slow when a
/// message lists hundreds of them), others with two decimals.
#[derive(Debug, Clone, Copy)]
pub struct Value(pub f64);

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        if value.fract() == 0.0 && value.abs() < 1e15 {
            if value == 0.0 && value.is_sign_negative() {
                f.write_str("-0")
            } else {
                write!(f, "{}", value as i64)
            }
        } else {
            write!(f, "{value:.2}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_fields_and_labels() {
        let t = Template::parse("通道 {component} 使用率 {value}% ({label.env}) {{x}}").unwrap();
        let fields = BTreeMap::from([
            ("component", "c1".to_owned()),
            ("value", format_value(97.5)),
        ]);
        let labels = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        assert_eq!(
            t.render(&fields, &labels),
            "通道 c1 使用率 97.50% (prod) {x}"
        );
        for (value, text) in [
            (9700.0, "9700"),
            (-0.0, "-0"),
            (0.5, "0.50"),
            (1e16, "10000000000000000.00"),
        ] {
            assert_eq!(format_value(value), text, "{value}");
        }
    }

    #[test]
    fn eta_reads_as_a_rough_span() {
        use super::super::Language::{En, Zh};
        assert_eq!(format_eta(44.6, Zh), "45 秒");
        assert_eq!(format_eta(250.0, Zh), "4 分钟");
        assert_eq!(format_eta(250.0, En), "4 min");
        assert_eq!(format_eta(7200.0, En), "2 h");
        assert_eq!(format_eta(-3.0, En), "0 s");
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        assert!(Template::parse("{hots}").unwrap_err().contains("{hots}"));
        assert!(Template::parse("a } b").is_err());
    }
}
