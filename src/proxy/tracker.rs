//! Counts live connections and relays so shutdown can wait for them to finish.

use tokio::sync::watch;

/// Hands out tokens; [`Tracker::wait_idle`] returns once every token is dropped.
#[derive(Debug, Clone)]
pub struct Tracker {
    tx: watch::Sender<()>,
}

/// Held by one live connection or relay.
#[derive(Debug)]
pub struct Token {
    /// Held for its `Drop`: the tracker counts live receivers.
    _held: watch::Receiver<()>,
}

impl Default for Tracker {
    fn default() -> Self {
        let (tx, _) = watch::channel(());
        Tracker { tx }
    }
}

impl Tracker {
    /// A token for one unit of work.
    pub fn token(&self) -> Token {
        Token {
            _held: self.tx.subscribe(),
        }
    }

    /// How many tokens are live.
    pub fn active(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Resolves when no token is live.
    pub async fn wait_idle(&self) {
        self.tx.closed().await;
    }
}
