//! `decode_into` must be exactly `Snapshot::try_from(pb::Snapshot::decode(bytes)?)`, whatever
//! the snapshot it overwrites held.

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::v1 as pb;

/// The reference: the generated type, then the conversion.
fn reference(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let wire = pb::Snapshot::decode(bytes)?;
    let seq = wire.seq;
    Snapshot::try_from(wire).map_err(|error| DecodeError::Invalid { seq, error })
}

fn same(bytes: &[u8], scratch: &mut Snapshot) {
    let expected = reference(bytes);
    let got = decode_into(bytes, scratch).map(|()| scratch.clone());
    match (&expected, &got) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(DecodeError::Wire(_)), Err(DecodeError::Wire(_))) => {}
        (a, b) => assert_eq!(a, b, "bytes {bytes:02x?}"),
    }
}

fn ts() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop_oneof![
        Just(None),
        (-2i64..2_000_000_000, -2i32..1_000_000_002)
            .prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}",
        Just("c1".to_owned()),
        Just("x".repeat(300)),
    ]
}

fn component() -> impl Strategy<Value = pb::Component> {
    (
        (-1i32..10, name(), name(), ts(), ts()),
        proptest::collection::vec((-1i32..36, any::<u64>()), 0..12),
        proptest::collection::vec((-1i32..8, any::<f64>()), 0..5),
        proptest::collection::vec((-1i32..3, any::<bool>()), 0..3),
        proptest::collection::hash_map(name(), name(), 0..3),
        proptest::collection::vec(name(), 0..2),
    )
        .prop_map(
            |(
                (kind, kind_name, name, start_time, stop_time),
                counters,
                gauges,
                flags,
                unknown,
                problems,
            )| {
                pb::Component {
                    kind,
                    kind_name,
                    name,
                    start_time,
                    stop_time,
                    counters: counters
                        .into_iter()
                        .map(|(counter, value)| pb::CounterValue { counter, value })
                        .collect(),
                    gauges: gauges
                        .into_iter()
                        .map(|(gauge, value)| pb::GaugeValue { gauge, value })
                        .collect(),
                    flags: flags
                        .into_iter()
                        .map(|(flag, value)| pb::FlagValue { flag, value })
                        .collect(),
                    unknown,
                    problems,
                }
            },
        )
}

