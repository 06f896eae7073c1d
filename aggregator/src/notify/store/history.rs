//! The notification history in the state database: one row per message (receiver, reason,
//! msgUuid, size, attempts, last error, delivery state, the alerts it carried), written with the
//! outbox row and updated on every attempt, kept for `notify.history_retention`.

use std::time::SystemTime;

use rusqlite::{params, Connection};

use super::{ms, time, Store, StoreError};
use crate::alert::AlertStatus;

/// Most messages one history query returns: the query holds the store's lock, which the
/// notifier needs too.
pub const MAX_LIST: usize = 1000;

/// Where a message is on its way to DingTalk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// In the outbox: not yet sent, or being retried.
    Queued,
    /// DingTalk accepted it.
    Sent,
    /// DingTalk refused it for good.
    Dropped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Dropped => "dropped",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "sent" => DeliveryState::Sent,
            "dropped" => DeliveryState::Dropped,
            _ => DeliveryState::Queued,
        }
    }
}

/// An alert a message carried, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifiedAlert {
    pub fingerprint: u64,
    pub alertname: String,
    /// Firing or resolved.
    pub status: AlertStatus,
}

/// One message of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    pub created_at: SystemTime,
    /// When DingTalk accepted it.
    pub sent_at: Option<SystemTime>,
    /// `dispatch::Reason::as_str` of the message.
    pub reason: String,
    pub msg_uuid: String,
    pub title: String,
    /// Size of the body POSTed, msgUuid included.
    pub body_bytes: u64,
    /// POSTs started, across restarts.
    pub attempts: u32,
    /// The last failed attempt's DingTalk errcode (0 when DingTalk gave none) and errmsg (or
    /// what went wrong before DingTalk answered); empty when no attempt failed.
    pub last_errcode: i64,
    pub last_errmsg: String,
    pub state: DeliveryState,
    pub alerts: Vec<NotifiedAlert>,
}

/// Which messages a history query returns: all filters must hold; the newest `limit`, oldest
/// first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryFilter {
    pub receiver: Option<String>,
    /// Created at or after.
    pub since: Option<SystemTime>,
    /// Created before.
    pub until: Option<SystemTime>,
    /// Only messages that carried this alert.
    pub fingerprint: Option<u64>,
    pub limit: usize,
}

impl Default for HistoryFilter {
    fn default() -> Self {
        Self {
            receiver: None,
            since: None,
            until: None,
            fingerprint: None,
            limit: 100,
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Sent,
    /// Will be tried again.
    Failed {
        errcode: i64,
        errmsg: &'a str,
    },
    /// DingTalk refused it for good.
    Dropped {
        errcode: i64,
        errmsg: &'a str,
    },
}

/// The history's row for a message being committed to the outbox.
pub(super) struct NewEntry<'a> {
    pub receiver: &'a str,
    pub msg_uuid: &'a str,
    pub title: &'a str,
    pub reason: &'a str,
    pub body_bytes: usize,
    pub alerts: &'a [NotifiedAlert],
    pub created_at: SystemTime,
}

pub(super) fn fingerprint_text(fp: u64) -> String {
    format!("{fp:016x}")
}

pub(super) fn status_text(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
        AlertStatus::Pending => "pending",
    }
}

pub(super) fn status(text: &str) -> AlertStatus {
    match text {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        _ => AlertStatus::Pending,
    }
}

pub(super) fn create_tables(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY AUTOINCREMENT,
            msg_uuid TEXT NOT NULL UNIQUE, receiver TEXT NOT NULL, created_at INTEGER NOT NULL,
            sent_at INTEGER, reason TEXT NOT NULL, title TEXT NOT NULL, body_bytes INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_errcode INTEGER NOT NULL DEFAULT 0,
            last_errmsg TEXT NOT NULL DEFAULT '', state TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS notifications_by_time ON notifications (created_at);
         CREATE TABLE IF NOT EXISTS notification_alerts (notification INTEGER NOT NULL,
            fingerprint TEXT NOT NULL, alertname TEXT NOT NULL, state TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS notification_alerts_by_message ON notification_alerts (notification);
         CREATE INDEX IF NOT EXISTS notification_alerts_by_fingerprint ON notification_alerts (fingerprint);",
    )
}

/// Adds a message's row (in the transaction that commits it to the outbox).
pub(super) fn insert(db: &Connection, entry: &NewEntry<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO notifications (msg_uuid, receiver, created_at, reason, title, body_bytes, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        entry.msg_uuid,
        entry.receiver,
        ms(entry.created_at),
        entry.reason,
        entry.title,
        entry.body_bytes as i64,
        DeliveryState::Queued.as_str()
    ])?;
    let id = db.last_insert_rowid();
    let mut alert = db.prepare_cached(
        "INSERT INTO notification_alerts (notification, fingerprint, alertname, state) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for a in entry.alerts {
        alert.execute(params![
            id,
            fingerprint_text(a.fingerprint),
            a.alertname,
            status_text(a.status)
        ])?;
    }
    Ok(())
}

