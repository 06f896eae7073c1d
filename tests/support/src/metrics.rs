//! The one /metrics scraper tests and tools use: a plain HTTP/1.1 GET, then sample lookup.

/// The whole response (status line, headers and body) of `GET /metrics` at `http` (host:port).
pub async fn scrape(http: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    Some(text)
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
