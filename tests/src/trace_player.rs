//! A recorded trace served in real time over real HTTP: each poll gets the newest sample whose
//! trace time has passed, and the port is closed while the trace says "refused" — a Flume
//! agent replayed for real sidecars on real clocks.

use std::sync::Arc;
use std::time::Duration;

use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::replay::{Answer, Sample};

pub struct TracePlayer {
    pub server: Arc<FakeFlume>,
    started: Instant,
    from: f64,
    refusals: JoinHandle<()>,
}

fn at(samples: &[Sample], t: f64) -> &Sample {
    samples
        .iter()
        .rev()
        .find(|s| s.t <= t)
        .unwrap_or(&samples[0])
}

impl TracePlayer {
    /// Starts playing `samples` from trace time `from` (seconds) now.
    pub async fn start(samples: Vec<Sample>, from: f64) -> std::io::Result<Self> {
        let samples = Arc::new(samples);
        let started = Instant::now();
        let trace_time = move || from + started.elapsed().as_secs_f64();
        let responder = {
            let samples = samples.clone();
            Arc::new(move || match &at(&samples, trace_time()).answer {
                Answer::Body(body) => Reply::Json(body.clone().into_bytes()),
                Answer::Http(code) => Reply::Status(*code),
                // Refusals close the port (below); a poll that slips in answers like Jetty
                // shutting down.
                Answer::Refused | Answer::Timeout => Reply::Status(503),
            })
        };
        let server = Arc::new(FakeFlume::start(responder).await?);
        // Open and close the port as the trace's refusals begin and end.
        let refusals = tokio::spawn({
            let server = server.clone();
            let samples = samples.clone();
            async move {
                let mut down = false;
                loop {
                    let refused = matches!(at(&samples, trace_time()).answer, Answer::Refused);
                    if refused != down {
                        if refused {
                            server.go_down();
                        } else {
                            server.come_back();
                        }
                        down = refused;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(Self {
            server,
            started,
            from,
            refusals,
        })
    }

    /// The trace time now.
    pub fn trace_time(&self) -> f64 {
        self.from + self.started.elapsed().as_secs_f64()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

impl Drop for TracePlayer {
    fn drop(&mut self) {
        self.refusals.abort();
    }
}
