//! Byte relay between an upgraded client connection and its backend.
//!
//! WebSocket payloads stay opaque: bytes are copied both ways until each side has closed its
//! half (a FIN is passed on as a write shutdown, so half-closed connections work). Nothing is
//! buffered on the heap while a connection is idle: each read goes into a stack buffer that
//! lives only for one poll, and only bytes the peer could not take at once are moved to a heap
//! buffer until they are written. Thousands of idle sockets therefore cost only their kernel
//! and TLS state, not 2 × 16 KiB of copy buffers each as a plain `copy_bidirectional` would.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::splice::{Splice, Write};
use crate::model::Keepalive;

/// Size of the per-poll stack buffer: one TLS record's worth of plaintext.
const CHUNK: usize = 16 * 1024;
/// How long the other side may keep its half open after one side closed. A WebSocket is over
/// once either side closes TCP; this only bounds peers that never close theirs (as HAProxy's
/// `timeout client-fin` does).
pub const LINGER: Duration = Duration::from_secs(30);

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed; the client closed first.
    ClientClosed,
    /// Both sides closed; the backend closed first.
    BackendClosed,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// Closed by wsgate itself, with Close frames to both sides.
    Closed(Closing),
    /// Reading from or writing to the client failed.
    ClientError,
    /// Reading from or writing to the backend failed.
    BackendError,
}

impl RelayEnd {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayEnd::ClientClosed => "client",
            RelayEnd::BackendClosed => "backend",
            RelayEnd::IdleTimeout => "idle_timeout",
            RelayEnd::Closed(why) => why.as_str(),
            RelayEnd::ClientError | RelayEnd::BackendError => "error",
        }
    }
}

/// Why wsgate closes a WebSocket itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The replica is shutting down (graceful drain).
    Drain,
    /// The socket reached its maximum lifetime.
    MaxLifetime,
    /// The other peer did not answer a keepalive Ping in time.
    DeadPeer,
    /// Moved off an overloaded endpoint after a scale-out.
    Rebalance,
    /// The token that opened the socket expired.
    TokenExpired,
}

impl Closing {
    /// The Close status code to the client (RFC 6455 §7.4.1): 1001 Going Away, 1012 Service
    /// Restart (IANA WebSocket Close Code registry) for a rebalance: reconnect, elsewhere; 1008
    /// Policy Violation when its token expired: reconnect with a fresh one.
    pub fn code(self) -> u16 {
        match self {
            Closing::Drain | Closing::MaxLifetime | Closing::DeadPeer => 1001,
            Closing::Rebalance => 1012,
            Closing::TokenExpired => 1008,
        }
    }

    /// The Close status code to the backend: the client is going away, whatever the reason
    /// it was told.
    pub fn backend_code(self) -> u16 {
        match self {
            Closing::TokenExpired => 1001,
            other => other.code(),
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Closing::Drain => "drain",
            Closing::MaxLifetime => "max_lifetime",
            Closing::DeadPeer => "dead_peer",
            Closing::Rebalance => "rebalance",
            Closing::TokenExpired => "token_expired",
        }
    }
}

/// A Close frame with `code` and no reason, unmasked: server to client.
fn close_frame(code: u16) -> Vec<u8> {
    let [hi, lo] = code.to_be_bytes();
    vec![0x88, 0x02, hi, lo]
}

/// The same Close frame masked, as a client must send it to a server (RFC 6455 §5.3).
fn close_frame_masked(code: u16) -> Vec<u8> {
    // The mask only has to be unpredictable to the peer's intermediaries, not secret.
    let key = random_bits().to_le_bytes();
    let [hi, lo] = code.to_be_bytes();
    vec![
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        hi ^ key[0],
        lo ^ key[1],
    ]
}

/// A Ping carrying `payload`, unmasked: to the client.
fn ping_frame(payload: [u8; 8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(10);
    f.extend_from_slice(&[0x89, 0x08]);
    f.extend_from_slice(&payload);
    f
}

/// The same Ping masked: to the backend.
fn ping_frame_masked(payload: [u8; 8]) -> Vec<u8> {
    let key = random_bits().to_le_bytes();
    let mut f = Vec::with_capacity(14);
    f.extend_from_slice(&[0x89, 0x88, key[0], key[1], key[2], key[3]]);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// 64 bits that differ per call (a process-random hash of a counter and the time): for
/// frame masks and lifetime jitter, never for secrets.
pub(crate) fn random_bits() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, std::time::Instant::now()))
}

