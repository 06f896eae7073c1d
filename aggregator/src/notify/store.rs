//! Durable notification state: silences, the notification log, the outbox of messages not yet
//! delivered (each under its msgUuid) and the history of what was sent ([`history`]). In SQLite
//! under `--state-dir` (one aggregator), or in PostgreSQL under `--state-url` ([`postgres`]),
//! shared by replicas. Small synchronous writes: SQLite behind a mutex, PostgreSQL on one
//! connection with short timeouts.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::dingtalk::msg_uuid::{self, NoRandomness};
use super::dispatch::LogEntry;
use super::mute::Silence;
use crate::matcher::Matcher;
use history::{NewEntry, NotifiedAlert, Outcome};

pub mod history;
mod known;
pub mod postgres;
mod postgres_history;
mod postgres_sharing;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No msgUuid could be made for a message.
    #[error("state database: {0}")]
    Random(#[from] NoRandomness),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// PostgreSQL cannot be reached just now (retryable: the next call tries again).
    #[error("PostgreSQL unavailable: {0}")]
    Unavailable(String),
}

/// A firing alert as the state database keeps it: fingerprint, active since, firing since,
/// and where it was ("host\tagent", empty for sidecar- and fleet-level alerts).
pub type FiringRow = (u64, SystemTime, SystemTime, String);

/// (receiver name, group key): what the notification log is keyed by.
pub type LogKey = (String, String);

/// One group of a message: its key and the fingerprints it reported firing and resolved.
pub type GroupFingerprints = (String, BTreeSet<u64>, BTreeSet<u64>);

/// One undelivered message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub body: Vec<u8>,
    /// Per group: key, firing and resolved fingerprints (for the notification log on success).
    pub groups: Vec<GroupFingerprints>,
    /// DingTalk's idempotency key, also in `body`: the same on every attempt.
    pub msg_uuid: String,
}

/// A message to commit to the outbox, with what the history keeps of it.
pub struct NewMessage<'a> {
    pub receiver: &'a str,
    /// The rendered body, without msgUuid.
    pub body: &'a [u8],
    pub groups: Vec<GroupFingerprints>,
    pub title: &'a str,
    /// `dispatch::Reason::as_str` of the message.
    pub reason: &'a str,
    pub alerts: &'a [NotifiedAlert],
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<postgres::Pg>),
}

pub(super) fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn fps(text: &str) -> BTreeSet<u64> {
    text.split(',')
        .filter_map(|s| u64::from_str_radix(s, 16).ok())
        .collect()
}

pub(super) fn fps_text(set: &BTreeSet<u64>) -> String {
    set.iter()
        .map(|f| format!("{f:016x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The outbox's `groups` column: one line per group, key, firing and resolved tab-separated.
pub(super) fn parse_groups(text: &str) -> Vec<GroupFingerprints> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            Some((
                parts.next()?.to_owned(),
                fps(parts.next()?),
                fps(parts.next()?),
            ))
        })
        .collect()
}

/// Adds a column a state directory from an older version lacks.
fn add_column(
    db: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), StoreError> {
    let exists = db
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists(params![column])?;
    if !exists {
        db.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition}"
        ))?;
    }
    Ok(())
}

