//! The history and the outbox's msgUuid on real SQLite files: rows written with the outbox,
//! updated per attempt, filtered, pruned; an old state directory opens and its queued messages
//! get a msgUuid.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_testkit::TempDir;
use rusqlite::{params, Connection};

use super::*;
use crate::notify::dispatch::LogEntry;
use crate::notify::store::{NewMessage, OutboxRow};

const BODY: &[u8] = br#"{"msgtype":"markdown","markdown":{"title":"t","text":"x"}}"#;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn alert(fingerprint: u64, alertname: &str, status: AlertStatus) -> NotifiedAlert {
    NotifiedAlert {
        fingerprint,
        alertname: alertname.into(),
        status,
    }
}

/// Queues a message for `receiver` carrying `alerts`, created at `created`.
fn queue(
    store: &Store,
    receiver: &str,
    alerts: &[NotifiedAlert],
    created: SystemTime,
) -> OutboxRow {
    let firing: BTreeSet<u64> = alerts.iter().map(|a| a.fingerprint).collect();
    store
        .queue(
            NewMessage {
                receiver,
                body: BODY,
                groups: vec![("alertname=ChannelFilling".into(), firing, BTreeSet::new())],
                title: "【Flume 告警】 警告 1",
                reason: "first_notification",
                alerts,
            },
            created,
            UNIX_EPOCH,
        )
        .unwrap()
}

fn all(store: &Store) -> Vec<Notification> {
    store.notifications(&HistoryFilter::default()).unwrap()
}

#[test]
fn a_queued_message_carries_its_msg_uuid_in_body_outbox_and_history() {
    let dir = TempDir::new("store-history");
    let store = Store::open(&dir).unwrap();
    let alerts = [
        alert(0xa1, "ChannelFilling", AlertStatus::Firing),
        alert(0xb2, "SinkErrors", AlertStatus::Resolved),
    ];
    let row = queue(&store, "ops", &alerts, at(0));
    let body: serde_json::Value = serde_json::from_slice(&row.body).unwrap();
    assert_eq!(body["msgUuid"], row.msg_uuid.as_str());
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(store.outbox().unwrap(), std::slice::from_ref(&row));

    let history = all(&store);
    assert_eq!(history.len(), 1);
    let n = &history[0];
    assert_eq!(n.receiver, "ops");
    assert_eq!(n.msg_uuid, row.msg_uuid);
    assert_eq!(n.reason, "first_notification");
    assert_eq!(n.title, "【Flume 告警】 警告 1");
    assert_eq!(n.body_bytes, row.body.len() as u64);
    assert_eq!(n.created_at, at(0));
    assert_eq!(
        (n.state, n.attempts, n.sent_at),
        (DeliveryState::Queued, 0, None)
    );
    assert_eq!(n.alerts, alerts);

    // Restarted: the same key and the same bytes.
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.outbox().unwrap(), [row]);
}

#[test]
fn every_attempt_updates_the_row_until_sent_or_dropped() {
    let dir = TempDir::new("store-history");
    let store = Store::open(&dir).unwrap();
    let sent = queue(&store, "ops", &[], at(0));
    let refused = queue(&store, "ops", &[], at(1));

    store.attempt_started(&sent.msg_uuid).unwrap();
    store
        .attempt_failed(&sent.msg_uuid, 0, "no answer within 1s")
        .unwrap();
    store.attempt_started(&sent.msg_uuid).unwrap();
    store.delivered(&sent, &[], UNIX_EPOCH).unwrap();
    store.attempt_started(&refused.msg_uuid).unwrap();
    store.discard(&refused, 310_000, "sign not match").unwrap();

    let history = all(&store);
    let n = &history[0];
    assert_eq!((n.state, n.attempts), (DeliveryState::Sent, 2));
    assert!(n.sent_at.is_some());
    assert_eq!(
        (n.last_errcode, n.last_errmsg.as_str()),
        (0, "no answer within 1s"),
        "the last failure stays visible after the retry went through"
    );
    let n = &history[1];
    assert_eq!(
        (n.state, n.attempts, n.sent_at),
        (DeliveryState::Dropped, 1, None)
    );
    assert_eq!(
        (n.last_errcode, n.last_errmsg.as_str()),
        (310_000, "sign not match")
    );
    assert!(store.outbox().unwrap().is_empty());
}

