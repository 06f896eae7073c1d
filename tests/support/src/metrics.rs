//! The one /metrics scraper tests and tools use: a plain HTTP/1.1 GET, then sample lookup.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` at `http` (host:port) over a fresh HTTP/1.1 connection: the status and the body
/// (de-chunked). `None` when the server cannot be reached.
pub async fn get(http: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// A chunked answer's payload.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// The exposition text of `GET /metrics` at `http` (host:port).
pub async fn scrape(http: &str) -> Option<String> {
    get(http, "/metrics").await.map(|(_, body)| body)
}

/// The first sample of `name` (with or without labels) in exposition `text`.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A value from the aggregator's /metrics at `http` (host:port).
pub async fn metric(http: &str, name: &str) -> Option<f64> {
    value(&scrape(http).await?, name)
}
