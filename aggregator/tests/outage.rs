//! DingTalk unreachable for ten minutes on tokio's paused clock: the real fleet judges 30 hosts
//! whose channels fill one after another, the real notifier keeps trying (the fake robot closes
//! every connection unanswered), and once the robot is back every alert is delivered, in the
//! order it started, never more than 20 messages a minute, none twice.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::{body_with_fill, fresh_dir};
use flumewatch_aggregator::config::FileConfig;
use flumewatch_aggregator::fleet::{Fleet, Hello, Now};
use flumewatch_aggregator::notify::store::Store;
use flumewatch_aggregator::notify::{Notifier, NotifyHandle};
use flumewatch_sidecar::flume::parse_metrics;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::rules::FILLING_ONLY;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HOSTS: usize = 30;
const POLL: Duration = Duration::from_secs(10);
const OUTAGE: Duration = Duration::from_secs(600);

#[tokio::test(start_paused = true)]
async fn ten_minutes_without_dingtalk_then_everything_in_order() {
    let dir = fresh_dir("fw-outage");
    std::fs::write(dir.join("rules.toml"), FILLING_ONLY).unwrap();
    let fake = FakeDingTalk::start("tok-out", Some("SECout"))
        .await
        .unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "state_dir = {:?}\nrules = {:?}\n[notify]\ngroup_by = [\"host\"]\ngroup_wait = \"30s\"\ngroup_interval = \"1m\"\nrepeat_interval = \"4h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = \"SECout\"\n",
        dir.join("state"),
        dir.join("rules.toml"),
        fake.webhook()
    ))
    .unwrap();
    let config = file.validate().unwrap();
    let fleet = Fleet::new(10, config.rules.clone(), config.language);
    let store = Store::open(&config.state_dir).unwrap();
    let handle = NotifyHandle::new(Some(store.clone()));
    let (_settings, updates) = tokio::sync::watch::channel(config.notify.clone());
    let notifier = Notifier::new(updates, fleet.clone(), handle.clone(), store).unwrap();
    let stop = CancellationToken::new();
    let notifier = tokio::spawn(notifier.run(stop.clone()));

    let healthy = parse_metrics(&body_with_fill(10)).unwrap();
    let filling = parse_metrics(&body_with_fill(90)).unwrap();
    let start = Instant::now();
    let wall0 = SystemTime::now();
    let now = || {
        let mono = Instant::now();
        Now {
            mono,
            wall: wall0 + (mono - start),
        }
    };
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("h{i:02}")).collect();
    let mut streams = BTreeMap::new();
    for host in &hosts {
        let hello = Hello {
            host: host.clone(),
            instance_id: format!("{host}-1"),
            agents: vec!["a1".into()],
            labels: BTreeMap::new(),
            version: "test".into(),
            poll_interval: POLL,
        };
        streams.insert(host.clone(), fleet.connect(hello, now()).stream_id);
    }

    // Host i's channel fills at 20 s × i: the last one 9m40s into the outage.
    fake.go_down();
    let fills_at = |i: usize| Duration::from_secs(20 * i as u64);
    let mut seq = 0;
    let mut came_back = false;
    while start.elapsed() < OUTAGE + Duration::from_secs(300) {
        if !came_back && start.elapsed() >= OUTAGE {
            assert!(fake.received().is_empty(), "nothing got through while down");
            fake.come_back();
            came_back = true;
        }
        seq += 1;
        for (i, host) in hosts.iter().enumerate() {
            let components = if start.elapsed() >= fills_at(i) {
                filling.clone()
            } else {
                healthy.clone()
            };
            let snapshot = flumewatch_testkit::snapshot::ok(seq, now().wall, components);
            fleet.record(host, streams[host], snapshot, now());
        }
        fleet.tick(now());
        tokio::time::sleep(POLL).await;
    }

    let received = fake.received();
    let first_seen = |host: &str| {
        received
            .iter()
            .position(|m| m.text.contains(&format!("**{host}**/a1")))
    };
    let positions: Vec<usize> = hosts
        .iter()
        .map(|h| first_seen(h).unwrap_or_else(|| panic!("{h} never announced")))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "announced in the order they started: {positions:?}"
    );
    for host in &hosts {
        let times = received
            .iter()
            .filter(|m| m.text.contains(&format!("**{host}**/a1")))
            .count();
        assert_eq!(times, 1, "{host} announced {times} times");
    }
    let first_after = received[0].at.duration_since(start);
    assert!(first_after >= OUTAGE, "first delivery at {first_after:?}");
    let all_after = received.last().unwrap().at.duration_since(start) - OUTAGE;
    assert!(fake.max_per_minute() <= 20);
    assert!(!fake.answers().contains(&130_101), "{:?}", fake.answers());
    let status = handle.lock().receivers[0].clone();
    println!(
        "DingTalk down {} s (simulated): {} connection attempts refused; afterwards {} messages \
         carried all {HOSTS} alerts in order within {} s of recovery, at most {} per minute, 0 duplicates; \
         failed attempts {}",
        OUTAGE.as_secs(),
        fake.refused(),
        received.len(),
        all_after.as_secs(),
        fake.max_per_minute(),
        status.failed_attempts
    );
    assert!(
        fake.refused() >= 5,
        "the notifier kept trying during the outage"
    );
    stop.cancel();
    notifier.await.unwrap();
}
