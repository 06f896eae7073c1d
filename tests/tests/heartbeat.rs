//! The daily heartbeat, on a real clock: set a few seconds ahead, it arrives once, signed, with
//! the fleet's state, and the history records it with reason "heartbeat".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::rules::FILLING_ONLY;
use flumewatch_testkit::TempDir;

const SECRET: &str = "SECheartbeat0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_comes_at_its_time_of_day_with_the_fleet_state() {
    let fake = FakeDingTalk::start("tok-beat", Some(SECRET)).await.unwrap();
    let dir = TempDir::new("heartbeat");
    let rules = dir.write("rules.toml", FILLING_ONLY);
    // Three seconds from now, as a UTC time of day.
    let at = (SystemTime::now() + Duration::from_secs(3))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    let time_of_day = format!("{:02}:{:02}:{:02}", at / 3600, at % 3600 / 60, at % 60);
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n[[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\n\
         heartbeat = {time_of_day:?}\nheartbeat_utc_offset = \"+00:00\"\n",
        rules.display().to_string(),
        fake.webhook()
    ))
    .await;
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "bj-01", &[("cluster", "bj")]).await;
    sidecar.report(&body_with_fill(10)).await;
    let beat = wait_for("the heartbeat", || async {
        fake.received().into_iter().next()
    })
    .await;
    assert_eq!(beat.title, "【Flume 监控】每日心跳");
    assert!(
        beat.text.contains("agent:1 个,正常 1,异常 0"),
        "{}",
        beat.text
    );
    assert!(beat.text.contains("正在告警:0 条"), "{}", beat.text);
    let client = aggregator.client().await;
    let history = wait_for("the heartbeat in the history", || {
        let mut client = client.clone();
        async move {
            let n = client
                .list_notifications(pb::ListNotificationsRequest::default())
                .await
                .ok()?
                .into_inner()
                .notifications;
            n.iter()
                .any(|n| n.state == pb::NotificationState::Sent as i32)
                .then_some(n)
        }
    })
    .await;
    assert_eq!(history.len(), 1, "once a day");
    assert_eq!(history[0].reason, "heartbeat");
    assert_eq!(
        history[0].msg_uuid.as_str(),
        beat.msg_uuid.as_deref().unwrap_or("")
    );
    aggregator.stop().await;
}
