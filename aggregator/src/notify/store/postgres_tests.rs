//! The PostgreSQL backend against a real throwaway server: the same answers as SQLite's for
//! the notifier's calls, the lease taken by one replica at a time, claims under it, and an
//! outage turned into errors rather than stalls.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use flumewatch_testkit::postgres::PgCluster;

use super::*;
use crate::notify::store::{NewMessage, Store};

fn store(cluster: &PgCluster) -> (Store, Pg) {
    let config = postgres::Config::from_str(&cluster.url()).unwrap();
    let pg = Pg::new(config);
    let lease = pg.another();
    (Store::shared(pg), lease)
}

fn message(store: &Store, text: &str) -> OutboxRow {
    store
        .queue(
            NewMessage {
                receiver: "ops",
                body: format!("{{\"markdown\":{{\"text\":{text:?}}}}}").as_bytes(),
                groups: vec![("cluster=bj".into(), BTreeSet::from([7]), BTreeSet::new())],
                title: "t",
                reason: "first_notification",
                alerts: &[],
            },
            SystemTime::now(),
            SystemTime::UNIX_EPOCH,
        )
        .expect("queued")
}

#[test]
fn the_notifier_calls_round_trip_and_a_second_open_migrates_nothing() {
    let cluster = PgCluster::start();
    let (store, _) = store(&cluster);
    let row = message(&store, "hello");
    assert_eq!(store.outbox().unwrap(), std::slice::from_ref(&row));
    assert!(String::from_utf8_lossy(&row.body).contains(&row.msg_uuid));
    let entry = LogEntry {
        firing: BTreeSet::from([7]),
        resolved: BTreeSet::new(),
        sent_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        reminders: 2,
    };
    store
        .delivered(
            &row,
            &[("cluster=bj".into(), entry.clone())],
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
    assert!(store.outbox().unwrap().is_empty());
    assert_eq!(
        store.nflog().unwrap(),
        [(("ops".to_owned(), "cluster=bj".to_owned()), entry)]
    );
    let history = store.notifications(&Default::default()).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].state,
        crate::notify::store::history::DeliveryState::Sent
    );
    store
        .sync_firing(
            &[(
                9,
                SystemTime::UNIX_EPOCH,
                SystemTime::UNIX_EPOCH,
                "h\ta".into(),
            )],
            &[],
        )
        .unwrap();
    assert_eq!(store.firing().unwrap().len(), 1);
    // A second replica (a new connection) finds the schema made and the same state.
    let (again, _) = self::store(&cluster);
    assert_eq!(again.firing().unwrap().len(), 1);
    assert_eq!(again.nflog().unwrap().len(), 1);
}

/// Takes the lease for `replica` once it is free, polling the database's clock.
fn take_when_free(pg: &Pg, replica: &str, ttl: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(epoch) = pg.hold_lease(replica, ttl).unwrap() {
            return epoch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never came free"
        );
        std::thread::sleep(Duration::from_millis(100)); // polling the database's clock
    }
}

