//! Wall-clock time ⇄ protobuf `Timestamp`/`Duration`, and Flume's epoch milliseconds: the one
//! place both binaries convert time for the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::convert::ConvertError;

pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(
    ts: &prost_types::Timestamp,
    what: &'static str,
) -> Result<SystemTime, ConvertError> {
    let seconds = u64::try_from(ts.seconds).map_err(|_| ConvertError::BadTimestamp { what })?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or(ConvertError::BadTimestamp { what })?;
    UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .ok_or(ConvertError::BadTimestamp { what })
}

pub(crate) fn millis_timestamp(ms: u64) -> prost_types::Timestamp {
    timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) fn timestamp_millis(ts: &prost_types::Timestamp) -> Option<u64> {
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u64::try_from(ts.nanos).ok()?;
    seconds.checked_mul(1000)?.checked_add(nanos / 1_000_000)
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_duration(d: &prost_types::Duration) -> Duration {
    Duration::try_from(*d).unwrap_or_default()
}
