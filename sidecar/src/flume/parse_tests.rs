//! Parser tests over every captured sample in tests/fixtures/flume/samples, plus hostile input.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::flume::json;
use flumewatch_proto::model::snapshot::{ComponentKind, Counter, Flag};

fn samples_dir() -> PathBuf {
    flumewatch_testkit::fixture("flume/samples")
}

fn sample(name: &str) -> Vec<Component> {
    let body = std::fs::read(samples_dir().join(name)).expect("sample readable");
    parse_metrics(&body).expect("sample parses")
}

fn find<'a>(components: &'a [Component], kind: ComponentKind, name: &str) -> &'a Component {
    components
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| panic!("{kind:?} {name} missing"))
}

/// How many of Flume's attributes a parsed component accounts for (Type included).
fn accounted(c: &Component) -> usize {
    // Type, StartTime and StopTime are printed for every component.
    3 + c.counters.len() + c.gauges.len() + c.flags.len() + c.unknown.len()
        - usize::from(c.unknown.contains_key("Type"))
}

#[test]
fn every_sample_parses_and_loses_no_attribute() {
    let mut files = 0;
    for entry in std::fs::read_dir(samples_dir()).expect("samples dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        files += 1;
        let body = std::fs::read(&path).expect("readable");
        let raw: serde_json::Map<String, Value> = serde_json::from_slice(&body).expect("json");
        let parsed = parse_metrics(&body).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(parsed.len(), raw.len(), "{path:?}: component count");
        for component in &parsed {
            let key = format!("{}.{}", component.kind_name, component.name);
            let attrs = raw[&key].as_object().expect("object");
            assert_eq!(accounted(component), attrs.len(), "{path:?} {key}");
            assert!(
                component.problems.is_empty(),
                "{path:?} {key}: {:?}",
                component.problems
            );
            assert_ne!(component.kind, ComponentKind::Unspecified, "{key}");
            assert!(component.start_time_ms.is_some(), "{key} start time");
            // Every known counter equals the integer Flume printed.
            for (counter, value) in &component.counters {
                let text = attrs[vocabulary::counter_name(*counter)].as_str().unwrap();
                assert_eq!(text.parse::<u64>().unwrap(), *value, "{key} {counter:?}");
            }
        }
    }
    assert_eq!(files, 8, "all eight captured samples were read");
}

#[test]
fn idle_agent_has_zero_counters_not_missing_ones() {
    let parsed = sample("idle-agent-exec-memory-http.json");
    let mem = find(&parsed, ComponentKind::Channel, "mem1");
    assert_eq!(mem.counter(Counter::EventPutSuccessCount), Some(0));
    assert_eq!(mem.gauge(Gauge::ChannelCapacity), Some(10000.0));
    assert_eq!(mem.gauge(Gauge::ChannelFillPercentage), Some(0.0));
    assert_eq!(mem.counter(Counter::EventTakeAttemptCount), Some(3));
    // A memory channel has no file-channel attributes: absent, not zero.
    assert_eq!(mem.counter(Counter::EventPutErrorCount), None);
    assert_eq!(mem.flag(Flag::Open), None);
    let sink = find(&parsed, ComponentKind::Sink, "http1");
    assert_eq!(sink.counter(Counter::EventDrainSuccessCount), Some(0));
    assert_eq!(sink.counter(Counter::RollbackCount), None);
    assert_eq!(sink.start_time_ms, Some(1_795_593_768_244));
    assert_eq!(sink.stop_time_ms, None);
}

#[test]
fn filling_channel_reads_java_doubles_exactly() {
    let t12 = sample("slow-sink-filling-t12s.json");
    let t22 = sample("slow-sink-filling-t22s.json");
    let slow12 = find(&t12, ComponentKind::Channel, "slowmem");
    assert_eq!(slow12.gauge(Gauge::ChannelFillPercentage), Some(26.5));
    assert_eq!(slow12.gauge(Gauge::ChannelSize), Some(530.0));
    let slow22 = find(&t22, ComponentKind::Channel, "slowmem");
    assert_eq!(
        slow22.gauge(Gauge::ChannelFillPercentage),
        Some(47.699999999999996)
    );
    let blocked = find(&t22, ComponentKind::Channel, "blockedmem");
    assert_eq!(blocked.gauge(Gauge::ChannelFillPercentage), Some(100.0));
    assert_eq!(blocked.counter(Counter::EventPutAttemptCount), Some(1800));
    assert_eq!(blocked.counter(Counter::EventPutSuccessCount), Some(1000));
}

