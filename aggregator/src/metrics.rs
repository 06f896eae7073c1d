//! `/metrics` in the Prometheus/OpenMetrics text format: the fleet (one series per agent and
//! component attribute, labelled like the alerts), alerts by state, and the aggregator itself.
//! Built fresh for every scrape from the current state, so a disconnected or silent agent shows
//! `flumewatch_agent_up 0` and no Flume values rather than stale ones.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use flumewatch_proto::model::vocabulary;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::alert::AlertStatus;
use crate::fleet::Fleet;
use crate::notify::NotifyHandle;
use crate::reload::ReloadStatus;
use crate::IngestCounters;

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels every series of an agent carries; sidecar labels that would shadow ours are skipped.
const RESERVED: &[&str] = &[
    "host",
    "agent",
    "kind",
    "component",
    "state",
    "severity",
    "receiver",
    "errcode",
];

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

struct Families {
    counters: Vec<(String, Family<Labels, Counter>)>,
    gauges: Vec<(String, Family<Labels, GaugeF>)>,
}

impl Families {
    fn counter(&mut self, name: &str) -> &Family<Labels, Counter> {
        if let Some(i) = self.counters.iter().position(|(n, _)| n == name) {
            return &self.counters[i].1;
        }
        self.counters.push((name.to_owned(), Family::default()));
        &self.counters.last().expect("just pushed").1
    }

    fn gauge(&mut self, name: &str) -> &Family<Labels, GaugeF> {
        if let Some(i) = self.gauges.iter().position(|(n, _)| n == name) {
            return &self.gauges[i].1;
        }
        self.gauges.push((name.to_owned(), Family::default()));
        &self.gauges.last().expect("just pushed").1
    }
}

fn help(name: &str) -> String {
    match name {
        "flumewatch_agent_up" => {
            "1 when the agent's last poll succeeded and its sidecar is connected".into()
        }
        "flumewatch_sidecar_connected" => {
            "1 while the sidecar has a stream open to this aggregator".into()
        }
        "flumewatch_agent_last_snapshot_age_seconds" => {
            "Seconds since the aggregator received a snapshot of the agent".into()
        }
        "flumewatch_agent_consecutive_failed_polls" => {
            "Failed polls in a row ending with the newest".into()
        }
        "flumewatch_alerts" => "Alerts by state and severity".into(),
        "flumewatch_replica_role" => {
            "1 for this aggregator's role: single, sender (delivers messages) or standby".into()
        }
        "flumewatch_replica_lease_epoch" => {
            "The sender lease's epoch this replica holds (0 when it holds none)".into()
        }
        "flumewatch_replica_peer_last_seen_seconds" => {
            "Seconds since the other replica last renewed its entry in the shared database".into()
        }
        "flumewatch_replica_peers_missing" => {
            "Replicas not seen for a lease term, or 1 when no other replica was ever seen".into()
        }
        "flumewatch_state_database_up" => {
            "1 when the shared state database answered the last lease call".into()
        }
        "flumewatch_log_lines_dropped" => {
            "Log lines dropped because stdout (the log consumer) was not reading".into()
        }
        "process_resident_memory_bytes" => "Resident memory size in bytes".into(),
        "flumewatch_runtime_alive_tasks" => {
            "Tasks alive in the aggregator's runtime (one per stream, send, timer loop)".into()
        }
        n if n.starts_with("flumewatch_flume_") => format!(
            "Flume's {} attribute, as the agent reported it",
            n.trim_start_matches("flumewatch_flume_")
        ),
        n if n.starts_with("flumewatch_sidecar_") => format!(
            "The sidecar's own {}",
            n.trim_start_matches("flumewatch_sidecar_")
                .replace('_', " ")
        ),
        n => n.trim_start_matches("flumewatch_").replace('_', " "),
    }
}