fn snapshot() -> impl Strategy<Value = pb::Snapshot> {
    (
        (
            0u64..5,
            prop_oneof![Just(String::new()), Just("a1".to_owned()), "[a-z]{1,4}"],
        ),
        ts(),
        any::<u32>(),
        prop_oneof![
            Just(None),
            (-1i32..8, 0u32..700, name()).prop_map(|(status, http_status, error)| Some(
                pb::ScrapeOutcome {
                    status,
                    http_status,
                    error
                }
            )),
        ],
        proptest::collection::vec(component(), 0..6),
        any::<bool>(),
    )
        .prop_map(
            |((seq, agent), scraped_at, scrape_duration_ms, outcome, components, backfill)| {
                pb::Snapshot {
                    seq,
                    agent,
                    scraped_at,
                    scrape_duration_ms,
                    outcome,
                    components,
                    backfill,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decodes_like_the_generated_type(first in snapshot(), second in snapshot()) {
        // Into a fresh snapshot, then over one that held something else.
        let mut scratch = Snapshot::default();
        same(&first.encode_to_vec(), &mut scratch);
        same(&second.encode_to_vec(), &mut scratch);
        same(&first.encode_to_vec(), &mut scratch);
    }

    #[test]
    fn spare_components_change_nothing(snapshots in proptest::collection::vec(snapshot(), 1..6)) {
        // One buffer and one spare pool across snapshots of every size, as an ingest thread
        // decodes agents of 10 and 30 components in turn.
        let mut scratch = Snapshot::default();
        let mut spare = Vec::new();
        for wire in snapshots.iter().chain(snapshots.iter().rev()) {
            let bytes = wire.encode_to_vec();
            let got = decode_reusing(&bytes, &mut scratch, &mut spare).map(|()| scratch.clone());
            match (reference(&bytes), got) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(DecodeError::Wire(_)), Err(DecodeError::Wire(_))) => {}
                (a, b) => prop_assert_eq!(a, b),
            }
            prop_assert!(spare.len() <= MAX_SPARE);
        }
    }

    #[test]
    fn damaged_bytes_fail_or_decode_like_the_generated_type(
        original in snapshot(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        truncate in any::<prop::sample::Index>(),
    ) {
        let mut bytes = original.encode_to_vec();
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in cuts {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let mut scratch = Snapshot::default();
        same(&bytes, &mut scratch);
        bytes.truncate(truncate.index(bytes.len()));
        same(&bytes, &mut scratch);
    }
}

#[test]
fn repeated_singular_fields_merge_as_proto3_says() {
    // Two outcome messages and two scraped_at messages: the later fields win, the earlier ones
    // stay where the later message does not set them.
    let first = pb::Snapshot {
        seq: 3,
        agent: "a1".into(),
        scraped_at: Some(prost_types::Timestamp {
            seconds: 10,
            nanos: 5,
        }),
        outcome: Some(pb::ScrapeOutcome {
            status: 4,
            http_status: 503,
            error: "down".into(),
        }),
        ..Default::default()
    };
    let second = pb::Snapshot {
        scraped_at: Some(prost_types::Timestamp {
            seconds: 20,
            nanos: 0,
        }),
        outcome: Some(pb::ScrapeOutcome {
            status: 0,
            http_status: 0,
            error: "later".into(),
        }),
        ..Default::default()
    };
    let mut bytes = first.encode_to_vec();
    bytes.extend(second.encode_to_vec());
    let mut scratch = Snapshot::default();
    same(&bytes, &mut scratch);
    decode_into(&bytes, &mut scratch).expect("decodes");
    assert_eq!(
        scratch.outcome,
        ScrapeOutcome::HttpStatus {
            status: 503,
            error: "later".into()
        }
    );
}

#[test]
fn a_steady_agent_reuses_every_buffer() {
    let wire = |seq: u64, value: u64| pb::Snapshot {
        seq,
        agent: "a1".into(),
        scraped_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + seq as i64,
            nanos: 0,
        }),
        outcome: Some(pb::ScrapeOutcome {
            status: 1,
            ..Default::default()
        }),
        components: (0..20)
            .map(|i| pb::Component {
                kind: 2,
                kind_name: "CHANNEL".into(),
                name: format!("channel-{i}"),
                counters: (1..12)
                    .map(|c| pb::CounterValue { counter: c, value })
                    .collect(),
                gauges: vec![pb::GaugeValue {
                    gauge: 1,
                    value: value as f64,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut scratch = Snapshot::default();
    decode_into(&wire(1, 10).encode_to_vec(), &mut scratch).expect("decodes");
    let names: Vec<*const u8> = scratch.components.iter().map(|c| c.name.as_ptr()).collect();
    let counters: Vec<*const (Counter, u64)> = scratch
        .components
        .iter()
        .map(|c| c.counters.as_ptr())
        .collect();
    decode_into(&wire(2, 20).encode_to_vec(), &mut scratch).expect("decodes");
    assert_eq!(
        scratch,
        reference(&wire(2, 20).encode_to_vec()).expect("valid")
    );
    let names_after: Vec<*const u8> = scratch.components.iter().map(|c| c.name.as_ptr()).collect();
    let counters_after: Vec<*const (Counter, u64)> = scratch
        .components
        .iter()
        .map(|c| c.counters.as_ptr())
        .collect();
    assert_eq!(names, names_after, "names were reallocated");
    assert_eq!(counters, counters_after, "counter arrays were reallocated");
}
