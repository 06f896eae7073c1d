//! Alertmanager's TestReload against the real binary: a reload (SIGHUP) keeps each group's
//! schedule. One alert is notified, the aggregator is reloaded, a second alert of the same group
//! arrives: the next message comes group_interval after the reload, not group_wait.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use common::*;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;

const GROUP_INTERVAL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_group_schedule() {
    let dir = fresh_dir("fw-reload-schedule");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let fake = FakeDingTalk::start("tok-reload", Some("SECreload"))
        .await
        .unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        flumewatch_testkit::rules::FILLING_ONLY,
    )
    .unwrap();
    let config = write_config(
        &dir,
        port,
        "http_listen = \"off\"",
        "group_wait = \"1s\"\ngroup_interval = \"6s\"\nrepeat_interval = \"1h\"",
        &fake.webhook(),
        "SECreload",
    );
    let aggregator = spawn(&config);

    let stop = CancellationToken::new();
    let mut flumes = Vec::new();
    let b_fills = Arc::new(AtomicBool::new(false));
    for (host, fills) in [("h-a", None), ("h-b", Some(b_fills.clone()))] {
        let (full, healthy) = (body_with_fill(85), body_with_fill(10));
        let flume = FakeFlume::start(Arc::new(move || {
            let filling = fills.as_ref().is_none_or(|f| f.load(Ordering::SeqCst));
            Reply::Json(if filling {
                full.clone()
            } else {
                healthy.clone()
            })
        }))
        .await
        .unwrap();
        start_sidecar(&url, host, "bj-log", flume.url(), &stop);
        flumes.push(flume);
    }

    let first = wait_for("h-a notified", || async {
        let r = fake.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(first[0].text.contains("**h-a**/a1"), "{}", first[0].text);

    let quiet_flushes = receivers(&url).await.expect("receiver status").suppressed;
    assert!(Command::new("kill")
        .args(["-HUP", &aggregator.id().to_string()])
        .status()
        .unwrap()
        .success());
    let reloaded = Instant::now();
    // The reload re-forms the group and flushes it at once, finding nothing new to say.
    wait_for("the re-formed group flushed quietly", || async {
        receivers(&url)
            .await
            .filter(|r| r.suppressed > quiet_flushes)
    })
    .await;
    b_fills.store(true, Ordering::SeqCst);

    let second = wait_for("h-b notified", || async {
        let r = fake.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let after_reload = reloaded.elapsed();
    println!("second message {after_reload:?} after the reload");
    assert!(
        after_reload >= GROUP_INTERVAL - Duration::from_millis(500),
        "the group's next flush is group_interval after the reload, not group_wait: {after_reload:?}"
    );
    assert!(second[1].text.contains("**h-b**/a1"), "{}", second[1].text);
    assert!(second[1].text.contains("有新告警"), "{}", second[1].text);
    assert_eq!(fake.received().len(), 2, "nothing else was sent");
    stop.cancel();
    drop(aggregator);
}
