//! What only replicas sharing one PostgreSQL need: the sender lease (timed by the database's
//! clock), outbox claims under it, each replica's last sign of life and unrecorded
//! deliveries, and retirements made on either replica.

use std::time::Duration;

use super::postgres::Pg;
use super::{OutboxRow, StoreError};

/// How long a live replica that claimed a message may take to record its delivery before
/// another sender takes the message over (its POST ended long ago; it is waiting for the
/// database).
const LIVE_CLAIM_HOLDS: Duration = Duration::from_secs(60);

/// A retirement made on some replica: the host, and the agent (none: the whole host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRetirement {
    pub id: i64,
    pub host: String,
    pub agent: Option<String>,
    pub by_replica: String,
}

/// Another replica, as the replicas table last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub role: String,
    /// How long ago it last renewed its entry, by the database's clock.
    pub seen_ago: Duration,
}

/// Whether a message may be POSTed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed under this replica's lease.
    Granted,
    /// Another holder claimed it within the send timeout: its POST may still be on its way.
    Wait,
    /// The lease is not this replica's.
    Refused,
    /// The message is no longer in the outbox: delivered or dropped by the one who claimed it.
    Gone,
}

impl Pg {
    /// Takes or renews the sender lease for `ttl` when it is free, expired or already ours;
    /// the epoch of our term, or `None` while another replica holds it. Expiry is judged by
    /// the database's clock alone, so replicas' clocks need not agree.
    pub fn hold_lease(&self, replica: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let ttl_ms = ttl.as_millis() as i64;
        let row = self.with(|db| {
            db.query_opt(
                "INSERT INTO sender_lease (name, holder, epoch, expires_at)
                 VALUES ('sender', $1, 1, clock_timestamp() + $2::bigint * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,
                    epoch = CASE WHEN sender_lease.holder = EXCLUDED.holder
                                  AND sender_lease.expires_at > clock_timestamp()
                            THEN sender_lease.epoch ELSE sender_lease.epoch + 1 END,
                    acquired_at = CASE WHEN sender_lease.holder = EXCLUDED.holder
                                  AND sender_lease.expires_at > clock_timestamp()
                            THEN sender_lease.acquired_at ELSE clock_timestamp() END,
                    expires_at = EXCLUDED.expires_at
                 WHERE sender_lease.holder = EXCLUDED.holder
                    OR sender_lease.expires_at <= clock_timestamp()
                 RETURNING epoch",
                &[&replica, &ttl_ms],
            )
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Gives the lease up at once (a planned stop): the other replica need not wait it out.
    pub fn release_lease(&self, replica: &str) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "UPDATE sender_lease SET expires_at = clock_timestamp()
                 WHERE name = 'sender' AND holder = $1",
                &[&replica],
            )
            .map(drop)
        })
    }

    /// Claims a message for a POST, in one transaction that also checks the lease is ours
    /// (`epoch`) and unexpired. A message another holder claimed waits while that holder's
    /// POST may be under way (`send_timeout`), and while that holder is alive (seen within
    /// `alive_within`) for up to a minute more: it delivered, and will record it.
    pub fn claim(
        &self,
        row: &OutboxRow,
        replica: &str,
        epoch: i64,
        send_timeout: Duration,
        alive_within: Duration,
    ) -> Result<Claim, StoreError> {
        let timeout_ms = send_timeout.as_millis() as i64;
        let alive_ms = alive_within.as_millis() as i64;
        let holds_ms = LIVE_CLAIM_HOLDS.as_millis() as i64;
        self.with(|db| {
            let mut tx = db.transaction()?;
            let ours = tx
                .query_opt(
                    "SELECT 1 FROM sender_lease WHERE name = 'sender' AND holder = $1
                        AND epoch = $2 AND expires_at > clock_timestamp() FOR SHARE",
                    &[&replica, &epoch],
                )?
                .is_some();
            if !ours {
                return Ok(Claim::Refused);
            }
            let Some(current) = tx.query_opt(
                "SELECT o.claimed_by IS NULL OR (o.claimed_by = $2 AND o.claim_epoch = $3)
                        OR (o.claimed_at < clock_timestamp() - $4::bigint * interval '1 millisecond'
                            AND NOT EXISTS (SELECT 1 FROM replicas r
                                WHERE r.name = o.claimed_by AND r.name <> $2 AND r.role <> 'stopped'
                                  AND r.seen_at > clock_timestamp() - $5::bigint * interval '1 millisecond'
                                  AND o.claimed_at > clock_timestamp() - $6::bigint * interval '1 millisecond'))
                 FROM outbox o WHERE o.id = $1 FOR UPDATE OF o",
                &[&row.id, &replica, &epoch, &timeout_ms, &alive_ms, &holds_ms],
            )?
            else {
                return Ok(Claim::Gone);
            };
            if !current.get::<_, bool>(0) {
                return Ok(Claim::Wait);
            }
            tx.execute(
                "UPDATE outbox SET claimed_by = $2, claim_epoch = $3, claimed_at = clock_timestamp()
                 WHERE id = $1",
                &[&row.id, &replica, &epoch],
            )?;
            tx.execute(
                "UPDATE notifications SET attempts = attempts + 1 WHERE msg_uuid = $1",
                &[&row.msg_uuid],
            )?;
            tx.commit()?;
            Ok(Claim::Granted)
        })
    }

