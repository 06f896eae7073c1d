//! The gRPC port: Ingest, Fleet, health and reflection (v1 and v1alpha, for grpcurl 1.8.6),
//! with one shutdown story: health NOT_SERVING, streams closed, connections drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;

use flumewatch_proto::ingest_raw::ingest_server::IngestServer;
use flumewatch_proto::v1::fleet_server::FleetServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::http::HttpState;
use crate::ingest::{IngestCounters, IngestService};
use crate::notify::config::NotifyConfig;
use crate::notify::firing::FiringLog;
use crate::notify::store::postgres::Pg;
use crate::notify::store::{Store, StoreError};
use crate::notify::{Notifier, NotifyHandle};
use crate::query::QueryService;
use crate::reload::{ConfigSource, Reloader};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// HTTP/2 flow-control window per stream: what one sidecar may send ahead of what was read.
const STREAM_WINDOW: u32 = 64 * 1024;
/// Per connection: a sidecar has one stream, so its stream window bounds it; a connection
/// shared by many streams (a proxy, the load generator) must not make them wait on each other.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest message a sidecar may send; a snapshot of a large agent is a few tens of KiB.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Why the aggregator could not run. Not retryable without a config change.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Store(#[from] crate::notify::store::StoreError),
    #[error("cannot build the DingTalk client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A bound, not yet serving aggregator: tests read its address before it runs.
pub struct Aggregator {
    listener: TcpListener,
    /// Notification settings in force; reloads replace them (latest value wins).
    notify_config: Arc<watch::Sender<NotifyConfig>>,
    /// One reloader, so SIGHUP, the RPC and /metrics share its status.
    reloader: Reloader,
    http_listener: Option<TcpListener>,
    fleet: Fleet,
    store: Store,
    /// Loaded at bind, so alerts firing at the last stop are known before anything is judged.
    firing: FiringLog,
    /// A replica's role, published by its lease keeper.
    ha: Option<watch::Sender<crate::ha::HaView>>,
    notify: NotifyHandle,
    counters: Arc<IngestCounters>,
    config: Config,
}

