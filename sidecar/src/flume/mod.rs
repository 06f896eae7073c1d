//! Everything that knows Flume's HTTP metrics endpoint and its JSON lives here; the rest of the
//! sidecar sees only typed [`Snapshot`]s.

mod client;
mod http;
mod json;
mod parse;

use std::time::SystemTime;

pub use client::{check_url, FlumeClient, UrlError};
pub use parse::{parse_metrics, PayloadError};

use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};

/// Polls `url` once and describes what was seen; never fails: a failed poll is a snapshot too.
/// The sequence number is assigned later, when the snapshot is queued for the aggregator.
pub async fn scrape(client: &FlumeClient, agent: &str, url: &url::Url) -> Snapshot {
    let scraped_at = SystemTime::now();
    let started = tokio::time::Instant::now();
    let (outcome, components) = match client.fetch(url).await {
        Ok(body) => match parse_metrics(&body) {
            Ok(components) => (ScrapeOutcome::Ok, components),
            Err(e) => (ScrapeOutcome::BadPayload(e.to_string()), Vec::new()),
        },
        Err(outcome) => (outcome, Vec::new()),
    };
    Snapshot {
        seq: 0,
        agent: agent.to_owned(),
        scraped_at,
        scrape_duration: started.elapsed(),
        outcome,
        components,
        backfill: false,
    }
}
