//! The `flumewatch.v1.Fleet` service: read-only questions about the fleet.

use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_server::Fleet as FleetApi;
use tonic::{Request, Response, Status};

use std::time::{Duration, SystemTime};

use flumewatch_proto::model::time::from_timestamp;

use crate::convert;
use crate::fleet::{Fleet, LookupError};
use crate::matcher::{MatchOp, Matcher};
use crate::notify::config::{InhibitRule, NotifyConfig};
use crate::notify::mute::{self, Silence};
use crate::notify::store::history::{HistoryFilter, MAX_LIST};
use crate::notify::NotifyHandle;
use crate::reload::Reloader;
use tokio::sync::watch;

/// Most snapshots one `GetAgent` returns in its history.
const MAX_HISTORY: u32 = 1000;

#[derive(Clone)]
pub struct QueryService {
    fleet: Fleet,
    notify: NotifyHandle,
    /// The notification settings in force (for inhibition in ListAlerts).
    notify_config: watch::Receiver<NotifyConfig>,
    reloader: Reloader,
    /// Required for silences and reload when set.
    admin_token: Option<crate::secret::Secret>,
}

impl QueryService {
    pub fn new(
        fleet: Fleet,
        notify: NotifyHandle,
        notify_config: watch::Receiver<NotifyConfig>,
        reloader: Reloader,
    ) -> Self {
        Self {
            fleet,
            notify,
            notify_config,
            reloader,
            admin_token: None,
        }
    }

    /// Silences and reload then need `authorization: Bearer TOKEN`.
    pub fn with_admin_token(mut self, token: Option<crate::secret::Secret>) -> Self {
        self.admin_token = token;
        self
    }

    fn inhibit_rules(&self) -> Vec<InhibitRule> {
        self.notify_config.borrow().inhibit.clone()
    }
}

fn silence_to_pb(s: &Silence, now: SystemTime) -> pb::Silence {
    pb::Silence {
        id: s.id.clone(),
        matchers: s
            .matchers
            .iter()
            .map(|m| pb::Matcher {
                name: m.name.clone(),
                value: m.value.clone(),
                op: match m.op {
                    MatchOp::Equal => pb::MatchOp::Equal,
                    MatchOp::NotEqual => pb::MatchOp::NotEqual,
                    MatchOp::Glob => pb::MatchOp::Glob,
                    MatchOp::NotGlob => pb::MatchOp::NotGlob,
                } as i32,
            })
            .collect(),
        starts_at: Some(flumewatch_proto::model::time::timestamp(s.starts_at)),
        ends_at: Some(flumewatch_proto::model::time::timestamp(s.ends_at)),
        creator: s.creator.clone(),
        comment: s.comment.clone(),
        created_at: Some(flumewatch_proto::model::time::timestamp(s.created_at)),
        active: s.is_active(now),
    }
}

/// An optional timestamp argument of a request.
fn time_arg(
    ts: Option<&prost_types::Timestamp>,
    what: &'static str,
) -> Result<Option<SystemTime>, Status> {
    ts.map(|t| from_timestamp(t, what).map_err(|e| Status::invalid_argument(e.to_string())))
        .transpose()
}

/// A ListNotifications request as a history query.
fn history_filter(r: pb::ListNotificationsRequest) -> Result<HistoryFilter, Status> {
    let fingerprint = match r.fingerprint.trim() {
        "" => None,
        hex => Some(u64::from_str_radix(hex, 16).map_err(|_| {
            Status::invalid_argument(format!(
                "fingerprint {hex:?} is not one (16 hex digits, as ListAlerts shows)"
            ))
        })?),
    };
    Ok(HistoryFilter {
        receiver: (!r.receiver.is_empty()).then_some(r.receiver),
        since: time_arg(r.since.as_ref(), "since")?,
        until: time_arg(r.until.as_ref(), "until")?,
        fingerprint,
        limit: match r.limit {
            0 => HistoryFilter::default().limit,
            n => (n as usize).min(MAX_LIST),
        },
    })
}

