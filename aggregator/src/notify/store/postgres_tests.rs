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
    assert_eq!(store.outbox().unwrap(), [row.clone()]);
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

#[test]
fn one_replica_at_a_time_holds_the_lease_and_claims_under_it() {
    let cluster = PgCluster::start();
    let (store, a) = store(&cluster);
    let (_, b) = self::store(&cluster);
    let ttl = Duration::from_millis(1500);
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
    let timeout = Duration::from_secs(1);
    assert_eq!(a.claim(&row, "a", first, timeout).unwrap(), Claim::Granted);
    assert_eq!(b.claim(&row, "b", first, timeout).unwrap(), Claim::Refused);
    // a dies: b waits the term out, then takes a new one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(epoch) = b.hold_lease("b", ttl).unwrap() {
            break epoch;
        }
        assert!(std::time::Instant::now() < deadline, "lease never expired");
        std::thread::sleep(Duration::from_millis(100)); // polling a database clock
    };
    assert!(second > first, "{second} after {first}");
    assert_eq!(a.hold_lease("a", ttl).unwrap(), None, "a's term is over");
    assert_eq!(a.claim(&row, "a", first, timeout).unwrap(), Claim::Refused);
    // a's claim is more than the send timeout old only after a second.
    let claimed = b.claim(&row, "b", second, timeout).unwrap();
    assert!(
        matches!(claimed, Claim::Granted | Claim::Wait),
        "{claimed:?}"
    );
    store.delivered(&row, &[], SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(b.claim(&row, "b", second, timeout).unwrap(), Claim::Gone);
    b.release_lease("b").unwrap();
    assert!(
        a.hold_lease("a", ttl).unwrap().is_some(),
        "given up at once"
    );
}

#[test]
fn a_claim_by_a_holder_that_may_still_be_posting_waits_for_its_send_timeout() {
    let cluster = PgCluster::start();
    let (store, a) = store(&cluster);
    let ttl = Duration::from_millis(300);
    let first = a.hold_lease("a", ttl).unwrap().unwrap();
    let row = message(&store, "in flight");
    assert_eq!(
        a.claim(&row, "a", first, Duration::from_secs(30)).unwrap(),
        Claim::Granted
    );
    let (_, b) = self::store(&cluster);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(epoch) = b.hold_lease("b", Duration::from_secs(30)).unwrap() {
            break epoch;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50)); // polling a database clock
    };
    assert_eq!(
        b.claim(&row, "b", second, Duration::from_secs(30)).unwrap(),
        Claim::Wait,
        "a claimed it moments ago: its POST may be under way"
    );
    assert_eq!(
        b.claim(&row, "b", second, Duration::ZERO).unwrap(),
        Claim::Granted,
        "with a zero send timeout nothing can be under way"
    );
}

#[test]
fn an_outage_gives_errors_at_once_and_the_next_call_after_it_reconnects() {
    let cluster = PgCluster::start();
    let (store, _) = store(&cluster);
    store.silences().unwrap();
    cluster.stop();
    let started = std::time::Instant::now();
    let err = store.silences().expect_err("server down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(store.nflog().is_err());
    println!("outage answered in {:?}", started.elapsed());
    cluster.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.silences().is_err() {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        std::thread::sleep(Duration::from_millis(100)); // RECONNECT_PAUSE between tries
    }
}
