//! One poll against a Jetty-like fake Flume over a real socket: chunked bodies, limits, statuses.

use std::sync::Arc;
use std::time::Duration;

use flumewatch_proto::model::snapshot::ScrapeOutcome;
use flumewatch_sidecar::flume::{scrape, FlumeClient};
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use flumewatch_testkit::sample;

async fn serving(reply: Reply) -> FakeFlume {
    FakeFlume::start(Arc::new(move || reply.clone()))
        .await
        .expect("binds")
}

fn client(max_body: usize) -> FlumeClient {
    FlumeClient::new(Duration::from_millis(500), max_body).expect("client")
}

#[tokio::test]
async fn the_fake_answers_like_jetty_chunked_without_content_length() {
    let flume = serving(Reply::Json(sample("multi-component-agent.json"))).await;
    let raw = |request: &'static str| {
        let addr = flume.addr();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            stream.write_all(request.as_bytes()).await.expect("writes");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("reads");
            response
        }
    };
    let ok = raw("GET /METRICS?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("Transfer-Encoding: chunked"));
    assert!(!ok.to_ascii_lowercase().contains("content-length"));
    assert!(raw("GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(raw("TRACE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 403"));
}

#[tokio::test]
async fn a_chunked_sample_becomes_a_typed_snapshot() {
    let flume = serving(Reply::Json(sample("multi-component-agent.json"))).await;
    let url = flume.url().parse().expect("url");
    let snapshot = scrape(&client(1 << 20), "a1", &url).await;
    assert_eq!(snapshot.outcome, ScrapeOutcome::Ok);
    assert_eq!(snapshot.components.len(), 7);
    assert_eq!(snapshot.agent, "a1");
}

#[tokio::test]
async fn failures_are_snapshots_that_say_why() {
    let big = serving(Reply::Json(sample("multi-component-agent.json"))).await;
    let snapshot = scrape(&client(1024), "a1", &big.url().parse().unwrap()).await;
    assert!(
        matches!(&snapshot.outcome, ScrapeOutcome::BadPayload(e) if e.contains("1024 byte limit")),
        "{:?}",
        snapshot.outcome
    );
    assert!(snapshot.components.is_empty());

    let wrong_path = format!("http://{}/metrics/", big.addr()).parse().unwrap();
    let snapshot = scrape(&client(1 << 20), "a1", &wrong_path).await;
    assert!(
        matches!(
            snapshot.outcome,
            ScrapeOutcome::HttpStatus { status: 404, .. }
        ),
        "{:?}",
        snapshot.outcome
    );

    let hung = serving(Reply::Hang).await;
    let snapshot = scrape(&client(1 << 20), "a1", &hung.url().parse().unwrap()).await;
    assert!(
        matches!(snapshot.outcome, ScrapeOutcome::Timeout(_)),
        "{:?}",
        snapshot.outcome
    );

    // A port nobody listens on: bound, then closed before the poll.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/metrics").parse().unwrap();
    let gone = scrape(&client(1 << 20), "a1", &url).await;
    assert!(
        matches!(gone.outcome, ScrapeOutcome::ConnectionRefused(_)),
        "{:?}",
        gone.outcome
    );

    let empty = serving(Reply::Json(Vec::new())).await;
    let snapshot = scrape(&client(1 << 20), "a1", &empty.url().parse().unwrap()).await;
    assert_eq!(
        snapshot.outcome,
        ScrapeOutcome::BadPayload("empty body".into())
    );
}
