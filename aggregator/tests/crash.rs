//! The real aggregator SIGKILLed three times while sidecars stream a burst of snapshots and
//! alerts fire one after another: after every restart no acknowledged snapshot is missing (the
//! sidecars replay their window to an aggregator that lost its memory), the silence is still
//! there, and in the end every alert reached DingTalk exactly once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_sidecar::config::FileConfig as SidecarFile;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;

const HOSTS: usize = 6;
const KILLS: usize = 3;
const RULES: &str = r#"
disable = ["SidecarSilent", "FlumeAgentDown", "ChannelFullSoon"]
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 80 }
"#;

/// Sequence numbers the aggregator holds for `host`, oldest first.
async fn held(url: &str, host: &str) -> Option<Vec<u64>> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    let detail = client
        .get_agent(pb::GetAgentRequest {
            host: host.into(),
            agent: String::new(),
            history: 1000,
        })
        .await
        .ok()?
        .into_inner();
    Some(detail.history.iter().map(|s| s.seq).collect())
}

async fn silence_ids(url: &str) -> Option<Vec<String>> {
    let mut client = FleetClient::connect(url.to_owned()).await.ok()?;
    let silences = client
        .list_silences(pb::ListSilencesRequest::default())
        .await
        .ok()?
        .into_inner()
        .silences;
    Some(
        silences
            .into_iter()
            .filter(|s| s.active)
            .map(|s| s.id)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_lose_no_snapshot_silence_or_message() {
    let dir = fresh_dir("fw-crash");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-crash", Some("SECcrash"))
        .await
        .unwrap();
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"\nhistory = 1000",
        "group_by = [\"host\"]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"",
        &fake.webhook(),
        "SECcrash",
    );
    let mut aggregator = spawn(&config);
    let silence = silence_cluster(&url, "maintenance").await.id;

    // Host i's channel fills once `full[i]` is set; the last host is under maintenance.
    let healthy = Arc::new(body_with_fill(10));
    let filling = Arc::new(body_with_fill(90));
    let stop = CancellationToken::new();
    let mut flumes = Vec::new();
    let mut full = Vec::new();
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("h{i}")).collect();
    for (i, host) in hosts.iter().enumerate() {
        let switch = Arc::new(AtomicBool::new(false));
        let (healthy, filling, on) = (healthy.clone(), filling.clone(), switch.clone());
        let flume = FakeFlume::start(Arc::new(move || {
            let body = if on.load(Ordering::SeqCst) {
                &filling
            } else {
                &healthy
            };
            Reply::Json(body.as_ref().clone())
        }))
        .await
        .unwrap();
        let cluster = if i == HOSTS - 1 {
            "maintenance"
        } else {
            "bj-log"
        };
        let sidecar = SidecarFile {
            aggregators: Some(vec![url.clone()]),
            flume: Some(vec![format!("a1={}", flume.url())]),
            interval: Some("100ms".into()),
            timeout: Some("80ms".into()),
            host: Some(host.clone()),
            labels: Some([("cluster".to_owned(), cluster.to_owned())].into()),
            reconnect_min: Some("50ms".into()),
            reconnect_max: Some("200ms".into()),
            replay_window: Some("10m".into()),
            buffer: Some(10_000),
            ..SidecarFile::default()
        }
        .validate()
        .unwrap();
        tokio::spawn(flumewatch_sidecar::run(sidecar, stop.clone()));
        flumes.push(flume);
        full.push(switch);
    }

    let mut max_held_before_kill = vec![0u64; HOSTS];
    for kill in 0..KILLS {
        // Two more channels fill; the kill comes while their alerts are being judged and sent.
        for switch in full.iter().skip(2 * kill).take(2) {
            switch.store(true, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * kill as u64)).await;
        for (i, host) in hosts.iter().enumerate() {
            if let Some(seqs) = held(&url, host).await {
                max_held_before_kill[i] = seqs.last().copied().unwrap_or(0);
            }
        }
        aggregator.kill().expect("SIGKILL");
        aggregator.wait().unwrap();
        aggregator = spawn(&config);

        for (i, host) in hosts.iter().enumerate() {
            let seqs = wait_for(
                &format!("{host} replayed after kill {}", kill + 1),
                || async {
                    let seqs = held(&url, host).await?;
                    (seqs.last().copied().unwrap_or(0) > max_held_before_kill[i]).then_some(seqs)
                },
            )
            .await;
            assert_eq!(
                seqs[0], 1,
                "{host}: held from the first snapshot on: {seqs:?}"
            );
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "{host} after kill {}: a gap or a duplicate in {seqs:?}",
                kill + 1
            );
        }
        assert_eq!(
            wait_for("silences listed", || silence_ids(&url)).await,
            std::slice::from_ref(&silence),
            "the silence survives kill {}",
            kill + 1
        );
        println!(
            "kill {}: every host held 1..={:?} consecutively; silence kept; DingTalk messages so far {}",
            kill + 1,
            max_held_before_kill,
            fake.received().len()
        );
    }

    // Every filling channel outside maintenance: one message each, no more, after the dust settles.
    let alerting: Vec<&String> = hosts[..HOSTS - 1].iter().collect();
    let received = wait_for("a message for every alerting host", || async {
        let r = fake.received();
        alerting
            .iter()
            .all(|h| r.iter().any(|m| m.text.contains(&format!("**{h}**/a1"))))
            .then_some(r)
    })
    .await;
    wait_for(
        "two more group flushes found nothing new to say",
        || async {
            let before = receivers(&url).await?.suppressed;
            tokio::time::sleep(Duration::from_millis(2100)).await;
            (receivers(&url).await?.suppressed > before).then_some(())
        },
    )
    .await;
    let received_after = fake.received();
    assert_eq!(received_after.len(), received.len(), "nothing came late");
    for host in &alerting {
        let count = received
            .iter()
            .filter(|m| m.text.contains(&format!("**{host}**/a1")))
            .count();
        assert_eq!(count, 1, "{host} was announced {count} times");
    }
    assert!(
        !received.iter().any(|m| m.text.contains("**h5**")),
        "the silenced host was never announced"
    );
    assert_eq!(fake.leaks(), 0);
    println!(
        "{KILLS} SIGKILLs: {} DingTalk messages announced {} alerting hosts once each (0 duplicated, 0 lost), the silenced host 0 times",
        received.len(),
        HOSTS - 1
    );
    stop.cancel();
    aggregator.kill().ok();
    aggregator.wait().ok();
}
