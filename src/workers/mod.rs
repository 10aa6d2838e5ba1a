//! Background work that finishes what requests left pending. Every worker claims its rows with
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so any number of replicas can run them.

pub mod purge;
pub mod reconciliation;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs a worker made by `start` in a task of its own and starts it again when it panics, after
/// a backoff (1 s doubling to a minute; a run that lasted a minute resets it), logging the panic
/// and counting it in `oplata_worker_restarts_total{worker}`. Returns when the worker ends by
/// itself (on shutdown) or `shutdown` changes while it waits to restart.
pub(crate) async fn supervise<F, Fut>(
    worker: &'static str,
    mut shutdown: watch::Receiver<bool>,
    start: F,
) -> u32
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);
    let mut restarts = 0;
    let mut delay = FIRST;
    loop {
        let started = tokio::time::Instant::now();
        match tokio::spawn(start()).await {
            Ok(()) => return restarts,
            Err(error) if error.is_panic() => {
                restarts += 1;
                if started.elapsed() >= MAX {
                    delay = FIRST;
                }
                tracing::error!(
                    worker,
                    restarts,
                    ?delay,
                    "background worker panicked; restarting it"
                );
                metrics::counter!("oplata_worker_restarts_total", "worker" => worker).increment(1);
            }
            Err(_) => return restarts,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return restarts,
        }
        if *shutdown.borrow() {
            return restarts;
        }
        delay = (delay * 2).min(MAX);
    }
}

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
        // A shutdown does not wait for the pass: every pass is safe to stop anywhere (what it
        // leased or started is taken up again, as after a crash), and SIGTERM must end the
        // process promptly even while a pass waits on a slow endpoint.
        tokio::select! {
            () = pass() => {}
            _ = shutdown.changed() => return,
        }
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

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_does_not_wait_for_a_pass_stuck_on_a_slow_endpoint() {
        let (stop, stopped) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = stop.send(true);
        });
        let started = tokio::time::Instant::now();
        every(Duration::from_secs(5), stopped, || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        stopper.await.expect("the stopper ran");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_is_restarted_until_it_runs() {
        let (_stop, stopped) = watch::channel(false);
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let restarts = supervise("test", stopped, || {
            let runs = runs.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug in a pass");
                }
            }
        })
        .await;
        assert_eq!(restarts, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_for_a_restart() {
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise("test", stopped, || async {
            panic!("always");
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop.send(true).expect("the supervisor listens");
        let restarts = supervisor.await.expect("the supervisor ends");
        assert!(restarts >= 1);
    }
}
