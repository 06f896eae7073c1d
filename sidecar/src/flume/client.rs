//! One HTTP poll of a Flume agent's metrics endpoint: timeout, body size cap, failure classification.
//!
//! Flume's metrics server is plain HTTP/1.1 (Jetty), polled over loopback every few seconds, so
//! the sidecar speaks it itself ([`super::http`]) over kept-alive connections instead of carrying
//! a general HTTP client: that costs less per poll and keeps the binary, and so the resident
//! memory on the Flume host, smaller.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flumewatch_proto::model::snapshot::ScrapeOutcome;
use tokio::time::Instant;

use super::http::{Connection, Failure, WireError};

/// Idle connections kept at most: one per agent a sidecar may poll (`roster::MAX_AGENTS`).
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than reused: Jetty closes its end after
/// 30 s idle, and a request on a connection it is closing would fail.
const IDLE_FOR: Duration = Duration::from_secs(25);

/// Polls endpoints; cheap to clone (clones share the idle connections).
#[derive(Debug, Clone)]
pub struct FlumeClient {
    /// Larger bodies are cut off and reported as a bad payload: a misbehaving endpoint must not
    /// be able to grow the sidecar's memory.
    max_body_bytes: usize,
    /// Bounds connect, request and the whole body: a drip-fed answer times out too.
    timeout: Duration,
    /// Connections whose last answer was complete, by endpoint; each poller takes its own out
    /// while it polls and puts it back after. A std mutex: never held across an await.
    idle: Arc<Mutex<Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    host: String,
    port: u16,
    since: Instant,
    connection: Connection,
}

/// Why a URL cannot be polled by this client. Config validation refuses these already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("only http:// URLs can be polled (Flume's metrics server is plain HTTP), not {0}://")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

/// Checks that `url` is one this client can poll.
pub fn check_url(url: &url::Url) -> Result<(), UrlError> {
    if url.scheme() != "http" {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if url.host().is_none() {
        return Err(UrlError::NoHost);
    }
    Ok(())
}

// === impl FlumeClient ===

impl FlumeClient {
    pub fn new(timeout: Duration, max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            timeout,
            idle: Arc::default(),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A list of sockets cannot be left half-updated: keep it after a panic.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// GETs `url` and returns the body, or the outcome that says why there is none.
    pub async fn fetch(&self, url: &url::Url) -> Result<Vec<u8>, ScrapeOutcome> {
        if let Err(e) = check_url(url) {
            return Err(ScrapeOutcome::ConnectionFailed(e.to_string()));
        }
        match tokio::time::timeout(self.timeout, self.fetch_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(ScrapeOutcome::Timeout(format!(
                "no complete answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn fetch_inner(&self, url: &url::Url) -> Result<Vec<u8>, ScrapeOutcome> {
        let host = url
            .host()
            .ok_or_else(|| ScrapeOutcome::ConnectionFailed("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let request = request(url);
        let host_key = host.to_string();
        let reused = self.take_idle(&host_key, port);
        let (mut connection, reused) = match reused {
            Some(connection) => (connection, true),
            None => (self.connect(&host, port).await?, false),
        };
        let mut result = connection.get(&request, self.max_body_bytes).await;
        // The server may have closed a kept-alive connection just as it was reused: once, on a
        // new connection, as long as none of the answer had arrived.
        if let Err(Failure {
            answered: false, ..
        }) = &result
        {
            if reused {
                connection = self.connect(&host, port).await?;
                result = connection.get(&request, self.max_body_bytes).await;
            }
        }
        let response = result.map_err(|f| self.classify(f))?;
        if response.status != 200 {
            let status = if response.reason.is_empty() {
                response.status.to_string()
            } else {
                format!("{} {}", response.status, response.reason)
            };
            return Err(ScrapeOutcome::HttpStatus {
                status: response.status,
                error: format!("HTTP {status} from the metrics endpoint"),
            });
        }
        if response.reusable {
            self.put_idle(host_key, port, connection);
        }
        Ok(response.body)
    }

    async fn connect(
        &self,
        host: &url::Host<&str>,
        port: u16,
    ) -> Result<Connection, ScrapeOutcome> {
        Connection::open(host, port).await.map_err(|e| {
            let text = format!("cannot connect: {e}");
            match e.kind() {
                io::ErrorKind::ConnectionRefused => ScrapeOutcome::ConnectionRefused(text),
                io::ErrorKind::TimedOut => ScrapeOutcome::Timeout(text),
                _ => ScrapeOutcome::ConnectionFailed(text),
            }
        })
    }

    fn take_idle(&self, host: &str, port: u16) -> Option<Connection> {
        let mut idle = self.idle();
        let now = Instant::now();
        // Stale connections go whoever's they are (no system call: by age only).
        idle.retain(|c| now.duration_since(c.since) < IDLE_FOR);
        let i = idle.iter().position(|c| c.port == port && c.host == host)?;
        let connection = idle.swap_remove(i).connection;
        // One the server closed meanwhile is not worth a failed request.
        connection.still_open().then_some(connection)
    }

    fn put_idle(&self, host: String, port: u16, connection: Connection) {
        let mut idle = self.idle();
        if idle.len() >= MAX_IDLE {
            return;
        }
        idle.push(Idle {
            host,
            port,
            since: Instant::now(),
            connection,
        });
    }

    /// Sorts a wire failure into the outcome operators act on.
    fn classify(&self, failure: Failure) -> ScrapeOutcome {
        match failure.error {
            WireError::TooLarge => too_large(self.max_body_bytes),
            WireError::BadBody(why) => {
                ScrapeOutcome::BadPayload(format!("bad chunked body: {why}"))
            }
            WireError::BadHead(why) => {
                ScrapeOutcome::ConnectionFailed(format!("not an HTTP/1.x answer: {why}"))
            }
            WireError::Closed if failure.head_read => ScrapeOutcome::BadPayload(
                "the connection closed before the whole body arrived".into(),
            ),
            WireError::Closed => {
                ScrapeOutcome::ConnectionFailed("the connection closed without an answer".into())
            }
            WireError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                ScrapeOutcome::Timeout(format!("connection error: {e}"))
            }
            WireError::Io(e) if failure.head_read => {
                ScrapeOutcome::BadPayload(format!("error reading the body: {e}"))
            }
            WireError::Io(e) => ScrapeOutcome::ConnectionFailed(format!("connection error: {e}")),
        }
    }
}

/// The GET for `url` (its path and query; never a fragment).
fn request(url: &url::Url) -> Vec<u8> {
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: flumewatch-sidecar/{}\r\nAccept: application/json\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

fn too_large(limit: usize) -> ScrapeOutcome {
    ScrapeOutcome::BadPayload(format!("body larger than the {limit} byte limit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_host_and_path_as_given() {
        let url = url::Url::parse("http://[::1]:41414/metrics?x=1#frag").unwrap();
        assert_eq!(
            String::from_utf8(request(&url)).unwrap(),
            format!(
                "GET /metrics?x=1 HTTP/1.1\r\nHost: [::1]:41414\r\nUser-Agent: flumewatch-sidecar/{}\r\nAccept: application/json\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let url = url::Url::parse("http://flume-host/metrics").unwrap();
        assert!(String::from_utf8(request(&url))
            .unwrap()
            .contains("\r\nHost: flume-host\r\n"));
    }

    #[test]
    fn only_plain_http_is_polled() {
        assert!(check_url(&"http://127.0.0.1:1/metrics".parse().unwrap()).is_ok());
        assert_eq!(
            check_url(&"https://127.0.0.1:1/metrics".parse().unwrap()),
            Err(UrlError::Scheme("https".into()))
        );
    }
}
