//! RetireAgent over the real grpcurl: refused without the admin token; with it the agent leaves
//! ListAgents and /metrics, is announced once in the next DingTalk message, and what its
//! sidecar still sends for it is ignored.

use std::process::Command;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::fake_dingtalk::FakeDingTalk;
use flumewatch_testkit::rules::FILLING_ONLY;
use flumewatch_testkit::TempDir;

const SECRET: &str = "SECretire0123456789";
const ADMIN: &str = "admin-token-retire-0123456789";

fn grpcurl_call(addr: &str, token: Option<&str>, body: &str) -> std::process::Output {
    let mut args = vec!["-plaintext".to_owned()];
    if let Some(token) = token {
        args.extend(["-H".to_owned(), format!("authorization: Bearer {token}")]);
    }
    args.extend([
        "-d".to_owned(),
        body.to_owned(),
        addr.to_owned(),
        "flumewatch.v1.Fleet/RetireAgent".to_owned(),
    ]);
    Command::new(grpcurl())
        .args(&args)
        .output()
        .expect("grpcurl runs")
}

async fn hosts(aggregator: &AggregatorHandle) -> Vec<String> {
    let mut client = aggregator.client().await;
    let mut hosts: Vec<String> = client
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents
        .into_iter()
        .map(|a| format!("{}/{}", a.host, a.agent))
        .collect();
    hosts.sort();
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_agent_needs_the_admin_token_removes_and_announces_once() {
    let fake = FakeDingTalk::start("tok-retire", Some(SECRET))
        .await
        .unwrap();
    let dir = TempDir::new("retire");
    let rules = dir.write("rules.toml", FILLING_ONLY);
    let token = dir.write("admin.token", ADMIN);
    let aggregator = AggregatorHandle::start_toml(&format!(
        "rules = {:?}\nadmin_token_file = {:?}\n[notify]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\n\
         [[receivers]]\nname = \"ops\"\nwebhook = {:?}\nsecret = {SECRET:?}\n",
        rules.display().to_string(),
        token.display().to_string(),
        fake.webhook()
    ))
    .await;
    let mut old = StreamSidecar::connect(&aggregator.url(), "old-host", &[("cluster", "bj")]).await;
    let mut kept =
        StreamSidecar::connect(&aggregator.url(), "kept-host", &[("cluster", "bj")]).await;
    old.report(&body_with_fill(10)).await;
    kept.report(&body_with_fill(10)).await;
    wait_for("both agents listed", || async {
        (hosts(&aggregator).await.len() == 2).then_some(())
    })
    .await;
    let http = aggregator.http_addr.expect("http").to_string();
    let addr = aggregator.addr.to_string();

    let refused = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl_call(&addr, None, r#"{"host":"old-host","agent":"a1"}"#)
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(hosts(&aggregator).await, ["kept-host/a1", "old-host/a1"]);

    let done = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl_call(&addr, Some(ADMIN), r#"{"host":"old-host","agent":"a1"}"#)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains("\"old-host/a1\""), "{stdout}");
    assert_eq!(hosts(&aggregator).await, ["kept-host/a1"]);

    // Announced once, in the next message.
    let announced = wait_for("the retirement announced", || async {
        let r = fake.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(
        announced[0].text.contains("**old-host**/a1 已从监控中移除"),
        "{}",
        announced[0].text
    );
    // What its sidecar still sends is ignored; the next message (an incident) does not repeat it.
    old.report(&body_with_fill(95)).await;
    kept.report(&body_with_fill(95)).await;
    let next = wait_for("the next message", || async {
        let r = fake.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert!(
        next[1].text.contains("**kept-host**/a1"),
        "{}",
        next[1].text
    );
    assert!(!next[1].text.contains("old-host"), "{}", next[1].text);
    assert_eq!(hosts(&aggregator).await, ["kept-host/a1"]);
    let metrics = flumewatch_testkit::metrics::scrape(&http)
        .await
        .expect("metrics");
    assert!(!metrics.contains("host=\"old-host\""), "gone from /metrics");
    assert!(metrics.contains("host=\"kept-host\""));
    aggregator.stop().await;
}
