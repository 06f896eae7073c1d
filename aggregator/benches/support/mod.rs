//! The agents the aggregator's benches feed: the captured multi-component sample, and 20
//! components made of it, as the load generator's agents.

use flumewatch_proto::model::snapshot::Component;
use flumewatch_sidecar::flume::parse_metrics;

pub fn template() -> Vec<Component> {
    parse_metrics(&flumewatch_testkit::sample("multi-component-agent.json")).expect("parses")
}

/// 20 components: the template's repeated with numbered names.
pub fn twenty(template: &[Component]) -> Vec<Component> {
    (0..20)
        .map(|i| {
            let mut c = template[i % template.len()].clone();
            c.name = format!("{}{}", c.name, i / template.len());
            c
        })
        .collect()
}
