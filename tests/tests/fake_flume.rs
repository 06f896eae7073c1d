//! The simulated Flume agent moves like a real one: parsed by the real sidecar parser, a
//! healthy agent's counters rise and a slow sink fills its channel until puts fail.

use std::time::{Duration, UNIX_EPOCH};

use flumewatch_proto::model::snapshot::{ComponentKind, Counter, Gauge};
use flumewatch_sidecar::flume::parse_metrics;
use flumewatch_testkit::fake_flume::{Profile, SimAgent};

fn at(agent: &SimAgent, secs: u64) -> Vec<flumewatch_proto::model::snapshot::Component> {
    parse_metrics(&agent.render(agent.started() + Duration::from_secs(secs))).expect("parses")
}

#[test]
fn healthy_agent_counters_rise_and_channel_stays_empty() {
    let agent = SimAgent::new(
        Profile::Healthy {
            events_per_sec: 100.0,
            file_channel: true,
        },
        UNIX_EPOCH + Duration::from_secs(1_795_000_000),
    );
    let (a, b) = (at(&agent, 10), at(&agent, 20));
    let received = |c: &[flumewatch_proto::model::snapshot::Component]| {
        c.iter()
            .find(|c| c.kind == ComponentKind::Source)
            .unwrap()
            .counter(Counter::EventReceivedCount)
            .unwrap()
    };
    assert!(received(&b) > received(&a) + 900);
    let ch = b.iter().find(|c| c.kind == ComponentKind::Channel).unwrap();
    assert_eq!(ch.gauge(Gauge::ChannelSize), Some(0.0));
    assert!(ch.problems.is_empty());
}

#[test]
fn slow_sink_fills_the_channel_until_puts_fail() {
    let agent = SimAgent::new(
        Profile::SlowSink {
            events_per_sec: 100.0,
            after: Duration::from_secs(10),
            drain_share: 0.3,
        },
        UNIX_EPOCH + Duration::from_secs(1_795_000_000),
    );
    let fill = |secs| {
        at(&agent, secs)
            .iter()
            .find(|c| c.kind == ComponentKind::Channel)
            .unwrap()
            .gauge(Gauge::ChannelFillPercentage)
            .unwrap()
    };
    assert!(fill(5) < 1.0);
    assert!(fill(60) > fill(30));
    assert_eq!(fill(400), 100.0);
}
