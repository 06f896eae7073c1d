//! One poll against a Jetty-like fake Flume over a real socket: chunked bodies, limits, statuses.

use std::sync::atomic::{AtomicUsize, Ordering};
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
    FlumeClient::new(Duration::from_millis(500), max_body)
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

/// How the test server answers each request.
#[derive(Debug, Clone, Copy)]
enum Answering {
    /// At once, in one write; the first connection is closed after its first answer (as Jetty
    /// does to an idle one), the others are kept.
    ClosingTheFirst,
    /// Later than the client's settle time, in two pieces (head, then body), as a busy Jetty
    /// answers.
    Slowly,
}

/// Answers with `Content-Length`, as `answering` says. Returns its address and the
/// connections accepted.
async fn test_server(
    body: &'static [u8],
    answering: Answering,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    head.clear();
                    let answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    match answering {
                        Answering::ClosingTheFirst => {
                            let _ = stream.write_all(&[answer.as_bytes(), body].concat()).await;
                            if first {
                                return;
                            }
                        }
                        Answering::Slowly => {
                            // The simulated server's own slowness, not synchronisation.
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if stream.write_all(body).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn connections_are_kept_and_one_the_server_closed_is_replaced() {
    let body: &'static [u8] = Box::leak(sample("steady-load-t15s.json").into_boxed_slice());
    let (addr, accepted) = test_server(body, Answering::ClosingTheFirst).await;
    let url = format!("http://{addr}/metrics").parse().unwrap();
    let client = client(1 << 20);
    for poll in 0..4 {
        let snapshot = scrape(&client, "a1", &url).await;
        assert_eq!(snapshot.outcome, ScrapeOutcome::Ok, "poll {poll}");
        assert_eq!(snapshot.components.len(), 3);
        // Let the server's close reach this side before the next poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the closed connection replaced once, the second kept"
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_settle_time_is_waited_for_on_a_kept_connection() {
    let body: &'static [u8] = Box::leak(sample("steady-load-t15s.json").into_boxed_slice());
    let (addr, accepted) = test_server(body, Answering::Slowly).await;
    let url = format!("http://{addr}/metrics").parse().unwrap();
    let client = client(1 << 20);
    for poll in 0..3 {
        let snapshot = scrape(&client, "a1", &url).await;
        assert_eq!(snapshot.outcome, ScrapeOutcome::Ok, "poll {poll}");
        assert_eq!(snapshot.components.len(), 3, "poll {poll}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the one connection carried every poll, each answer waited for"
    );
}