#[test]
fn zero_capacity_fill_is_unknown_not_full() {
    let parsed = sample("multi-component-agent.json");
    let pseudo = find(&parsed, ComponentKind::Channel, "pseudo1");
    assert_eq!(pseudo.gauge(Gauge::ChannelCapacity), Some(0.0));
    assert_eq!(pseudo.gauge(Gauge::ChannelFillPercentage), None);
    assert_eq!(
        pseudo
            .unknown
            .get("ChannelFillPercentage")
            .map(String::as_str),
        Some("1.7976931348623157E308")
    );
    let file = find(&parsed, ComponentKind::Channel, "file1");
    assert_eq!(file.flag(Flag::Open), Some(true));
    assert_eq!(file.gauge(Gauge::Unhealthy), Some(0.0));
    assert_eq!(file.gauge(Gauge::Closed), Some(0.0));
    assert_eq!(file.counter(Counter::CheckpointWriteErrorCount), Some(0));
    assert_eq!(parsed.len(), 7);
}

#[test]
fn failed_file_channel_shows_closed_and_unhealthy() {
    let parsed = sample("file-channel-failed-to-start.json");
    let bad = find(&parsed, ComponentKind::Channel, "badfile");
    assert_eq!(bad.flag(Flag::Open), Some(false));
    assert_eq!(bad.gauge(Gauge::Unhealthy), Some(1.0));
    assert_eq!(bad.gauge(Gauge::Closed), Some(1.0));
    assert_eq!(bad.gauge(Gauge::ChannelFillPercentage), None);
}

#[test]
fn reload_in_progress_marks_stopped_components() {
    let parsed = sample("config-reload-in-progress-some-stopped.json");
    let stopped: Vec<&str> = parsed
        .iter()
        .filter(|c| c.is_stopped())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(stopped, ["http1", "seq1", "tail1"]);
    let http1 = find(&parsed, ComponentKind::Sink, "http1");
    assert_eq!(http1.stop_time_ms, Some(1_795_593_979_998));
}

#[test]
fn after_restart_counters_restart_but_file_channel_size_survives() {
    let parsed = sample("after-restart-immediately.json");
    let file = find(&parsed, ComponentKind::Channel, "file1");
    assert_eq!(file.gauge(Gauge::ChannelSize), Some(191.0));
    assert_eq!(file.counter(Counter::EventPutSuccessCount), Some(0));
    assert_eq!(file.start_time_ms, Some(1_795_594_017_330));
}

#[test]
fn unknown_types_attributes_and_odd_values_are_kept() {
    let body = br#"{
        "VENDOR_THING.x": {"Type": "VENDOR_THING", "StartTime": "5", "StopTime": "0", "MonTime": "12"},
        "CHANNEL.c1": {"Type": "CHANNEL", "ChannelSize": "abc", "ChannelStoreSize": "7",
                        "EventPutAttemptCount": "-3", "EventTakeSuccessCount": 12,
                        "ChannelFillPercentage": "NaN", "Open": "maybe", "Nested": {"a": 1},
                        "ChannelCapacity": "5.0E-4", "StartTime": "1", "StopTime": "0"},
        "CHANNEL.c2": {"ChannelCapacity": "1.0E4", "ChannelFillPercentage": "250.0"},
        "SINK.k.with.dots": {"StartTime": "2", "StopTime": "0"}
    }"#;
    let parsed = parse_metrics(body).expect("object of objects parses");
    let vendor = find(&parsed, ComponentKind::Unspecified, "x");
    assert_eq!(vendor.kind_name, "VENDOR_THING");
    assert_eq!(vendor.unknown["MonTime"], "12");
    let c1 = find(&parsed, ComponentKind::Channel, "c1");
    assert_eq!(c1.unknown["ChannelStoreSize"], "7");
    assert_eq!(c1.unknown["ChannelSize"], "abc");
    assert_eq!(c1.unknown["EventPutAttemptCount"], "-3");
    assert_eq!(c1.unknown["ChannelFillPercentage"], "NaN");
    assert_eq!(c1.unknown["Open"], "maybe");
    assert_eq!(c1.unknown["Nested"], r#"{"a":1}"#);
    assert_eq!(c1.counter(Counter::EventTakeSuccessCount), Some(12));
    // A capacity is a Java long: a fraction is not one.
    assert_eq!(c1.gauge(Gauge::ChannelCapacity), None);
    assert_eq!(c1.unknown["ChannelCapacity"], "5.0E-4");
    assert_eq!(c1.problems.len(), 6, "{:?}", c1.problems);
    // A whole number in double form reads; an over-full channel keeps its value (it must
    // still alert) with the oddity noted.
    let c2 = find(&parsed, ComponentKind::Channel, "c2");
    assert_eq!(c2.gauge(Gauge::ChannelCapacity), Some(10_000.0));
    assert_eq!(c2.gauge(Gauge::ChannelFillPercentage), Some(250.0));
    assert_eq!(c2.problems.len(), 1, "{:?}", c2.problems);
    let dotted = find(&parsed, ComponentKind::Sink, "k.with.dots");
    assert_eq!(dotted.start_time_ms, Some(2));
}

