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
    // Alertmanager's default group_interval (flumewatch's is 1m): the timings below read as
    // the Alertmanager documentation tells them.
    validate(
        RawNotify {
            group_interval: Some("5m".into()),
            ..RawNotify::default()
        },
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

#[tokio::test(start_paused = true)]
async fn without_receivers_firing_alerts_make_no_groups() {
    // Regression: the root route pointed at receiver 0 of none, and flushing that group
    // panicked the notifier (found under the 10 000-stream load, which configures no robot).
    let config = validate(
        RawNotify::default(),
        Vec::new(),
        None,
        NotifyFlags::default(),
        Language::Zh,
    )
    .unwrap();
    let mut d = Dispatcher::default();
    d.observe(
        &[alert("h1", "bj", AlertStatus::Firing)],
        &config,
        Instant::now(),
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(d.due(Instant::now()).is_empty());
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
        reminders: 0,
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
        reminders: 0,
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

fn config_with(raw: RawNotify) -> NotifyConfig {
    config_for(raw, ["ops", "dba"])
}

fn config_for(raw: RawNotify, names: [&str; 2]) -> NotifyConfig {
    let receiver = |name: &str| RawReceiver {
        name: name.into(),
        webhook: Some("http://127.0.0.1:1/robot/send?access_token=T".into()),
        ..RawReceiver::default()
    };
    validate(
        raw,
        names.iter().map(|n| receiver(n)).collect(),
        None,
        NotifyFlags::default(),
        Language::Zh,
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_receivers_other_groups_go_with_its_first_due_group() {
    let config = config();
    let mut d = Dispatcher::default();
    let bj = alert("h1", "bj", AlertStatus::Firing);
    let sh = alert("h2", "sh", AlertStatus::Firing);
    d.observe(std::slice::from_ref(&bj), &config, Instant::now());
    // sh fails 15 s later (half the group_wait): a group of its own, waiting until 45 s.
    tokio::time::advance(Duration::from_secs(15)).await;
    d.observe(&[bj.clone(), sh.clone()], &config, Instant::now());
    tokio::time::advance(Duration::from_secs(15)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "bj is due at 30 s");
    let taken = BTreeMap::from([(due[0].key.1.clone(), ())]);
    let along = d.others(0, &taken);
    assert_eq!(along.len(), 1, "sh is offered to go along");
    assert_eq!(along[0].labels["cluster"], "sh");
    assert!(
        d.others(1, &BTreeMap::<String, ()>::new()).is_empty(),
        "another receiver's groups stay"
    );
    // It had news (first notification): it goes, ending its wait early.
    d.flushed_now(&along[0].key, Instant::now());
    assert!(d.due(Instant::now()).is_empty(), "nothing due right after");
    // Both now follow group_interval (5 m) from this flush.
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(d.due(Instant::now()).is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(d.due(Instant::now()).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_schedules_and_flushed_groups_wait_a_group_interval() {
    let config = config_with(RawNotify {
        group_wait: Some("10s".into()),
        group_interval: Some("60s".into()),
        ..RawNotify::default()
    });
    let mut d = Dispatcher::default();
    let bj = alert("h1", "bj", AlertStatus::Firing);
    d.observe(std::slice::from_ref(&bj), &config, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        d.due(Instant::now()).len(),
        1,
        "first flush after group_wait"
    );
    // 20 s later a reload, then sh fails; bj's group flushes 60 s after the reload.
    tokio::time::advance(Duration::from_secs(20)).await;
    let sh = alert("h2", "sh", AlertStatus::Firing);
    let names = ["ops".to_owned(), "dba".to_owned()];
    // The reload swaps the receivers' order: groups follow their receiver by name.
    let swapped = [names[1].clone(), names[0].clone()];
    d.reconfigure(&names, &swapped, Instant::now());
    let reloaded = config_for(
        RawNotify {
            receiver: Some("ops".into()),
            group_wait: Some("10s".into()),
            group_interval: Some("60s".into()),
            ..RawNotify::default()
        },
        ["dba", "ops"],
    );
    d.observe(std::slice::from_ref(&bj), &reloaded, Instant::now());
    // The re-formed group flushes at once (the notifier finds nothing new to say), then
    // group_interval after the reload: not group_wait.
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "flushed at the reload");
    assert_eq!(due[0].key.0, 1, "under its receiver's new index");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(
        d.due(Instant::now()).is_empty(),
        "not group_wait after the reload"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(d.due(Instant::now()).len(), 1);
    d.observe(&[bj, sh], &reloaded, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "a new group still waits its group_wait");
    assert_eq!(due[0].labels["cluster"], "sh");
}

#[tokio::test(start_paused = true)]
async fn group_by_nothing_is_one_group_and_group_by_all_is_one_per_alert() {
    let alerts = [
        alert("h1", "bj", AlertStatus::Firing),
        alert("h2", "sh", AlertStatus::Firing),
        alert("h3", "sh", AlertStatus::Firing),
    ];
    for (group_by, groups) in [(vec![], 1), (vec!["...".to_owned()], 3)] {
        let config = config_with(RawNotify {
            group_by: Some(group_by.clone()),
            ..RawNotify::default()
        });
        let mut d = Dispatcher::default();
        d.observe(&alerts, &config, Instant::now());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(d.due(Instant::now()).len(), groups, "{group_by:?}");
    }
    let refused = validate(
        RawNotify {
            group_by: Some(vec!["...".into(), "cluster".into()]),
            ..RawNotify::default()
        },
        Vec::new(),
        None,
        NotifyFlags::default(),
        Language::Zh,
    );
    assert_eq!(refused.unwrap_err().0, "notify.group_by");
}

#[test]
fn reminders_escalate_and_a_change_starts_them_over() {
    let config = config_with(RawNotify {
        repeat_intervals: Some(vec!["30m".into(), "2h".into(), "8h".into()]),
        ..RawNotify::default()
    });
    let opts = &config.root;
    let minutes = |n: u32| opts.repeat_after(n).as_secs() / 60;
    assert_eq!(
        (minutes(0), minutes(1), minutes(2), minutes(9)),
        (30, 120, 480, 480)
    );
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let firing = BTreeSet::from([1, 2]);
    let first = LogEntry::after(None, firing.clone(), BTreeSet::new(), t0);
    assert_eq!(first.reminders, 0);
    let due = |entry: &LogEntry, after: u64| {
        needs_update(
            Some(entry),
            &firing,
            &BTreeSet::new(),
            opts,
            entry.sent_at.unwrap() + Duration::from_secs(after * 60),
        )
    };
    assert!(!due(&first, 29) && due(&first, 30));
    let second = LogEntry::after(Some(&first), firing.clone(), BTreeSet::new(), t0);
    assert_eq!(second.reminders, 1);
    assert!(!due(&second, 119) && due(&second, 120));
    let changed = LogEntry::after(Some(&second), BTreeSet::from([1]), BTreeSet::from([2]), t0);
    assert_eq!(
        changed.reminders, 0,
        "something resolved: back to the first interval"
    );
    let bad = validate(
        RawNotify {
            repeat_intervals: Some(vec!["2h".into(), "30m".into()]),
            ..RawNotify::default()
        },
        Vec::new(),
        None,
        NotifyFlags::default(),
        Language::Zh,
    );
    assert_eq!(bad.unwrap_err().0, "notify.repeat_intervals[1]");
}

fn named(alert: Alert, alertname: &str, severity: Severity) -> Alert {
    let mut labels = alert.labels.0.clone();
    labels.insert("alertname".into(), alertname.into());
    let labels = Labels(labels);
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: alertname.into(),
        severity,
        labels,
        ..alert
    }
}

#[tokio::test(start_paused = true)]
async fn more_of_a_told_incident_waits_for_its_follow_up_unless_it_is_worse() {
    let config = config_with(RawNotify {
        group_wait: Some("10s".into()),
        group_interval: Some("60s".into()),
        ..RawNotify::default()
    });
    let mut d = Dispatcher::default();
    let soon = named(
        alert("h1", "bj", AlertStatus::Firing),
        "ChannelFullSoon",
        Severity::Warning,
    );
    d.observe(std::slice::from_ref(&soon), &config, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        d.due(Instant::now()).len(),
        1,
        "told at 10 s; follow-up at 70 s"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    // 20 s: the same channel passes 80 % (a warning), another host's agent goes down.
    let filling = named(
        alert("h1", "bj", AlertStatus::Firing),
        "ChannelFilling",
        Severity::Warning,
    );
    let down = named(
        alert("h2", "bj", AlertStatus::Firing),
        "FlumeAgentDown",
        Severity::Critical,
    );
    d.observe(
        &[soon.clone(), filling.clone(), down.clone()],
        &config,
        Instant::now(),
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "at 30 s only the new incident: {due:?}");
    assert_eq!(due[0].firing[0].alertname, "FlumeAgentDown");
    // 40 s: h1's channel is full: critical, worse than what was told — its own group_wait.
    tokio::time::advance(Duration::from_secs(10)).await;
    let full = named(
        alert("h1", "bj", AlertStatus::Firing),
        "ChannelPutsFailing",
        Severity::Critical,
    );
    d.observe(&[soon, filling, down, full], &config, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    let due = d.due(Instant::now());
    assert_eq!(due.len(), 1, "at 50 s the escalation: {due:?}");
    assert_eq!(due[0].firing[0].alertname, "ChannelPutsFailing");
    tokio::time::advance(Duration::from_secs(20)).await;
    let due = d.due(Instant::now());
    let names: Vec<&str> = due.iter().map(|g| g.firing[0].alertname.as_str()).collect();
    assert_eq!(
        names,
        ["ChannelFilling", "ChannelFullSoon"],
        "the follow-up at 70 s"
    );
}
