//! Fleet bookkeeping: resume points, duplicates, restarted sidecars, stale streams, history.

use std::time::{Duration, UNIX_EPOCH};

use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};

use super::*;

fn hello(host: &str, instance: &str) -> Hello {
    Hello {
        host: host.into(),
        instance_id: instance.into(),
        agents: vec!["a1".into()],
        labels: BTreeMap::from([("cluster".into(), "bj".into())]),
        version: "0.1.0".into(),
        poll_interval: Duration::from_secs(10),
    }
}

fn snap(seq: u64, at_secs: u64, ok: bool) -> Snapshot {
    let at = UNIX_EPOCH + Duration::from_secs(at_secs);
    if ok {
        flumewatch_testkit::snapshot::ok(seq, at, vec![])
    } else {
        flumewatch_testkit::snapshot::failed(
            seq,
            at,
            ScrapeOutcome::ConnectionRefused("refused".into()),
        )
    }
}

fn at(secs: u64) -> Now {
    Now {
        mono: tokio::time::Instant::now() + Duration::from_secs(secs),
        wall: UNIX_EPOCH + Duration::from_secs(secs),
    }
}

fn fleet(history: usize) -> Fleet {
    Fleet::new(history, Arc::new(RuleSet::defaults()), Language::Zh)
}

#[test]
fn same_instance_resumes_and_replays_are_duplicates() {
    let fleet = fleet(4);
    let first = fleet.connect(hello("h1", "i1"), at(0));
    assert_eq!(first.resume_after, 0);
    for seq in 1..=3 {
        assert_eq!(
            fleet.record("h1", first.stream_id, snap(seq, seq, true), at(seq)),
            Recorded::Stored
        );
    }
    fleet.disconnect("h1", first.stream_id, at(4));
    let second = fleet.connect(hello("h1", "i1"), at(5));
    assert_eq!(second.resume_after, 3);
    assert_eq!(
        fleet.record("h1", second.stream_id, snap(3, 3, true), at(5)),
        Recorded::Duplicate
    );
    assert_eq!(
        fleet.record("h1", second.stream_id, snap(4, 4, true), at(5)),
        Recorded::Stored
    );
    let view = fleet.agent("h1", "a1").expect("known");
    assert_eq!(view.state.received, 4);
    assert_eq!(view.state.duplicates, 1);
    assert_eq!(view.state.history.seqs().collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn restarted_sidecar_starts_a_new_sequence() {
    let fleet = fleet(4);
    let old = fleet.connect(hello("h1", "i1"), at(0));
    fleet.record("h1", old.stream_id, snap(1, 1, true), at(1));
    fleet.record("h1", old.stream_id, snap(2, 2, true), at(2));
    let new = fleet.connect(hello("h1", "i2"), at(3));
    assert_eq!(new.resume_after, 0);
    assert_eq!(
        fleet.record("h1", new.stream_id, snap(1, 3, true), at(3)),
        Recorded::Stored
    );
    assert_eq!(
        fleet
            .agent("h1", "")
            .unwrap()
            .state
            .latest
            .unwrap()
            .scraped_at,
        at(3).wall
    );
}

#[test]
fn a_stale_stream_neither_stores_nor_disconnects() {
    let fleet = fleet(4);
    let old = fleet.connect(hello("h1", "i1"), at(0));
    let new = fleet.connect(hello("h1", "i1"), at(1));
    assert_eq!(
        fleet.record("h1", old.stream_id, snap(1, 1, true), at(1)),
        Recorded::StaleStream
    );
    fleet.disconnect("h1", old.stream_id, at(2));
    let view = fleet.agent("h1", "a1").unwrap();
    assert!(view.sidecar.connected);
    fleet.disconnect("h1", new.stream_id, at(3));
    let view = fleet.agent("h1", "a1").unwrap();
    assert!(!view.sidecar.connected);
    assert_eq!(view.sidecar.since, at(3).wall);
}

#[test]
fn history_is_bounded_and_failures_are_counted() {
    let fleet = fleet(3);
    let reg = fleet.connect(hello("h1", "i1"), at(0));
    for seq in 1..=5 {
        fleet.record("h1", reg.stream_id, snap(seq, seq, seq < 3), at(seq));
    }
    let view = fleet.agent("h1", "a1").unwrap();
    assert_eq!(view.state.history.len(), 3);
    assert_eq!(view.state.history.seqs().next(), Some(3));
    assert_eq!(view.state.consecutive_failures, 3);
}

#[test]
fn agents_filter_by_label_and_host() {
    let fleet = fleet(3);
    fleet.connect(hello("h1", "i1"), at(0));
    let mut other = hello("h2", "i2");
    other.labels.insert("cluster".into(), "sh".into());
    fleet.connect(other, at(0));
    let bj = BTreeMap::from([("cluster".to_owned(), "bj".to_owned())]);
    assert_eq!(fleet.agents(&bj, None).len(), 1);
    assert_eq!(fleet.agents(&BTreeMap::new(), None).len(), 2);
    assert_eq!(
        fleet.agents(&BTreeMap::new(), Some("h2"))[0].state.host,
        "h2"
    );
    assert!(matches!(
        fleet.agent("h3", ""),
        Err(LookupError::UnknownHost(_))
    ));
}
