//! A fake Flume metrics endpoint that writes its answer the way Jetty 9.4 does, for the sidecar
//! benchmark: HTTP/1.1 keep-alive, `TCP_NODELAY`, the response head in one write, then the whole
//! body as one chunk followed by the terminating zero chunk in a second write.
//!
//! Deliberately independent of the testkit's `FakeFlume` (which writes head and body at once):
//! a client's cost per poll depends on how many reads and wake-ups the server's writes cause, so
//! the benchmark measures against both shapes. Plain tokio TCP, no HTTP library.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Produces the JSON body of each `/metrics` answer (called once per request).
pub type Body = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

/// Jetty's default idle timeout for a kept-alive connection.
const IDLE: Duration = Duration::from_secs(30);
/// A request head larger than this closes the connection (Jetty answers 431; no client of the
/// benchmark sends one).
const MAX_HEAD: usize = 8 * 1024;

/// A running Jetty-like endpoint on 127.0.0.1; dropping it stops it.
pub struct JettyFake {
    addr: SocketAddr,
    /// `/metrics` answers served, over every connection.
    polls: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl JettyFake {
    pub async fn start(body: Body) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let polls = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, body, polls.clone(), stop.clone()));
        Ok(Self { addr, polls, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }
}

impl Drop for JettyFake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: TcpListener, body: Body, polls: Arc<AtomicU64>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Jetty's ServerConnector sets TCP_NODELAY on accepted connections by default.
                let _ = stream.set_nodelay(true);
                let connection = serve(stream, body.clone(), polls.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = connection => {}
                    }
                });
            }
        }
    }
}

/// One kept-alive connection: requests until the client closes, idles 30 s, or asks to close.
async fn serve(mut stream: TcpStream, body: Body, polls: Arc<AtomicU64>) {
    let mut pending = Vec::with_capacity(1024);
    loop {
        let head = match tokio::time::timeout(IDLE, read_head(&mut stream, &mut pending)).await {
            Ok(Ok(head)) => head,
            _ => return,
        };
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("");
        let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
        let close = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close"));
        let written = if method == "GET" && path == "/metrics" {
            polls.fetch_add(1, Ordering::Relaxed);
            answer(&mut stream, "200 OK", &body()).await
        } else {
            let page = b"<html><body><h2>HTTP ERROR 404</h2></body></html>\n";
            answer(&mut stream, "404 Not Found", page).await
        };
        if written.is_err() || close {
            return;
        }
    }
}

/// Head, then `LEN\r\nBODY\r\n0\r\n\r\n` as one second write: what Jetty 9.4 puts on the wire for
/// a servlet that writes its JSON and returns.
async fn answer(stream: &mut TcpStream, status: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nContent-Type: application/json;charset=utf-8\r\n\
         Transfer-Encoding: chunked\r\nServer: Jetty(9.4.57.v20241219)\r\n\r\n",
        httpdate()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut chunk = Vec::with_capacity(body.len() + 16);
    chunk.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    chunk.extend_from_slice(body);
    chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&chunk).await
}

/// Reads up to the end of one request head; bytes past it stay in `pending` (pipelining).
async fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            return Ok(head);
        }
        if pending.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// A fixed-width `Date` value (the exact time does not matter to a client, its length might).
fn httpdate() -> &'static str {
    "Thu, 26 Nov 2026 12:00:00 GMT"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_two_writes_and_keeps_the_connection() {
        let fake = JettyFake::start(Arc::new(|| b"{\"CHANNEL.c1\":{}}".to_vec()))
            .await
            .expect("binds");
        let mut stream = TcpStream::connect(fake.addr).await.expect("connects");
        for _ in 0..2 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("writes");
            let mut got = Vec::new();
            while !got.ends_with(b"0\r\n\r\n") {
                let mut buf = [0u8; 512];
                let n = stream.read(&mut buf).await.expect("reads");
                assert!(n > 0, "kept alive");
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8(got).expect("utf-8");
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.contains("Transfer-Encoding: chunked\r\n"));
            assert!(text.ends_with("\r\n\r\n11\r\n{\"CHANNEL.c1\":{}}\r\n0\r\n\r\n"));
        }
        assert_eq!(fake.polls(), 2);
    }
}