#[test]
fn one_replica_at_a_time_holds_the_lease_and_claims_under_it() {
    let cluster = PgCluster::start();
    let (store, a) = store(&cluster);
    let (_, b) = self::store(&cluster);
    let ttl = Duration::from_secs(2);
    let alive = Duration::from_secs(2);
    let first = a
        .hold_lease("a", ttl)
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(b.hold_lease("b", ttl).unwrap(), None, "held by a");
    assert_eq!(
        a.hold_lease("a", ttl).unwrap(),
        Some(first),
        "renewed, same term"
    );
    let row = message(&store, "claimed");
    let post = Duration::from_secs(1);
    assert_eq!(
        a.claim(&row, "a", first, post, alive).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        b.claim(&row, "b", first, post, alive).unwrap(),
        Claim::Refused
    );
    // a goes quiet: b waits its term out, then takes a new one.
    let second = take_when_free(&b, "b", ttl);
    assert!(second > first, "{second} after {first}");
    assert_eq!(a.hold_lease("a", ttl).unwrap(), None, "a's term is over");
    assert_eq!(
        a.claim(&row, "a", first, post, alive).unwrap(),
        Claim::Refused
    );
    // a never reported itself alive and its POST's time is over (a zero send timeout).
    assert_eq!(
        b.claim(&row, "b", second, Duration::ZERO, alive).unwrap(),
        Claim::Granted
    );
    store.delivered(&row, &[], SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(
        b.claim(&row, "b", second, post, alive).unwrap(),
        Claim::Gone
    );
    b.release_lease("b").unwrap();
    assert!(
        a.hold_lease("a", ttl).unwrap().is_some(),
        "given up at once"
    );
}

#[test]
fn a_message_claimed_by_a_live_peer_waits_until_it_records_or_stops() {
    let cluster = PgCluster::start();
    let (store, a) = store(&cluster);
    let (_, b) = self::store(&cluster);
    let ttl = Duration::from_millis(1500);
    let first = a.hold_lease("a", ttl).unwrap().unwrap();
    let row = message(&store, "in flight");
    assert_eq!(
        a.claim(&row, "a", first, Duration::from_secs(30), ttl)
            .unwrap(),
        Claim::Granted
    );
    let second = take_when_free(&b, "b", Duration::from_secs(30));
    assert_eq!(
        b.claim(&row, "b", second, Duration::from_secs(30), ttl)
            .unwrap(),
        Claim::Wait,
        "a claimed it moments ago: its POST may be under way"
    );
    // a is alive (it sent while the database was away, and will record the delivery).
    a.heartbeat("a", "standby", 1).unwrap();
    assert_eq!(
        b.claim(&row, "b", second, Duration::ZERO, ttl).unwrap(),
        Claim::Wait,
        "a live claimant keeps its message"
    );
    assert!(
        b.peers_settling("b", ttl).unwrap(),
        "a still has a delivery to record"
    );
    a.heartbeat("a", "stopped", 0).unwrap();
    assert!(!b.peers_settling("b", ttl).unwrap());
    assert_eq!(
        b.claim(&row, "b", second, Duration::ZERO, ttl).unwrap(),
        Claim::Granted,
        "a stopped: the message is b's"
    );
}

#[test]
fn a_late_record_never_replaces_a_newer_log_entry() {
    let cluster = PgCluster::start();
    let (store, _) = store(&cluster);
    let entry = |secs: u64, fp: u64| LogEntry {
        firing: BTreeSet::from([fp]),
        resolved: BTreeSet::new(),
        sent_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        reminders: 0,
    };
    let newer = message(&store, "newer");
    store
        .delivered(
            &newer,
            &[("cluster=bj".into(), entry(2_000, 2))],
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
    let older = message(&store, "older");
    store
        .delivered(
            &older,
            &[("cluster=bj".into(), entry(1_000, 1))],
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
    assert_eq!(store.nflog().unwrap()[0].1, entry(2_000, 2));
}

#[test]
fn an_outage_gives_errors_and_the_next_call_after_it_reconnects() {
    let cluster = PgCluster::start();
    let (store, _) = store(&cluster);
    store.silences().unwrap();
    cluster.stop();
    let err = store.silences().expect_err("server down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(store.nflog().is_err());
    cluster.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.silences().is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        std::thread::sleep(Duration::from_millis(100)); // RECONNECT_PAUSE between tries
    }
}

#[test]
fn a_database_migrated_by_a_newer_aggregator_is_refused() {
    let cluster = PgCluster::start();
    let (store, _) = store(&cluster);
    store.silences().unwrap();
    let mut admin = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    admin
        .execute("INSERT INTO flumewatch_schema (version) VALUES (999)", &[])
        .unwrap();
    let (again, _) = self::store(&cluster);
    let err = again.silences().expect_err("refused");
    assert!(err.to_string().contains("schema version 999"), "{err}");
}
