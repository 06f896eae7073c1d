//! The fleet remembered across restarts: which sidecars (and their agents) belong to it. The
//! state database keeps their Hellos; at start they come back as disconnected, silent from
//! that moment, so one that never returns raises SidecarSilent within the usual time, as if
//! the aggregator had never stopped.

use super::sidecar::{Hello, SidecarState};
use super::{Fleet, Now};

impl Fleet {
    /// Every known sidecar's Hello, for the state database.
    pub fn known_sidecars(&self) -> Vec<Hello> {
        let state = self.lock();
        let mut out: Vec<Hello> = state.sidecars.values().map(|s| s.hello.clone()).collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// Changes whenever a sidecar joins or says something new about itself: the known fleet
    /// needs writing again.
    pub fn membership(&self) -> u64 {
        self.lock().membership
    }

    /// Sidecars known before a restart, listed as disconnected and silent since `now`: a
    /// sidecar that reconnects takes its place again; one that does not is missed.
    pub fn remember(&self, known: Vec<Hello>, now: Now) {
        let mut state = self.lock();
        for hello in known {
            if state.sidecars.contains_key(&hello.host) {
                continue;
            }
            state.add_agents(&hello);
            state
                .sidecars
                .insert(hello.host.clone(), SidecarState::known(hello, now));
        }
    }
}
