//! Label matchers (`name=value`, `name!=value`, `name=~glob`, `name!~glob`), as routes,
//! silences and inhibition rules use them.

use std::collections::BTreeMap;
use std::fmt;

use crate::rules::Glob;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Glob,
    NotGlob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub op: MatchOp,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!("{name:?} is not a label name"));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
            op,
        })
    }

    /// Parses `name=value`, `name!=value`, `name=~glob` or `name!~glob`.
    pub fn parse(text: &str) -> Result<Self, String> {
        for (token, op) in [
            ("!=", MatchOp::NotEqual),
            ("=~", MatchOp::Glob),
            ("!~", MatchOp::NotGlob),
            ("=", MatchOp::Equal),
        ] {
            if let Some((name, value)) = text.split_once(token) {
                return Self::new(name.trim(), op, value.trim().trim_matches('"'));
            }
        }
        Err(format!(
            "{text:?}: expected name=value, name!=value, name=~glob or name!~glob"
        ))
    }

    /// A missing label counts as the empty string, as in Alertmanager.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Glob => Glob::new(&self.value).matches(value),
            MatchOp::NotGlob => !Glob::new(&self.value).matches(value),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Glob => "=~",
            MatchOp::NotGlob => "!~",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let labels = BTreeMap::from([
            ("cluster".to_owned(), "bj-log".to_owned()),
            ("severity".to_owned(), "critical".to_owned()),
        ]);
        assert!(Matcher::parse("cluster=bj-log").unwrap().matches(&labels));
        assert!(Matcher::parse("cluster=~bj-*").unwrap().matches(&labels));
        assert!(!Matcher::parse("cluster!~bj-*").unwrap().matches(&labels));
        assert!(Matcher::parse("host!=h1").unwrap().matches(&labels));
        assert!(
            Matcher::parse("host=").unwrap().matches(&labels),
            "missing is empty"
        );
        assert!(Matcher::parse("1bad=x").is_err());
        assert!(Matcher::parse("novalue").is_err());
    }
}
