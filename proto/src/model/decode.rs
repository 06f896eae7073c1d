//! Wire bytes of a `flumewatch.v1.Snapshot` straight into a typed [`Snapshot`], reusing the
//! allocations of the snapshot it overwrites.
//!
//! The aggregator receives one snapshot per agent per poll and keeps only the newest: decoding
//! into the one it is about to drop means that, in the steady state (same agent, same
//! components), a snapshot costs no allocation at all, where `prost` decoding plus
//! `Snapshot::try_from` made a few hundred for 20 components. The result, and every error, is
//! the same as `Snapshot::try_from(pb::Snapshot::decode(bytes)?)` (tested against it), including
//! proto3's rules: unknown fields skipped, a repeated singular field's last value wins, a
//! repeated message field merges.

use std::time::Duration;

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

use super::convert::{
    component_over_limit, scrape_outcome, snapshot_over_limit, ConvertError, Values,
};
use super::snapshot::{Component, ComponentKind, Counter, Flag, Gauge, ScrapeOutcome, Snapshot};
use super::time::from_timestamp;

/// Why bytes did not become a snapshot.
/// prost's varint decoder with the one-byte case inlined: tags, lengths, enum values and
/// small counters are one byte, and a 20-component snapshot holds over a thousand of them.
#[inline(always)]
fn varint_fast(buf: &mut &[u8]) -> Result<u64, prost::DecodeError> {
    match buf.split_first() {
        Some((&byte, rest)) if byte < 0x80 => {
            *buf = rest;
            Ok(u64::from(byte))
        }
        _ => decode_varint(buf),
    }
}

/// prost's `decode_key`, with one-byte keys (every field here) decoded inline; anything
/// else, errors included, goes through prost's.
#[inline(always)]
fn field_key(buf: &mut &[u8]) -> Result<(u32, WireType), prost::DecodeError> {
    match buf.split_first() {
        Some((&byte, rest)) if byte < 0x80 && byte >> 3 != 0 => {
            let wire_type = WireType::try_from(u64::from(byte & 0x07))?;
            *buf = rest;
            Ok((u32::from(byte >> 3), wire_type))
        }
        _ => decode_key(buf),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf `Snapshot` at all: the stream that carried it is broken.
    #[error("{0}")]
    Wire(String),
    /// A well-formed message that is not a valid snapshot; its sequence number is known, so
    /// the receiver can skip it (the same bytes would fail again on every replay).
    #[error("{error}")]
    Invalid { seq: u64, error: ConvertError },
}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        DecodeError::Wire(e.to_string())
    }
}

fn wire(what: &str) -> DecodeError {
    DecodeError::Wire(format!("failed to decode Protobuf message: {what}"))
}

/// proto3 timestamp as it was merged from the wire (absent until a field is seen).
#[derive(Default, Clone, Copy)]
struct Ts {
    seconds: i64,
    nanos: i32,
}

impl Ts {
    fn proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.seconds,
            nanos: self.nanos,
        }
    }
}

fn length_delimited<'a>(buf: &mut &'a [u8], wire_type: WireType) -> Result<&'a [u8], DecodeError> {
    if wire_type != WireType::LengthDelimited {
        return Err(wire("invalid wire type"));
    }
    let len = varint_fast(buf)?;
    if len > buf.len() as u64 {
        return Err(wire("buffer underflow"));
    }
    let (inner, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(inner)
}

fn varint(buf: &mut &[u8], wire_type: WireType) -> Result<u64, DecodeError> {
    if wire_type != WireType::Varint {
        return Err(wire("invalid wire type"));
    }
    Ok(varint_fast(buf)?)
}

fn text<'a>(buf: &mut &'a [u8], wire_type: WireType) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(length_delimited(buf, wire_type)?)
        .map_err(|_| wire("invalid string value: data is not UTF-8 encoded"))
}

/// Overwrites `target`, in its own buffer: no allocation unless the text grew.
fn set_text(target: &mut String, value: &str) {
    target.clear();
    target.push_str(value);
}

/// Reads a text field into `target`, which still holds what the buffer's previous snapshot
/// had there: a component's name is the same every poll, and equal bytes are valid UTF-8
/// already, so neither the check nor the copy is needed then.
fn reuse_text(
    buf: &mut &[u8],
    wire_type: WireType,
    target: &mut String,
) -> Result<(), DecodeError> {
    let bytes = length_delimited(buf, wire_type)?;
    if target.as_bytes() != bytes {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| wire("invalid string value: data is not UTF-8 encoded"))?;
        set_text(target, text);
    }
    Ok(())
}

fn skip(buf: &mut &[u8], wire_type: WireType, tag: u32) -> Result<(), DecodeError> {
    Ok(skip_field(wire_type, tag, buf, DecodeContext::default())?)
}

fn timestamp(mut buf: &[u8], ts: &mut Ts) -> Result<(), DecodeError> {
    while buf.has_remaining() {
        let (tag, wire_type) = field_key(&mut buf)?;
        match tag {
            1 => ts.seconds = varint(&mut buf, wire_type)? as i64,
            2 => ts.nanos = varint(&mut buf, wire_type)? as i32,
            _ => skip(&mut buf, wire_type, tag)?,
        }
    }
    Ok(())
}

