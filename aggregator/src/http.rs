//! The HTTP port (`--http-listen`): `/metrics` for Prometheus, `/-/healthy` and `/-/ready` for
//! probes and load balancers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::notify::NotifyHandle;
use crate::IngestCounters;

/// What the HTTP handlers read.
pub struct HttpState {
    pub fleet: Fleet,
    pub counters: Arc<IngestCounters>,
    pub notify: NotifyHandle,
    pub reloader: crate::reload::Reloader,
    /// False before serving and while draining: `/-/ready` answers 503.
    pub ready: AtomicBool,
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> impl IntoResponse {
    let body = crate::metrics::render(
        &state.fleet,
        &state.counters,
        &state.notify,
        &state.fleet.evaluation_histogram(),
        &state.reloader.status(),
    );
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::to_classic_text(&body),
        )
    }
}

async fn ready(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "healthy\n" }))
        .route("/-/ready", get(ready))
        .with_state(state);
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
