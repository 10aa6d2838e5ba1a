//! Background work that finishes what requests left pending. Every worker claims its rows with
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so any number of replicas can run them.

pub mod purge;
pub mod reconciliation;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `pass` at once and then every `interval`, until `shutdown` changes.
pub(crate) async fn every<F, Fut>(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        pass().await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn passes_repeat_until_shutdown() {
        let (stop, stopped) = watch::channel(false);
        let passes = AtomicUsize::new(0);
        every(Duration::from_millis(1), stopped, || async {
            if passes.fetch_add(1, Ordering::SeqCst) == 2 {
                let _ = stop.send(true);
            }
        })
        .await;
        assert_eq!(passes.load(Ordering::SeqCst), 3);
    }
}
