//! The notification history over real sockets: what two signature-checking robots received is
//! what the real grpcurl lists with `Fleet/ListNotifications`, in order, with reasons and
//! msgUuids, and its receiver, alert and limit filters work; a robot that hangs is given up on
//! after the receiver's `send_timeout` and gets the retry under the same msgUuid.

use std::path::PathBuf;
use std::process::Command;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Forced, Received};
use flumewatch_testkit::rules::FILLING_ONLY;
use serde_json::Value;

const SECRET: &str = "SEChistory0123456789abcdef0123456789abcdef0123456789abcdef012345";

/// A rule file of its own (ChannelFilling only: these simulated sidecars report only when
/// told), removed with its directory when dropped.
struct RulesFile {
    path: PathBuf,
    _dir: TempDir,
}

impl RulesFile {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(&format!("history-{name}"));
        Self {
            path: dir.write("rules.toml", FILLING_ONLY),
            _dir: dir,
        }
    }
}

fn receiver(name: &str, fake: &FakeDingTalk, extra: &str) -> String {
    format!(
        "[[receivers]]\nname = {name:?}\nwebhook = {:?}\nsecret = {SECRET:?}\n{extra}\n",
        fake.webhook()
    )
}

async fn received(fake: &FakeDingTalk, n: usize) -> Vec<Received> {
    wait_for(&format!("{n} DingTalk message(s)"), || async {
        let r = fake.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

/// The history once `n` messages are in it and all of them delivered (the robot has a message
/// before the notifier has read the answer).
async fn delivered(aggregator: &AggregatorHandle, n: usize) -> Vec<pb::Notification> {
    let client = aggregator.client().await;
    wait_for(&format!("{n} delivered messages in the history"), || {
        let mut client = client.clone();
        async move {
            let listed = client
                .list_notifications(pb::ListNotificationsRequest::default())
                .await
                .ok()?
                .into_inner()
                .notifications;
            (listed.len() == n
                && listed
                    .iter()
                    .all(|m| m.state == pb::NotificationState::Sent as i32))
            .then_some(listed)
        }
    })
    .await
}

async fn fingerprint(aggregator: &AggregatorHandle, host: &str) -> String {
    let mut client = aggregator.client().await;
    let alerts = client
        .list_alerts(pb::ListAlertsRequest {
            labels: [("host".to_owned(), host.to_owned())].into(),
            ..Default::default()
        })
        .await
        .expect("ListAlerts")
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1, "{host}: {alerts:?}");
    alerts[0].fingerprint.clone()
}

fn list_notifications(addr: &str, request: &str) -> Vec<Value> {
    let output = Command::new(grpcurl())
        .args([
            "-plaintext",
            "-d",
            request,
            addr,
            "flumewatch.v1.Fleet/ListNotifications",
        ])
        .output()
        .expect("grpcurl runs");
    assert!(
        output.status.success(),
        "grpcurl {request}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    json["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn field<'a>(messages: &'a [Value], name: &str) -> Vec<&'a str> {
    messages
        .iter()
        .map(|m| m[name].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_what_the_robots_received_in_order_with_reasons_and_msg_uuids() {
    let rules = RulesFile::new("list");
    let (ops, dev) = (
        FakeDingTalk::start("tok-ops", Some(SECRET)).await.unwrap(),
        FakeDingTalk::start("tok-dev", Some(SECRET)).await.unwrap(),
    );
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n[notify]\ngroup_wait = \"1s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"\n\
         [[notify.routes]]\nmatchers = [\"cluster=sh-log\"]\nreceiver = \"dev\"\n{}{}",
        rules.path,
        receiver("ops", &ops, ""),
        receiver("dev", &dev, ""),
    ))
    .await;
    let url = aggregator.url();
    let mut bj1 = StreamSidecar::connect(&url, "bj-flume-01", &[("cluster", "bj-log")]).await;
    let mut bj2 = StreamSidecar::connect(&url, "bj-flume-02", &[("cluster", "bj-log")]).await;
    let mut sh1 = StreamSidecar::connect(&url, "sh-flume-01", &[("cluster", "sh-log")]).await;
    // ops: bj-flume-01 fires; dev: sh-flume-01 fires; ops: bj-flume-02 joins; ops: bj-flume-01
    // resolves. Each step waits for its message, so the order is known.
    bj1.report(&body_with_fill(85)).await;
    received(&ops, 1).await;
    sh1.report(&body_with_fill(85)).await;
    received(&dev, 1).await;
    bj2.report(&body_with_fill(85)).await;
    received(&ops, 2).await;
    let (fp_bj1, fp_bj2, fp_sh1) = (
        fingerprint(&aggregator, "bj-flume-01").await,
        fingerprint(&aggregator, "bj-flume-02").await,
        fingerprint(&aggregator, "sh-flume-01").await,
    );
    bj1.report(&body_with_fill(10)).await;
    let at_ops = received(&ops, 3).await;
    let at_dev = received(&dev, 1).await;
    delivered(&aggregator, 4).await;

    let addr = aggregator.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let listed = list_notifications(&addr, r#"{"receiver":"ops"}"#);
        let uuids: Vec<Option<String>> = at_ops.iter().map(|m| m.msg_uuid.clone()).collect();
        assert!(
            uuids.iter().all(Option::is_some),
            "every body had a msgUuid"
        );
        assert_eq!(
            field(&listed, "msgUuid"),
            uuids
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "ListNotifications names what the robot received, in order: {listed:#?}"
        );
        assert_eq!(
            field(&listed, "reason"),
            ["first_notification", "new_alerts", "some_resolved"]
        );
        assert_eq!(
            field(&listed, "title"),
            at_ops.iter().map(|m| m.title.as_str()).collect::<Vec<_>>()
        );
        for (m, robot) in listed.iter().zip(&at_ops) {
            assert_eq!(m["receiver"], "ops");
            assert_eq!(m["state"], "NOTIFICATION_STATE_SENT");
            assert_eq!(m["attempts"], 1, "{m}");
            assert_eq!(
                m["bodyBytes"],
                robot.body_bytes.to_string(),
                "uint64 prints as a string"
            );
            assert!(m["sentAt"].is_string() && m["createdAt"].is_string(), "{m}");
            assert!(m.get("lastErrmsg").is_none(), "no attempt failed: {m}");
        }
        let alerts = |m: &Value| -> Vec<(String, String)> {
            m["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    assert_eq!(a["alertname"], "ChannelFilling");
                    (
                        a["fingerprint"].as_str().unwrap().to_owned(),
                        a["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let firing = |fp: &str| (fp.to_owned(), "ALERT_STATE_FIRING".to_owned());
        let resolved = |fp: &str| (fp.to_owned(), "ALERT_STATE_RESOLVED".to_owned());
        assert_eq!(alerts(&listed[0]), [firing(&fp_bj1)]);
        let mut second = alerts(&listed[1]);
        second.sort();
        let mut both = vec![firing(&fp_bj1), firing(&fp_bj2)];
        both.sort();
        assert_eq!(second, both);
        assert_eq!(alerts(&listed[2]), [firing(&fp_bj2), resolved(&fp_bj1)]);

        let everything = list_notifications(&addr, "{}");
        assert_eq!(field(&everything, "receiver"), ["ops", "dev", "ops", "ops"]);
        let dev = list_notifications(&addr, r#"{"receiver":"dev"}"#);
        assert_eq!(
            field(&dev, "msgUuid"),
            [at_dev[0].msg_uuid.as_deref().unwrap()]
        );
        assert_eq!(alerts(&dev[0]), [firing(&fp_sh1)]);
        let carried = |fp: &str| {
            let request = format!(r#"{{"fingerprint":"{fp}"}}"#);
            field(&list_notifications(&addr, &request), "msgUuid")
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let ops_uuid = |i: usize| uuids[i].clone().unwrap();
        assert_eq!(carried(&fp_bj2), [ops_uuid(1), ops_uuid(2)]);
        assert_eq!(carried(&fp_bj1), [ops_uuid(0), ops_uuid(1), ops_uuid(2)]);
        assert_eq!(carried(&fp_sh1), [at_dev[0].msg_uuid.clone().unwrap()]);
        let newest = list_notifications(&addr, r#"{"limit":1}"#);
        assert_eq!(field(&newest, "msgUuid"), [ops_uuid(2)]);
        let future = list_notifications(&addr, r#"{"since":"2100-01-01T00:00:00Z"}"#);
        assert!(future.is_empty(), "{future:?}");
    })
    .await
    .expect("grpcurl checks passed");
    assert_eq!(ops.leaks() + dev.leaks(), 0);
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_robot_is_given_up_after_send_timeout_and_the_retry_keeps_the_msg_uuid() {
    let rules = RulesFile::new("hung");
    let fake = FakeDingTalk::start("tok-hung", Some(SECRET)).await.unwrap();
    fake.force(&[Forced::Hang]);
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n[notify]\ngroup_wait = \"0s\"\n{}",
        rules.path,
        receiver("ops", &fake, "send_timeout = \"1s\""),
    ))
    .await;
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "bj-flume-01", &[("cluster", "bj-log")]).await;
    sidecar.report(&body_with_fill(85)).await;
    let message = received(&fake, 1).await.remove(0);
    let msg_uuid = message
        .msg_uuid
        .clone()
        .expect("the body carries a msgUuid");
    assert_eq!(
        fake.hung(),
        [Some(msg_uuid.clone())],
        "the retry carries the msgUuid of the attempt the robot never answered"
    );
    let history = delivered(&aggregator, 1).await.remove(0);
    assert_eq!(history.msg_uuid, msg_uuid);
    assert_eq!(history.attempts, 2);
    assert_eq!(
        (history.last_errcode, history.last_errmsg.as_str()),
        (0, "no answer within 1s"),
        "the first attempt was given up after the receiver's send_timeout"
    );
    aggregator.stop().await;
}
