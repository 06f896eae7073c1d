//! Grouping and dedup on the paused clock: group_wait, group_interval, repeat_interval.

use std::time::Duration;

use super::*;
use crate::alert::{Labels, Severity};
use crate::notify::config::{validate, NotifyFlags, RawNotify, RawReceiver};
use crate::rules::Language;

fn config() -> NotifyConfig {
    let receiver = RawReceiver {
        name: "ops".into(),
        webhook: Some("http://127.0.0.1:1/robot/send?access_token=T".into()),
        ..RawReceiver::default()
    };
    validate(
        RawNotify::default(),
        vec![receiver],
        None,
        NotifyFlags::default(),
        Language::Zh,
    )
    .unwrap()
}

fn alert(host: &str, cluster: &str, status: AlertStatus) -> Alert {
    let labels = Labels(BTreeMap::from([
        ("alertname".to_owned(), "ChannelFilling".to_owned()),
        ("cluster".to_owned(), cluster.to_owned()),
        ("host".to_owned(), host.to_owned()),
    ]));
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: "ChannelFilling".into(),
        severity: Severity::Warning,
        status,
        labels,
        annotations: BTreeMap::new(),
        value: 90.0,
        active_since: SystemTime::UNIX_EPOCH,
        firing_since: None,
        resolved_at: None,
        context: Default::default(),
    }
}

fn fps(alerts: &[Alert]) -> BTreeSet<u64> {
    alerts.iter().map(|a| a.fingerprint).collect()
}

#[tokio::test(start_paused = true)]
async fn group_wait_then_group_interval_then_resolved_then_repeat() {
    let config = config();
    let mut d = Dispatcher::default();
    let hosts: Vec<String> = (0..41).map(|i| format!("h{i:02}")).collect();
    let mut alerts: Vec<Alert> = hosts[..40]
        .iter()
        .map(|h| alert(h, "bj", AlertStatus::Firing))
        .collect();
    d.observe(&alerts[..10], &config, Instant::now());
    tokio::time::advance(Duration::from_secs(20)).await;
    d.observe(&alerts, &config, Instant::now());
    assert!(
        d.due(Instant::now()).is_empty(),
        "group_wait (30 s) has not passed"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "one group");
    assert_eq!(due[0].firing.len(), 40);
    assert_eq!(due[0].labels["cluster"], "bj");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert!(needs_update(
        None,
        &fps(&due[0].firing),
        &BTreeSet::new(),
        &due[0].opts,
        wall
    ));
    let mut entry = LogEntry {
        firing: fps(&due[0].firing),
        resolved: BTreeSet::new(),
        sent_at: Some(wall),
    };

    // A 41st joins: told at the next group_interval (5 m), not before.
    alerts.push(alert(&hosts[40], "bj", AlertStatus::Firing));
    d.observe(&alerts, &config, Instant::now());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(d.due(Instant::now()).is_empty());
    tokio::time::advance(Duration::from_secs(240)).await;
    let due = d.due(Instant::now());
    assert_eq!(due[0].firing.len(), 41);
    assert!(needs_update(
        Some(&entry),
        &fps(&due[0].firing),
        &BTreeSet::new(),
        &due[0].opts,
        wall + Duration::from_secs(300)
    ));
    entry = LogEntry {
        firing: fps(&due[0].firing),
        resolved: BTreeSet::new(),
        sent_at: Some(wall + Duration::from_secs(300)),
    };

    // Nothing new: no message; after 4 h still firing: a repeat.
    tokio::time::advance(Duration::from_secs(300)).await;
    let due = d.due(Instant::now());
    assert!(!needs_update(
        Some(&entry),
        &fps(&due[0].firing),
        &BTreeSet::new(),
        &due[0].opts,
        wall + Duration::from_secs(600)
    ));
    assert!(needs_update(
        Some(&entry),
        &fps(&due[0].firing),
        &BTreeSet::new(),
        &due[0].opts,
        wall + Duration::from_secs(300 + 4 * 3600)
    ));

    // Recovery: a resolved message, then the group goes away once it was sent.
    for a in &mut alerts {
        a.status = AlertStatus::Resolved;
    }
    d.observe(&alerts, &config, Instant::now());
    tokio::time::advance(Duration::from_secs(300)).await;
    let due = d.due(Instant::now());
    assert!(due[0].firing.is_empty() && due[0].resolved.len() == 41);
    assert!(needs_update(
        Some(&entry),
        &BTreeSet::new(),
        &fps(&due[0].resolved),
        &due[0].opts,
        wall + Duration::from_secs(900)
    ));
    d.delivered(&due[0].key, &fps(&due[0].resolved));
    assert!(d.next_flush().is_none(), "empty groups are dropped");
}

#[tokio::test(start_paused = true)]
async fn two_clusters_make_two_groups_for_one_receiver() {
    let config = config();
    let mut d = Dispatcher::default();
    d.observe(
        &[
            alert("h1", "bj", AlertStatus::Firing),
            alert("h2", "sh", AlertStatus::Firing),
        ],
        &config,
        Instant::now(),
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 2);
    assert!(
        due.iter().all(|g| g.key.0 == 0),
        "same receiver: the notifier merges them into one message"
    );
}

#[tokio::test(start_paused = true)]
async fn groups_formed_moments_apart_flush_together_but_never_early_alone() {
    let config = config();
    let mut d = Dispatcher::default();
    let bj = alert("h1", "bj", AlertStatus::Firing);
    let sh = alert("h2", "sh", AlertStatus::Firing);
    d.observe(std::slice::from_ref(&bj), &config, Instant::now());
    tokio::time::advance(Duration::from_millis(400)).await;
    d.observe(&[bj.clone(), sh.clone()], &config, Instant::now());
    let window = Duration::from_secs(1);
    tokio::time::advance(Duration::from_millis(29_000)).await;
    assert!(
        d.due_within(Instant::now(), window).is_empty(),
        "nothing is due yet: no group goes early on its own"
    );
    tokio::time::advance(Duration::from_millis(600)).await;
    let due = d.due_within(Instant::now(), window);
    assert_eq!(due.len(), 2, "bj is due; sh, due 400 ms later, joins it");
}