/// `(enum value, value)` of a CounterValue, GaugeValue or FlagValue message.
fn pair(mut buf: &[u8], value_wire: WireType) -> Result<(i32, u64), DecodeError> {
    let (mut key, mut value) = (0, 0);
    while buf.has_remaining() {
        let (tag, wire_type) = field_key(&mut buf)?;
        match tag {
            1 => key = varint(&mut buf, wire_type)? as i32,
            2 if value_wire == WireType::SixtyFourBit => {
                if wire_type != WireType::SixtyFourBit {
                    return Err(wire("invalid wire type"));
                }
                if buf.len() < 8 {
                    return Err(wire("buffer underflow"));
                }
                value = buf.get_u64_le();
            }
            2 => value = varint(&mut buf, wire_type)?,
            _ => skip(&mut buf, wire_type, tag)?,
        }
    }
    Ok((key, value))
}

/// What one component's wire message held beyond what lands in the typed component.
#[derive(Default)]
struct ComponentExtras {
    start: Option<Ts>,
    stop: Option<Ts>,
    /// Enum values this build does not know: (prefix, number, value as text), added to
    /// `unknown` after the map entries, as the conversion from the generated type does.
    strangers: Vec<(&'static str, i32, String)>,
    values: Values,
    /// The names were on the wire (otherwise what the buffer held is cleared).
    saw_kind_name: bool,
    saw_name: bool,
}

fn component(
    mut buf: &[u8],
    c: &mut Component,
    x: &mut ComponentExtras,
) -> Result<(), DecodeError> {
    while buf.has_remaining() {
        let (tag, wire_type) = field_key(&mut buf)?;
        match tag {
            1 => {
                let kind = varint(&mut buf, wire_type)? as i32;
                c.kind = ComponentKind::try_from(kind).unwrap_or(ComponentKind::Unspecified);
            }
            2 => {
                reuse_text(&mut buf, wire_type, &mut c.kind_name)?;
                x.saw_kind_name = true;
            }
            3 => {
                reuse_text(&mut buf, wire_type, &mut c.name)?;
                x.saw_name = true;
            }
            4 => timestamp(
                length_delimited(&mut buf, wire_type)?,
                x.start.get_or_insert_default(),
            )?,
            5 => timestamp(
                length_delimited(&mut buf, wire_type)?,
                x.stop.get_or_insert_default(),
            )?,
            6 => {
                let (key, value) = pair(length_delimited(&mut buf, wire_type)?, WireType::Varint)?;
                x.values.counters += 1;
                match Counter::try_from(key) {
                    Ok(counter) if counter != Counter::Unspecified => {
                        c.counters.push((counter, value))
                    }
                    _ => x.strangers.push(("counter", key, value.to_string())),
                }
            }
            7 => {
                let (key, bits) = pair(
                    length_delimited(&mut buf, wire_type)?,
                    WireType::SixtyFourBit,
                )?;
                let value = f64::from_bits(bits);
                x.values.gauges += 1;
                match Gauge::try_from(key) {
                    Ok(gauge) if gauge != Gauge::Unspecified => c.gauges.push((gauge, value)),
                    _ => x.strangers.push(("gauge", key, value.to_string())),
                }
            }
            8 => {
                let (key, value) = pair(length_delimited(&mut buf, wire_type)?, WireType::Varint)?;
                let value = value != 0;
                x.values.flags += 1;
                match Flag::try_from(key) {
                    Ok(flag) if flag != Flag::Unspecified => c.flags.push((flag, value)),
                    _ => x.strangers.push(("flag", key, value.to_string())),
                }
            }
            9 => {
                let mut entry = length_delimited(&mut buf, wire_type)?;
                let (mut key, mut value) = ("", "");
                while entry.has_remaining() {
                    let (tag, wire_type) = field_key(&mut entry)?;
                    match tag {
                        1 => key = text(&mut entry, wire_type)?,
                        2 => value = text(&mut entry, wire_type)?,
                        _ => skip(&mut entry, wire_type, tag)?,
                    }
                }
                c.unknown.insert(key.to_owned(), value.to_owned());
            }
            10 => c.problems.push(text(&mut buf, wire_type)?.to_owned()),
            _ => skip(&mut buf, wire_type, tag)?,
        }
    }
    Ok(())
}

/// Empties `c` for reuse, keeping its allocations. The names stay, to be compared with the
/// wire's (see `reuse_text`); one absent from the wire is cleared after decoding.
fn reset(c: &mut Component) {
    c.kind = ComponentKind::Unspecified;
    c.start_time_ms = None;
    c.stop_time_ms = None;
    c.counters.clear();
    c.gauges.clear();
    c.flags.clear();
    if !c.unknown.is_empty() {
        c.unknown.clear();
    }
    c.problems.clear();
}

#[derive(Default)]
struct Outcome {
    status: i32,
    http_status: u32,
}

/// Decodes `bytes` into `out`, overwriting it. On an error `out` holds no meaningful
/// snapshot (but is still safe to reuse).
pub fn decode_into(bytes: &[u8], out: &mut Snapshot) -> Result<(), DecodeError> {
    decode_reusing(bytes, out, &mut Vec::new())
}

/// Components a decode buffer keeps beyond its snapshot's, for the next larger one.
const MAX_SPARE: usize = 64;

/// [`decode_into`] keeping the components a shorter snapshot leaves over in `spare` (and
/// taking them back for a longer one): one buffer decoding agents of 10 and 30 components in
/// turn would otherwise free and allocate 20 components' arrays every time.
pub fn decode_reusing(
    mut bytes: &[u8],
    out: &mut Snapshot,
    spare: &mut Vec<Component>,
) -> Result<(), DecodeError> {
    let buf = &mut bytes;
    let mut seq = 0;
    let mut scraped_at: Option<Ts> = None;
    let mut scrape_duration_ms = 0u32;
    let mut outcome: Option<Outcome> = None;
    let mut error = std::mem::replace(&mut out.outcome, ScrapeOutcome::Ok).into_error();
    error.clear();
    let mut backfill = false;
    let mut used = 0;
    // The first component over a limit, reported after the snapshot-wide limits.
    let mut component_over: Option<String> = None;
    let mut saw_agent = false;
    while buf.has_remaining() {
        let (tag, wire_type) = field_key(buf)?;
        match tag {
            1 => seq = varint(buf, wire_type)?,
            2 => {
                reuse_text(buf, wire_type, &mut out.agent)?;
                saw_agent = true;
            }
            3 => timestamp(
                length_delimited(buf, wire_type)?,
                scraped_at.get_or_insert_default(),
            )?,
            4 => scrape_duration_ms = varint(buf, wire_type)? as u32,
            5 => {
                let mut inner = length_delimited(buf, wire_type)?;
                let o = outcome.get_or_insert_default();
                while inner.has_remaining() {
                    let (tag, wire_type) = field_key(&mut inner)?;
                    match tag {
                        1 => o.status = varint(&mut inner, wire_type)? as i32,
                        2 => o.http_status = varint(&mut inner, wire_type)? as u32,
                        3 => set_text(&mut error, text(&mut inner, wire_type)?),
                        _ => skip(&mut inner, wire_type, tag)?,
                    }
                }
            }
            6 => {
                let inner = length_delimited(buf, wire_type)?;
                if used == out.components.len() {
                    out.components.push(spare.pop().unwrap_or_default());
                }
                let c = &mut out.components[used];
                used += 1;
                reset(c);
                let mut x = ComponentExtras::default();
                component(inner, c, &mut x)?;
                if !x.saw_kind_name {
                    c.kind_name.clear();
                }
                if !x.saw_name {
                    c.name.clear();
                }
                if component_over.is_none() {
                    component_over = component_over_limit(
                        &c.kind_name,
                        &c.name,
                        x.values,
                        &c.unknown,
                        &c.problems,
                    );
                }
                let millis = |t: Ts| super::time::timestamp_millis(&t.proto());
                c.start_time_ms = x.start.and_then(millis);
                c.stop_time_ms = x.stop.and_then(millis);
                for (prefix, number, value) in x.strangers {
                    c.unknown.insert(format!("{prefix}#{number}"), value);
                }
            }
            7 => backfill = varint(buf, wire_type)? != 0,
            _ => skip(buf, wire_type, tag)?,
        }
    }
    let room = MAX_SPARE.saturating_sub(spare.len());
    spare.extend(out.components.drain(used..).take(room));
    if !saw_agent {
        out.agent.clear();
    }

    let invalid = |error| DecodeError::Invalid { seq, error };
    if seq == 0 {
        return Err(invalid(ConvertError::ZeroSeq));
    }
    if out.agent.is_empty() {
        return Err(invalid(ConvertError::NoAgent { seq }));
    }
    if let Some(what) = snapshot_over_limit(out.agent.len(), used, error.len()).or(component_over) {
        return Err(invalid(ConvertError::OverLimit { seq, what }));
    }
    let scraped_at = scraped_at.ok_or(invalid(ConvertError::MissingScrapeTime { seq }))?;
    let scraped_at = from_timestamp(&scraped_at.proto(), "scraped_at").map_err(invalid)?;
    let Some(outcome) = outcome else {
        return Err(invalid(ConvertError::MissingOutcome { seq }));
    };
    out.outcome =
        scrape_outcome(seq, outcome.status, outcome.http_status, error).map_err(invalid)?;
    out.seq = seq;
    out.scraped_at = scraped_at;
    out.scrape_duration = Duration::from_millis(u64::from(scrape_duration_ms));
    out.backfill = backfill;
    Ok(())
}

impl ScrapeOutcome {
    /// The error text's buffer, for reuse.
    fn into_error(self) -> String {
        match self {
            ScrapeOutcome::Ok => String::new(),
            ScrapeOutcome::ConnectionRefused(e)
            | ScrapeOutcome::Timeout(e)
            | ScrapeOutcome::BadPayload(e)
            | ScrapeOutcome::ConnectionFailed(e)
            | ScrapeOutcome::HttpStatus { error: e, .. } => e,
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
