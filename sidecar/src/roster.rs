//! The agents this sidecar polls: the explicit `--flume` entries, then those discovery added.
//! It only grows: an agent that disappears keeps being polled (its failed polls are how the
//! aggregator learns it is down) until the sidecar restarts without it.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::FlumeEndpoint;
use crate::discover::Discovered;

/// Agents one Hello may list: the aggregator refuses a Hello with more (`MAX_AGENTS` in its
/// `convert.rs`), and a refused Hello would stop every snapshot, not just the extra agents'.
pub const MAX_AGENTS: usize = 64;

/// Shared by the discovery loop (which adds) and the uplink (which lists the agents in every
/// Hello). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Roster {
    agents: Arc<Mutex<Vec<FlumeEndpoint>>>,
}

/// What one discovery scan changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Agents new to the roster, to start polling.
    pub added: Vec<FlumeEndpoint>,
    /// Agents found but left out because the roster holds [`MAX_AGENTS`].
    pub left_out: usize,
}

// === impl Roster ===

impl Roster {
    pub fn new(explicit: Vec<FlumeEndpoint>) -> Self {
        Self {
            agents: Arc::new(Mutex::new(explicit)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<FlumeEndpoint>> {
        // A list of names and URLs cannot be left half-updated: keep it after a panic.
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every agent polled, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|a| a.name.clone()).collect()
    }

    /// Agents polled: one snapshot each per round.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn agents(&self) -> Vec<FlumeEndpoint> {
        self.lock().clone()
    }

    /// Adds the discovered agents not polled yet. See [`admit`].
    pub fn admit(&self, found: &[Discovered]) -> Admitted {
        admit(&mut self.lock(), found)
    }
}

/// Adds to `agents` each discovered agent whose port is not polled already, at
/// `http://127.0.0.1:PORT/metrics`:
///
/// - an agent already polled at that port on loopback (an explicit `--flume` entry, or one found
///   earlier) wins: the found one is not added, whatever its name;
/// - a name already taken by an agent on another port (every host's agent is often `a1`) is
///   made `NAME-PORT`, so both are polled under names that stay apart; if that is taken too,
///   the found agent is left out;
/// - never more than [`MAX_AGENTS`] in all.
pub fn admit(agents: &mut Vec<FlumeEndpoint>, found: &[Discovered]) -> Admitted {
    let mut admitted = Admitted::default();
    for discovered in found {
        if agents.iter().any(|a| polls_local_port(a, discovered.port)) {
            continue;
        }
        if agents.len() >= MAX_AGENTS {
            admitted.left_out += 1;
            continue;
        }
        let taken = |name: &str| agents.iter().any(|a| a.name == name);
        let name = if taken(&discovered.name) {
            format!("{}-{}", discovered.name, discovered.port)
        } else {
            discovered.name.clone()
        };
        if taken(&name) {
            continue;
        }
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1:{}/metrics", discovered.port))
        else {
            continue;
        };
        let endpoint = FlumeEndpoint { name, url };
        agents.push(endpoint.clone());
        admitted.added.push(endpoint);
    }
    admitted
}

/// `agent` is polled on this machine at `port` (`127.0.0.1`, `localhost` or `::1`).
fn polls_local_port(agent: &FlumeEndpoint, port: u16) -> bool {
    // An IPv6 host comes bracketed (`[::1]`).
    let host = agent.url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    local && agent.url.port_or_known_default() == Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, url: &str) -> FlumeEndpoint {
        FlumeEndpoint {
            name: name.to_owned(),
            url: url.parse().expect("url"),
        }
    }

    fn found(name: &str, port: u16) -> Discovered {
        Discovered {
            name: name.to_owned(),
            port,
        }
    }

    fn names(agents: &[FlumeEndpoint]) -> Vec<&str> {
        agents.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn found_agents_are_polled_on_loopback() {
        let mut agents = Vec::new();
        let admitted = admit(&mut agents, &[found("a1", 34545)]);
        assert_eq!(
            admitted.added,
            vec![endpoint("a1", "http://127.0.0.1:34545/metrics")]
        );
        assert_eq!(agents, admitted.added);
        // Found again on the next scan: nothing new.
        assert_eq!(
            admit(&mut agents, &[found("a1", 34545)]),
            Admitted::default()
        );
    }

    #[test]
    fn explicit_entries_win_by_port_or_name() {
        let mut agents = vec![
            endpoint("collector", "http://localhost:34545/metrics"),
            endpoint("a1", "http://127.0.0.1:41414/metrics"),
            endpoint("remote", "http://10.0.0.7:5653/metrics"),
            endpoint("v6", "http://[::1]:7001/metrics"),
        ];
        let admitted = admit(
            &mut agents,
            &[
                // Same port as `collector`: already polled, under the explicit name.
                found("a9", 34545),
                // Same name as the explicit `a1`, another port: both polled.
                found("a1", 34546),
                // The port of a remote agent is not this machine's.
                found("local", 5653),
                found("x", 7001),
            ],
        );
        assert_eq!(names(&admitted.added), ["a1-34546", "local"]);
        assert_eq!(
            names(&agents),
            ["collector", "a1", "remote", "v6", "a1-34546", "local"]
        );
        // A second `a1` on yet another port is told apart the same way; one whose renamed
        // form is taken as well is left out rather than polled under a duplicate name.
        agents.push(endpoint("a2-7000", "http://10.0.0.8:1/metrics"));
        agents.push(endpoint("a2", "http://10.0.0.8:2/metrics"));
        let admitted = admit(&mut agents, &[found("a1", 34547), found("a2", 7000)]);
        assert_eq!(names(&admitted.added), ["a1-34547"]);
    }

    #[test]
    fn never_more_than_a_hello_may_list() {
        let mut agents = Vec::new();
        let many: Vec<Discovered> = (0..MAX_AGENTS as u16 + 5)
            .map(|i| found(&format!("a{i}"), 30000 + i))
            .collect();
        let admitted = admit(&mut agents, &many);
        assert_eq!(admitted.added.len(), MAX_AGENTS);
        assert_eq!(admitted.left_out, 5);
        assert_eq!(agents.len(), MAX_AGENTS);
    }

    #[test]
    fn the_shared_roster_lists_what_was_added() {
        let roster = Roster::new(vec![endpoint("a1", "http://127.0.0.1:1/metrics")]);
        let clone = roster.clone();
        clone.admit(&[found("a2", 2)]);
        assert_eq!(roster.names(), ["a1", "a2"]);
        assert_eq!(roster.agents().len(), 2);
    }
}
