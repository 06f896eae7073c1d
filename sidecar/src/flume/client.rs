//! One HTTP poll of a Flume agent's metrics endpoint: timeout, body size cap, failure classification.

use std::error::Error as _;
use std::time::Duration;

use flumewatch_proto::model::snapshot::ScrapeOutcome;

/// Polls one endpoint; cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct FlumeClient {
    http: reqwest::Client,
    /// Larger bodies are cut off and reported as a bad payload: a misbehaving endpoint must not
    /// be able to grow the sidecar's memory.
    max_body_bytes: usize,
    timeout: Duration,
}

impl FlumeClient {
    pub fn new(timeout: Duration, max_body_bytes: usize) -> Result<Self, reqwest::Error> {
        // The workspace builds reqwest with rustls and no default provider (ring is the one
        // we ship); a client cannot be built before one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Flume is polled over loopback; a proxy from the environment would be wrong.
            .no_proxy()
            .user_agent(concat!("flumewatch-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            max_body_bytes,
            timeout,
        })
    }

    /// GETs `url` and returns the body, or the outcome that says why there is none.
    pub async fn fetch(&self, url: &reqwest::Url) -> Result<Vec<u8>, ScrapeOutcome> {
        // reqwest's timeout covers the body too; this outer one also bounds a drip-fed body
        // whose chunks each arrive just in time.
        match tokio::time::timeout(self.timeout, self.fetch_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(ScrapeOutcome::Timeout(format!(
                "no complete answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn fetch_inner(&self, url: &reqwest::Url) -> Result<Vec<u8>, ScrapeOutcome> {
        let mut response = self.http.get(url.clone()).send().await.map_err(classify)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(ScrapeOutcome::HttpStatus {
                status: status.as_u16(),
                error: format!("HTTP {status} from the metrics endpoint"),
            });
        }
        if let Some(length) = response.content_length() {
            if length > self.max_body_bytes as u64 {
                return Err(too_large(self.max_body_bytes));
            }
        }
        let mut body = Vec::with_capacity(4096);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(too_large(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn too_large(limit: usize) -> ScrapeOutcome {
    ScrapeOutcome::BadPayload(format!("body larger than the {limit} byte limit"))
}

/// Sorts a transport error into the outcome operators act on; the text drops the URL's query.
fn classify(error: reqwest::Error) -> ScrapeOutcome {
    let error = error.without_url();
    let text = describe(&error);
    if error.is_timeout() {
        return ScrapeOutcome::Timeout(text);
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ScrapeOutcome::ConnectionRefused(text);
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ScrapeOutcome::Timeout(text);
            }
        }
        source = cause.source();
    }
    if error.is_body() || error.is_decode() {
        return ScrapeOutcome::BadPayload(text);
    }
    ScrapeOutcome::ConnectionFailed(text)
}

/// The error and its causes on one line, without the URL (it is known from the agent's config).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
