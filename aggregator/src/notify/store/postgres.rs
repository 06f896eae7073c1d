//! The state in PostgreSQL, shared by replicas (`--state-url`): the same tables as SQLite's,
//! a versioned schema the aggregator makes itself, and what only sharing needs — the sender
//! lease (one replica delivers), outbox claims under it, and each replica's last sign of life.
//!
//! One connection per [`Pg`], used synchronously like SQLite's (off the async workers through
//! `block_in_place`); it is remade on the next call after it breaks, at most once a second, and
//! every statement is bounded (`statement_timeout`, connect and TCP timeouts), so an outage
//! costs callers an error, not a stall. The lease, claims and replicas: `postgres_sharing`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use postgres::{Client, NoTls};

pub use super::postgres_sharing::{Claim, Peer, SharedRetirement};

use super::history::{NewEntry, Outcome};
use super::{fps, fps_text, ms, parse_groups, time, FiringRow, LogKey, OutboxRow, StoreError};
use crate::notify::dispatch::LogEntry;
use crate::notify::mute::Silence;

/// How long a broken connection is left before the next call tries again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Any one statement; the notifier waits on it.
const STATEMENT_TIMEOUT_MS: u64 = 5000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Schema versions, applied in order, each once, under an advisory lock (replicas starting
/// together do not race).
const MIGRATIONS: &[&str] = &[
    // 1: the SQLite tables, plus the lease, replicas and outbox claims.
    "CREATE TABLE silences (id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at BIGINT NOT NULL,
        ends_at BIGINT NOT NULL, creator TEXT NOT NULL, comment TEXT NOT NULL, created_at BIGINT NOT NULL);
     CREATE TABLE nflog (receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL,
        resolved TEXT NOT NULL, sent_at BIGINT NOT NULL, reminders INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (receiver, group_key));
     CREATE TABLE firing (fingerprint TEXT PRIMARY KEY, active_since BIGINT NOT NULL,
        firing_since BIGINT NOT NULL, place TEXT NOT NULL DEFAULT '');
     CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, receiver TEXT NOT NULL, body BYTEA NOT NULL,
        groups TEXT NOT NULL, created_at BIGINT NOT NULL, msg_uuid TEXT NOT NULL UNIQUE,
        claimed_by TEXT, claim_epoch BIGINT, claimed_at TIMESTAMPTZ);
     CREATE TABLE known_sidecars (host TEXT PRIMARY KEY, instance_id TEXT NOT NULL,
        agents TEXT NOT NULL, labels TEXT NOT NULL, poll_interval_ms BIGINT NOT NULL, version TEXT NOT NULL);
     CREATE TABLE notifications (id BIGSERIAL PRIMARY KEY, msg_uuid TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT, reason TEXT NOT NULL,
        title TEXT NOT NULL, body_bytes BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
        last_errcode BIGINT NOT NULL DEFAULT 0, last_errmsg TEXT NOT NULL DEFAULT '', state TEXT NOT NULL);
     CREATE INDEX notifications_by_time ON notifications (created_at);
     CREATE TABLE notification_alerts (id BIGSERIAL PRIMARY KEY, notification BIGINT NOT NULL,
        fingerprint TEXT NOT NULL, alertname TEXT NOT NULL, state TEXT NOT NULL);
     CREATE INDEX notification_alerts_by_message ON notification_alerts (notification);
     CREATE INDEX notification_alerts_by_fingerprint ON notification_alerts (fingerprint);
     CREATE TABLE sender_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL);
     CREATE TABLE replicas (name TEXT PRIMARY KEY, role TEXT NOT NULL, seen_at TIMESTAMPTZ NOT NULL);",
    // 2: retirements, so that one made on either replica applies on both.
    "CREATE TABLE retirements (id BIGSERIAL PRIMARY KEY, host TEXT NOT NULL, agent TEXT,
        by_replica TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());",
    // 3: what a new sender waits for: each replica's deliveries not yet in the shared log, and
    // when the current term began.
    "ALTER TABLE replicas ADD COLUMN unrecorded INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sender_lease ADD COLUMN acquired_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp();",
];

/// Runs `f` where blocking is allowed: PostgreSQL's synchronous client may not block an async
/// worker. Needs tokio's multi-thread runtime (the aggregator's) when called from a task.
fn blocking<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        // Inside another runtime the client's own block_on would panic: a thread of its own
        // has no runtime to collide with.
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

struct Connection {
    client: Option<Client>,
    /// After a failed connect: no new try before this.
    retry_at: Option<tokio::time::Instant>,
}

/// One connection to the shared state database.
pub struct Pg {
    config: postgres::Config,
    connection: Mutex<Connection>,
}

