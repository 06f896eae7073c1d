//! A tiny HTTP/1.1 server that answers `/metrics` the way Flume's Jetty does, and can be taken
//! down (connection refused) and brought back on the same port.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What to answer to one request for `/metrics`.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this body, chunked.
    Json(Vec<u8>),
    /// This status with a small HTML body (as Jetty does for errors).
    Status(u16),
    /// Accept the request and never answer (a hung JVM).
    Hang,
    /// 200 with this body, chunked, a few bytes at a time with a pause between (a JVM in GC
    /// trouble, or a slowloris).
    Drip { body: Vec<u8>, every: Duration },
    /// 200 with this body, chunked, after a pause: a JVM busy elsewhere, so that agents on one
    /// host answer a round's polls milliseconds apart.
    Late { body: Vec<u8>, after: Duration },
}

/// Produces the reply for each request; called on every poll so counters can move.
pub type Responder = Arc<dyn Fn() -> Reply + Send + Sync>;

/// Bytes per chunk: Flume's bodies arrive in several chunks, so the client's reassembly is exercised.
const CHUNK: usize = 512;
const MAX_REQUEST_HEAD: usize = 16 * 1024;
const DRIP_BYTES: usize = 16;
/// Jetty's default idle timeout for a kept-alive connection.
const IDLE: Duration = Duration::from_secs(30);

/// A running fake agent. Dropping it stops it.
pub struct FakeFlume {
    addr: SocketAddr,
    listening: watch::Sender<bool>,
    stop: CancellationToken,
}

impl FakeFlume {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(responder: Responder) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), responder).await
    }

    pub async fn start_on(addr: SocketAddr, responder: Responder) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (listening, listening_rx) = watch::channel(true);
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, addr, responder, listening_rx, stop.clone()));
        Ok(Self {
            addr,
            listening,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics URL, as a sidecar's `--flume` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Closes the port: polls get "connection refused", as when the JVM is down.
    pub fn go_down(&self) {
        self.listening.send_replace(false);
    }

    /// Listens on the same port again.
    pub fn come_back(&self) {
        self.listening.send_replace(true);
    }
}

impl Drop for FakeFlume {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    responder: Responder,
    mut listening: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    // For connections: they close when the agent goes down.
    let watcher = listening.clone();
    loop {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                changed = listening.wait_for(|up| !*up) => {
                    if changed.is_err() { return; }
                    break;
                }
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(answer(stream, responder.clone(), stop.clone(), watcher.clone()));
                    }
                }
            }
        }
        drop(listener);
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = listening.wait_for(|up| *up) => if changed.is_err() { return },
        }
        listener = match rebind(addr).await {
            Ok(listener) => listener,
            Err(_) => return,
        };
    }
}

/// The port was ours a moment ago; the kernel may need a moment to release it.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..200 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("rebind failed")))
}

/// Serves one connection: like Jetty, it stays open for further requests (HTTP/1.1
/// keep-alive) until the client closes it, it idles for 30 s, or the agent goes down.
async fn answer(
    mut stream: TcpStream,
    responder: Responder,
    stop: CancellationToken,
    mut listening: watch::Receiver<bool>,
) {
    loop {
        let head = tokio::select! {
            _ = stop.cancelled() => return,
            // A JVM that goes down takes its open connections with it.
            _ = listening.wait_for(|up| !*up) => return,
            head = tokio::time::timeout(IDLE, read_head(&mut stream)) => match head {
                Ok(Ok(head)) => head,
                _ => return,
            },
        };
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("").to_ascii_uppercase();
        let target = words.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("").to_ascii_lowercase();
        // Request bodies are not read: after one, the connection is not reused.
        let lower = head.to_ascii_lowercase();
        let has_body = lower.contains("\ncontent-length:")
            && !lower.contains("\ncontent-length: 0")
            || lower.contains("\ntransfer-encoding:");
        let reply = match (method.as_str(), path.as_str()) {
            ("TRACE" | "OPTIONS", _) => Reply::Status(403),
            (_, "/metrics") => responder(),
            _ => Reply::Status(404),
        };
        let (response, close) = match reply {
            Reply::Hang => {
                stop.cancelled().await;
                return;
            }
            Reply::Drip { body, every } => {
                let response = chunked("200 OK", "application/json;charset=utf-8", &body);
                for piece in response.chunks(DRIP_BYTES) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if stream.write_all(piece).await.is_err() {
                        return;
                    }
                }
                let _ = stream.shutdown().await;
                return;
            }
            Reply::Late { body, after } => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(after) => {}
                }
                (
                    chunked("200 OK", "application/json;charset=utf-8", &body),
                    has_body,
                )
            }
            Reply::Json(body) => (
                chunked(
                    "200 OK",
                    "application/json;charset=utf-8",
                    if method == "HEAD" { &[] } else { &body },
                ),
                has_body,
            ),
            Reply::Status(code) => {
                let body = format!("<html><body><h2>HTTP ERROR {code}</h2></body></html>\n");
                let response = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Type: text/html;charset=iso-8859-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    reason(code),
                    body.len()
                )
                .into_bytes();
                (response, true)
            }
        };
        if stream.write_all(&response).await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_REQUEST_HEAD {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Jetty's answer: chunked transfer encoding and no Content-Length.
fn chunked(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nServer: Jetty(9.4.57.v20241219)\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(CHUNK) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
