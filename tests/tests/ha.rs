//! Two aggregator binaries on one real PostgreSQL (a throwaway cluster from Debian's
//! packages), real sidecars reporting to both, and the signature-checking robot: every
//! message once, the same alerts a single aggregator tells, a SIGKILLed sender replaced
//! within the failover bound, silences shared, and a 60-second database outage survived.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use flumewatch_e2e::replicas::*;
use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::postgres::PgCluster;
use flumewatch_testkit::rules::FILLING_ONLY;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_tell_every_alert_once_and_the_same_as_a_single_aggregator() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let dir = TempDir::new("ha-twins");
    let robot = FakeDingTalk::start("tok-ha", Some(SECRET)).await.unwrap();
    let single_robot = FakeDingTalk::start("tok-single", Some(SECRET))
        .await
        .unwrap();
    let a = Replica::spawn(
        "agg-a",
        &dir,
        &cluster.url(),
        &notify_toml(&robot.webhook()),
    );
    let b = Replica::spawn(
        "agg-b",
        &dir,
        &cluster.url(),
        &notify_toml(&robot.webhook()),
    );
    let single_rules = dir.write("single-rules.toml", FILLING_ONLY);
    let single = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\n{}",
        single_rules.display().to_string(),
        notify_toml(&single_robot.webhook())
    ))
    .await;
    a.client().await;
    b.client().await;
    let sending = sender(&[&a, &b]).await;
    let hosts = Hosts::start(20, &[a.url(), b.url(), single.url()]).await;
    wait_for("every agent polled", || async {
        hosts.flumes.iter().all(|f| f.polls() > 2).then_some(())
    })
    .await;
    // Over two minutes: a channel fills every 6 s, and each recovers 30 s after it filled.
    let started = Instant::now();
    let mut events: Vec<(Duration, usize, u64)> = (0..20)
        .flat_map(|i| {
            let at = Duration::from_secs(6 * i as u64);
            [(at, i, 100), (at + Duration::from_secs(30), i, 10)]
        })
        .collect();
    events.sort();
    for (at, host, fill) in events {
        tokio::time::sleep_until(started + at).await; // the incident's script, not a wait
        hosts.fill(host, fill);
    }
    let ha_client = [&a, &b][sending].client().await;
    let single_client = single.client().await;
    let expected = 40; // 20 alerts, each firing then resolved
    let ha_told = wait_for(
        "every alert told firing and resolved by the replicas",
        || async {
            let (told, uuids) = told(&mut ha_client.clone()).await;
            (told.len() >= expected).then_some((told, uuids))
        },
    )
    .await;
    let single_told = wait_for("every alert told by the single aggregator", || async {
        let (told, uuids) = told(&mut single_client.clone()).await;
        (told.len() >= expected).then_some((told, uuids))
    })
    .await;
    // Every alert told: nothing is left queued on either replica, and the standby never sent.
    let standby = [&a, &b][1 - sending];
    for replica in [&a, &b] {
        wait_for("nothing left queued", || async {
            let receivers = replica
                .client()
                .await
                .list_receivers(pb::ListReceiversRequest {})
                .await
                .ok()?
                .into_inner()
                .receivers;
            receivers.iter().all(|r| r.queued == 0).then_some(())
        })
        .await;
    }
    let standby_sent: u64 = standby
        .client()
        .await
        .list_receivers(pb::ListReceiversRequest {})
        .await
        .unwrap()
        .into_inner()
        .receivers
        .iter()
        .map(|r| r.sent)
        .sum();
    assert_eq!(standby_sent, 0, "the standby {} sent nothing", standby.name);
    let texts = delivered_once(&robot);
    let single_texts = delivered_once(&single_robot);
    println!(
        "replicas: {} messages (sender {}), single aggregator: {} messages; {} alert states told by each",
        texts.len(),
        [&a, &b][sending].name,
        single_texts.len(),
        ha_told.0.len()
    );
    assert_eq!(
        texts.len(),
        ha_told.1.len(),
        "the robot got exactly the messages sent"
    );
    assert!(
        ha_told.0.values().all(|n| *n == 1),
        "every alert state in exactly one message: {:?}",
        ha_told.0
    );
    assert_eq!(
        ha_told.0, single_told.0,
        "the same alerts as a single aggregator"
    );
    for host in &hosts.names {
        assert_eq!(lines_naming(&texts, host, false), 1, "{host} firing once");
        assert_eq!(lines_naming(&texts, host, true), 1, "{host} resolved once");
    }
    let standby = [&a, &b][1 - sending]
        .status()
        .await
        .expect("standby answers");
    assert_eq!(standby.role, "standby");
    assert!(standby
        .peers
        .iter()
        .any(|p| p.role == "sender" && !p.missing));
    // The role as operators see it: grpcurl and /metrics.
    let out = Command::new(grpcurl())
        .args([
            "-plaintext",
            &a.grpc.to_string(),
            "flumewatch.v1.Fleet/Status",
        ])
        .output()
        .expect("grpcurl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"stateBackend\": \"postgres\""),
        "{text}"
    );
    assert!(text.contains("\"replica\": \"agg-a\""), "{text}");
    let metrics = flumewatch_testkit::metrics::scrape(&[&a, &b][sending].http.to_string())
        .await
        .expect("/metrics");
    assert!(
        metrics.contains("flumewatch_replica_role{role=\"sender\"} 1"),
        "{metrics}"
    );
    hosts.stop().await;
    single.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sender_is_replaced_within_the_failover_bound_and_nothing_is_sent_twice() {
    let (_cluster, _dir, robot, mut replicas) = two_replicas("kill").await;
    let sending = sender(&[&replicas[0], &replicas[1]]).await;
    let hosts = Hosts::start(4, &[replicas[0].url(), replicas[1].url()]).await;
    wait_for("every agent polled", || async {
        hosts.flumes.iter().all(|f| f.polls() > 2).then_some(())
    })
    .await;
    hosts.fill(0, 100);
    wait_for("the first alert delivered", || async {
        (!robot.received().is_empty()).then_some(())
    })
    .await;
    // Mid-incident: two more channels fill, and the sender dies inside their group_wait.
    hosts.fill(1, 100);
    hosts.fill(2, 100);
    for replica in &replicas {
        wait_for("both replicas see them fire", || async {
            (replica.status().await?.firing_alerts >= 3).then_some(())
        })
        .await;
    }
    let before = texts(&robot);
    for host in &hosts.names[1..3] {
        assert_eq!(
            lines_naming(&before, host, false),
            0,
            "{host} still pending at the kill:\n{before:#?}"
        );
    }
    let killed_at = Instant::now();
    replicas[sending].kill();
    let taken_over = wait_for("the other replica delivers the pending alerts", || async {
        let texts = texts(&robot);
        let told = |h: &str| lines_naming(&texts, h, false) > 0;
        (told(&hosts.names[1]) && told(&hosts.names[2])).then(Instant::now)
    })
    .await;
    let gap = taken_over - killed_at;
    println!(
        "SIGKILL of {}: its pending alerts delivered by {} {:.1} s later ({} message(s) before the kill)",
        replicas[sending].name,
        replicas[1 - sending].name,
        gap.as_secs_f64(),
        before.len()
    );
    assert!(gap <= Duration::from_secs(15), "failover took {gap:?}");
    let survivor = &replicas[1 - sending];
    assert_eq!(survivor.status().await.unwrap().role, "sender");
    // And it goes on: recoveries are told once.
    for host in 0..3 {
        hosts.fill(host, 10);
    }
    wait_for("every recovery told", || async {
        let texts = texts(&robot);
        (0..3)
            .all(|h| lines_naming(&texts, &hosts.names[h], true) > 0)
            .then_some(())
    })
    .await;
    let texts = delivered_once(&robot);
    for host in &hosts.names[..3] {
        assert_eq!(
            lines_naming(&texts, host, false),
            1,
            "{host} firing once:\n{texts:#?}"
        );
        assert_eq!(
            lines_naming(&texts, host, true),
            1,
            "{host} resolved once:\n{texts:#?}"
        );
    }
    assert_eq!(lines_naming(&texts, &hosts.names[3], false), 0);
    let warnings = wait_for("the dead peer reported", || async {
        let warnings = survivor.status().await?.warnings;
        warnings
            .iter()
            .any(|w| w.contains("not seen"))
            .then_some(warnings)
    })
    .await;
    println!("{} warns: {warnings:?}", survivor.name);
    hosts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_and_a_retirement_made_on_one_replica_apply_on_the_other() {
    let (_cluster, _dir, robot, [a, b]) = two_replicas("silence").await;
    let sending = sender(&[&a, &b]).await;
    let (sender_replica, standby) = if sending == 0 { (&a, &b) } else { (&b, &a) };
    let hosts = Hosts::start(3, &[a.url(), b.url()]).await;
    let sender_client = sender_replica.client().await;
    let listed_hosts = || async {
        let agents = sender_client
            .clone()
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .ok()?
            .into_inner()
            .agents;
        Some(agents.into_iter().map(|a| a.host).collect::<BTreeSet<_>>())
    };
    wait_for("every host known to the sender", || async {
        (listed_hosts().await?.len() == 3).then_some(())
    })
    .await;
    // Both on the standby, which sends nothing itself.
    let mut standby_client = standby.client().await;
    standby_client
        .create_silence(pb::CreateSilenceRequest {
            matchers: vec![pb::Matcher {
                name: "host".into(),
                value: hosts.names[0].clone(),
                op: pb::MatchOp::Equal as i32,
            }],
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            creator: "ops".into(),
            comment: "maintenance".into(),
            ..Default::default()
        })
        .await
        .expect("silence created");
    standby_client
        .retire_agent(pb::RetireAgentRequest {
            host: hosts.names[2].clone(),
            agent: String::new(),
        })
        .await
        .expect("host retired");
    wait_for("the sender lists the silence", || async {
        let listed = sender_client
            .clone()
            .list_silences(pb::ListSilencesRequest::default())
            .await
            .ok()?
            .into_inner()
            .silences;
        (!listed.is_empty()).then_some(())
    })
    .await;
    wait_for("the sender forgot the retired host", || async {
        (!listed_hosts().await?.contains(&hosts.names[2])).then_some(())
    })
    .await;
    hosts.fill(0, 100);
    hosts.fill(1, 100);
    wait_for("the unsilenced alert delivered", || async {
        (lines_naming(&texts(&robot), &hosts.names[1], false) > 0).then_some(())
    })
    .await;
    let texts = delivered_once(&robot);
    assert_eq!(
        lines_naming(&texts, &hosts.names[0], false),
        0,
        "silenced on {}, muted by {}:\n{texts:#?}",
        standby.name,
        sender_replica.name
    );
    let announced = texts
        .iter()
        .filter(|t| t.contains("监控变更") && t.contains(&hosts.names[2]))
        .count();
    assert_eq!(announced, 1, "the retirement announced once:\n{texts:#?}");
    hosts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_postgresql_loses_and_duplicates_nothing() {
    let (cluster, _dir, robot, [a, b]) = two_replicas("outage").await;
    sender(&[&a, &b]).await;
    let hosts = Hosts::start(4, &[a.url(), b.url()]).await;
    hosts.fill(0, 100);
    wait_for("the first alert delivered", || async {
        (!robot.received().is_empty()).then_some(())
    })
    .await;
    // A POST under way when the database goes: DingTalk takes it, the shared log cannot.
    robot.hold();
    hosts.fill(3, 100);
    wait_for("a POST held at the robot", || async {
        (robot.held() >= 1).then_some(())
    })
    .await;
    let stopped_at = Instant::now();
    let outage = tokio::task::spawn_blocking({
        let cluster = cluster;
        move || {
            cluster.stop();
            cluster
        }
    })
    .await
    .unwrap();
    robot.release();
    wait_for("the held message delivered during the outage", || async {
        (lines_naming(&texts(&robot), &hosts.names[3], false) > 0).then_some(())
    })
    .await;
    // During the outage: one alert resolves, another fires.
    hosts.fill(0, 10);
    hosts.fill(1, 100);
    tokio::time::sleep_until(stopped_at + Duration::from_secs(30)).await; // the outage's script
    let during: Vec<(String, Option<pb::StatusResponse>)> = vec![
        (a.name.clone(), a.status().await),
        (b.name.clone(), b.status().await),
    ];
    for (name, status) in &during {
        let status = status
            .as_ref()
            .expect("a replica answers queries during the outage");
        println!(
            "{name} at +30 s: role {} warnings {:?}",
            status.role, status.warnings
        );
        assert_eq!(status.agents, 4, "still ingesting");
        assert_ne!(
            status.role, "sender",
            "nobody sends without a provable lease"
        );
    }
    let sent_during = robot.received().len();
    tokio::time::sleep_until(stopped_at + Duration::from_secs(60)).await; // the outage's script
    let cluster = tokio::task::spawn_blocking(move || {
        outage.start_again();
        outage
    })
    .await
    .unwrap();
    let back = Instant::now();
    wait_for("what happened meanwhile is told", || async {
        let texts = texts(&robot);
        (lines_naming(&texts, &hosts.names[0], true) > 0
            && lines_naming(&texts, &hosts.names[1], false) > 0)
            .then_some(())
    })
    .await;
    println!(
        "PostgreSQL down 60 s: {} message(s) sent while it was away, the rest {:.1} s after it returned",
        sent_during - 1,
        back.elapsed().as_secs_f64()
    );
    let texts = delivered_once(&robot);
    assert_eq!(
        lines_naming(&texts, &hosts.names[0], false),
        1,
        "{texts:#?}"
    );
    assert_eq!(lines_naming(&texts, &hosts.names[0], true), 1, "{texts:#?}");
    assert_eq!(
        lines_naming(&texts, &hosts.names[1], false),
        1,
        "{texts:#?}"
    );
    assert_eq!(
        lines_naming(&texts, &hosts.names[2], false),
        0,
        "{texts:#?}"
    );
    assert_eq!(
        lines_naming(&texts, &hosts.names[3], false),
        1,
        "delivered during the outage, recorded after it, told once:\n{texts:#?}"
    );
    for replica in [&a, &b] {
        println!(
            "{}:\n  {}",
            replica.name,
            replica.lease_story().join("\n  ")
        );
    }
    hosts.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_stopped_with_sigterm_hands_over_at_once() {
    let (_cluster, _dir, robot, mut replicas) = two_replicas("sigterm").await;
    let sending = sender(&[&replicas[0], &replicas[1]]).await;
    let hosts = Hosts::start(2, &[replicas[0].url(), replicas[1].url()]).await;
    hosts.fill(0, 100);
    wait_for("the first alert delivered", || async {
        (!robot.received().is_empty()).then_some(())
    })
    .await;
    let mut child = replicas[sending].child.take().expect("running");
    let stopped_at = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "a clean stop: {status}");
    let survivor = &replicas[1 - sending];
    let took_over = wait_for("the other replica sends", || async {
        (survivor.status().await?.role == "sender").then(Instant::now)
    })
    .await;
    println!(
        "SIGTERM of {}: exited cleanly, {} sending {:.1} s after the signal",
        replicas[sending].name,
        survivor.name,
        (took_over - stopped_at).as_secs_f64()
    );
    assert!(
        took_over - stopped_at < Duration::from_secs(10),
        "a released lease is taken without waiting its term out"
    );
    hosts.fill(1, 100);
    wait_for("the next alert delivered by the survivor", || async {
        (lines_naming(&texts(&robot), &hosts.names[1], false) > 0).then_some(())
    })
    .await;
    let texts = delivered_once(&robot);
    assert_eq!(lines_naming(&texts, &hosts.names[0], false), 1);
    let warnings = survivor.status().await.unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("stopped")),
        "{warnings:?}"
    );
    hosts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_post_hung_when_its_sender_died_goes_once_under_the_same_msg_uuid() {
    let (_cluster, _dir, robot, mut replicas) = two_replicas("hung").await;
    let sending = sender(&[&replicas[0], &replicas[1]]).await;
    let hosts = Hosts::start(1, &[replicas[0].url(), replicas[1].url()]).await;
    robot.force(&[flumewatch_testkit::fake_dingtalk::Forced::Hang]);
    hosts.fill(0, 100);
    let hung = wait_for("the sender's POST hanging at the robot", || async {
        robot.hung().first().cloned().flatten()
    })
    .await;
    let killed_at = Instant::now();
    replicas[sending].kill();
    let delivered = wait_for("the other replica delivers it", || async {
        robot
            .received()
            .into_iter()
            .find(|m| m.msg_uuid.as_deref() == Some(&hung))
    })
    .await;
    println!(
        "POST hung at the robot, sender SIGKILLed: {} delivered msgUuid {hung} {:.1} s later",
        replicas[1 - sending].name,
        killed_at.elapsed().as_secs_f64()
    );
    assert!(delivered.text.contains(&format!("**{}**", hosts.names[0])));
    let texts = delivered_once(&robot);
    assert_eq!(
        texts.len(),
        1,
        "the same message, not a new one:\n{texts:#?}"
    );
    hosts.stop().await;
}
