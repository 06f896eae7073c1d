//! Retiring agents: a decommissioned agent (or a whole host) leaves the fleet — its state, its
//! alerts, its place in the remembered fleet — and is announced once. Snapshots its sidecar
//! instance still sends for it are ignored; a restarted sidecar (a new instance) may bring it
//! back.

use std::time::{Duration, SystemTime};

use super::{Fleet, Now};

/// Announcements waiting for the notifier; older ones go first when a flood passes this.
const MAX_ANNOUNCEMENTS: usize = 1000;

/// Why an agent left the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// An operator retired it (RetireAgent).
    Operator,
    /// Silent for longer than `--forget-after`.
    Silent(Duration),
}

/// An agent that left the fleet, to be announced once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub host: String,
    pub agent: String,
    pub reason: RetireReason,
    pub at: SystemTime,
}

impl Fleet {
    /// Removes `agent` of `host` (every agent and the host itself when `None`); returns the
    /// agents removed.
    pub fn retire(
        &self,
        host: &str,
        agent: Option<&str>,
        reason: RetireReason,
        now: Now,
    ) -> Vec<String> {
        let mut state = self.lock();
        let names: Vec<String> = state
            .agents
            .keys()
            .filter(|(h, a)| h == host && agent.is_none_or(|x| x == a))
            .map(|(_, a)| a.clone())
            .collect();
        let instance = state
            .sidecars
            .get(host)
            .map(|s| s.hello.instance_id.clone())
            .unwrap_or_default();
        for name in &names {
            state.agents.remove(&(host.to_owned(), name.clone()));
            state
                .retired
                .insert((host.to_owned(), name.clone()), instance.clone());
            if state.announcements.len() == MAX_ANNOUNCEMENTS {
                state.announcements.remove(0);
            }
            state.announcements.push(Retired {
                host: host.to_owned(),
                agent: name.clone(),
                reason,
                at: now.wall,
            });
        }
        match agent {
            None => {
                state.sidecars.remove(host);
            }
            Some(agent) => {
                if let Some(sidecar) = state.sidecars.get_mut(host) {
                    sidecar.hello.agents.retain(|a| a != agent);
                }
            }
        }
        if !names.is_empty() || agent.is_none() {
            state.membership += 1;
            drop(state);
            self.alerts_changed.notify_one();
        }
        names
    }

    /// Whether snapshots of `agent` from this sidecar instance are to be ignored.
    pub(super) fn is_retired(
        retired: &std::collections::HashMap<(String, String), String>,
        host: &str,
        agent: &str,
        instance: &str,
    ) -> bool {
        // Judged on every snapshot: no key to build while nothing is retired.
        !retired.is_empty()
            && retired
                .get(&(host.to_owned(), agent.to_owned()))
                .is_some_and(|i| i == instance)
    }

    /// Retirements not yet announced (each is handed out once).
    pub fn take_announcements(&self) -> Vec<Retired> {
        std::mem::take(&mut self.lock().announcements)
    }

    /// Agents whose sidecar has been gone longer than `after` leave the fleet, announced.
    pub fn forget_silent(&self, after: Duration, now: Now) -> Vec<String> {
        let gone: Vec<String> = {
            let state = self.lock();
            state
                .sidecars
                .values()
                .filter(|s| !s.connected)
                .filter(|s| {
                    now.wall
                        .duration_since(s.since)
                        .is_ok_and(|silent| silent > after)
                })
                .map(|s| s.hello.host.clone())
                .collect()
        };
        let mut out = Vec::new();
        for host in gone {
            for agent in self.retire(&host, None, RetireReason::Silent(after), now) {
                out.push(format!("{host}/{agent}"));
            }
        }
        out
    }
}
