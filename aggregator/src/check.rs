//! `flumewatch-aggregator check-config FILE…`: validate config and rule files without starting.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::config::{read_file, ConfigError};
use crate::rules::{RuleError, RuleSet};

/// Checks each file; on success returns the report (one line per rule), on the first error
/// returns it (it names the file, the key path and what is wrong).
pub fn check_config(
    files: &[impl AsRef<Path>],
    poll_interval: Duration,
) -> Result<String, ConfigError> {
    let mut report = String::new();
    for path in files {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| RuleError {
            file: path.display().to_string(),
            path: "(syntax)".into(),
            reason: flumewatch_process::describe_toml_error(&text, &e),
        })?;
        let is_rule_file = ["rule", "use_defaults", "disable"]
            .iter()
            .any(|k| table.contains_key(*k));
        let rules = if is_rule_file {
            RuleSet::load(Some(path))?
        } else {
            let config = read_file(path)?.validate_with(false)?;
            let state = match &config.replication {
                None => format!("state_dir {}", config.state_dir.display()),
                Some(r) => format!(
                    "state_url postgres://{}/{}, replica {}, failover {}",
                    r.database
                        .get_hosts()
                        .iter()
                        .map(|h| match h {
                            postgres::config::Host::Tcp(name) => name.clone(),
                            postgres::config::Host::Unix(path) => path.display().to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    r.database.get_dbname().unwrap_or(""),
                    r.ha.replica,
                    humantime::format_duration(r.ha.failover)
                ),
            };
            let _ = writeln!(
                report,
                "{}: aggregator config ok (grpc_listen {}, {state})",
                path.display(),
                config.grpc_listen,
            );
            let names: Vec<&str> = config
                .notify
                .receivers
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            let _ = writeln!(
                report,
                "{}: {} receivers ({}), {} routes, {} inhibition rules",
                path.display(),
                names.len(),
                names.join(", "),
                config.notify.routes.len(),
                config.notify.inhibit.len()
            );
            config.rules.as_ref().clone()
        };
        let _ = writeln!(
            report,
            "{}: {} rules (detection: worst case after onset at {} polls)",
            path.display(),
            rules.rules.len(),
            humantime::format_duration(poll_interval)
        );
        for rule in &rules.rules {
            let target = match rule.scope {
                crate::rules::Scope::Component => format!(
                    "component[{}]",
                    rule.kinds
                        .iter()
                        .map(|k| flumewatch_proto::model::vocabulary::kind_name(*k)
                            .to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                scope => scope.as_str().to_owned(),
            };
            let hold = match (rule.hold.for_.is_zero(), rule.hold.for_polls) {
                (true, 0 | 1) => "-".to_owned(),
                (true, polls) => format!("{polls} polls"),
                (false, 0 | 1) => humantime::format_duration(rule.hold.for_).to_string(),
                // Both must hold: the longer of the two.
                (false, polls) => format!(
                    "{},{polls} polls",
                    humantime::format_duration(rule.hold.for_)
                ),
            };
            let _ = writeln!(
                report,
                "  {:<24} {:<8} {:<26} hold {:<8} detect ≤{:<6} {}  [{}]",
                rule.name,
                rule.severity.as_str(),
                target,
                hold,
                humantime::format_duration(rule.detection(poll_interval)).to_string(),
                rule.condition,
                rule.source
            );
        }
    }
    Ok(report)
}
