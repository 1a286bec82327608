//! Weighted traffic split: the backends of one action with their weights (Gateway API
//! `backendRefs[].weight`). Every normal request, and every new WebSocket, picks one; an open
//! socket stays where it was sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::BackendSet;

/// The backends of one action and their shares.
#[derive(Debug)]
pub struct Split {
    /// The first backend with a weight: the only one of most actions.
    first: Arc<BackendSet>,
    /// With several: each backend (the first included) with the running sum of the weights up
    /// to and including its own. Empty when `first` takes everything.
    choices: Box<[(Arc<BackendSet>, u64)]>,
    /// How many picks were made.
    next: AtomicU64,
}

/// 2^64 / φ: adding it each pick walks the unit interval as the golden-ratio (Weyl) sequence,
/// whose points spread evenly in every window. So any run of picks is split close to the
/// weights (not only on average, as a random pick is), with one atomic add and no lock.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Split {
    /// One backend taking everything.
    pub fn single(backend: Arc<BackendSet>) -> Self {
        Split {
            first: backend,
            choices: Box::new([]),
            next: AtomicU64::new(0),
        }
    }

    /// Backends with weights. Those of weight 0 get nothing; `None` when no weight is above
    /// zero (the action has nowhere to send traffic).
    pub fn weighted(backends: impl IntoIterator<Item = (Arc<BackendSet>, u32)>) -> Option<Self> {
        let mut total = 0u64;
        let mut choices: Vec<_> = backends
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(b, w)| {
                total += u64::from(w);
                (b, total)
            })
            .collect();
        let first = choices.first()?.0.clone();
        if choices.len() == 1 {
            choices.clear();
        }
        Some(Split {
            first,
            choices: choices.into(),
            next: AtomicU64::new(0),
        })
    }

    /// The backend of the next request or socket.
    pub fn pick(&self) -> &Arc<BackendSet> {
        let Some((_, total)) = self.choices.last() else {
            return &self.first;
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let x = n.wrapping_mul(GOLDEN);
        // x / 2^64 scaled to 0..total.
        let point = ((u128::from(x) * u128::from(*total)) >> 64) as u64;
        let at = self.choices.partition_point(|(_, upto)| *upto <= point);
        self.choices.get(at).map_or(&self.first, |(b, _)| b)
    }

    /// The first backend (the only one, in most rules).
    pub fn first(&self) -> &Arc<BackendSet> {
        &self.first
    }

    /// Every backend that gets traffic.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<BackendSet>> {
        let only = self.choices.is_empty().then_some(&self.first);
        only.into_iter().chain(self.choices.iter().map(|(b, _)| b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> Arc<BackendSet> {
        Arc::new(BackendSet::new(name, Vec::new()))
    }

    fn shares(split: &Split, picks: usize) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> =
            split.backends().map(|b| (b.name.to_string(), 0)).collect();
        for _ in 0..picks {
            let name = &split.pick().name;
            if let Some(c) = counts.iter_mut().find(|(n, _)| **n == **name) {
                c.1 += 1;
            }
        }
        counts
    }

    #[test]
    fn picks_follow_the_weights_in_every_window() {
        let split = Split::weighted([(set("a"), 3), (set("b"), 1)]).unwrap_or_else(|| panic!());
        // Not only over many picks: every run of 20 is within one pick of 15:5.
        for _ in 0..10 {
            let got = shares(&split, 20);
            assert!((14..=16).contains(&got[0].1), "{got:?}");
        }
        let split = Split::weighted([(set("a"), 1), (set("b"), 1), (set("c"), 2)])
            .unwrap_or_else(|| panic!());
        let got = shares(&split, 400);
        assert!((98..=102).contains(&got[0].1), "{got:?}");
        assert!((98..=102).contains(&got[1].1), "{got:?}");
        assert!((198..=202).contains(&got[2].1), "{got:?}");
    }

    #[test]
    fn zero_weights_get_nothing() {
        let split = Split::weighted([(set("a"), 0), (set("b"), 5)]).unwrap_or_else(|| panic!());
        assert_eq!(shares(&split, 50), vec![("b".to_string(), 50)]);
        assert!(Split::weighted([(set("a"), 0)]).is_none());
        assert!(Split::weighted(Vec::new()).is_none());
    }

    #[test]
    fn a_single_backend_takes_everything() {
        let split = Split::single(set("only"));
        assert_eq!(shares(&split, 10), vec![("only".to_string(), 10)]);
        assert_eq!(&*split.first().name, "only");
    }
}