/// One side of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Client,
    /// The backend.
    Backend,
}

/// What a finished relay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client to the backend.
    pub client_to_backend: u64,
    /// Bytes from the backend to the client.
    pub backend_to_client: u64,
    /// How the byte streams ended.
    pub end: RelayEnd,
    /// Which side sent the first WebSocket Close frame, if any.
    pub first_close: Option<Side>,
}

impl RelayStats {
    /// Why the connection ended, for logs and metrics: `client` or `backend` for whoever
    /// started the close (by Close frame, else by closing TCP first), `idle_timeout`, `error`.
    pub fn reason(&self) -> &'static str {
        match (self.end, self.first_close) {
            (RelayEnd::IdleTimeout, _) => "idle_timeout",
            (RelayEnd::Closed(why), _) => why.as_str(),
            (_, Some(Side::Client)) => "client",
            (_, Some(Side::Backend)) => "backend",
            (end, None) => end.as_str(),
        }
    }
}

/// One direction of the relay.
#[derive(Default)]
struct Half {
    /// Bytes read but not yet written (only when the writer pushed back).
    pending: Option<Box<[u8]>>,
    written: usize,
    needs_flush: bool,
    eof: bool,
    done: bool,
    bytes: u64,
    /// Bytes were read since the relay last looked: the reader is alive.
    heard: bool,
    /// Frame boundaries and the drain's Close (what to write for what was read).
    splice: Splice,
}

/// Which side failed, for [`RelayEnd`].
enum Failure {
    Reader,
    Writer,
}

impl Half {
    /// Moves bytes from `reader` to `writer` until it would block. Ready(Ok) once the reader hit
    /// EOF and the writer was shut down; `active` is set when bytes moved.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        active: &mut bool,
    ) -> Poll<Result<(), Failure>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            ready!(self.poll_pending(cx, writer.as_mut()))?;
            if let Some(frame) = self.splice.due() {
                self.queue(frame);
                continue;
            }
            if self.eof {
                return self.poll_finish(cx, writer);
            }
            let mut stack = [0u8; CHUNK];
            let mut rb = ReadBuf::new(&mut stack);
            match reader.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // Nothing more to read now: push out what was written before parking.
                    if self.needs_flush {
                        if let Poll::Ready(r) = writer.as_mut().poll_flush(cx) {
                            r.map_err(|_| Failure::Writer)?;
                            self.needs_flush = false;
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(Failure::Reader)),
                Poll::Ready(Ok(())) => {}
            }
            let data = rb.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            self.heard = true;
            self.bytes += data.len() as u64;
            // Our own Pongs, taken out, are not activity: idleTimeout counts the peers'.
            match self.splice.on_read(data) {
                Write::Through(data) => {
                    *active = true;
                    ready!(self.poll_write_through(cx, writer.as_mut(), data))?;
                }
                Write::Spliced(out) => {
                    *active = true;
                    self.queue(out.into_boxed_slice());
                }
                Write::Nothing => {}
            }
        }
    }

    /// Writes what an earlier poll could not; Ready(Ok) once nothing is pending.
    fn poll_pending<W>(
        &mut self,
        cx: &mut Context<'_>,
        mut writer: Pin<&mut W>,
    ) -> Poll<Result<(), Failure>>
    where
        W: AsyncWrite + ?Sized,
    {
        if let Some(buf) = &self.pending {
            while self.written < buf.len() {
                let n = ready!(writer.as_mut().poll_write(cx, &buf[self.written..]))
                    .map_err(|_| Failure::Writer)?;
                if n == 0 {
                    return Poll::Ready(Err(Failure::Writer));
                }
                self.written += n;
            }
            self.pending = None;
            self.needs_flush = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes and shuts the writer down after the reader's EOF; the half is then done.
    fn poll_finish<W>(
        &mut self,
        cx: &mut Context<'_>,
        mut writer: Pin<&mut W>,
    ) -> Poll<Result<(), Failure>>
    where
        W: AsyncWrite + ?Sized,
    {
        if self.needs_flush {
            ready!(writer.as_mut().poll_flush(cx)).map_err(|_| Failure::Writer)?;
            self.needs_flush = false;
        }
        // A peer that already went away makes shutdown fail; the half is done anyway.
        let _ = ready!(writer.as_mut().poll_shutdown(cx));
        self.done = true;
        Poll::Ready(Ok(()))
    }

    /// Sets `bytes` to be written before anything else.
    fn queue(&mut self, bytes: Box<[u8]>) {
        self.pending = Some(bytes);
        self.written = 0;
    }

    /// Writes `data` straight from the stack buffer; what the writer cannot take now moves to
    /// the heap (Pending).
    fn poll_write_through<W>(
        &mut self,
        cx: &mut Context<'_>,
        mut writer: Pin<&mut W>,
        data: &[u8],
    ) -> Poll<Result<(), Failure>>
    where
        W: AsyncWrite + ?Sized,
    {
        let mut off = 0;
        while off < data.len() {
            match writer.as_mut().poll_write(cx, &data[off..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    return Poll::Ready(Err(Failure::Writer));
                }
                Poll::Ready(Ok(n)) => off += n,
                Poll::Pending => {
                    self.queue(data[off..].into());
                    return Poll::Pending;
                }
            }
        }
        self.needs_flush = true;
        Poll::Ready(Ok(()))
    }
}

/// How a relay watches its sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayOptions {
    /// End the relay when no byte of the peers moved in either direction this long.
    pub idle_timeout: Option<Duration>,
    /// Ping a peer silent this long; one that stays silent is dead.
    pub keepalive: Option<Keepalive>,
}

