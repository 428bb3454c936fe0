//! Waiting for a state with a deadline, instead of sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for a state before it fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often the state is looked at.
const POLL: Duration = Duration::from_millis(5);

/// Waits until `pred` holds; panics naming `what` after [`WAIT`].
pub async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let ok = tokio::time::timeout(WAIT, async {
        while !pred() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

/// [`wait_until`] with an async predicate (e.g. one that scrapes or calls
/// an RPC).
pub async fn wait_until_async<F, Fut>(what: &str, mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let ok = tokio::time::timeout(WAIT, async {
        while !pred().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

/// Looks at `check` every few ms for `d` and panics naming `what` and
/// the error `check` gives at the first look where it does not hold. For
/// claims that something does not happen over a window (no re-proposal, no
/// node dropping out); the window is the claim itself, not a pause waiting
/// for a state.
pub async fn holds_for(what: &str, d: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        if let Err(e) = check() {
            panic!("{what} stopped holding: {e}");
        }
        tokio::time::sleep(POLL).await;
    }
}
