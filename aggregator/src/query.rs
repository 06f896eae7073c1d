//! The `flumewatch.v1.Fleet` service: read-only questions about the fleet.

use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_server::Fleet as FleetApi;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::fleet::{Fleet, LookupError};

/// Most snapshots one `GetAgent` returns in its history.
const MAX_HISTORY: u32 = 1000;

#[derive(Debug, Clone)]
pub struct QueryService {
    fleet: Fleet,
}

impl QueryService {
    pub fn new(fleet: Fleet) -> Self {
        Self { fleet }
    }
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
        let alerts = self
            .fleet
            .alerts()
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
            .map(convert::alert)
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
}
