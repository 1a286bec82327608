//! Rebalancing after a scale-out. Sockets live for hours, so new pods of a backend get only
//! new sockets while the old ones stay where they were opened. When the endpoints of a
//! backend with `rebalance` change, this replica counts its sockets per endpoint and closes
//! those over the mean on the overloaded endpoints with Close 1012 (Service Restart), oldest
//! first, spread over the window; the clients reconnect and LeastConnections puts them on
//! the emptiest endpoints. Counts are this replica's own: with N replicas each evens out its
//! share, which evens out the sum.
//!
//! [`plan`] is the pure part (counts in, closes out); [`Rebalancer`] keeps the sockets and
//! carries a plan out.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::table::RouteTable;

/// How often the rebalancer looks for a new table (a table swap is rare; looking costs one
/// pointer comparison).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How many sockets to close on each endpoint, given each endpoint's `counts` and the
/// sockets `moving` (closed by an earlier plan, about to reconnect somewhere): on every
/// endpoint over `(1 + tolerance)` × the mean, the sockets above the mean (rounded up), so
/// never more than the excess and never from an endpoint within tolerance.
pub fn plan(counts: &[usize], moving: usize, tolerance: f64) -> Vec<usize> {
    let total: usize = counts.iter().sum::<usize>() + moving;
    if counts.is_empty() || total == 0 {
        return vec![0; counts.len()];
    }
    let mean = total as f64 / counts.len() as f64;
    let keep = mean.ceil() as usize;
    counts
        .iter()
        .map(|&n| {
            if n as f64 > (1.0 + tolerance) * mean {
                n.saturating_sub(keep)
            } else {
                0
            }
        })
        .collect()
}

/// The sockets of rebalanced backends, and the endpoint lists last seen.
#[derive(Debug, Default)]
pub struct Rebalancer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    sockets: HashMap<u64, Socket>,
    /// Per backend (by name): its endpoints in the last table looked at.
    seen: HashMap<Arc<str>, Vec<SocketAddr>>,
}

#[derive(Debug)]
struct Socket {
    backend: Arc<str>,
    endpoint: SocketAddr,
    opened: Instant,
    /// Taken when the socket is picked to move.
    tell: Option<oneshot::Sender<()>>,
}

/// Resolves when the socket is told to move; never if it is not (its registration gone).
#[derive(Debug)]
pub struct Moved(oneshot::Receiver<()>);

impl Future for Moved {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The sender is gone without a word: this socket stays.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Keeps a socket registered; dropped when the relay ends.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    rebalancer: Arc<Rebalancer>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.rebalancer.lock().sockets.remove(&self.id);
    }
}

impl Rebalancer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a socket of `backend` on `endpoint`: [`Moved`] resolves if it is picked to
    /// move, and never otherwise.
    pub fn register(
        self: &Arc<Self>,
        backend: Arc<str>,
        endpoint: SocketAddr,
    ) -> (Registration, Moved) {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.sockets.insert(
            id,
            Socket {
                backend,
                endpoint,
                opened: Instant::now(),
                tell: Some(tx),
            },
        );
        drop(state);
        let registration = Registration {
            id,
            rebalancer: self.clone(),
        };
        (registration, Moved(rx))
    }

    /// Looks at `table`'s rebalanced backends; for each whose endpoints changed since the last
    /// look, plans and starts the moves. Returns how many sockets will be closed.
    pub fn on_table(&self, table: &RouteTable) -> usize {
        let mut moves = Vec::new();
        let mut state = self.lock();
        let mut present = std::collections::HashSet::new();
        for set in table.websocket_backends() {
            let Some(rebalance) = set.rebalance else {
                continue;
            };
            present.insert(set.name.clone());
            let mut endpoints: Vec<SocketAddr> = set.endpoints().iter().map(|e| e.addr).collect();
            endpoints.sort_unstable();
            if state.seen.get(&set.name) == Some(&endpoints) {
                continue;
            }
            state.seen.insert(set.name.clone(), endpoints.clone());
            let picked = state.pick(&set.name, &endpoints, rebalance.tolerance);
            if !picked.is_empty() {
                tracing::info!(
                    backend = &*set.name,
                    sockets = picked.len(),
                    window_secs = rebalance.window.as_secs_f64(),
                    "endpoints changed: moving sockets off overloaded endpoints"
                );
                moves.push((picked, rebalance.window));
            }
        }
        // Backends no longer rebalanced (or gone) are forgotten.
        state.seen.retain(|name, _| present.contains(name));
        drop(state);
        let mut n = 0;
        for (picked, window) in moves {
            n += picked.len();
            tokio::spawn(spread(picked, window));
        }
        n
    }

    /// Looks at the table every [`LOOK_EVERY`] until dropped by its task being aborted.
    pub async fn watch(self: Arc<Self>, table: Arc<ArcSwap<RouteTable>>) {
        let mut last = table.load_full();
        self.on_table(&last);
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = table.load_full();
            if !Arc::ptr_eq(&now, &last) {
                self.on_table(&now);
                last = now;
            }
        }
    }
}

