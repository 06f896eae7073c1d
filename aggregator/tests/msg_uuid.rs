//! Exactly once towards DingTalk across a crash, on the real binary: the aggregator is
//! SIGKILLed after the robot accepted a message (answered 200) but before the outbox row could
//! be deleted, which the test prevents by holding the state database's write lock meanwhile.
//! The restarted aggregator sends the message again under the same msgUuid (DingTalk's
//! idempotency key), and its history shows one message, attempted twice.

mod common;

use std::sync::Arc;

use common::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use flumewatch_testkit::rules::FILLING_ONLY;
use tokio_util::sync::CancellationToken;

async fn notifications(url: &str) -> Option<Vec<pb::Notification>> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    let request = pb::ListNotificationsRequest {
        receiver: "ops".into(),
        ..Default::default()
    };
    Some(
        client
            .list_notifications(request)
            .await
            .ok()?
            .into_inner()
            .notifications,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_sigkill_between_the_robots_200_and_the_outbox_delete_keeps_the_msg_uuid() {
    let dir = fresh_dir("fw-msg-uuid");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-uuid", Some("SECuuid"))
        .await
        .unwrap();
    std::fs::write(dir.join("rules.toml"), FILLING_ONLY).unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"",
        "group_wait = \"0s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"",
        &fake.webhook(),
        "SECuuid",
    );
    // The robot reads each request, then waits to answer until the database is locked.
    fake.hold();
    let mut aggregator = spawn(&config);
    let body = filling_body();
    let flume = FakeFlume::start(Arc::new(move || Reply::Json(body.clone())))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    start_sidecar(&url, "bj-01", "bj-log", flume.url(), &stop);

    // A message reaches the robot only once it is committed to the outbox.
    wait_for("the message waiting at the robot", || async {
        (fake.held() == 1).then_some(())
    })
    .await;
    let db = rusqlite::Connection::open(dir.join("state").join("flumewatch.sqlite3")).unwrap();
    // No other writer until this transaction ends: the aggregator's delete of the outbox row
    // waits out SQLite's busy timeout (rusqlite's default, 5 s) and fails.
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    fake.release();
    let first = wait_for("the robot accepted the message", || async {
        fake.received().into_iter().next()
    })
    .await;
    aggregator.kill().expect("SIGKILL");
    aggregator.wait().unwrap();
    let queued: Vec<String> = db
        .prepare("SELECT msg_uuid FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let msg_uuid = first.msg_uuid.clone().expect("the body carries a msgUuid");
    assert_eq!(
        queued,
        std::slice::from_ref(&msg_uuid),
        "the accepted message is still in the outbox"
    );

    let mut restarted = spawn(&config);
    let second = wait_for("the resend after the restart", || async {
        fake.received().get(1).cloned()
    })
    .await;
    assert_eq!(
        second.msg_uuid.as_deref(),
        Some(msg_uuid.as_str()),
        "the resend carries the same msgUuid"
    );
    assert_eq!(
        (&second.title, &second.text, second.body_bytes),
        (&first.title, &first.text, first.body_bytes),
        "the same message"
    );
    let history = wait_for("the history to say sent", || async {
        notifications(&url).await.filter(|n| {
            n.iter()
                .any(|m| m.state == pb::NotificationState::Sent as i32)
        })
    })
    .await;
    assert_eq!(history.len(), 1, "one message: {history:#?}");
    assert_eq!(history[0].msg_uuid, msg_uuid);
    assert_eq!(history[0].attempts, 2, "two POSTs, one before the kill");
    assert_eq!(history[0].reason, "first_notification");
    // The re-formed group is found already notified: nothing follows.
    wait_for("the re-formed group found already notified", || async {
        receivers(&url).await.filter(|r| r.suppressed >= 1)
    })
    .await;
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.leaks(), 0);

    stop.cancel();
    restarted.kill().ok();
    restarted.wait().ok();
}
