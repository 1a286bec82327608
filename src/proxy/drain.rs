//! Graceful drain of open WebSockets: each relay registers here; when the drain starts, their
//! close signals are spread evenly over the drain window, so clients reconnect to other replicas
//! gradually instead of all in the same second.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Relays waiting for their drain signal.
#[derive(Debug, Default)]
pub struct DrainRegistry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<()>>,
    draining: bool,
}

/// Keeps a relay registered; dropping it (the relay ended) unregisters.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    registry: Arc<DrainRegistry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().waiting.remove(&self.id);
    }
}

impl DrainRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a relay: the future resolves when it is its turn to close. A relay that
    /// starts after the drain began is told at once.
    pub fn register(self: &Arc<Self>) -> (Registration, impl Future<Output = ()> + use<>) {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        if state.draining {
            let _ = tx.send(());
        } else {
            state.waiting.insert(id, tx);
        }
        drop(state);
        let registration = Registration {
            id,
            registry: self.clone(),
        };
        (registration, async move {
            let _ = rx.await;
        })
    }

    /// Starts the drain: every registered relay gets its signal at an evenly spaced moment of
    /// `window`, the first at once. Returns how many relays there were.
    pub fn start(&self, window: Duration) -> usize {
        let waiting: Vec<oneshot::Sender<()>> = {
            let mut state = self.lock();
            state.draining = true;
            state.waiting.drain().map(|(_, tx)| tx).collect()
        };
        let n = waiting.len();
        if n > 0 {
            let start = Instant::now();
            tokio::spawn(async move {
                for (i, tx) in waiting.into_iter().enumerate() {
                    tokio::time::sleep_until(start + window.mul_f64(i as f64 / n as f64)).await;
                    let _ = tx.send(());
                }
            });
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn signals_are_spread_over_the_window() {
        let registry = Arc::new(DrainRegistry::default());
        let mut waits = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..10 {
            let (reg, fut) = registry.register();
            keep.push(reg);
            waits.push(tokio::spawn(async move {
                fut.await;
                Instant::now()
            }));
        }
        // One relay ends before the drain: it is not signalled.
        keep.pop();
        let t0 = Instant::now();
        assert_eq!(registry.start(Duration::from_secs(9)), 9);
        let mut times = Vec::new();
        for w in waits.into_iter().take(9) {
            times.push(w.await.unwrap_or_else(|e| panic!("{e}")) - t0);
        }
        times.sort();
        let secs: Vec<u64> = times.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, (0..9).collect::<Vec<u64>>());
        // Late registrations are told at once.
        let (_reg, fut) = registry.register();
        tokio::time::timeout(Duration::from_millis(1), fut)
            .await
            .unwrap_or_else(|_| panic!("not signalled"));
    }
}
