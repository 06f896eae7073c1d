//! gRPC health whose Watch streams end once they have said NOT_SERVING while stopping, so a
//! watching load balancer learns the news and then lets the port close instead of holding it
//! open for the whole shutdown grace period.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

pub struct StoppingHealth {
    inner: HealthService,
    /// The root shutdown token: cancelled before any status turns NOT_SERVING.
    stopping: CancellationToken,
}

impl StoppingHealth {
    pub fn new(reporter: HealthReporter, stopping: CancellationToken) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            stopping,
        }
    }
}

#[tonic::async_trait]
impl Health for StoppingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = EndsWhenStopped;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        Ok(Response::new(EndsWhenStopped {
            inner,
            stopping: self.stopping.clone(),
            done: false,
        }))
    }
}

pub struct EndsWhenStopped {
    inner: tonic_health::server::WatchStream,
    stopping: CancellationToken,
    done: bool,
}

impl Stream for EndsWhenStopped {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(response))) = &next {
            if response.status == ServingStatus::NotServing as i32 && self.stopping.is_cancelled() {
                self.done = true;
            }
        }
        next
    }
}