#[test]
fn empty_object_is_an_agent_with_no_components() {
    assert_eq!(parse_metrics(b"{}"), Ok(vec![]));
}

#[test]
fn structural_problems_are_payload_errors() {
    assert_eq!(parse_metrics(b""), Err(PayloadError::Empty));
    assert_eq!(parse_metrics(b"  \n"), Err(PayloadError::Empty));
    assert!(matches!(
        parse_metrics(b"<html>404</html>"),
        Err(PayloadError::NotJson(_))
    ));
    assert_eq!(
        parse_metrics(b"[1,2]"),
        Err(PayloadError::NotAnObject("an array"))
    );
    assert_eq!(
        parse_metrics(br#"{"CHANNEL.c": "1"}"#),
        Err(PayloadError::ComponentNotAnObject {
            key: "CHANNEL.c".into(),
            found: "a string"
        })
    );
    let deep = "[".repeat(100_000);
    assert!(matches!(
        parse_metrics(deep.as_bytes()),
        Err(PayloadError::NotJson(_))
    ));
    assert!(matches!(
        parse_metrics(b"{\"CHANNEL.\xff\": {}}"),
        Err(PayloadError::NotJson(_))
    ));
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn is_object_of_objects(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.values().all(Value::is_object))
}

/// What `json::Body` must read from the JSON of `value`: the tree `serde_json::Value` holds.
fn object_via_value<V>(value: &Value, inner: impl Fn(&Value) -> V) -> json::Object<'static, V> {
    match value {
        Value::Object(map) => json::Object(Ok(map
            .iter()
            .map(|(k, v)| (std::borrow::Cow::Owned(k.clone()), inner(v)))
            .collect())),
        other => json::Object(Err(json_type(other))),
    }
}

