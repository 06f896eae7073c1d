//! The one way tests wait: poll a condition with a deadline, never a fixed sleep.

use std::future::Future;
use std::time::Duration;

/// Generous: CI machines have 2 cores and run tests in parallel.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// Polls `check` every 20 ms until it yields `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