impl State {
    /// The sockets to move off `backend`'s overloaded endpoints, oldest first. Sockets already
    /// picked by an earlier plan are leaving and count nowhere.
    fn pick(
        &mut self,
        backend: &str,
        endpoints: &[SocketAddr],
        tolerance: f64,
    ) -> Vec<oneshot::Sender<()>> {
        let mut on: Vec<Vec<(Instant, u64)>> = vec![Vec::new(); endpoints.len()];
        let mut moving = 0;
        for (&id, s) in &self.sockets {
            if &*s.backend != backend {
                continue;
            }
            if s.tell.is_none() {
                moving += 1;
            } else if let Ok(i) = endpoints.binary_search(&s.endpoint) {
                on[i].push((s.opened, id));
            }
        }
        let counts: Vec<usize> = on.iter().map(Vec::len).collect();
        let closes = plan(&counts, moving, tolerance);
        let mut chosen: Vec<(Instant, u64)> = Vec::new();
        for (mut sockets, n) in on.into_iter().zip(closes) {
            sockets.sort_unstable();
            chosen.extend(sockets.into_iter().take(n));
        }
        chosen.sort_unstable();
        chosen
            .into_iter()
            .filter_map(|(_, id)| self.sockets.get_mut(&id)?.tell.take())
            .collect()
    }
}

/// Tells each socket to close at evenly spaced moments of `window`, the first at once.
async fn spread(picked: Vec<oneshot::Sender<()>>, window: Duration) {
    let start = Instant::now();
    let n = picked.len();
    for (i, tell) in picked.into_iter().enumerate() {
        tokio::time::sleep_until(start + window.mul_f64(i as f64 / n as f64)).await;
        let _ = tell.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_out_closes_the_excess_above_the_mean() {
        // 2 → 4 endpoints: 100 each on the old ones, mean 50.
        assert_eq!(plan(&[100, 100, 0, 0], 0, 0.2), [50, 50, 0, 0]);
        // 3 → 4: mean 75 (exactly), each old one gives 25.
        assert_eq!(plan(&[100, 100, 100, 0], 0, 0.2), [25, 25, 25, 0]);
        // An odd mean rounds up what stays: never more than the excess.
        assert_eq!(plan(&[7, 0], 0, 0.0), [3, 0]);
        // Sockets already moving will land on the emptiest endpoints: they count in the mean.
        assert_eq!(plan(&[50, 50, 0, 0], 100, 0.2), [0, 0, 0, 0]);
        assert_eq!(plan(&[100, 0], 20, 0.2), [40, 0]);
    }

    #[test]
    fn endpoints_within_tolerance_keep_their_sockets() {
        // Mean 50; 60 is exactly 1.2 × the mean: within tolerance.
        assert_eq!(plan(&[60, 40, 50, 50], 0, 0.2), [0, 0, 0, 0]);
        assert_eq!(plan(&[61, 39, 50, 50], 0, 0.2), [11, 0, 0, 0]);
        // A high tolerance leaves a moderate imbalance alone.
        assert_eq!(plan(&[100, 50], 0, 1.0), [0, 0]);
    }

    #[test]
    fn nothing_to_plan_without_sockets_or_endpoints() {
        assert_eq!(plan(&[], 0, 0.2), Vec::<usize>::new());
        assert_eq!(plan(&[0, 0, 0], 0, 0.2), [0, 0, 0]);
        assert_eq!(plan(&[5], 0, 0.0), [0]);
    }

    #[test]
    fn after_the_closes_every_endpoint_is_within_tolerance() {
        // Whatever the counts, moving the planned closes to the emptiest endpoints (as
        // LeastConnections does with the reconnects) leaves none over (1 + t) × mean + 1.
        let cases: [&[usize]; 5] = [
            &[100, 100, 0, 0],
            &[1000, 3, 7],
            &[9, 9, 9, 9, 0],
            &[1, 0, 0, 0],
            &[500, 0, 0, 0, 0, 0, 0],
        ];
        for counts in cases {
            let closes = plan(counts, 0, 0.2);
            let mut after: Vec<usize> = counts.iter().zip(&closes).map(|(n, c)| n - c).collect();
            for _ in 0..closes.iter().sum::<usize>() {
                let emptiest = (0..after.len()).min_by_key(|&i| after[i]).unwrap_or(0);
                after[emptiest] += 1;
            }
            let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
            for n in &after {
                assert!(
                    *n as f64 <= 1.2 * mean + 1.0,
                    "{counts:?} → {after:?} (mean {mean})"
                );
            }
            for (n, c) in counts.iter().zip(&closes) {
                assert!(
                    *c as f64 <= (*n as f64 - mean).max(0.0),
                    "{counts:?}: {closes:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_sockets_of_an_overloaded_endpoint_move_spread_over_the_window() {
        let r = Arc::new(Rebalancer::default());
        let a: SocketAddr = ([127, 0, 0, 1], 80).into();
        let b: SocketAddr = ([127, 0, 0, 2], 80).into();
        let name: Arc<str> = "service chat:80".into();
        let mut regs = Vec::new();
        let mut told = Vec::new();
        for _ in 0..4 {
            let (reg, moved) = r.register(name.clone(), a);
            regs.push(reg);
            told.push(tokio::spawn(async move {
                moved.await;
                Instant::now()
            }));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let start = Instant::now();
        let picked = r.lock().pick(&name, &[a, b], 0.2);
        assert_eq!(picked.len(), 2, "4 on a, 0 on b: mean 2, move 2");
        tokio::spawn(spread(picked, Duration::from_secs(10)));
        // The two oldest (registered first) are told, at 0 s and 5 s of the window.
        let first = told.remove(0).await.unwrap_or_else(|e| panic!("{e}"));
        let second = told.remove(0).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first - start, Duration::ZERO);
        assert_eq!(second - start, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(told.iter().all(|t| !t.is_finished()), "the newer two stay");
        // A second look while they are leaving picks nothing more.
        assert!(r.lock().pick(&name, &[a, b], 0.2).is_empty());
    }
}
