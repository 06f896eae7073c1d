//! The notification history and the known fleet in PostgreSQL: the statements of
//! [`history`](super::history) and `known`, in PostgreSQL's dialect.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use postgres::Transaction;

use super::history::{
    fingerprint_text, status, status_text, DeliveryState, HistoryFilter, NewEntry, Notification,
    NotifiedAlert, Outcome, MAX_LIST,
};
use super::postgres::Pg;
use super::{ms, time, StoreError};
use crate::fleet::Hello;

/// Adds a message's row (in the transaction that commits it to the outbox).
pub(super) fn insert(
    tx: &mut Transaction<'_>,
    entry: &NewEntry<'_>,
) -> Result<(), postgres::Error> {
    let id: i64 = tx
        .query_one(
            "INSERT INTO notifications (msg_uuid, receiver, created_at, reason, title, body_bytes, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &entry.msg_uuid,
                &entry.receiver,
                &ms(entry.created_at),
                &entry.reason,
                &entry.title,
                &(entry.body_bytes as i64),
                &DeliveryState::Queued.as_str(),
            ],
        )?
        .get(0);
    for a in entry.alerts {
        tx.execute(
            "INSERT INTO notification_alerts (notification, fingerprint, alertname, state)
             VALUES ($1, $2, $3, $4)",
            &[
                &id,
                &fingerprint_text(a.fingerprint),
                &a.alertname,
                &status_text(a.status),
            ],
        )?;
    }
    Ok(())
}

/// Forgets messages created before `keep_since`.
pub(super) fn prune(
    tx: &mut Transaction<'_>,
    keep_since: SystemTime,
) -> Result<u64, postgres::Error> {
    let cutoff = ms(keep_since);
    tx.execute(
        "DELETE FROM notification_alerts WHERE notification IN
            (SELECT id FROM notifications WHERE created_at < $1)",
        &[&cutoff],
    )?;
    tx.execute(
        "DELETE FROM notifications WHERE created_at < $1",
        &[&cutoff],
    )
}

/// Records how an attempt ended.
pub(super) fn record(
    tx: &mut Transaction<'_>,
    msg_uuid: &str,
    outcome: Outcome<'_>,
    at: SystemTime,
) -> Result<(), postgres::Error> {
    match outcome {
        Outcome::Sent => tx.execute(
            "UPDATE notifications SET state = $2, sent_at = $3 WHERE msg_uuid = $1",
            &[&msg_uuid, &DeliveryState::Sent.as_str(), &ms(at)],
        )?,
        Outcome::Failed { errcode, errmsg } => tx.execute(
            "UPDATE notifications SET last_errcode = $2, last_errmsg = $3 WHERE msg_uuid = $1",
            &[&msg_uuid, &errcode, &errmsg],
        )?,
        Outcome::Dropped { errcode, errmsg } => tx.execute(
            "UPDATE notifications SET state = $2, last_errcode = $3, last_errmsg = $4 WHERE msg_uuid = $1",
            &[&msg_uuid, &DeliveryState::Dropped.as_str(), &errcode, &errmsg],
        )?,
    };
    Ok(())
}