fn new_silence_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[tonic::async_trait]
impl FleetApi for QueryService {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let request = request.into_inner();
        let labels = request.labels.into_iter().collect();
        let host = (!request.host.is_empty()).then_some(request.host.as_str());
        let agents = self
            .fleet
            .agents(&labels, host)
            .iter()
            .map(convert::agent_summary)
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let request = request.into_inner();
        if request.host.is_empty() {
            return Err(Status::invalid_argument("host is required"));
        }
        let view = self
            .fleet
            .agent(&request.host, &request.agent)
            .map_err(|e| match e {
                LookupError::Ambiguous(_) => Status::invalid_argument(e.to_string()),
                LookupError::UnknownAgent(..) | LookupError::UnknownHost(_) => {
                    Status::not_found(e.to_string())
                }
            })?;
        let history = request.history.min(MAX_HISTORY) as usize;
        Ok(Response::new(convert::agent_detail(&view, history)))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let request = request.into_inner();
        let labels = request.labels.into_iter().collect();
        let all = self.fleet.alerts();
        let silences = self.notify.lock().silences.clone();
        let inhibit = self.inhibit_rules();
        let now = SystemTime::now();
        let alerts = all
            .iter()
            .filter(|a| {
                request.states.is_empty()
                    || request
                        .states
                        .contains(&(convert::alert_state(a.status) as i32))
            })
            .filter(|a| {
                request.severities.is_empty()
                    || request
                        .severities
                        .contains(&(convert::severity(a.severity) as i32))
            })
            .filter(|a| a.labels.matches(&labels))
            .map(|a| {
                let mut out = convert::alert(a);
                out.silenced_by = mute::silenced_by(&silences, &a.labels.0, now);
                out.inhibited = mute::inhibited(a, &all, &inhibit);
                out
            })
            .collect();
        Ok(Response::new(pb::ListAlertsResponse { alerts }))
    }

    async fn list_rules(
        &self,
        _request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let rules = self.fleet.rules().iter().map(convert::rule).collect();
        Ok(Response::new(pb::ListRulesResponse { rules }))
    }

    async fn create_silence(
        &self,
        request: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        crate::auth::check_admin(self.admin_token.as_ref(), request.metadata())?;
        let r = request.into_inner();
        let now = SystemTime::now();
        if r.matchers.is_empty() {
            return Err(Status::invalid_argument(
                "a silence needs at least one matcher",
            ));
        }
        if r.creator.trim().is_empty() || r.comment.trim().is_empty() {
            return Err(Status::invalid_argument(
                "say who creates the silence (creator) and why (comment)",
            ));
        }
        let matchers = r
            .matchers
            .iter()
            .map(|m| {
                let op = match pb::MatchOp::try_from(m.op) {
                    Ok(pb::MatchOp::Equal) => MatchOp::Equal,
                    Ok(pb::MatchOp::NotEqual) => MatchOp::NotEqual,
                    Ok(pb::MatchOp::Glob) => MatchOp::Glob,
                    Ok(pb::MatchOp::NotGlob) => MatchOp::NotGlob,
                    Err(_) => {
                        return Err(Status::invalid_argument(format!(
                            "unknown match op {}",
                            m.op
                        )))
                    }
                };
                Matcher::new(&m.name, op, &m.value).map_err(Status::invalid_argument)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let starts_at = time_arg(r.starts_at.as_ref(), "starts_at")?.unwrap_or(now);
        let ends_at = match (
            time_arg(r.ends_at.as_ref(), "ends_at")?,
            r.duration.as_ref(),
        ) {
            (Some(end), None) => end,
            (None, Some(d)) => {
                starts_at
                    + Duration::try_from(*d)
                        .map_err(|_| Status::invalid_argument("duration must be positive"))?
            }
            _ => return Err(Status::invalid_argument("give ends_at or duration")),
        };
        if ends_at <= starts_at || ends_at <= now {
            return Err(Status::invalid_argument(
                "ends_at must be after starts_at and in the future",
            ));
        }
        let silence = Silence {
            id: new_silence_id(),
            matchers,
            starts_at,
            ends_at,
            creator: r.creator,
            comment: r.comment,
            created_at: now,
        };
        self.notify
            .add_silence(silence.clone())
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(id = %silence.id, creator = %silence.creator, "silence created");
        Ok(Response::new(silence_to_pb(&silence, now)))
    }

    async fn list_silences(
        &self,
        request: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        let include_expired = request.into_inner().include_expired;
        let now = SystemTime::now();
        let silences = self
            .notify
            .lock()
            .silences
            .iter()
            .filter(|s| include_expired || s.ends_at > now)
            .map(|s| silence_to_pb(s, now))
            .collect();
        Ok(Response::new(pb::ListSilencesResponse { silences }))
    }

    async fn expire_silence(
        &self,
        request: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        crate::auth::check_admin(self.admin_token.as_ref(), request.metadata())?;
        let id = request.into_inner().id;
        let now = SystemTime::now();
        if !self
            .notify
            .expire_silence(&id, now)
            .map_err(|e| Status::internal(e.to_string()))?
        {
            return Err(Status::not_found(format!("no silence {id:?}")));
        }
        let silence = self
            .notify
            .lock()
            .silences
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| Status::not_found(id.clone()))?;
        tracing::info!(%id, "silence expired");
        Ok(Response::new(silence_to_pb(&silence, now)))
    }

    async fn retire_agent(
        &self,
        request: Request<pb::RetireAgentRequest>,
    ) -> Result<Response<pb::RetireAgentResponse>, Status> {
        crate::auth::check_admin(self.admin_token.as_ref(), request.metadata())?;
        let request = request.into_inner();
        if request.host.is_empty() {
            return Err(Status::invalid_argument(
                "name the host (and optionally the agent)",
            ));
        }
        let agent = Some(request.agent.as_str()).filter(|a| !a.is_empty());
        let retired = self.fleet.retire(
            &request.host,
            agent,
            crate::fleet::RetireReason::Operator,
            crate::fleet::Now::current(),
        );
        if retired.is_empty() && agent.is_some() {
            return Err(Status::not_found(format!(
                "no agent {}/{}",
                request.host, request.agent
            )));
        }
        tracing::info!(host = %request.host, agents = ?retired, "retired");
        if let Err(e) = self.notify.share_retirement(&request.host, agent) {
            tracing::error!(error = %e, "retired here, but the other replica could not be told");
            return Err(Status::unavailable(format!(
                "retired on this replica only: {e}"
            )));
        }
        Ok(Response::new(pb::RetireAgentResponse {
            retired: retired
                .into_iter()
                .map(|a| format!("{}/{a}", request.host))
                .collect(),
        }))
    }

    async fn list_receivers(
        &self,
        _request: Request<pb::ListReceiversRequest>,
    ) -> Result<Response<pb::ListReceiversResponse>, Status> {
        let receivers = self
            .notify
            .lock()
            .receivers
            .iter()
            .map(|r| pb::ReceiverStatus {
                name: r.name.clone(),
                sent: r.sent,
                failed_attempts: r.failed_attempts,
                dropped: r.dropped,
                queued: r.queued,
                last_error: r.last_error.clone(),
                last_errcode: r.last_errcode,
                errcodes: r.errcodes.clone().into_iter().collect(),
                suppressed: r.suppressed,
            })
            .collect();
        Ok(Response::new(pb::ListReceiversResponse { receivers }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let view = self.notify.ha_view();
        let single = view.role == crate::ha::Role::Single;
        let alerts = self.fleet.alerts();
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            state_backend: if single { "sqlite" } else { "postgres" }.to_owned(),
            replica: view.replica.clone(),
            role: view.role.as_str().to_owned(),
            lease_epoch: view.role.epoch().unwrap_or(0),
            peers: view
                .peers
                .iter()
                .map(|p| pb::ReplicaPeer {
                    name: p.name.clone(),
                    role: p.role.clone(),
                    last_seen_ago: Some(flumewatch_proto::model::time::duration(p.seen_ago)),
                    missing: view.is_missing(p),
                })
                .collect(),
            warnings: view.warnings(),
            agents: self.fleet.agent_count() as u32,
            firing_alerts: alerts
                .iter()
                .filter(|a| a.status == crate::alert::AlertStatus::Firing)
                .count() as u32,
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let filter = history_filter(request.into_inner())?;
        // SQLite behind the notifier's lock: a bounded query, off the async workers.
        let notify = self.notify.clone();
        let rows = tokio::task::spawn_blocking(move || notify.notifications(&filter))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows.iter().map(convert::notification).collect(),
        }))
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        crate::auth::check_admin(self.admin_token.as_ref(), request.metadata())?;
        // The reload reads files: keep it off the async workers.
        let reloader = self.reloader.clone();
        let result = tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match result {
            Ok((rules, receivers)) => pb::ReloadResponse {
                ok: true,
                error: String::new(),
                rules: rules as u32,
                receivers: receivers as u32,
            },
            Err(error) => pb::ReloadResponse {
                ok: false,
                error,
                rules: 0,
                receivers: 0,
            },
        }))
    }
}