/// Forgets messages created before `keep_since`. Cheap when there is nothing to forget (an
/// index seek), so it runs whenever a message is added.
pub(super) fn prune(db: &Connection, keep_since: SystemTime) -> rusqlite::Result<usize> {
    let cutoff = ms(keep_since);
    db.prepare_cached(
        "DELETE FROM notification_alerts WHERE notification IN
            (SELECT id FROM notifications WHERE created_at < ?1)",
    )?
    .execute(params![cutoff])?;
    db.prepare_cached("DELETE FROM notifications WHERE created_at < ?1")?
        .execute(params![cutoff])
}

/// Records how an attempt ended.
pub(super) fn record(
    db: &Connection,
    msg_uuid: &str,
    outcome: Outcome<'_>,
    at: SystemTime,
) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Sent => db
            .prepare_cached("UPDATE notifications SET state = ?2, sent_at = ?3 WHERE msg_uuid = ?1")?
            .execute(params![msg_uuid, DeliveryState::Sent.as_str(), ms(at)])?,
        Outcome::Failed { errcode, errmsg } => db
            .prepare_cached(
                "UPDATE notifications SET last_errcode = ?2, last_errmsg = ?3 WHERE msg_uuid = ?1",
            )?
            .execute(params![msg_uuid, errcode, errmsg])?,
        Outcome::Dropped { errcode, errmsg } => db
            .prepare_cached(
                "UPDATE notifications SET state = ?2, last_errcode = ?3, last_errmsg = ?4 WHERE msg_uuid = ?1",
            )?
            .execute(params![msg_uuid, DeliveryState::Dropped.as_str(), errcode, errmsg])?,
    };
    Ok(())
}

impl Store {
    /// A POST of this message starts. Counted before the answer, so a resend after a crash
    /// that lost the answer still shows as a second attempt.
    pub fn attempt_started(&self, msg_uuid: &str) -> Result<(), StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.attempt_started(msg_uuid),
        };
        db.prepare_cached("UPDATE notifications SET attempts = attempts + 1 WHERE msg_uuid = ?1")?
            .execute(params![msg_uuid])?;
        Ok(())
    }

    /// An attempt failed and will be retried.
    pub fn attempt_failed(
        &self,
        msg_uuid: &str,
        errcode: i64,
        errmsg: &str,
    ) -> Result<(), StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.attempt_failed(msg_uuid, errcode, errmsg),
        };
        record(
            &db,
            msg_uuid,
            Outcome::Failed { errcode, errmsg },
            SystemTime::now(),
        )?;
        Ok(())
    }

    /// Forgets messages created before `keep_since`; how many.
    pub fn prune_history(&self, keep_since: SystemTime) -> Result<usize, StoreError> {
        match self.db() {
            Ok(db) => Ok(prune(&db, keep_since)?),
            Err(pg) => pg.prune_history(keep_since),
        }
    }

    /// The newest messages matching `filter` (at most [`MAX_LIST`]), oldest first.
    pub fn notifications(&self, filter: &HistoryFilter) -> Result<Vec<Notification>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.notifications(filter),
        };
        let mut messages = db.prepare_cached(
            "SELECT id, receiver, created_at, sent_at, reason, msg_uuid, title, body_bytes, attempts,
                    last_errcode, last_errmsg, state
             FROM notifications
             WHERE (?1 IS NULL OR receiver = ?1)
               AND (?2 IS NULL OR created_at >= ?2)
               AND (?3 IS NULL OR created_at < ?3)
               AND (?4 IS NULL OR id IN (SELECT notification FROM notification_alerts WHERE fingerprint = ?4))
             ORDER BY id DESC LIMIT ?5",
        )?;
        let mut alerts = db.prepare_cached(
            "SELECT fingerprint, alertname, state FROM notification_alerts WHERE notification = ?1 ORDER BY rowid",
        )?;
        let rows = messages
            .query_map(
                params![
                    filter.receiver,
                    filter.since.map(ms),
                    filter.until.map(ms),
                    filter.fingerprint.map(fingerprint_text),
                    filter.limit.min(MAX_LIST) as i64
                ],
                |r| {
                    let state: String = r.get(11)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        Notification {
                            receiver: r.get(1)?,
                            created_at: time(r.get(2)?),
                            sent_at: r.get::<_, Option<i64>>(3)?.map(time),
                            reason: r.get(4)?,
                            msg_uuid: r.get(5)?,
                            title: r.get(6)?,
                            body_bytes: r.get::<_, i64>(7)?.max(0) as u64,
                            attempts: r.get::<_, i64>(8)?.clamp(0, u32::MAX.into()) as u32,
                            last_errcode: r.get(9)?,
                            last_errmsg: r.get(10)?,
                            state: DeliveryState::parse(&state),
                            alerts: Vec::new(),
                        },
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, mut notification) in rows.into_iter().rev() {
            notification.alerts = alerts
                .query_map(params![id], |r| {
                    let fingerprint: String = r.get(0)?;
                    let state: String = r.get(2)?;
                    Ok(NotifiedAlert {
                        fingerprint: u64::from_str_radix(&fingerprint, 16).unwrap_or(0),
                        alertname: r.get(1)?,
                        status: status(&state),
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push(notification);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