impl Aggregator {
    pub async fn bind(config: Config) -> Result<Self, RunError> {
        let listener = listen(config.grpc_listen).map_err(|source| RunError::Bind {
            addr: config.grpc_listen,
            source,
        })?;
        let http_listener = match config.http_listen {
            Some(addr) => Some(listen(addr).map_err(|source| RunError::Bind { addr, source })?),
            None => None,
        };
        let store = match &config.replication {
            None => Store::open(&config.state_dir)?,
            Some(replication) => Store::shared(Pg::new(replication.database.clone())),
        };
        // A replica starts even while PostgreSQL is away: it ingests and judges meanwhile, and
        // the shared state is read once the database answers.
        let tolerate = |e: StoreError| -> Result<(), StoreError> {
            match config.replication {
                Some(_) => {
                    tracing::error!(error = %e, "shared state database not readable at start; continuing without it");
                    Ok(())
                }
                None => Err(e),
            }
        };
        let keep_since = std::time::SystemTime::now()
            .checked_sub(config.notify.history_retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        store
            .prune_history(keep_since)
            .map(drop)
            .or_else(tolerate)?;
        let notify_config = Arc::new(watch::Sender::new(config.notify.clone()));
        let fleet = Fleet::new(config.history, config.rules.clone(), config.language);
        // The fleet as last known: a sidecar that does not come back is missed, not forgotten.
        match store.known_sidecars() {
            Ok(known) => fleet.remember(known, crate::fleet::Now::current()),
            Err(e) => tolerate(e)?,
        }
        // Before anything is judged: alerts firing at the last stop resume instead of restarting.
        let firing = match FiringLog::load(&store, &fleet) {
            Ok(firing) => firing,
            Err(e) => {
                tolerate(e)?;
                FiringLog::empty()
            }
        };
        let ha = config
            .replication
            .as_ref()
            .map(|r| watch::Sender::new(crate::ha::starting_view(&r.ha)));
        let mut notify = NotifyHandle::new(Some(store.clone()));
        if let Some(view) = &ha {
            notify = notify.with_ha(view.subscribe());
        }
        Ok(Self {
            reloader: Reloader::new(None, fleet.clone(), notify_config.clone()),
            notify_config,
            listener,
            http_listener,
            fleet,
            notify,
            store,
            firing,
            ha,
            counters: Arc::default(),
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.grpc_listen)
    }

    /// Where reloads read the config from (main: the same files and flags as at start).
    pub fn with_config_source(mut self, source: ConfigSource) -> Self {
        self.reloader = Reloader::new(Some(source), self.fleet.clone(), self.notify_config.clone());
        self
    }

    /// Reloads the config on demand (SIGHUP, `Fleet/Reload`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The HTTP port's address, when it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn fleet(&self) -> Fleet {
        self.fleet.clone()
    }

    pub fn counters(&self) -> Arc<IngestCounters> {
        self.counters.clone()
    }

    pub fn notify(&self) -> NotifyHandle {
        self.notify.clone()
    }

    /// Serves until `shutdown`, then drains within the configured grace period.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let addr = self.local_addr();
        let reloader = self.reloader();
        let health = tonic_health::server::HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            crate::health::StoppingHealth::new(health.clone(), shutdown.clone()),
        );
        health.set_serving::<IngestServer<IngestService>>().await;
        health.set_serving::<FleetServer<QueryService>>().await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(flumewatch_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(flumewatch_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        // Streams stop only after health says NOT_SERVING, so load balancers look away first.
        let streams_stop = CancellationToken::new();
        let ingest = IngestService::new(
            self.fleet.clone(),
            streams_stop.clone(),
            self.counters.clone(),
        )
        .with_acks(self.config.acks);
        let query = QueryService::new(
            self.fleet.clone(),
            self.notify.clone(),
            self.notify_config.subscribe(),
            self.reloader(),
        )
        .with_admin_token(self.config.admin_token.clone());
        if self.config.notify.receivers.is_empty() {
            tracing::info!(
                "no DingTalk receiver configured: alerts are judged and listed, not sent"
            );
        }
        // Always running: a reload may add receivers.
        let notifier = Notifier::with_firing_log(
            self.notify_config.subscribe(),
            self.fleet.clone(),
            self.notify.clone(),
            self.store.clone(),
            self.firing,
        )?;
        let notifier = Some(tokio::spawn(notifier.run(streams_stop.clone())));
        // The lease is given up only after the notifier stopped: no send can start after it.
        let lease_stop = CancellationToken::new();
        let lease_keeper = match (
            &self.config.replication,
            self.ha.clone(),
            self.store.postgres(),
        ) {
            (Some(replication), Some(view), Some(pg)) => {
                tracing::info!(replica = %replication.ha.replica, failover = ?replication.ha.failover, "replica: sending only while holding the lease");
                Some(tokio::spawn(crate::ha::keep_lease(
                    pg.another(),
                    replication.ha.clone(),
                    view,
                    self.notify.unrecorded(),
                    lease_stop.clone(),
                )))
            }
            _ => None,
        };
        tracing::info!(%addr, state_dir = %self.config.state_dir.display(), "aggregator listening");

        let http_state = Arc::new(HttpState {
            fleet: self.fleet.clone(),
            counters: self.counters.clone(),
            notify: self.notify.clone(),
            reloader,
            ready: AtomicBool::new(true),
        });
        let http = self.http_listener.map(|listener| {
            tracing::info!(addr = ?listener.local_addr().ok(), "HTTP /metrics listening");
            tokio::spawn(crate::http::serve(
                listener,
                http_state.clone(),
                streams_stop.clone(),
            ))
        });
        let drain = {
            let shutdown = shutdown.clone();
            let streams_stop = streams_stop.clone();
            let http_state = http_state.clone();
            async move {
                shutdown.cancelled().await;
                http_state.ready.store(false, Ordering::Relaxed);
                health
                    .set_not_serving::<IngestServer<IngestService>>()
                    .await;
                health.set_not_serving::<FleetServer<QueryService>>().await;
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                streams_stop.cancel();
            }
        };
        let ticker = tokio::spawn(evaluate_periodically(
            self.fleet.clone(),
            self.store.clone(),
            self.config
                .replication
                .as_ref()
                .map(|r| r.ha.replica.clone()),
            self.config.evaluation_interval,
            self.config.forget_after,
            streams_stop.clone(),
        ));
        let mut builder = tonic::transport::Server::builder();
        match &self.config.tls {
            Some(tls) => {
                let mut server_tls = tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key));
                if let Some(ca) = &tls.client_ca {
                    server_tls =
                        server_tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
                }
                builder = builder.tls_config(server_tls)?;
                tracing::info!(mtls = tls.client_ca.is_some(), "gRPC port uses TLS");
            }
            None if !addr.ip().is_loopback() => {
                tracing::warn!(%addr, "the gRPC port is plaintext on a non-loopback address: set tls_cert and tls_key")
            }
            None => {}
        }
        let readers = {
            let tokens: Option<Arc<[crate::secret::Secret]>> =
                self.config.query_tokens.clone().map(Into::into);
            move |request: tonic::Request<()>| {
                crate::auth::check_reader(tokens.as_deref(), request.metadata())?;
                Ok(request)
            }
        };
        let server = builder
            .tcp_nodelay(true)
            // hyper's defaults let each stream send 1 MiB ahead of what was read: with 10 000
            // sidecars and an aggregator that falls behind, gigabytes. A snapshot is about
            // 2 KiB, so 64 KiB is still dozens in flight per stream.
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(InterceptedService::new(
                IngestServer::new(ingest).max_decoding_message_size(MAX_MESSAGE_BYTES),
                {
                    let tokens = self.config.ingest_tokens.clone();
                    let counters = self.counters.clone();
                    move |mut request: tonic::Request<()>| match tokens.check(request.metadata()) {
                        Ok(enrolled) => {
                            request.extensions_mut().insert(enrolled);
                            Ok(request)
                        }
                        Err(status) => {
                            counters
                                .auth_rejected
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(reason = status.message(), "sidecar stream refused");
                            Err(status)
                        }
                    }
                },
            ))
            .add_service(InterceptedService::new(
                FleetServer::new(query),
                readers.clone(),
            ))
            .add_service(health_service)
            .add_service(InterceptedService::new(reflection_v1, readers.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, readers))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), async move {
                drain.await;
            });
        let grace = self.config.shutdown_grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result?,
            _ = deadline => tracing::warn!(grace = %humantime::format_duration(grace), "streams still open after the grace period; stopping anyway"),
        }
        streams_stop.cancel();
        let _ = ticker.await;
        if let Some(notifier) = notifier {
            let _ = notifier.await;
        }
        lease_stop.cancel();
        if let Some(keeper) = lease_keeper {
            let _ = keeper.await;
        }
        if let Some(http) = http {
            let _ = http.await;
        }
        tracing::info!("aggregator stopped");
        Ok(())
    }
}

