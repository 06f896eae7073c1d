//! Live reload (SIGHUP or `Fleet/Reload`): re-read the config and rule files, validate, and put
//! rules, routes and receivers in force atomically without dropping streams or alert state. An
//! invalid new config is refused: the old one keeps running and the error is logged and kept.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::fleet::Fleet;
use crate::notify::config::NotifyConfig;

/// Produces the config as it is on disk now.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub failures: u64,
    /// Empty after a successful reload.
    pub last_error: String,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    source: Option<ConfigSource>,
    fleet: Fleet,
    notify: Arc<watch::Sender<NotifyConfig>>,
    status: Arc<Mutex<ReloadStatus>>,
}

impl Reloader {
    pub fn new(
        source: Option<ConfigSource>,
        fleet: Fleet,
        notify: Arc<watch::Sender<NotifyConfig>>,
    ) -> Self {
        Self {
            source,
            fleet,
            notify,
            status: Arc::default(),
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads; on success returns (rules, receivers) now in force.
    pub fn reload(&self) -> Result<(usize, usize), String> {
        let result = match &self.source {
            None => {
                Err("this aggregator was started without a config source to reload from".to_owned())
            }
            Some(source) => source().map_err(|e| e.to_string()),
        };
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.reloads += 1;
        match result {
            Ok(config) => {
                let counts = (config.rules.rules.len(), config.notify.receivers.len());
                self.fleet.set_rules(config.rules, config.language);
                self.notify.send_replace(config.notify);
                status.last_error.clear();
                tracing::info!(
                    rules = counts.0,
                    receivers = counts.1,
                    "configuration reloaded"
                );
                Ok(counts)
            }
            Err(e) => {
                status.failures += 1;
                status.last_error.clone_from(&e);
                tracing::error!(error = %e, "configuration reload refused; the previous configuration stays in force");
                Err(e)
            }
        }
    }
}