#[test]
fn filters_by_receiver_time_and_alert_newest_last() {
    let dir = TempDir::new("store-history");
    let store = Store::open(&dir).unwrap();
    let a = alert(0xaa, "ChannelFilling", AlertStatus::Firing);
    let b = alert(0xbb, "SinkErrors", AlertStatus::Firing);
    let rows = [
        queue(&store, "ops", std::slice::from_ref(&a), at(0)),
        queue(&store, "dev", std::slice::from_ref(&b), at(10)),
        queue(&store, "ops", &[a.clone(), b.clone()], at(20)),
        queue(&store, "ops", std::slice::from_ref(&b), at(30)),
    ];
    let uuids = |filter: HistoryFilter| -> Vec<String> {
        store
            .notifications(&filter)
            .unwrap()
            .into_iter()
            .map(|n| n.msg_uuid)
            .collect()
    };
    let of = |i: &[usize]| -> Vec<String> { i.iter().map(|&i| rows[i].msg_uuid.clone()).collect() };
    assert_eq!(uuids(HistoryFilter::default()), of(&[0, 1, 2, 3]));
    let ops = || HistoryFilter {
        receiver: Some("ops".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(uuids(ops()), of(&[0, 2, 3]));
    assert_eq!(
        uuids(HistoryFilter {
            fingerprint: Some(0xaa),
            ..HistoryFilter::default()
        }),
        of(&[0, 2])
    );
    assert_eq!(
        uuids(HistoryFilter {
            fingerprint: Some(0xbb),
            ..ops()
        }),
        of(&[2, 3])
    );
    assert_eq!(
        uuids(HistoryFilter {
            since: Some(at(10)),
            until: Some(at(30)),
            ..HistoryFilter::default()
        }),
        of(&[1, 2]),
        "since inclusive, until exclusive"
    );
    assert_eq!(
        uuids(HistoryFilter {
            limit: 2,
            ..HistoryFilter::default()
        }),
        of(&[2, 3]),
        "the newest two, oldest first"
    );
    assert!(uuids(HistoryFilter {
        fingerprint: Some(0xcc),
        ..HistoryFilter::default()
    })
    .is_empty());
}

#[test]
fn rows_older_than_the_retention_go_with_their_alerts() {
    let dir = TempDir::new("store-history");
    let store = Store::open(&dir).unwrap();
    let a = alert(0xaa, "ChannelFilling", AlertStatus::Firing);
    queue(&store, "ops", std::slice::from_ref(&a), at(0));
    queue(&store, "ops", std::slice::from_ref(&a), at(100));
    // Adding a message forgets what is older than its cutoff.
    let kept = store
        .queue(
            NewMessage {
                receiver: "ops",
                body: BODY,
                groups: Vec::new(),
                title: "t",
                reason: "reminder",
                alerts: std::slice::from_ref(&a),
            },
            at(200),
            at(50),
        )
        .unwrap();
    let left: Vec<SystemTime> = all(&store).iter().map(|n| n.created_at).collect();
    assert_eq!(left, [at(100), at(200)]);
    assert_eq!(store.prune_history(at(150)).unwrap(), 1);
    let left = all(&store);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].msg_uuid, kept.msg_uuid);
    let db = Connection::open(dir.join("flumewatch.sqlite3")).unwrap();
    let alert_rows: i64 = db
        .query_row("SELECT count(*) FROM notification_alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(alert_rows, 1, "the pruned messages' alerts went with them");
}

#[test]
fn an_old_state_dir_opens_and_its_queued_messages_get_a_msg_uuid() {
    let dir = TempDir::new("store-history");
    {
        // The schema before msgUuid and history.
        let db = Connection::open(dir.join("flumewatch.sqlite3")).unwrap();
        db.execute_batch(
            "CREATE TABLE nflog (receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL,
                resolved TEXT NOT NULL, sent_at INTEGER NOT NULL, PRIMARY KEY (receiver, group_key));
             CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL,
                body BLOB NOT NULL, groups TEXT NOT NULL, created_at INTEGER NOT NULL);",
        )
        .unwrap();
        db.execute(
            "INSERT INTO outbox (receiver, body, groups, created_at) VALUES ('ops', ?1, ?2, 5)",
            params![BODY, "alertname=ChannelFilling\t00000000000000aa\t"],
        )
        .unwrap();
    }
    let store = Store::open(&dir).unwrap();
    let old = store.outbox().unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].msg_uuid.len(), 36, "{:?}", old[0].msg_uuid);
    let body: serde_json::Value = serde_json::from_slice(&old[0].body).unwrap();
    assert_eq!(body["msgUuid"], old[0].msg_uuid.as_str());
    assert_eq!(body["markdown"]["title"], "t");
    assert_eq!(
        old[0].groups,
        [(
            "alertname=ChannelFilling".to_owned(),
            BTreeSet::from([0xaa]),
            BTreeSet::new()
        )]
    );
    // A message queued by the new version sits behind it; the old one's key is stable.
    let new = queue(&store, "ops", &[], at(0));
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.outbox().unwrap(), [old[0].clone(), new]);
    store.delivered(&old[0], &[], UNIX_EPOCH).unwrap();
    assert_eq!(all(&store).len(), 1, "the old message has no history row");
}

#[test]
fn the_notification_log_forgets_groups_not_told_for_its_retention() {
    let dir = TempDir::new("store-nflog");
    let store = Store::open(&dir).unwrap();
    let entry = |key: &str, sent: u64| {
        (
            key.to_owned(),
            LogEntry {
                firing: BTreeSet::from([1]),
                resolved: BTreeSet::new(),
                sent_at: Some(at(sent)),
                reminders: 2,
            },
        )
    };
    let first = queue(&store, "ops", &[], at(0));
    store
        .delivered(&first, &[entry("old", 0)], UNIX_EPOCH)
        .unwrap();
    let second = queue(&store, "ops", &[], at(100));
    store
        .delivered(&second, &[entry("new", 100)], at(50))
        .unwrap();
    let log = store.nflog().unwrap();
    let keys: Vec<&str> = log.iter().map(|((_, k), _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["new"],
        "the group last told before the cutoff is gone"
    );
    assert_eq!(
        log[0].1.reminders, 2,
        "the reminder count survives a restart"
    );
}