/// Messages an older version queued get their msgUuid now, in column and body, so that their
/// retries carry one too.
fn stamp_old_messages(db: &Connection) -> Result<(), StoreError> {
    let old = db
        .prepare("SELECT id, body FROM outbox WHERE msg_uuid IS NULL")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, body) in old {
        let uuid = msg_uuid::generate()?;
        db.execute(
            "UPDATE outbox SET msg_uuid = ?2, body = ?3 WHERE id = ?1",
            params![id, uuid, msg_uuid::stamp(&body, &uuid)],
        )?;
    }
    Ok(())
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(dir.join("flumewatch.sqlite3"))?;
        // WAL + synchronous=NORMAL: a committed row survives a process kill.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at INTEGER NOT NULL,
                ends_at INTEGER NOT NULL, creator TEXT NOT NULL, comment TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS nflog (receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL,
                resolved TEXT NOT NULL, sent_at INTEGER NOT NULL, PRIMARY KEY (receiver, group_key));
             CREATE TABLE IF NOT EXISTS firing (fingerprint TEXT PRIMARY KEY, active_since INTEGER NOT NULL,
                firing_since INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL,
                body BLOB NOT NULL, groups TEXT NOT NULL, created_at INTEGER NOT NULL);",
        )?;
        db.execute_batch(known::SCHEMA)?;
        // Where a firing alert was (host and agent), so a restart looks for it only there.
        add_column(&db, "firing", "place", "TEXT NOT NULL DEFAULT ''")?;
        add_column(&db, "nflog", "reminders", "INTEGER NOT NULL DEFAULT 0")?;
        add_column(&db, "outbox", "msg_uuid", "TEXT")?;
        stamp_old_messages(&db)?;
        history::create_tables(&db)?;
        Ok(Self {
            backend: Backend::Sqlite(Arc::new(Mutex::new(db))),
        })
    }

    /// The state shared by replicas in PostgreSQL. Connects lazily: an unreachable server
    /// delays notifications, never the start (the schema is made at the first connection).
    pub fn shared(pg: postgres::Pg) -> Self {
        Self {
            backend: Backend::Postgres(Arc::new(pg)),
        }
    }

    /// The PostgreSQL backend, when the state is shared by replicas.
    pub fn postgres(&self) -> Option<&postgres::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    /// SQLite's connection, or the PostgreSQL backend to hand the call to.
    fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, &postgres::Pg> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.lock().unwrap_or_else(|e| e.into_inner())),
            Backend::Postgres(pg) => Err(pg),
        }
    }

    pub fn save_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let matchers = s
            .matchers
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.save_silence(s, &matchers),
        };
        db.execute(
            "INSERT OR REPLACE INTO silences VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                s.id,
                matchers,
                ms(s.starts_at),
                ms(s.ends_at),
                s.creator,
                s.comment,
                ms(s.created_at)
            ],
        )?;
        Ok(())
    }

    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.silences(),
        };
        let mut stmt = db.prepare("SELECT id, matchers, starts_at, ends_at, creator, comment, created_at FROM silences ORDER BY created_at")?;
        let rows = stmt.query_map([], |r| {
            let matchers: String = r.get(1)?;
            Ok(Silence {
                id: r.get(0)?,
                matchers: matchers
                    .lines()
                    .filter_map(|m| Matcher::parse(m).ok())
                    .collect(),
                starts_at: time(r.get(2)?),
                ends_at: time(r.get(3)?),
                creator: r.get(4)?,
                comment: r.get(5)?,
                created_at: time(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn nflog(&self) -> Result<Vec<(LogKey, LogEntry)>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.nflog(),
        };
        let mut stmt = db.prepare(
            "SELECT receiver, group_key, firing, resolved, sent_at, reminders FROM nflog",
        )?;
        let rows = stmt.query_map([], |r| {
            let firing: String = r.get(2)?;
            let resolved: String = r.get(3)?;
            Ok((
                (r.get(0)?, r.get(1)?),
                LogEntry {
                    firing: fps(&firing),
                    resolved: fps(&resolved),
                    sent_at: Some(time(r.get(4)?)),
                    reminders: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Commits a message to the outbox under a new msgUuid (written into its body, so every
    /// attempt sends the same) and adds its history row, forgetting history created before
    /// `keep_since`: one transaction.
    pub fn queue(
        &self,
        message: NewMessage<'_>,
        now: SystemTime,
        keep_since: SystemTime,
    ) -> Result<OutboxRow, StoreError> {
        let msg_uuid = msg_uuid::generate()?;
        let body = msg_uuid::stamp(message.body, &msg_uuid);
        let groups = message
            .groups
            .iter()
            .map(|(k, f, r)| format!("{k}\t{}\t{}", fps_text(f), fps_text(r)))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = NewEntry {
            receiver: message.receiver,
            msg_uuid: &msg_uuid,
            title: message.title,
            reason: message.reason,
            body_bytes: body.len(),
            alerts: message.alerts,
            created_at: now,
        };
        let id = match self.db() {
            Err(pg) => pg.queue(&body, &groups, &entry, keep_since)?,
            Ok(mut db) => {
                let tx = db.transaction()?;
                tx.execute(
                    "INSERT INTO outbox (receiver, body, groups, created_at, msg_uuid) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![message.receiver, body, groups, ms(now), msg_uuid],
                )?;
                let id = tx.last_insert_rowid();
                history::insert(&tx, &entry)?;
                history::prune(&tx, keep_since)?;
                tx.commit()?;
                id
            }
        };
        Ok(OutboxRow {
            id,
            receiver: message.receiver.to_owned(),
            body,
            groups: message.groups,
            msg_uuid,
        })
    }

    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.outbox(),
        };
        let mut stmt =
            db.prepare("SELECT id, receiver, body, groups, msg_uuid FROM outbox ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let groups: String = r.get(3)?;
            Ok(OutboxRow {
                id: r.get(0)?,
                receiver: r.get(1)?,
                body: r.get(2)?,
                groups: parse_groups(&groups),
                msg_uuid: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A message was delivered: forget it and log its groups' new entries, in one transaction.
    /// Entries last sent before `forget_before` go: their groups are long gone (a firing group
    /// is reminded, and so refreshed, at least every repeat interval).
    pub fn delivered(
        &self,
        row: &OutboxRow,
        entries: &[(String, LogEntry)],
        forget_before: SystemTime,
    ) -> Result<(), StoreError> {
        let mut db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.delivered(row, entries, forget_before),
        };
        let tx = db.transaction()?;
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![row.id])?;
        tx.execute(
            "DELETE FROM nflog WHERE sent_at < ?1",
            params![ms(forget_before)],
        )?;
        for (key, entry) in entries {
            tx.execute(
                "INSERT OR REPLACE INTO nflog (receiver, group_key, firing, resolved, sent_at, reminders)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.receiver,
                    key,
                    fps_text(&entry.firing),
                    fps_text(&entry.resolved),
                    ms(entry.sent_at.unwrap_or(UNIX_EPOCH)),
                    entry.reminders
                ],
            )?;
        }
        history::record(&tx, &row.msg_uuid, Outcome::Sent, SystemTime::now())?;
        tx.commit()?;
        Ok(())
    }

    /// Alerts firing at the last stop: (fingerprint, active since, firing since).
    pub fn firing(&self) -> Result<Vec<FiringRow>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.firing(),
        };
        let mut stmt =
            db.prepare("SELECT fingerprint, active_since, firing_since, place FROM firing")?;
        let rows = stmt.query_map([], |r| {
            let fp: String = r.get(0)?;
            Ok((
                u64::from_str_radix(&fp, 16).unwrap_or(0),
                time(r.get(1)?),
                time(r.get(2)?),
                r.get(3)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records alerts that started firing and forgets those that stopped, in one transaction.
    pub fn sync_firing(&self, started: &[FiringRow], stopped: &[u64]) -> Result<(), StoreError> {
        let mut db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.sync_firing(started, stopped),
        };
        let tx = db.transaction()?;
        for (fp, active, fired, place) in started {
            tx.execute(
                "INSERT OR REPLACE INTO firing (fingerprint, active_since, firing_since, place)
                 VALUES (?1, ?2, ?3, ?4)",
                params![format!("{fp:016x}"), ms(*active), ms(*fired), place],
            )?;
        }
        for fp in stopped {
            tx.execute(
                "DELETE FROM firing WHERE fingerprint = ?1",
                params![format!("{fp:016x}")],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A message can never be delivered (permanent DingTalk error): drop it, and say why in
    /// its history row.
    pub fn discard(&self, row: &OutboxRow, errcode: i64, errmsg: &str) -> Result<(), StoreError> {
        let mut db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.discard(row, errcode, errmsg),
        };
        let tx = db.transaction()?;
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![row.id])?;
        history::record(
            &tx,
            &row.msg_uuid,
            Outcome::Dropped { errcode, errmsg },
            SystemTime::now(),
        )?;
        tx.commit()?;
        Ok(())
    }
}
