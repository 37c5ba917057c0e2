use std::{future::Future, time::Duration};

use tokio::time::Instant;

/// Calls `probe` every `interval` until it yields `Some`, for at most `timeout`.
///
/// Returns the value, or an error naming `what` and the last probe error seen.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            let last = last_error.map_or_else(String::new, |e| format!(" (last error: {e:#})"));
            anyhow::bail!("timed out after {timeout:?} waiting for {what}{last}");
        }
        tokio::time::sleep(interval).await;
    }
}