/// Relays bytes between `client` and `backend` until both halves are closed, one side fails,
/// or nothing moves for the idle timeout. `on_bytes(to_backend, to_client)` is told of every
/// batch of bytes moved, so live counters do not wait for the connection to end.
///
/// When `close` resolves (a drain, the socket's lifetime), the relay closes the
/// WebSocket gracefully: a Close frame with the reason's code goes to the client and to the
/// backend, each at the next frame boundary of the stream it is spliced into, nothing more is
/// forwarded, and the relay ends once both peers have answered with their own Close (or
/// closed TCP).
///
/// With keepalive, a peer that sent nothing for the interval gets a Ping at the next frame
/// boundary of the stream toward it (masked toward the backend, as a client's frames must
/// be, RFC 6455 §5.3); its Pong is taken out of its stream. A peer that then stays silent for
/// the timeout is dead: the other side gets Close 1001 and the relay ends.
pub async fn relay<C, B>(
    mut client: C,
    mut backend: B,
    options: RelayOptions,
    mut on_bytes: impl FnMut(u64, u64),
    close: impl Future<Output = Closing>,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut state = Relay {
        up: Half::default(),
        down: Half::default(),
        first_closed: None,
        first_close: None,
        watch: options.keepalive.map(Watch::new),
        idle: options.idle_timeout.map(|limit| Idle {
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
            last_activity: Instant::now(),
        }),
        linger: None,
        closing: None,
        reported: (0, 0),
    };
    let mut close = std::pin::pin!(close);
    let end = poll_fn(|cx| {
        if state.closing.is_none() {
            if let Poll::Ready(why) = close.as_mut().poll(cx) {
                state.start_closing(why);
            }
        }
        let polled = state.poll_halves(cx, &mut client, &mut backend);
        state.report(&mut on_bytes);
        match polled {
            // A peer that hangs up uncleanly after wsgate closed the socket (a TLS client
            // gone without close_notify) does not change why it ended.
            Err(end) => Poll::Ready(state.closing.map_or(end, RelayEnd::Closed)),
            Ok(active) => {
                if let Some(dead) = state.poll_keepalive(cx) {
                    state.reap(cx, dead);
                }
                state.poll_end(cx, active)
            }
        }
    })
    .await;
    state.report(&mut on_bytes);
    state.note_first_close();
    RelayStats {
        client_to_backend: state.up.bytes,
        backend_to_client: state.down.bytes,
        end,
        first_close: state.first_close,
    }
}

