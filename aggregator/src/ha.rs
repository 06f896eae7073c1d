//! Two or more aggregators on one PostgreSQL: every replica ingests and judges the whole
//! fleet, and one at a time holds the sender lease and delivers. This owns the lease: taking
//! it when it is free or expired, renewing it, giving it up on a planned stop, and telling the
//! notifier (a `watch`: the latest view wins) until when it is provably ours.
//!
//! "Provably": a renewal asked at local instant `t` makes the database's expiry at least
//! `t + ttl` (it is computed later, by the database's clock), so the holder counts its term
//! from `t` and stops sending before anyone else may start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::notify::store::postgres::{Peer, Pg};

/// A peer not seen for a whole lease term is reported missing: a sender that quiet has lost
/// its lease by then.
const PEER_MISSING_AFTER_TERMS: u32 = 1;

/// Settings of a replicated aggregator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// This replica's name in the lease and the replicas table (default: the host name).
    pub replica: String,
    /// Most time between the sender's death and the other replica taking over.
    pub failover: Duration,
}

impl HaConfig {
    /// The lease's term: two thirds of the failover bound, leaving the rest for the
    /// standby's next try and its first send.
    pub fn ttl(&self) -> Duration {
        self.failover * 2 / 3
    }

    /// How often the holder renews and a standby tries to take over.
    pub fn renew_every(&self) -> Duration {
        self.ttl() / 5
    }
}

/// What a replica is, for the notifier, Status and /metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// No replicas: SQLite, always the sender.
    Single,
    /// Holds the lease of this epoch until `valid_until` (local clock).
    Sender { epoch: i64, valid_until: Instant },
    /// Another replica holds the lease, or the database cannot be reached.
    Standby,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Sender { .. } => "sender",
            Role::Standby => "standby",
        }
    }

    /// The lease epoch held, valid or not.
    pub fn epoch(&self) -> Option<i64> {
        match self {
            Role::Sender { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// The lease epoch this replica may send under at `now`.
    pub fn valid_epoch(&self, now: Instant) -> Option<i64> {
        match self {
            Role::Sender { epoch, valid_until } if now < *valid_until => Some(*epoch),
            _ => None,
        }
    }
}

/// The replica's view of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct HaView {
    pub replica: String,
    pub role: Role,
    pub peers: Vec<Peer>,
    /// Why the last lease call failed, when it did (the database is unreachable, say).
    pub store_error: Option<String>,
    /// A peer counts as missing after this long unseen.
    pub peer_missing_after: Duration,
}

impl HaView {
    pub fn single() -> Self {
        Self {
            replica: String::new(),
            role: Role::Single,
            peers: Vec::new(),
            store_error: None,
            peer_missing_after: Duration::MAX,
        }
    }

    /// Not heard from for a lease term.
    pub fn is_missing(&self, peer: &Peer) -> bool {
        peer.seen_ago > self.peer_missing_after
    }

    /// Operator-facing warnings: no peer, a peer gone quiet, the database unreachable.
    pub fn warnings(&self) -> Vec<String> {
        if self.role == Role::Single {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(e) = &self.store_error {
            out.push(format!("state database unreachable: {e}"));
        }
        if self.peers.is_empty() {
            out.push("no other replica has been seen: this aggregator has no standby".into());
        }
        for peer in &self.peers {
            if peer.role == "stopped" {
                out.push(format!("replica {} stopped", peer.name));
            } else if self.is_missing(peer) {
                out.push(format!(
                    "replica {} not seen for {}s",
                    peer.name,
                    peer.seen_ago.as_secs()
                ));
            }
        }
        out
    }
}

/// Holds (or waits for) the sender lease until `shutdown`; then gives it up. `unrecorded`:
/// the notifier's deliveries not yet in the shared log, reported with every heartbeat (a new
/// sender waits for them).
pub async fn keep_lease(
    pg: Pg,
    config: HaConfig,
    view: watch::Sender<HaView>,
    unrecorded: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let ttl = config.ttl();
    loop {
        // Heard before asking for the lease: after an outage, whoever takes it sees this
        // replica's undelivered records first.
        let role = view.borrow().role.as_str();
        let peers = pg.heartbeat(&config.replica, role, unrecorded.load(Ordering::Relaxed));
        let asked = Instant::now();
        let held = pg.hold_lease(&config.replica, ttl);
        let mut next = view.borrow().clone();
        match held {
            Ok(Some(epoch)) => {
                if !matches!(next.role, Role::Sender { epoch: e, .. } if e == epoch) {
                    tracing::info!(replica = %config.replica, epoch, "this replica is now the sender");
                }
                next.role = Role::Sender {
                    epoch,
                    valid_until: asked + ttl,
                };
                next.store_error = None;
            }
            Ok(None) => {
                if matches!(next.role, Role::Sender { .. }) {
                    tracing::warn!(replica = %config.replica, "another replica took the sender lease");
                }
                next.role = Role::Standby;
                next.store_error = None;
            }
            Err(e) => {
                // The term already granted stays ours until it runs out; the notifier checks
                // `valid_until` itself, so nothing more is needed here.
                if next.store_error.is_none() {
                    tracing::error!(error = %e, "cannot renew the sender lease");
                }
                next.store_error = Some(e.to_string());
                if let Role::Sender { valid_until, .. } = next.role {
                    if Instant::now() >= valid_until {
                        next.role = Role::Standby;
                    }
                }
            }
        }
        if next.store_error.is_none() {
            match peers {
                Ok(peers) => {
                    for peer in peers.iter().filter(|p| next.is_missing(p)) {
                        if !next
                            .peers
                            .iter()
                            .any(|old| old.name == peer.name && next.is_missing(old))
                        {
                            tracing::warn!(peer = %peer.name, seen_ago = ?peer.seen_ago, "the other replica has not been seen");
                        }
                    }
                    next.peers = peers;
                }
                Err(e) => next.store_error = Some(e.to_string()),
            }
        }
        view.send_if_modified(|current| {
            let changed = *current != next;
            *current = next;
            changed
        });
        // A lapsing term must be noticed on time even if the database hangs.
        let wake = match view.borrow().role {
            Role::Sender { valid_until, .. } => (asked + config.renew_every()).min(valid_until),
            _ => asked + config.renew_every(),
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    if matches!(view.borrow().role, Role::Sender { .. }) {
        match pg.release_lease(&config.replica) {
            Ok(()) => tracing::info!("sender lease given up for the other replica"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give up the sender lease; it expires by itself")
            }
        }
    }
    let _ = pg.heartbeat(
        &config.replica,
        "stopped",
        unrecorded.load(Ordering::Relaxed),
    );
}

/// The view a replicated aggregator starts with.
pub fn starting_view(config: &HaConfig) -> HaView {
    HaView {
        replica: config.replica.clone(),
        role: Role::Standby,
        peers: Vec::new(),
        store_error: None,
        peer_missing_after: config.ttl() * PEER_MISSING_AFTER_TERMS,
    }
}

/// What the notifier may do with a message now.
#[derive(Debug, Clone, PartialEq)]
pub enum Permit {
    /// A single aggregator: always.
    Single,
    /// Send under this lease term, claiming each message first.
    Lease {
        replica: String,
        epoch: i64,
        valid_until: Instant,
        /// A peer seen this recently is alive (its claims and records are waited for).
        peer_alive_within: Duration,
    },
    /// The lease is this replica's, but it has not taken the sending over yet (a peer is
    /// still recording what it sent): send nothing yet, forget nothing.
    TakingOver,
    /// Not the sender (or the term lapsed): send nothing.
    Withheld,
}
