//! Rate-limiting a repeating log line: a persisting error (the accept loop at the file
//! descriptor limit retries every 50 ms) is logged once per period with a count of what was
//! held back, not 20 times a second.

use std::time::{Duration, Instant};

/// Lets an event through at most once per `every`, counting what it held back.
pub(crate) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// An event at `now`: `Some(how many were held back since the last one let through)`
    /// when this one should be logged.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_period_with_the_count_held_back() {
        let start = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.tick(start), Some(0));
        for ms in (50..10_000).step_by(50) {
            assert_eq!(t.tick(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.tick(start + Duration::from_secs(10)), Some(199));
        assert_eq!(t.tick(start + Duration::from_secs(11)), None);
        assert_eq!(t.tick(start + Duration::from_secs(25)), Some(1));
    }
}