/// Renders every metric for one scrape.
pub fn render(
    fleet: &Fleet,
    counters: &IngestCounters,
    notify: &NotifyHandle,
    evaluation: &Histogram,
    reload: &ReloadStatus,
) -> String {
    let now = SystemTime::now();
    let mut f = Families {
        counters: Vec::new(),
        gauges: Vec::new(),
    };
    let agents = fleet.agents(&Default::default(), None);
    let mut connected_sidecars = std::collections::BTreeSet::new();
    for view in &agents {
        let sidecar = &view.sidecar;
        let state = &view.state;
        let mut base: Labels = vec![("host".into(), state.host.clone())];
        base.extend(
            sidecar
                .hello
                .labels
                .iter()
                .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut agent_labels = base.clone();
        agent_labels.push(("agent".into(), state.agent.clone()));
        if connected_sidecars.insert(state.host.clone()) {
            f.gauge("flumewatch_sidecar_connected")
                .get_or_create(&base)
                .set(if sidecar.connected { 1.0 } else { 0.0 });
            if let Some(stats) = sidecar.stats {
                f.counter("flumewatch_sidecar_polls")
                    .get_or_create(&base)
                    .inc_by(stats.polls);
                f.counter("flumewatch_sidecar_poll_failures")
                    .get_or_create(&base)
                    .inc_by(stats.poll_failures);
                f.counter("flumewatch_sidecar_dropped_snapshots")
                    .get_or_create(&base)
                    .inc_by(stats.dropped);
                f.counter("flumewatch_sidecar_connects")
                    .get_or_create(&base)
                    .inc_by(stats.connects);
                f.gauge("flumewatch_sidecar_buffered_snapshots")
                    .get_or_create(&base)
                    .set(stats.buffered as f64);
            }
        }
        let latest_ok = state.latest.as_ref().filter(|s| s.outcome.is_ok());
        let up = sidecar.connected && latest_ok.is_some();
        f.gauge("flumewatch_agent_up")
            .get_or_create(&agent_labels)
            .set(if up { 1.0 } else { 0.0 });
        f.gauge("flumewatch_agent_consecutive_failed_polls")
            .get_or_create(&agent_labels)
            .set(f64::from(state.consecutive_failures));
        if let Some(seen) = state.last_seen {
            let age = now.duration_since(seen).unwrap_or_default().as_secs_f64();
            f.gauge("flumewatch_agent_last_snapshot_age_seconds")
                .get_or_create(&agent_labels)
                .set(age);
        }
        // Values only while they are current: never stale numbers presented as fresh.
        let Some(snapshot) = latest_ok
            .filter(|_| sidecar.connected)
            .map(|l| l.snapshot())
        else {
            continue;
        };
        for component in snapshot.components.iter().filter(|c| !c.is_stopped()) {
            let mut labels = agent_labels.clone();
            labels.push((
                "kind".into(),
                crate::alert::kind_label(component.kind, &component.kind_name),
            ));
            labels.push(("component".into(), component.name.clone()));
            for (counter, value) in &component.counters {
                let name = format!(
                    "flumewatch_flume_{}",
                    snake(vocabulary::counter_name(*counter))
                );
                f.counter(&name).get_or_create(&labels).inc_by(*value);
            }
            for (gauge, value) in &component.gauges {
                // A gauge named *_count reads as a histogram's count: OpenConnectionCount is
                // exported as open_connections.
                let gauge_name = snake(vocabulary::gauge_name(*gauge));
                let gauge_name = gauge_name
                    .strip_suffix("_count")
                    .map_or(gauge_name.clone(), |n| format!("{n}s"));
                let name = format!("flumewatch_flume_{gauge_name}");
                f.gauge(&name).get_or_create(&labels).set(*value);
            }
            for (flag, value) in &component.flags {
                let name = format!("flumewatch_flume_{}", snake(vocabulary::flag_name(*flag)));
                f.gauge(&name)
                    .get_or_create(&labels)
                    .set(if *value { 1.0 } else { 0.0 });
            }
        }
    }
    for alert in fleet.alerts() {
        let state = match alert.status {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        let labels: Labels = vec![
            ("state".into(), state.into()),
            ("severity".into(), alert.severity.as_str().into()),
        ];
        f.gauge("flumewatch_alerts")
            .get_or_create(&labels)
            .inc_by(1.0);
    }
    let none: Labels = Vec::new();
    f.gauge("flumewatch_ingest_streams_connected")
        .get_or_create(&none)
        .set(fleet.connected_sidecars() as f64);
    f.counter("flumewatch_ingest_streams_opened")
        .get_or_create(&none)
        .inc_by(counters.streams_opened.load(Ordering::Relaxed));
    f.counter("flumewatch_snapshots_stored")
        .get_or_create(&none)
        .inc_by(counters.snapshots_stored.load(Ordering::Relaxed));
    f.counter("flumewatch_ingest_acks_sent")
        .get_or_create(&none)
        .inc_by(counters.acks_sent.load(Ordering::Relaxed));
    f.counter("flumewatch_snapshots_replayed_duplicate")
        .get_or_create(&none)
        .inc_by(counters.duplicates.load(Ordering::Relaxed));
    f.counter("flumewatch_ingest_auth_rejected")
        .get_or_create(&none)
        .inc_by(counters.auth_rejected.load(Ordering::Relaxed));
    f.counter("flumewatch_snapshots_rejected")
        .get_or_create(&none)
        .inc_by(counters.rejected.load(Ordering::Relaxed));
    f.counter("flumewatch_config_reloads")
        .get_or_create(&none)
        .inc_by(reload.reloads);
    f.counter("flumewatch_config_reload_failures")
        .get_or_create(&none)
        .inc_by(reload.failures);
    let ok = if reload.last_error.is_empty() {
        1.0
    } else {
        0.0
    };
    f.gauge("flumewatch_config_last_reload_successful")
        .get_or_create(&none)
        .set(ok);
    for r in notify.lock().receivers.iter() {
        let labels: Labels = vec![("receiver".into(), r.name.clone())];
        f.counter("flumewatch_notifications_sent")
            .get_or_create(&labels)
            .inc_by(r.sent);
        f.counter("flumewatch_notifications_failed_attempts")
            .get_or_create(&labels)
            .inc_by(r.failed_attempts);
        f.counter("flumewatch_notifications_dropped")
            .get_or_create(&labels)
            .inc_by(r.dropped);
        f.gauge("flumewatch_notifications_queued")
            .get_or_create(&labels)
            .set(r.queued as f64);
        for (code, count) in &r.errcodes {
            let labels: Labels = vec![
                ("receiver".into(), r.name.clone()),
                ("errcode".into(), code.to_string()),
            ];
            f.counter("flumewatch_dingtalk_errcodes")
                .get_or_create(&labels)
                .inc_by(*count);
        }
    }
    let ha = notify.ha_view();
    for role in ["single", "sender", "standby"] {
        f.gauge("flumewatch_replica_role")
            .get_or_create(&vec![("role".into(), role.into())])
            .set(if ha.role.as_str() == role { 1.0 } else { 0.0 });
    }
    if ha.role != crate::ha::Role::Single {
        f.gauge("flumewatch_replica_lease_epoch")
            .get_or_create(&none)
            .set(ha.role.epoch().unwrap_or(0) as f64);
        f.gauge("flumewatch_state_database_up")
            .get_or_create(&none)
            .set(if ha.store_error.is_none() { 1.0 } else { 0.0 });
        let missing = ha
            .peers
            .iter()
            .filter(|p| ha.is_missing(p))
            .count()
            .max(usize::from(ha.peers.is_empty()));
        f.gauge("flumewatch_replica_peers_missing")
            .get_or_create(&none)
            .set(missing as f64);
        for peer in &ha.peers {
            f.gauge("flumewatch_replica_peer_last_seen_seconds")
                .get_or_create(&vec![("replica".into(), peer.name.clone())])
                .set(peer.seen_ago.as_secs_f64());
        }
    }
    // Process-wide, like the subscriber that counts it: 0 when this process never set up
    // logging (the library run in-process by tests).
    f.counter("flumewatch_log_lines_dropped")
        .get_or_create(&none)
        .inc_by(flumewatch_process::log_lines_dropped());
    // Leaks show here first: memory that does not come back, tasks that never end.
    if let Some(rss) = resident_bytes() {
        f.gauge("process_resident_memory_bytes")
            .get_or_create(&none)
            .set(rss as f64);
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        f.gauge("flumewatch_runtime_alive_tasks")
            .get_or_create(&none)
            .set(runtime.metrics().num_alive_tasks() as f64);
    }
    let mut registry = Registry::default();
    for (name, family) in f.counters {
        registry.register(name.clone(), help(&name), family);
    }
    for (name, family) in f.gauges {
        registry.register(name.clone(), help(&name), family);
    }
    registry.register(
        "flumewatch_rule_evaluation_seconds",
        "Time to judge one agent's rules on a new snapshot",
        evaluation.clone(),
    );
    registry.register(
        "flumewatch_ingest_to_verdict_seconds",
        "Time from a snapshot's arrival on its stream to its verdict (stored and judged)",
        counters.verdict_latency.0.clone(),
    );
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    out
}

/// Resident set size from /proc (Linux; None elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages: every platform this is built for (x86_64 and aarch64 Linux defaults).
    Some(pages * 4096)
}

/// The same exposition in Prometheus' classic text format (0.0.4), for scrapers and tools
/// that do not ask for OpenMetrics (curl, `promtool check metrics`): counter families are
/// named with their `_total` suffix there, and there is no `# EOF` or `# UNIT`.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            pending_help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = pending_help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.split_once(' '))
                    .map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(help) = pending_help.take() {
            out.push_str(help);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{snake, to_classic_text};

    #[test]
    fn classic_text_names_counters_with_their_suffix() {
        let om = "# HELP a_b Some help.\n# TYPE a_b counter\na_b_total{x=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1.0\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP a_b_total Some help.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1.0\n"
        );
    }

    #[test]
    fn flume_names_become_snake_case() {
        assert_eq!(snake("EventPutSuccessCount"), "event_put_success_count");
        assert_eq!(snake("ChannelFillPercentage"), "channel_fill_percentage");
        assert_eq!(snake("Open"), "open");
    }
}