/// The state of one relay between polls.
struct Relay {
    /// Client to backend.
    up: Half,
    /// Backend to client.
    down: Half,
    /// Which stream reached EOF first.
    first_closed: Option<RelayEnd>,
    /// Which side sent the first Close frame.
    first_close: Option<Side>,
    idle: Option<Idle>,
    /// Keepalive of both peers.
    watch: Option<Watch>,
    /// Started once one side closed; bounds how long the other may stay open.
    linger: Option<Pin<Box<Sleep>>>,
    /// Set once wsgate started closing the socket itself.
    closing: Option<Closing>,
    /// Bytes already passed to `on_bytes`.
    reported: (u64, u64),
}

/// The idle timer, re-armed only when it fires, not on every byte.
struct Idle {
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
    last_activity: Instant,
}

/// Keepalive: when each peer was last heard from and whether it owes an answer to a Ping.
/// One timer for both, re-armed only when it fires.
struct Watch {
    sleep: Pin<Box<Sleep>>,
    every: Keepalive,
    /// What our Pings carry, so their Pongs can be told from the application's.
    payload: [u8; 8],
    client: Peer,
    backend: Peer,
}

struct Peer {
    heard: Instant,
    /// Set once pinged: the peer is dead if silent until then.
    answer_by: Option<Instant>,
}

impl Peer {
    fn heard(&mut self, now: Instant) {
        self.heard = now;
        self.answer_by = None;
    }

    /// When the watch must look at this peer next.
    fn next(&self, every: Keepalive) -> Instant {
        self.answer_by.unwrap_or(self.heard + every.interval)
    }
}

impl Watch {
    fn new(every: Keepalive) -> Self {
        let now = Instant::now();
        Watch {
            sleep: Box::pin(tokio::time::sleep(every.interval)),
            every,
            payload: random_bits().to_le_bytes(),
            client: Peer {
                heard: now,
                answer_by: None,
            },
            backend: Peer {
                heard: now,
                answer_by: None,
            },
        }
    }
}

/// What the watch does about one peer now.
enum Due {
    Nothing,
    Ping,
    Dead,
}

fn due(peer: &mut Peer, every: Keepalive, now: Instant) -> Due {
    match peer.answer_by {
        Some(by) if by <= now => Due::Dead,
        Some(_) => Due::Nothing,
        None if peer.heard + every.interval <= now => {
            peer.answer_by = Some(now + every.timeout);
            Due::Ping
        }
        None => Due::Nothing,
    }
}

/// Asks for a Ping to `side` in the stream toward it and for its Pong to be taken out of the
/// stream from it; `up` runs client to backend, `down` backend to client.
fn ping(up: &mut Half, down: &mut Half, side: Side, payload: [u8; 8]) {
    let (toward, from, frame) = match side {
        Side::Client => (down, up, ping_frame(payload)),
        Side::Backend => (up, down, ping_frame_masked(payload)),
    };
    toward.splice.send_ping(frame);
    from.splice.expect_pong(payload);
}