impl Pg {
    pub(super) fn attempt_started(&self, msg_uuid: &str) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "UPDATE notifications SET attempts = attempts + 1 WHERE msg_uuid = $1",
                &[&msg_uuid],
            )
            .map(drop)
        })
    }

    pub(super) fn attempt_failed(
        &self,
        msg_uuid: &str,
        errcode: i64,
        errmsg: &str,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            let mut tx = db.transaction()?;
            record(
                &mut tx,
                msg_uuid,
                Outcome::Failed { errcode, errmsg },
                SystemTime::now(),
            )?;
            tx.commit()
        })
    }

    pub(super) fn prune_history(&self, keep_since: SystemTime) -> Result<usize, StoreError> {
        self.with(|db| {
            let mut tx = db.transaction()?;
            let pruned = prune(&mut tx, keep_since)?;
            tx.commit()?;
            Ok(pruned as usize)
        })
    }

    pub(super) fn notifications(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<Notification>, StoreError> {
        self.with(|db| {
            let messages = db.query(
                "SELECT id, receiver, created_at, sent_at, reason, msg_uuid, title, body_bytes,
                        attempts, last_errcode, last_errmsg, state
                 FROM notifications
                 WHERE ($1::text IS NULL OR receiver = $1)
                   AND ($2::bigint IS NULL OR created_at >= $2)
                   AND ($3::bigint IS NULL OR created_at < $3)
                   AND ($4::text IS NULL OR id IN
                        (SELECT notification FROM notification_alerts WHERE fingerprint = $4))
                 ORDER BY id DESC LIMIT $5",
                &[
                    &filter.receiver,
                    &filter.since.map(ms),
                    &filter.until.map(ms),
                    &filter.fingerprint.map(fingerprint_text),
                    &(filter.limit.min(MAX_LIST) as i64),
                ],
            )?;
            let mut out = Vec::with_capacity(messages.len());
            for r in messages.iter().rev() {
                let id: i64 = r.get(0);
                let alerts = db
                    .query(
                        "SELECT fingerprint, alertname, state FROM notification_alerts
                         WHERE notification = $1 ORDER BY id",
                        &[&id],
                    )?
                    .iter()
                    .map(|a| NotifiedAlert {
                        fingerprint: u64::from_str_radix(a.get(0), 16).unwrap_or(0),
                        alertname: a.get(1),
                        status: status(a.get(2)),
                    })
                    .collect();
                out.push(Notification {
                    receiver: r.get(1),
                    created_at: time(r.get(2)),
                    sent_at: r.get::<_, Option<i64>>(3).map(time),
                    reason: r.get(4),
                    msg_uuid: r.get(5),
                    title: r.get(6),
                    body_bytes: r.get::<_, i64>(7).max(0) as u64,
                    attempts: r.get::<_, i64>(8).clamp(0, u32::MAX.into()) as u32,
                    last_errcode: r.get(9),
                    last_errmsg: r.get(10),
                    state: DeliveryState::parse(r.get(11)),
                    alerts,
                });
            }
            Ok(out)
        })
    }

    /// Every replica hears every sidecar, so each writes the same fleet: the last writer's
    /// view stands. Rows in host order, upserted, so two replicas writing at once queue
    /// behind each other instead of colliding.
    pub(super) fn remember_sidecars(&self, fleet: &[Hello]) -> Result<(), StoreError> {
        let mut fleet: Vec<&Hello> = fleet.iter().collect();
        fleet.sort_by(|a, b| a.host.cmp(&b.host));
        let hosts: Vec<&str> = fleet.iter().map(|h| h.host.as_str()).collect();
        self.with(|db| {
            let mut tx = db.transaction()?;
            tx.execute(
                "DELETE FROM known_sidecars WHERE host <> ALL($1)",
                &[&hosts],
            )?;
            for hello in fleet {
                tx.execute(
                    "INSERT INTO known_sidecars VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (host) DO UPDATE SET instance_id = EXCLUDED.instance_id,
                        agents = EXCLUDED.agents, labels = EXCLUDED.labels,
                        poll_interval_ms = EXCLUDED.poll_interval_ms, version = EXCLUDED.version",
                    &[
                        &hello.host,
                        &hello.instance_id,
                        &hello.agents.join("\n"),
                        &serde_json::to_string(&hello.labels).unwrap_or_default(),
                        &(hello.poll_interval.as_millis() as i64),
                        &hello.version,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    pub(super) fn known_sidecars(&self) -> Result<Vec<Hello>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT host, instance_id, agents, labels, poll_interval_ms, version
                 FROM known_sidecars ORDER BY host",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Hello {
                host: r.get(0),
                instance_id: r.get(1),
                agents: r
                    .get::<_, &str>(2)
                    .lines()
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect(),
                labels: serde_json::from_str::<BTreeMap<String, String>>(r.get(3))
                    .unwrap_or_default(),
                version: r.get(5),
                poll_interval: Duration::from_millis(r.get::<_, i64>(4).max(0) as u64),
            })
            .collect())
    }
}