/// Hold-downs elapse and silence is noticed even when no snapshot arrives.
/// Ticks the fleet; and when a sidecar joined or changed, writes the known fleet to the state
/// database (a failed write is tried again at the next tick).
async fn evaluate_periodically(
    fleet: Fleet,
    store: Store,
    replica: Option<String>,
    every: Duration,
    forget_after: Option<Duration>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = None;
    // Retirements the other replicas make. Those from before the first read are not applied:
    // they are in the remembered fleet already, and a host retired then may be back since.
    let mut retirements_seen: Option<i64> = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticker.tick() => fleet.tick(crate::fleet::Now::current()),
        }
        if let Some(after) = forget_after {
            let forgotten = fleet.forget_silent(after, crate::fleet::Now::current());
            if !forgotten.is_empty() {
                tracing::info!(agents = ?forgotten, "silent too long: removed from the fleet");
            }
        }
        if let (Some(me), Some(pg)) = (&replica, store.postgres()) {
            follow_retirements(pg, me, &fleet, &mut retirements_seen);
        }
        let membership = fleet.membership();
        if written != Some(membership) {
            match store.remember_sidecars(&fleet.known_sidecars()) {
                Ok(()) => written = Some(membership),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the known fleet; trying again at the next tick")
                }
            }
        }
    }
}

/// Applies the retirements other replicas made since the last id seen. The first read only
/// sets where to start (`seen` is `None` until then).
fn follow_retirements(pg: &Pg, me: &str, fleet: &Fleet, seen: &mut Option<i64>) {
    let new = match pg.retirements_after(seen.unwrap_or(0)) {
        Ok(new) => new,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the shared retirements");
            return;
        }
    };
    if seen.is_none() {
        *seen = Some(new.last().map_or(0, |r| r.id));
        return;
    }
    for r in new {
        *seen = Some(r.id);
        if r.by_replica == me {
            continue;
        }
        let retired = fleet.retire(
            &r.host,
            r.agent.as_deref(),
            crate::fleet::RetireReason::Operator,
            crate::fleet::Now::current(),
        );
        tracing::info!(host = %r.host, agents = ?retired, by = %r.by_replica, "retired on the other replica");
    }
}

/// A fleet reconnects all at once after an aggregator restart: a deep accept queue absorbs
/// the burst instead of resetting connections (the kernel caps it at net.core.somaxconn).
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Binds and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    Aggregator::bind(config).await?.run(shutdown).await
}