    /// Notes this replica alive in `role`, with `unrecorded` deliveries not yet in the shared
    /// log, and returns the others.
    pub fn heartbeat(
        &self,
        replica: &str,
        role: &str,
        unrecorded: usize,
    ) -> Result<Vec<Peer>, StoreError> {
        let unrecorded = unrecorded.min(i32::MAX as usize) as i32;
        let rows = self.with(|db| {
            db.execute(
                "INSERT INTO replicas (name, role, seen_at, unrecorded) VALUES ($1, $2, clock_timestamp(), $3)
                 ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, seen_at = EXCLUDED.seen_at,
                    unrecorded = EXCLUDED.unrecorded",
                &[&replica, &role, &unrecorded],
            )?;
            db.query(
                "SELECT name, role, EXTRACT(EPOCH FROM clock_timestamp() - seen_at)::float8
                 FROM replicas WHERE name <> $1 ORDER BY name",
                &[&replica],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Peer {
                name: r.get(0),
                role: r.get(1),
                seen_ago: Duration::from_secs_f64(r.get::<_, f64>(2).max(0.0)),
            })
            .collect())
    }

    /// Shares a retirement made here with the other replicas (kept a day: a replica that
    /// starts later does not replay it, its sidecars are retired in the remembered fleet).
    pub fn share_retirement(
        &self,
        host: &str,
        agent: Option<&str>,
        replica: &str,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "DELETE FROM retirements WHERE at < clock_timestamp() - interval '1 day'",
                &[],
            )?;
            db.execute(
                "INSERT INTO retirements (host, agent, by_replica) VALUES ($1, $2, $3)",
                &[&host, &agent, &replica],
            )
            .map(drop)
        })
    }

    /// Retirements newer than `after` (an id; 0 for all), oldest first.
    pub fn retirements_after(&self, after: i64) -> Result<Vec<SharedRetirement>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT id, host, agent, by_replica FROM retirements WHERE id > $1 ORDER BY id",
                &[&after],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| SharedRetirement {
                id: r.get(0),
                host: r.get(1),
                agent: r.get(2),
                by_replica: r.get(3),
            })
            .collect())
    }

    /// Whether a new sender should wait before reading the shared log: a live peer (seen
    /// within `alive_within`) has not reported since this term began, or still holds
    /// deliveries it could not record (it sent while the database was away).
    pub fn peers_settling(
        &self,
        replica: &str,
        alive_within: Duration,
    ) -> Result<bool, StoreError> {
        let alive_ms = alive_within.as_millis() as i64;
        let row = self.with(|db| {
            db.query_one(
                "SELECT EXISTS (SELECT 1 FROM replicas r, sender_lease l
                    WHERE l.name = 'sender' AND r.name <> $1 AND r.role <> 'stopped'
                      AND r.seen_at > clock_timestamp() - $2::bigint * interval '1 millisecond'
                      AND (r.seen_at < l.acquired_at OR r.unrecorded > 0))",
                &[&replica, &alive_ms],
            )
        })?;
        Ok(row.get(0))
    }
}
