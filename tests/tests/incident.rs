//! One message per incident, on real clocks: real sidecars polling simulated agents whose
//! channels fill moments apart, the real aggregator, a signature-checking robot. Also a storm
//! of 300 agents (time scaled by 10) and resolved lines for alerts silenced after they paged.

use std::collections::BTreeSet;
use std::time::Duration;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Received};
use flumewatch_testkit::rules::FILLING_ONLY as FAST_RULES;

const SECRET: &str = "SECincident0123456789";

async fn messages(fake: &FakeDingTalk, n: usize) -> Vec<Received> {
    wait_for(&format!("{n} DingTalk message(s)"), || async {
        let r = fake.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

/// How many lines of `text` name `host`.
fn lines_naming(text: &str, host: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(&format!("**{host}**")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_in_two_clusters_make_one_message_and_a_fourth_one_follow_up() {
    let fake = FakeDingTalk::start("tok-incident", Some(SECRET))
        .await
        .unwrap();
    // The default policy; group_wait 4 s, group_interval 10 s (a minute scaled down).
    let aggregator = AggregatorHandle::start_toml(&format!(
        "[notify]\ngroup_wait = \"4s\"\ngroup_interval = \"10s\"\nrepeat_interval = \"1h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\n",
        fake.webhook()
    ))
    .await;
    let hosts = [
        ("bj-flume-01", "bj-log"),
        ("sh-flume-01", "sh-log"),
        ("bj-flume-02", "bj-log"),
        ("sh-flume-02", "sh-log"),
    ];
    let mut flumes = Vec::new();
    let mut sidecars = Vec::new();
    for (host, cluster) in hosts {
        let flume = ScriptedFlume::start(flumewatch_testkit::fake_flume::Reply::Json(
            body_with_fill(10),
        ))
        .await;
        sidecars.push(SidecarHandle::start(sidecar_config(
            &aggregator.url(),
            host,
            &[("a1", flume.url())],
            &[("cluster", cluster)],
        )));
        flumes.push(flume);
    }
    wait_for("every agent polled", || async {
        flumes.iter().all(|f| f.polls() > 3).then_some(())
    })
    .await;
    // Three sinks stall within group_wait/2 (2 s) of each other: their channels are full.
    for flume in &flumes[..3] {
        flume.set(flumewatch_testkit::fake_flume::Reply::Json(body_with_fill(
            100,
        )));
        tokio::time::sleep(Duration::from_secs(1)).await; // the incident unfolding, not a wait
    }
    let first = messages(&fake, 1).await;
    let m = &first[0];
    println!("message 1 ({} bytes):\n{}", m.body_bytes, m.text);
    // Full channels: ChannelFilling (critical; its warning and the forecast are inhibited),
    // one line per agent.
    for (host, _) in &hosts[..3] {
        assert_eq!(
            lines_naming(&m.text, host),
            1,
            "{host} once per rule:\n{}",
            m.text
        );
    }
    assert!(
        m.text
            .contains("集群 bj-log 100% 的 agent 有严重告警\n\n##### "),
        "the cluster's headline over its agents: {}",
        m.text
    );
    assert_eq!(lines_naming(&m.text, "sh-flume-02"), 0);
    assert!(m.text.contains("**首次通知**"), "{}", m.text);

    // A fourth agent a while later: one follow-up, that agent first.
    flumes[3].set(flumewatch_testkit::fake_flume::Reply::Json(body_with_fill(
        100,
    )));
    let second = messages(&fake, 2).await;
    let m = &second[1];
    println!("message 2 ({} bytes):\n{}", m.body_bytes, m.text);
    let first_host_line = m
        .text
        .lines()
        .find(|l| l.starts_with("- ") && l.contains("**"))
        .expect("an agent line");
    assert!(
        first_host_line.contains("**sh-flume-02**"),
        "the new agent comes first: {}",
        m.text
    );
    assert!(m.text.contains("**有新告警**"), "{}", m.text);
    for (host, _) in &hosts[..3] {
        let first_line = m.text.find(&format!("**{host}**"));
        let news = m.text.find("**sh-flume-02**").unwrap();
        assert!(first_line.is_none_or(|at| at > news), "{}", m.text);
    }
    assert_eq!(fake.received().len(), 2, "exactly one follow-up");
    for sidecar in sidecars {
        sidecar.stop().await;
    }
    aggregator.stop().await;
}

async fn silenced_then_resolved(resolved_when_muted: bool) -> (Vec<Received>, AggregatorHandle) {
    let fake = FakeDingTalk::start("tok-muted", Some(SECRET))
        .await
        .unwrap();
    // Read once at start (no reload here): the directory goes when the aggregator runs.
    let rules_dir = TempDir::new("incident-rules");
    let rules = rules_dir.write("rules.toml", FAST_RULES);
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n[notify]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\nsend_resolved_when_muted = {resolved_when_muted}\n",
        rules.display().to_string(),
        fake.webhook()
    ))
    .await;
    drop(rules_dir);
    let mut sidecar =
        StreamSidecar::connect(&aggregator.url(), "bj-flume-07", &[("cluster", "bj-log")]).await;
    sidecar.report(&body_with_fill(90)).await;
    messages(&fake, 1).await;
    let mut client = aggregator.client().await;
    client
        .create_silence(pb::CreateSilenceRequest {
            matchers: vec![pb::Matcher {
                name: "host".into(),
                value: "bj-flume-07".into(),
                op: pb::MatchOp::Equal as i32,
            }],
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            creator: "ops".into(),
            comment: "working on it".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Another agent of the group fires meanwhile: a message that cannot show the silenced one.
    let mut other =
        StreamSidecar::connect(&aggregator.url(), "bj-flume-08", &[("cluster", "bj-log")]).await;
    other.report(&body_with_fill(90)).await;
    let second = messages(&fake, 2).await;
    assert!(
        second[1].text.contains("**bj-flume-08**"),
        "{}",
        second[1].text
    );
    assert!(
        !second[1].text.contains("**bj-flume-07**"),
        "{}",
        second[1].text
    );
    sidecar.report(&body_with_fill(10)).await;
    let suppressed_before = aggregator.notify.lock().receivers[0].suppressed;
    if resolved_when_muted {
        messages(&fake, 3).await;
    } else {
        // Two flushes that found nothing to say: the resolution went untold.
        wait_for("the resolved group flushed quietly", || async {
            (aggregator.notify.lock().receivers[0].suppressed > suppressed_before).then_some(())
        })
        .await;
    }
    (fake.received(), aggregator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_silenced_after_it_paged_still_gets_its_resolved_line() {
    let (received, aggregator) = silenced_then_resolved(true).await;
    assert_eq!(received.len(), 3);
    let m = &received[2];
    assert!(m.text.contains("[已恢复]"), "{}", m.text);
    assert!(
        m.text.contains("ChannelFilling **bj-flume-07**/a1"),
        "{}",
        m.text
    );
    aggregator.stop().await;

    let (received, aggregator) = silenced_then_resolved(false).await;
    assert_eq!(received.len(), 2, "option off: the silence keeps it quiet");
    aggregator.stop().await;
}

/// 300 agents in 10 clusters failing over 60 s with the default timers (group_wait 30 s,
/// group_interval 1 m), everything scaled down 10× (FW_STORM_SCALE=1 runs it at full length);
/// what the robot receives in the first 5 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_300_agents_stays_within_three_messages() {
    let scale: u32 = std::env::var("FW_STORM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let scaled = |d: Duration| d / scale;
    let fake = FakeDingTalk::start("tok-storm", Some(SECRET))
        .await
        .unwrap();
    let rules_dir = TempDir::new("storm-rules");
    let rules = rules_dir.write("rules.toml", FAST_RULES);
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n[notify]\ngroup_wait = \"{}ms\"\ngroup_interval = \"{}ms\"\nrepeat_interval = \"1h\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\n",
        rules.display().to_string(),
        scaled(Duration::from_secs(30)).as_millis(),
        scaled(Duration::from_secs(60)).as_millis(),
        fake.webhook()
    ))
    .await;
    drop(rules_dir);
    let mut sidecars = Vec::new();
    for i in 0..300 {
        let cluster = format!("c{:02}", i % 10);
        sidecars.push(
            StreamSidecar::connect(
                &aggregator.url(),
                &format!("storm-{i:03}"),
                &[("cluster", cluster.as_str())],
            )
            .await,
        );
    }
    let started = tokio::time::Instant::now();
    let full = body_with_fill(95);
    // 300 failures spread evenly over 60 s (scaled).
    for (i, sidecar) in sidecars.iter_mut().enumerate() {
        let at = started + scaled(Duration::from_millis(200 * i as u64));
        tokio::time::sleep_until(at).await; // the storm's pace, not a wait
        sidecar.report(&full).await;
    }
    // Everything the robot received within the first 5 minutes (scaled), once every agent
    // is accounted for by name or by an exact "……另有 N 条未列出".
    let window = started + scaled(Duration::from_secs(300));
    let accounted = |received: &[Received]| -> (BTreeSet<String>, usize) {
        let named: BTreeSet<String> = (0..300)
            .map(|i| format!("storm-{i:03}"))
            .filter(|h| {
                received
                    .iter()
                    .any(|m| m.text.contains(&format!("**{h}**")))
            })
            .collect();
        let counted: usize = received
            .iter()
            .flat_map(|m| m.text.lines())
            .filter_map(|l| {
                l.strip_prefix("- ……另有 ")?
                    .strip_suffix(" 条未列出")?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        (named, counted)
    };
    let (named, counted) = loop {
        let received = fake.received();
        let (named, counted) = accounted(&received);
        if named.len() + counted >= 300 {
            break (named, counted);
        }
        assert!(
            tokio::time::Instant::now() < window,
            "only {} named and {counted} counted in the first 5 minutes",
            named.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the robot, not a wait
    };
    let told_after = started.elapsed();
    // Then what else comes within the 5 minutes.
    tokio::time::sleep_until(window).await;
    let received: Vec<Received> = fake
        .received()
        .into_iter()
        .filter(|m| m.at <= window)
        .collect();
    for (i, m) in received.iter().enumerate() {
        println!(
            "storm message {}: {} bytes at +{:.1}s (unscaled), {}",
            i + 1,
            m.body_bytes,
            (m.at - started).as_secs_f64() * f64::from(scale),
            m.title
        );
        assert!(m.body_bytes <= 20_000, "{} bytes", m.body_bytes);
    }
    println!(
        "{} agents named and {counted} counted within {:?} (unscaled)",
        named.len(),
        told_after * scale
    );
    assert!(received.len() <= 3, "{} messages", received.len());
    aggregator.stop().await;
}