impl Relay {
    /// Notes which peers were heard from and, when the timer fires, pings the silent ones;
    /// returns a peer that did not answer in time.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Option<Side> {
        let watch = self.watch.as_mut()?;
        let heard = (
            std::mem::take(&mut self.up.heard),
            std::mem::take(&mut self.down.heard),
        );
        if heard.0 || heard.1 {
            let now = Instant::now();
            if heard.0 {
                watch.client.heard(now);
            }
            if heard.1 {
                watch.backend.heard(now);
            }
        }
        while watch.sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let every = watch.every;
            for side in [Side::Client, Side::Backend] {
                let peer = match side {
                    Side::Client => &mut watch.client,
                    Side::Backend => &mut watch.backend,
                };
                match due(peer, every, now) {
                    Due::Dead => return Some(side),
                    Due::Ping => {
                        ping(&mut self.up, &mut self.down, side, watch.payload);
                        cx.waker().wake_by_ref();
                    }
                    Due::Nothing => {}
                }
            }
            let next = watch.client.next(every).min(watch.backend.next(every));
            watch.sleep.as_mut().reset(next);
        }
        None
    }

    /// Ends the relay for a peer that stopped answering: the live side gets Close 1001 at
    /// the next frame boundary and a FIN; nothing more goes to the dead one.
    fn reap(&mut self, cx: &mut Context<'_>, dead: Side) {
        // A socket wsgate was closing already keeps that reason.
        self.closing.get_or_insert(Closing::DeadPeer);
        self.watch = None;
        let code = Closing::DeadPeer.code();
        let (to_live, to_dead, close) = match dead {
            Side::Client => (&mut self.up, &mut self.down, close_frame_masked(code)),
            Side::Backend => (&mut self.down, &mut self.up, close_frame(code)),
        };
        to_dead.pending = None;
        to_dead.eof = true;
        to_dead.done = true;
        to_live.splice.send_close(close);
        to_live.eof = true;
        // The live peer gets LINGER to take it, as after any close.
        self.first_closed.get_or_insert(match dead {
            Side::Client => RelayEnd::ClientClosed,
            Side::Backend => RelayEnd::BackendClosed,
        });
        cx.waker().wake_by_ref();
    }

    fn start_closing(&mut self, why: Closing) {
        self.closing = Some(why);
        // Client-to-backend frames must be masked (RFC 6455 §5.3); ours to the client not.
        self.up
            .splice
            .send_close(close_frame_masked(why.backend_code()));
        self.down.splice.send_close(close_frame(why.code()));
    }

    /// Polls both directions; Ok(whether bytes moved), or Err with how the relay failed.
    fn poll_halves<C, B>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        backend: &mut B,
    ) -> Result<bool, RelayEnd>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let mut active = false;
        if !self.up.done {
            let polled = self
                .up
                .poll_copy(cx, Pin::new(client), Pin::new(backend), &mut active);
            match polled {
                Poll::Ready(Ok(())) => {
                    self.first_closed.get_or_insert(RelayEnd::ClientClosed);
                }
                Poll::Ready(Err(Failure::Reader)) => return Err(RelayEnd::ClientError),
                Poll::Ready(Err(Failure::Writer)) => return Err(RelayEnd::BackendError),
                Poll::Pending => {}
            }
        }
        if !self.down.done {
            let polled = self
                .down
                .poll_copy(cx, Pin::new(backend), Pin::new(client), &mut active);
            match polled {
                Poll::Ready(Ok(())) => {
                    self.first_closed.get_or_insert(RelayEnd::BackendClosed);
                }
                Poll::Ready(Err(Failure::Reader)) => return Err(RelayEnd::BackendError),
                Poll::Ready(Err(Failure::Writer)) => return Err(RelayEnd::ClientError),
                Poll::Pending => {}
            }
        }
        Ok(active)
    }

    /// Tells `on_bytes` what moved since it was last told.
    fn report(&mut self, on_bytes: &mut impl FnMut(u64, u64)) {
        let now = (self.up.bytes, self.down.bytes);
        if now != self.reported {
            on_bytes(now.0 - self.reported.0, now.1 - self.reported.1);
            self.reported = now;
        }
    }

    fn note_first_close(&mut self) {
        if self.first_close.is_none() {
            if self.up.splice.frames.saw_close {
                self.first_close = Some(Side::Client);
            } else if self.down.splice.frames.saw_close {
                self.first_close = Some(Side::Backend);
            }
        }
    }

    /// After both directions were polled: whether the relay is over, and why.
    fn poll_end(&mut self, cx: &mut Context<'_>, active: bool) -> Poll<RelayEnd> {
        self.note_first_close();
        let (up, down) = (&mut self.up, &mut self.down);
        if self.closing.is_some() && !(up.eof && down.eof) {
            let sent = up.splice.close_sent() && down.splice.close_sent();
            let flushed = up.pending.is_none() && down.pending.is_none();
            let answered = up.splice.answered() && down.splice.answered();
            if sent && flushed && answered {
                // Both peers answered our Close: shut both sockets down cleanly.
                up.eof = true;
                down.eof = true;
                cx.waker().wake_by_ref();
            }
        }
        if up.done && down.done {
            if let Some(why) = self.closing {
                return Poll::Ready(RelayEnd::Closed(why));
            }
            return Poll::Ready(self.first_closed.unwrap_or(RelayEnd::ClientClosed));
        }
        if let Some(end) = self.first_closed {
            let timer = self
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(self.closing.map_or(end, RelayEnd::Closed));
            }
        }
        if let Some(idle) = &mut self.idle {
            if active {
                idle.last_activity = Instant::now();
            }
            while idle.sleep.as_mut().poll(cx).is_ready() {
                let deadline = idle.last_activity + idle.limit;
                if deadline <= Instant::now() {
                    return Poll::Ready(RelayEnd::IdleTimeout);
                }
                idle.sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
