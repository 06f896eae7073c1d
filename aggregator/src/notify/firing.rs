//! Firing-state persistence: the state database's list of firing alerts kept current, so a
//! restart resumes them instead of announcing them anew.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::Notifier;
use crate::alert::{Alert, AlertStatus};

impl Notifier {
    /// Keeps the state database's list of firing alerts current, so a restart resumes them.
    /// Alerts not (yet) re-evaluated after a restart are kept until `forget_absent`.
    pub(super) fn persist_firing(
        &self,
        alerts: &[Alert],
        persisted: &mut HashMap<u64, (SystemTime, SystemTime)>,
        forget_absent: bool,
    ) {
        let firing: HashMap<u64, (SystemTime, SystemTime)> = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| {
                (
                    a.fingerprint,
                    (a.active_since, a.firing_since.unwrap_or(a.active_since)),
                )
            })
            .collect();
        let present: BTreeSet<u64> = alerts.iter().map(|a| a.fingerprint).collect();
        let started: Vec<(u64, SystemTime, SystemTime)> = firing
            .iter()
            .filter(|(fp, t)| persisted.get(*fp) != Some(*t))
            .map(|(fp, (a, f))| (*fp, *a, *f))
            .collect();
        let stopped: Vec<u64> = persisted
            .keys()
            .filter(|fp| !firing.contains_key(*fp) && (present.contains(*fp) || forget_absent))
            .copied()
            .collect();
        if started.is_empty() && stopped.is_empty() {
            return;
        }
        match self.store.sync_firing(&started, &stopped) {
            Ok(()) => {
                for (fp, a, f) in started {
                    persisted.insert(fp, (a, f));
                }
                for fp in stopped {
                    persisted.remove(&fp);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot record firing alerts"),
        }
    }
}
