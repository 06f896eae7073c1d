//! Notifications end to end over real sockets: simulated sidecars → aggregator → a fake
//! DingTalk robot that checks token, signature and timestamp window and enforces 20/min.

use std::process::Command;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Forced};

const SECRET: &str = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

/// ChannelFilling fires at once (the default holds 2 m); SidecarSilent is off because these
/// simulated sidecars report only when told to.
const FAST_RULES: &str = r#"
disable = ["SidecarSilent"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { all = [
  { value = "ChannelFillPercentage", op = ">=", threshold = 80 },
  { value = "ChannelCapacity", op = ">", threshold = 0 },
] }
summary = { zh = "通道 {component} 使用率 {value}%", en = "Channel {component} is {value}% full" }
"#;

/// FAST_RULES in a directory of their own; the aggregator reads them once at start (these
/// tests never reload), so the directory may go as soon as it runs.
fn rules_dir() -> (TempDir, String) {
    let dir = TempDir::new("notify-rules");
    let path = dir.write("rules.toml", FAST_RULES).display().to_string();
    (dir, path)
}

async fn start(fake: &FakeDingTalk, notify: &str) -> AggregatorHandle {
    let (_rules, rules_file) = rules_dir();
    AggregatorHandle::start_toml(&format!(
        "rules = {rules_file:?}\n[notify]\n{notify}\n[[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {:?}\nat_mobiles = {{ warning = [\"13800000000\"] }}\n",
        fake.webhook(),
        SECRET
    ))
    .await
}

async fn messages(
    fake: &FakeDingTalk,
    n: usize,
) -> Vec<flumewatch_testkit::fake_dingtalk::Received> {
    wait_for(&format!("{n} DingTalk message(s)"), || async {
        let r = fake.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_agents_one_message_then_the_41st_then_resolved() {
    let fake = FakeDingTalk::start("tok-1", Some(SECRET)).await.unwrap();
    let aggregator = start(
        &fake,
        "group_wait = \"2s\"\ngroup_interval = \"3s\"\nrepeat_interval = \"1h\"",
    )
    .await;
    let mut sidecars = Vec::new();
    for i in 0..41 {
        sidecars.push(
            StreamSidecar::connect(
                &aggregator.url(),
                &format!("bj-flume-{i:02}"),
                &[("cluster", "bj-log")],
            )
            .await,
        );
    }
    for sidecar in &mut sidecars[..40] {
        sidecar.report(&body_with_fill(85)).await;
    }
    let first = messages(&fake, 1).await;
    let m = &first[0];
    assert_eq!(m.title, "【Flume 告警】 警告 40", "{}", m.text);
    for i in 0..40 {
        assert!(
            m.text.contains(&format!("**bj-flume-{i:02}**/a1")),
            "bj-flume-{i:02} missing:\n{}",
            m.text
        );
    }
    assert!(m.text.contains("积压 8500 / 容量 10000 / 85%"));
    assert_eq!(m.at_mobiles, ["13800000000"]);
    assert!(m.text.contains("@13800000000"));

    sidecars[40].report(&body_with_fill(85)).await;
    let second = messages(&fake, 2).await;
    assert_eq!(second[1].title, "【Flume 告警】 警告 41");
    assert!(second[1].text.contains("**bj-flume-40**/a1"));
    let gap = second[1].at - second[0].at;
    assert!(
        gap >= std::time::Duration::from_millis(2500),
        "the 41st waited for group_interval, came after {gap:?}"
    );

    for sidecar in &mut sidecars {
        sidecar.report(&body_with_fill(10)).await;
    }
    let third = messages(&fake, 3).await;
    assert_eq!(
        third[2].title, "【Flume 告警】 已恢复 41",
        "{}",
        third[2].text
    );
    assert!(third[2].text.contains("[已恢复]</font> (41)"));
    assert_eq!(
        fake.answers(),
        [0, 0, 0],
        "every message delivered on its first try"
    );
    assert_eq!(fake.leaks(), 0, "the secret never travels");
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_and_two_rules_at_once_make_one_message() {
    let fake = FakeDingTalk::start("tok-2", Some(SECRET)).await.unwrap();
    let aggregator = start(&fake, "group_wait = \"2s\"").await;
    let failed_file_channel = sample("file-channel-failed-to-start.json");
    // Every stream opens before the first alert, so that the four alerts arrive well within one
    // group_wait even when connecting is slow (a loaded machine took seconds).
    let mut sidecars = Vec::new();
    for (host, cluster) in [("bj-01", "bj-log"), ("sh-01", "sh-log")] {
        for (agent, body) in [
            ("a", body_with_fill(90)),
            ("b", failed_file_channel.clone()),
        ] {
            let sidecar = StreamSidecar::connect(
                &aggregator.url(),
                &format!("{host}-{agent}"),
                &[("cluster", cluster)],
            )
            .await;
            sidecars.push((sidecar, body));
        }
    }
    for (sidecar, body) in &mut sidecars {
        sidecar.report(body).await;
    }
    let m = &messages(&fake, 1).await[0];
    for needle in [
        "ChannelFilling",
        "FileChannelUnhealthy",
        "cluster=bj-log",
        "cluster=sh-log",
        "**bj-01-a**",
        "**sh-01-b**",
    ] {
        assert!(m.text.contains(needle), "{needle} missing:\n{}", m.text);
    }
    assert_eq!(m.title, "【Flume 告警】 严重 2 警告 2");
    let received: Vec<(String, Option<String>)> = fake
        .received()
        .into_iter()
        .map(|r| (r.title, r.msg_uuid))
        .collect();
    assert_eq!(
        fake.answers(),
        [0],
        "one message for the receiver, not four; accepted: {received:?}"
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_a_throttle_then_ok_delivers_exactly_once() {
    let fake = FakeDingTalk::start("tok-3", Some(SECRET)).await.unwrap();
    fake.force(&[Forced::Http(500), Forced::Errcode(130_101)]);
    let aggregator = start(&fake, "group_wait = \"1s\"\nthrottle_pause = \"1s\"").await;
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "h1", &[("cluster", "bj-log")]).await;
    sidecar.report(&body_with_fill(85)).await;
    let m = messages(&fake, 1).await;
    assert_eq!(fake.answers(), [500, 130_101, 0]);
    assert!(m[0].text.contains("**h1**/a1"));
    let client = aggregator.client().await;
    // The robot has the message before the notifier has read its answer: wait for that.
    let status = wait_for("the delivery in the receiver status", || {
        let mut client = client.clone();
        async move {
            let receivers = client
                .list_receivers(pb::ListReceiversRequest {})
                .await
                .ok()?
                .into_inner()
                .receivers;
            (receivers.first()?.sent > 0).then_some(receivers)
        }
    })
    .await;
    assert_eq!(
        (status[0].sent, status[0].failed_attempts, status[0].dropped),
        (1, 2, 0)
    );
    assert_eq!(status[0].errcodes[&130_101], 1);
    assert!(
        !status[0].last_error.contains("tok-3"),
        "the token never shows: {}",
        status[0].last_error
    );
    aggregator.stop().await;
}

/// Retries go at their computed instant (2 s, then 4 s after a failure), not on a coarser step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_when_their_backoff_ends() {
    let fake = FakeDingTalk::start("tok-5", Some(SECRET)).await.unwrap();
    fake.force(&[Forced::Http(500), Forced::Http(500)]);
    let aggregator = start(&fake, "group_wait = \"0s\"").await;
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "h1", &[("cluster", "bj-log")]).await;
    sidecar.report(&body_with_fill(85)).await;
    messages(&fake, 1).await;
    assert_eq!(fake.answers(), [500, 500, 0]);
    let at = fake.answered_at();
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    println!("retry gaps {gaps:?}");
    assert!(
        (1.9..2.5).contains(&gaps[0]),
        "first retry after {:.2}s, backoff 2 s",
        gaps[0]
    );
    assert!(
        (3.9..4.5).contains(&gaps[1]),
        "second retry after {:.2}s, backoff 4 s",
        gaps[1]
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_20_a_minute_and_the_rest_waits() {
    let fake = FakeDingTalk::start("tok-4", Some(SECRET)).await.unwrap();
    // One group per host, so every host wants its own message.
    let aggregator = start(&fake, "group_by = [\"host\"]\ngroup_wait = \"0s\"").await;
    let mut sidecars = Vec::new();
    for i in 0..25 {
        let mut s = StreamSidecar::connect(
            &aggregator.url(),
            &format!("h{i:02}"),
            &[("cluster", "bj-log")],
        )
        .await;
        s.report(&body_with_fill(85)).await;
        sidecars.push(s);
        // Each of the first 20 gets its own message before the next host breaks.
        if i < 20 {
            messages(&fake, i + 1).await;
        }
    }
    let client = aggregator.client().await;
    wait_for("20 sent and the rest queued", || {
        let mut client = client.clone();
        async move {
            let r = client
                .list_receivers(pb::ListReceiversRequest {})
                .await
                .ok()?
                .into_inner()
                .receivers;
            (r[0].sent == 20 && r[0].queued >= 1).then_some(())
        }
    })
    .await;
    assert_eq!(fake.received().len(), 20);
    assert!(fake.max_per_minute() <= 20);
    assert!(
        !fake.answers().contains(&130_101),
        "our own limiter held, DingTalk never had to"
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_firing_agents_fit_one_message_that_counts_the_rest() {
    let fake = FakeDingTalk::start("tok-5", None).await.unwrap();
    let (_rules, rules_file) = rules_dir();
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {rules_file:?}\n[notify]\ngroup_wait = \"3s\"\n[[receivers]]\nname = \"ops\"\nwebhook = {:?}\n",
        fake.webhook()
    ))
    .await;
    let mut sidecars = Vec::new();
    for i in 0..300 {
        sidecars.push(
            StreamSidecar::connect(
                &aggregator.url(),
                &format!("sh-flume-{i:03}.example.internal"),
                &[("cluster", "sh-log")],
            )
            .await,
        );
    }
    // All connected first: the 300 reports then land well within group_wait.
    for s in &mut sidecars {
        s.report(&body_with_fill(88)).await;
    }
    let m = &messages(&fake, 1).await[0];
    assert!(m.body_bytes <= 20_000, "{} bytes", m.body_bytes);
    assert_eq!(m.title, "【Flume 告警】 警告 300");
    let listed = m
        .text
        .lines()
        .filter(|l| l.starts_with("- **sh-flume-"))
        .count();
    let omitted = 300 - listed;
    assert!(omitted > 0, "300 lines do not fit");
    assert!(
        m.text.contains(&format!("……另有 {omitted} 条未列出")),
        "{}",
        &m.text[m.text.len().saturating_sub(300)..]
    );
    aggregator.stop().await;
}

fn grpcurl_json(args: Vec<String>) -> serde_json::Value {
    let out = Command::new(grpcurl())
        .args(&args)
        .output()
        .expect("grpcurl runs");
    assert!(
        out.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_made_with_grpcurl_mutes_and_expiring_it_unmutes() {
    let fake = FakeDingTalk::start("tok-6", Some(SECRET)).await.unwrap();
    let aggregator = start(
        &fake,
        "group_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"2s\"",
    )
    .await;
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "h1", &[("cluster", "bj-log")]).await;
    sidecar.report(&body_with_fill(85)).await;
    messages(&fake, 1).await;

    let addr = aggregator.addr.to_string();
    let create = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            grpcurl_json(vec![
                "-plaintext".into(),
                "-d".into(),
                r#"{"matchers":[{"name":"cluster","value":"bj-log"}],"duration":"3600s","creator":"ops","comment":"upgrading bj-log"}"#.into(),
                addr,
                "flumewatch.v1.Fleet/CreateSilence".into(),
            ])
        })
        .await
        .unwrap()
    };
    let id = create["id"].as_str().expect("silence id").to_owned();
    assert_eq!(create["active"], true);
    let sent_before = fake.received().len();
    let client = aggregator.client().await;
    // Several flushes pass with the group muted (repeat_interval is 2 s): nothing is sent.
    let suppressed = |client: &pb::fleet_client::FleetClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        async move {
            client
                .list_receivers(pb::ListReceiversRequest {})
                .await
                .ok()
                .map(|r| r.into_inner().receivers[0].suppressed)
        }
    };
    let start = suppressed(&client).await.unwrap();
    wait_for("four muted flushes", || async {
        suppressed(&client).await.filter(|n| *n >= start + 4)
    })
    .await;
    assert_eq!(fake.received().len(), sent_before, "muted: nothing sent");
    let listed = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            grpcurl_json(vec![
                "-plaintext".into(),
                addr,
                "flumewatch.v1.Fleet/ListAlerts".into(),
            ])
        })
        .await
        .unwrap()
    };
    assert_eq!(listed["alerts"][0]["silencedBy"][0], id.as_str());

    let expired = {
        let (addr, id) = (addr.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            grpcurl_json(vec![
                "-plaintext".into(),
                "-d".into(),
                format!(r#"{{"id":"{id}"}}"#),
                addr,
                "flumewatch.v1.Fleet/ExpireSilence".into(),
            ])
        })
        .await
        .unwrap()
    };
    assert!(
        expired.get("active").is_none(),
        "inactive after expiry: {expired}"
    );
    messages(&fake, sent_before + 1).await;
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_labels_and_names_render_harmlessly_in_the_real_message() {
    const NASTY: &str = "**bj** @all <font color=#FF0000>x</font>\n### boom";
    let fake = FakeDingTalk::start("tok-1", Some(SECRET)).await.unwrap();
    let aggregator = start(
        &fake,
        "group_wait = \"0s\"\ngroup_interval = \"1s\"\ngroup_by = [\"cluster\", \"component\"]",
    )
    .await;
    let mut sidecar = StreamSidecar::connect(&aggregator.url(), "h1", &[("cluster", NASTY)]).await;
    let mut body: serde_json::Value = serde_json::from_slice(&body_with_fill(95)).unwrap();
    let channel = body["CHANNEL.mem1"].take();
    body.as_object_mut().unwrap().remove("CHANNEL.mem1");
    body[format!("CHANNEL.{NASTY}")] = channel;
    sidecar.report(&serde_json::to_vec(&body).unwrap()).await;
    let m = messages(&fake, 1).await.remove(0);
    println!("{}\n{}", m.title, m.text);
    assert!(!m.is_at_all, "nobody may @all through a label");
    for raw in ["@all", "<font color=#FF0000>x", "\n### boom", "**bj**"] {
        assert!(
            !m.text.contains(raw),
            "{raw:?} reached the message:\n{}",
            m.text
        );
        assert!(
            !m.title.contains(raw),
            "{raw:?} reached the title: {}",
            m.title
        );
    }
    assert!(
        m.text.contains("\\*\\*bj\\*\\* @\u{200b}all &lt;font"),
        "the text is still there, escaped:\n{}",
        m.text
    );
    aggregator.stop().await;
}