fn scalar_via_value(value: &Value) -> json::Scalar<'static> {
    match value {
        Value::String(s) => json::Scalar::Str(s.clone().into()),
        Value::Number(n) => json::Scalar::Printed(n.to_string()),
        Value::Bool(b) => json::Scalar::Printed(b.to_string()),
        other => json::Scalar::Other(other.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_borrowing_reader_reads_what_a_value_tree_holds(value in arbitrary_json()) {
        let body = serde_json::to_vec(&value).expect("serialisable");
        let read: json::Body<'_> = serde_json::from_slice(&body).expect("reads");
        // The tree read back, not `value`: serde_json's float reading does not round-trip exactly.
        let tree: Value = serde_json::from_slice(&body).expect("reads");
        prop_assert_eq!(read, object_via_value(&tree, |c| object_via_value(c, scalar_via_value)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match parse_metrics(&bytes) {
            Ok(_) => {
                let value: Value = serde_json::from_slice(&bytes).expect("accepted bytes are JSON");
                prop_assert!(is_object_of_objects(&value));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_json_is_accepted_only_in_flume_shape(value in arbitrary_json()) {
        let body = serde_json::to_vec(&value).expect("serialisable");
        let result = parse_metrics(&body);
        prop_assert_eq!(result.is_ok(), is_object_of_objects(&value), "{:?}", result);
        if let Ok(components) = result {
            prop_assert_eq!(components.len(), value.as_object().map_or(0, |m| m.len()));
        }
    }
}

#[test]
fn floods_are_refused_or_cut_to_bounded_size() {
    let flood: serde_json::Map<String, Value> = (0..=MAX_COMPONENTS)
        .map(|i| (format!("CHANNEL.c{i}"), serde_json::json!({})))
        .collect();
    let err = parse_metrics(&serde_json::to_vec(&flood).unwrap()).unwrap_err();
    assert_eq!(
        err,
        PayloadError::TooManyComponents {
            count: MAX_COMPONENTS + 1,
            max: MAX_COMPONENTS
        }
    );

    let long_key = format!("{{\"CHANNEL.{}\":{{}}}}", "x".repeat(MAX_NAME));
    assert!(matches!(
        parse_metrics(long_key.as_bytes()),
        Err(PayloadError::NameTooLong { .. })
    ));

    let mut attributes: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| (format!("Vendor{i}"), Value::String("1".into())))
        .collect();
    attributes.insert("Huge".into(), Value::String("y".repeat(100_000)));
    for i in 0..200 {
        attributes.insert(format!("EventPutSuccessCount{i}"), Value::Bool(true));
    }
    attributes.insert("EventPutSuccessCount".into(), Value::String("-3".into()));
    let body = serde_json::to_vec(&serde_json::json!({ "CHANNEL.c1": attributes })).unwrap();
    let parsed = parse_metrics(&body).unwrap();
    let c = &parsed[0];
    assert_eq!(c.unknown.len(), MAX_UNKNOWN);
    assert!(c.unknown.values().all(|v| v.len() <= MAX_UNKNOWN_TEXT));
    assert!(c.problems.len() <= MAX_UNKNOWN + 1, "{}", c.problems.len());
    assert!(
        c.problems.iter().any(|p| p.contains("unknown attributes")),
        "{:?}",
        c.problems
    );
    let kept: usize = c
        .unknown
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + c.problems.iter().map(String::len).sum::<usize>();
    assert!(
        kept < 32 * 1024,
        "{kept} bytes kept of a {} byte payload",
        body.len()
    );
}

#[test]
fn absurd_numbers_are_problems_never_values() {
    for text in [
        "-1",
        "1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "18446744073709551616",
        "0x1F",
        "1,000",
        "",
        "   ",
        "1.5",
        "９",
        "9999999999999999999999999999999999999999",
    ] {
        let body = serde_json::json!({ "CHANNEL.c1": {
            "EventPutSuccessCount": text,
            "ChannelFillPercentage": if text == "1.5" { "1e999" } else { text },
        }});
        let parsed = parse_metrics(&serde_json::to_vec(&body).unwrap()).unwrap();
        let c = &parsed[0];
        assert!(c.counters.is_empty(), "{text:?} read as {:?}", c.counters);
        assert!(c.gauges.iter().all(|(_, v)| v.is_finite()), "{text:?}");
        assert!(!c.problems.is_empty(), "{text:?} noted");
    }
}

/// The typed model survives the wire: what the sidecar parses is what the aggregator reads.
#[test]
fn every_sample_round_trips_through_protobuf() {
    use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};
    use std::time::{Duration, UNIX_EPOCH};
    for name in [
        "multi-component-agent.json",
        "file-channel-failed-to-start.json",
        "config-reload-in-progress-some-stopped.json",
    ] {
        let body = flumewatch_testkit::sample(name);
        let snapshot = Snapshot {
            seq: 7,
            agent: "a1".into(),
            scraped_at: UNIX_EPOCH + Duration::from_millis(1_795_593_979_123),
            scrape_duration: Duration::from_millis(3),
            outcome: ScrapeOutcome::Ok,
            components: parse_metrics(&body).expect("parses"),
            backfill: false,
        };
        let back =
            Snapshot::try_from(flumewatch_proto::pb::Snapshot::from(&snapshot)).expect("converts");
        assert_eq!(back, snapshot, "{name}");
    }
}