impl Drop for Pg {
    /// Closing the client blocks on its runtime, which may not happen on an async worker.
    fn drop(&mut self) {
        let connection = self.connection.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = connection.client.take() {
            blocking(move || drop(client));
        }
    }
}

impl Pg {
    /// `config` as parsed from `--state-url` (password filled in); nothing is dialled yet.
    pub fn new(mut config: postgres::Config) -> Self {
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(10))
            .options(&format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        if config.get_application_name().is_none() {
            config.application_name("flumewatch-aggregator");
        }
        Self {
            config,
            connection: Mutex::new(Connection {
                client: None,
                retry_at: None,
            }),
        }
    }

    /// A second connection to the same database (the lease keeper's own, so that its renewals
    /// never queue behind the notifier's statements).
    pub fn another(&self) -> Self {
        Self {
            config: self.config.clone(),
            connection: Mutex::new(Connection {
                client: None,
                retry_at: None,
            }),
        }
    }

    pub(super) fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error> + Send,
    ) -> Result<R, StoreError> {
        blocking(|| {
            let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
            if connection.client.as_ref().is_none_or(Client::is_closed) {
                connection.client = None;
                if connection
                    .retry_at
                    .is_some_and(|at| tokio::time::Instant::now() < at)
                {
                    return Err(StoreError::Unavailable("reconnecting".into()));
                }
                let connected = self
                    .config
                    .connect(NoTls)
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        migrate(&mut c)?;
                        Ok(c)
                    });
                match connected {
                    Ok(client) => {
                        connection.client = Some(client);
                        connection.retry_at = None;
                    }
                    Err(e) => {
                        connection.retry_at = Some(tokio::time::Instant::now() + RECONNECT_PAUSE);
                        return Err(StoreError::Unavailable(e));
                    }
                }
            }
            let Some(client) = connection.client.as_mut() else {
                return Err(StoreError::Unavailable("not connected".into()));
            };
            match f(client) {
                Ok(r) => Ok(r),
                Err(e) => {
                    // Anything but the server's own refusal may have left the connection
                    // unusable: the next call makes a new one.
                    if e.as_db_error().is_none() || client.is_closed() {
                        connection.client = None;
                        return Err(StoreError::Unavailable(e.to_string()));
                    }
                    Err(e.into())
                }
            }
        })
    }

    pub(super) fn save_silence(&self, s: &Silence, matchers: &str) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO silences VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET matchers = EXCLUDED.matchers,
                    starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
                    creator = EXCLUDED.creator, comment = EXCLUDED.comment",
                &[
                    &s.id,
                    &matchers,
                    &ms(s.starts_at),
                    &ms(s.ends_at),
                    &s.creator,
                    &s.comment,
                    &ms(s.created_at),
                ],
            )
            .map(drop)
        })
    }

    pub(super) fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT id, matchers, starts_at, ends_at, creator, comment, created_at
                 FROM silences ORDER BY created_at, id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Silence {
                id: r.get(0),
                matchers: r
                    .get::<_, &str>(1)
                    .lines()
                    .filter_map(|m| crate::matcher::Matcher::parse(m).ok())
                    .collect(),
                starts_at: time(r.get(2)),
                ends_at: time(r.get(3)),
                creator: r.get(4),
                comment: r.get(5),
                created_at: time(r.get(6)),
            })
            .collect())
    }

    pub(super) fn nflog(&self) -> Result<Vec<(LogKey, LogEntry)>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT receiver, group_key, firing, resolved, sent_at, reminders FROM nflog",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    (r.get(0), r.get(1)),
                    LogEntry {
                        firing: fps(r.get(2)),
                        resolved: fps(r.get(3)),
                        sent_at: Some(time(r.get(4))),
                        reminders: r.get::<_, i32>(5).max(0) as u32,
                    },
                )
            })
            .collect())
    }

    /// The outbox row and its history row, in one transaction; the row's id.
    pub(super) fn queue(
        &self,
        body: &[u8],
        groups: &str,
        entry: &NewEntry<'_>,
        keep_since: SystemTime,
    ) -> Result<i64, StoreError> {
        self.with(|db| {
            let mut tx = db.transaction()?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO outbox (receiver, body, groups, created_at, msg_uuid)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[
                        &entry.receiver,
                        &body,
                        &groups,
                        &ms(entry.created_at),
                        &entry.msg_uuid,
                    ],
                )?
                .get(0);
            super::postgres_history::insert(&mut tx, entry)?;
            super::postgres_history::prune(&mut tx, keep_since)?;
            tx.commit()?;
            Ok(id)
        })
    }

    pub(super) fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT id, receiver, body, groups, msg_uuid FROM outbox ORDER BY id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                receiver: r.get(1),
                body: r.get(2),
                groups: parse_groups(r.get(3)),
                msg_uuid: r.get(4),
            })
            .collect())
    }

    pub(super) fn delivered(
        &self,
        row: &OutboxRow,
        entries: &[(String, LogEntry)],
        forget_before: SystemTime,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            let mut tx = db.transaction()?;
            tx.execute("DELETE FROM outbox WHERE id = $1", &[&row.id])?;
            tx.execute(
                "DELETE FROM nflog WHERE sent_at < $1",
                &[&ms(forget_before)],
            )?;
            for (key, entry) in entries {
                tx.execute(
                    "INSERT INTO nflog (receiver, group_key, firing, resolved, sent_at, reminders)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (receiver, group_key) DO UPDATE SET firing = EXCLUDED.firing,
                        resolved = EXCLUDED.resolved, sent_at = EXCLUDED.sent_at,
                        reminders = EXCLUDED.reminders
                     -- A delivery recorded late (after an outage) never hides a newer one.
                     WHERE nflog.sent_at <= EXCLUDED.sent_at",
                    &[
                        &row.receiver,
                        key,
                        &fps_text(&entry.firing),
                        &fps_text(&entry.resolved),
                        &ms(entry.sent_at.unwrap_or(std::time::UNIX_EPOCH)),
                        &(entry.reminders.min(i32::MAX as u32) as i32),
                    ],
                )?;
            }
            super::postgres_history::record(
                &mut tx,
                &row.msg_uuid,
                Outcome::Sent,
                SystemTime::now(),
            )?;
            tx.commit()
        })
    }

    pub(super) fn firing(&self) -> Result<Vec<FiringRow>, StoreError> {
        let rows = self.with(|db| {
            db.query(
                "SELECT fingerprint, active_since, firing_since, place FROM firing",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    u64::from_str_radix(r.get(0), 16).unwrap_or(0),
                    time(r.get(1)),
                    time(r.get(2)),
                    r.get(3),
                )
            })
            .collect())
    }

    pub(super) fn sync_firing(
        &self,
        started: &[FiringRow],
        stopped: &[u64],
    ) -> Result<(), StoreError> {
        // Both replicas write this table: rows in one order, so their transactions queue
        // instead of deadlocking.
        let mut started: Vec<&FiringRow> = started.iter().collect();
        started.sort_by_key(|row| row.0);
        let mut stopped = stopped.to_vec();
        stopped.sort_unstable();
        self.with(|db| {
            let mut tx = db.transaction()?;
            for (fp, active, fired, place) in started {
                tx.execute(
                    "INSERT INTO firing (fingerprint, active_since, firing_since, place)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (fingerprint) DO UPDATE SET active_since = EXCLUDED.active_since,
                        firing_since = EXCLUDED.firing_since, place = EXCLUDED.place",
                    &[&format!("{fp:016x}"), &ms(*active), &ms(*fired), place],
                )?;
            }
            for fp in &stopped {
                tx.execute(
                    "DELETE FROM firing WHERE fingerprint = $1",
                    &[&format!("{fp:016x}")],
                )?;
            }
            tx.commit()
        })
    }

    pub(super) fn discard(
        &self,
        row: &OutboxRow,
        errcode: i64,
        errmsg: &str,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            let mut tx = db.transaction()?;
            tx.execute("DELETE FROM outbox WHERE id = $1", &[&row.id])?;
            super::postgres_history::record(
                &mut tx,
                &row.msg_uuid,
                Outcome::Dropped { errcode, errmsg },
                SystemTime::now(),
            )?;
            tx.commit()
        })
    }
}

/// Brings the schema to the newest version; refuses a database a newer aggregator has
/// migrated past what this one knows.
fn migrate(db: &mut Client) -> Result<(), String> {
    migrate_known(db).map_err(|e| e.to_string())?
}

fn migrate_known(db: &mut Client) -> Result<Result<(), String>, postgres::Error> {
    let mut tx = db.transaction()?;
    // Any constant: replicas starting together take turns.
    tx.execute("SELECT pg_advisory_xact_lock(7163029551)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS flumewatch_schema (version INTEGER NOT NULL)")?;
    let version: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM flumewatch_schema",
            &[],
        )?
        .get(0);
    if version as usize > MIGRATIONS.len() {
        return Ok(Err(format!(
            "the state database is at schema version {version}, newer than this aggregator knows ({}): run the newer aggregator",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(migration)?;
        tx.execute(
            "INSERT INTO flumewatch_schema (version) VALUES ($1)",
            &[&(index as i32 + 1)],
        )?;
        tracing::info!(version = index + 1, "state database schema migrated");
    }
    tx.commit()?;
    Ok(Ok(()))
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;
