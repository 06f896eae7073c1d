//! Firing-state persistence, its one owner: what was firing at the last stop is read once at
//! start and handed to the fleet to match, and the state database's list is kept current from
//! then on, so a restart resumes alerts instead of announcing them anew.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::store::{FiringRow, Store, StoreError};
use super::RETRY_STALLED;
use crate::alert::{Alert, AlertStatus};
use crate::fleet::Fleet;

/// How long after a start alerts that were firing before it may still resume; the fleet
/// forgets unmatched ones and this log stops keeping absent ones after it.
pub const RESTORE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The firing alerts as last written to the state database.
pub struct FiringLog {
    persisted: HashMap<u64, (SystemTime, SystemTime)>,
    started: Instant,
    /// The last write failed: what is stored is behind, so try again soon.
    behind: bool,
    /// Entries of alerts absent since the start have been dropped (the window has closed).
    swept: bool,
}

impl FiringLog {
    /// Reads what was firing at the last stop and gives it to `fleet` to match: call it before
    /// anything is judged.
    pub fn load(store: &Store, fleet: &Fleet) -> Result<Self, StoreError> {
        let firing = store.firing()?;
        fleet.restore_firing(firing.iter().cloned());
        Ok(Self {
            persisted: firing
                .into_iter()
                .map(|(fp, active, fired, _)| (fp, (active, fired)))
                .collect(),
            started: Instant::now(),
            behind: false,
            swept: false,
        })
    }

    /// Nothing known from before the start (a replica whose database is away at start).
    pub fn empty() -> Self {
        Self {
            persisted: HashMap::new(),
            started: Instant::now(),
            behind: false,
            swept: true,
        }
    }

    /// When alerts from before the start stop being waited for.
    fn window_end(&self) -> Instant {
        self.started + RESTORE_WINDOW
    }

    /// When this log next needs a [`sync`](Self::sync) of its own accord: a failed write to
    /// try again, or the window's end to sweep (kept even once past, until swept).
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let retry = self.behind.then(|| now + RETRY_STALLED);
        let sweep = (!self.swept).then(|| self.window_end());
        retry.into_iter().chain(sweep).min()
    }

    /// A [`sync`](Self::sync) is due even though no alert changed.
    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.behind || (!self.swept && now >= self.window_end())
    }

    /// Keeps the state database's list of firing alerts current, so a restart resumes them.
    /// Alerts not (yet) re-evaluated after a restart are kept until the window ends.
    pub(super) fn sync(&mut self, store: &Store, alerts: &[Alert], now: Instant) {
        let forget_absent = now >= self.window_end();
        self.swept |= forget_absent;
        let persisted = &mut self.persisted;
        let firing: HashMap<u64, ((SystemTime, SystemTime), &Alert)> = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| {
                (
                    a.fingerprint,
                    (
                        (a.active_since, a.firing_since.unwrap_or(a.active_since)),
                        a,
                    ),
                )
            })
            .collect();
        let present: BTreeSet<u64> = alerts.iter().map(|a| a.fingerprint).collect();
        let started: Vec<FiringRow> = firing
            .iter()
            .filter(|(fp, (t, _))| persisted.get(*fp) != Some(t))
            .map(|(fp, ((a, f), alert))| (*fp, *a, *f, place(alert)))
            .collect();
        let stopped: Vec<u64> = persisted
            .keys()
            .filter(|fp| !firing.contains_key(*fp) && (present.contains(*fp) || forget_absent))
            .copied()
            .collect();
        if started.is_empty() && stopped.is_empty() {
            self.behind = false;
            return;
        }
        match store.sync_firing(&started, &stopped) {
            Ok(()) => {
                self.behind = false;
                for (fp, a, f, _) in started {
                    persisted.insert(fp, (a, f));
                }
                for fp in stopped {
                    persisted.remove(&fp);
                }
            }
            Err(e) => {
                // Once per stretch of failures: a database outage must not flood the log.
                if !self.behind {
                    tracing::error!(error = %e, "cannot record firing alerts; trying again every second");
                }
                self.behind = true;
            }
        }
    }
}

/// Where an alert is, as the state database keeps it: "host\tagent" for an agent's alerts.
pub fn place(alert: &Alert) -> String {
    match (&alert.context.host, &alert.context.agent) {
        (Some(host), Some(agent)) => format!("{host}\t{agent}"),
        _ => String::new(),
    }
}
