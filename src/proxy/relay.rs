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

use super::frames::FrameTracker;

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
    /// Closed by wsgate's graceful drain (Close 1001 to both sides).
    Drained,
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
            RelayEnd::Drained => "drain",
            RelayEnd::ClientError | RelayEnd::BackendError => "error",
        }
    }
}

/// Close frame with status 1001 (Going Away), unmasked: server to client.
const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xe9];

/// The same Close frame masked, as a client must send it to a server.
fn close_frame_masked() -> Vec<u8> {
    use std::hash::{BuildHasher, RandomState};
    // The mask only has to be unpredictable to the peer's intermediaries, not secret.
    let key = RandomState::new()
        .hash_one(std::time::Instant::now())
        .to_le_bytes();
    vec![
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        0x03 ^ key[0],
        0xe9 ^ key[1],
    ]
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
            (RelayEnd::Drained, _) => "drain",
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
    frames: FrameTracker,
    /// A Close frame to send at the next frame boundary (graceful drain).
    inject: Option<Vec<u8>>,
    /// After our Close went out, the reader's frames are dropped (RFC 6455 §5.5.1: no data
    /// after a Close), but still followed to see the peer's Close.
    discard: bool,
    /// Close frames seen from the reader when ours was injected.
    closes_before: u64,
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
            if self.inject.is_some() && self.frames.at_boundary() {
                self.pending = self.inject.take().map(Vec::into_boxed_slice);
                self.written = 0;
                self.discard = true;
                continue;
            }
            if self.eof {
                if self.needs_flush {
                    ready!(writer.as_mut().poll_flush(cx)).map_err(|_| Failure::Writer)?;
                    self.needs_flush = false;
                }
                // A peer that already went away makes shutdown fail; the half is done anyway.
                let _ = ready!(writer.as_mut().poll_shutdown(cx));
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut stack = [0u8; CHUNK];
            let mut rb = ReadBuf::new(&mut stack);
            match reader.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
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
            let filled = rb.filled().len();
            if filled == 0 {
                self.eof = true;
                continue;
            }
            *active = true;
            self.bytes += filled as u64;
            let data = &stack[..filled];
            if self.discard {
                self.frames.feed(data);
                continue;
            }
            if self.inject.is_some() {
                if let Some(cut) = self.frames.next_boundary(data) {
                    // Pass the current frame's end, then our Close; drop what follows.
                    self.frames.feed(data);
                    let mut out = data[..cut].to_vec();
                    out.extend(self.inject.take().unwrap_or_default());
                    self.pending = Some(out.into_boxed_slice());
                    self.written = 0;
                    self.discard = true;
                    continue;
                }
            }
            self.frames.feed(data);
            let mut off = 0;
            while off < filled {
                match writer.as_mut().poll_write(cx, &stack[off..filled]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Err(Failure::Writer));
                    }
                    Poll::Ready(Ok(n)) => off += n,
                    Poll::Pending => {
                        self.pending = Some(stack[off..filled].into());
                        self.written = 0;
                        return Poll::Pending;
                    }
                }
            }
            self.needs_flush = true;
        }
    }
}

/// Relays bytes between `client` and `backend` until both halves are closed, one side fails,
/// or nothing moves for `idle_timeout`. `on_bytes(to_backend, to_client)` is told of every
/// batch of bytes moved, so live counters do not wait for the connection to end.
///
/// When `drain` resolves, the relay closes the WebSocket gracefully: a Close frame with code
/// 1001 (Going Away) goes to the client and to the backend, each at the next frame boundary of
/// the stream it is spliced into, nothing more is forwarded, and the relay ends once both
/// peers have answered with their own Close (or closed TCP).
pub async fn relay<C, B>(
    mut client: C,
    mut backend: B,
    idle_timeout: Option<Duration>,
    mut on_bytes: impl FnMut(u64, u64),
    drain: impl Future<Output = ()>,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Half::default();
    let mut down = Half::default();
    let mut first_closed: Option<RelayEnd> = None;
    let mut idle: Option<Pin<Box<Sleep>>> = idle_timeout.map(|d| Box::pin(tokio::time::sleep(d)));
    let mut last_activity = Instant::now();
    let mut reported = (0u64, 0u64);
    let mut first_close: Option<Side> = None;
    let mut linger: Option<Pin<Box<Sleep>>> = None;
    let mut drain = std::pin::pin!(drain);
    let mut draining = false;

    let end = poll_fn(|cx| {
        let mut active = false;
        if !draining && drain.as_mut().poll(cx).is_ready() {
            draining = true;
            // Client-to-backend frames must be masked (RFC 6455 §5.3); ours to the client not.
            up.inject = Some(close_frame_masked());
            up.closes_before = up.frames.closes;
            down.inject = Some(CLOSE_GOING_AWAY.to_vec());
            down.closes_before = down.frames.closes;
        }
        let mut report = |up: &Half, down: &Half| {
            let now = (up.bytes, down.bytes);
            if now != reported {
                on_bytes(now.0 - reported.0, now.1 - reported.1);
                reported = now;
            }
        };
        if !up.done {
            match up.poll_copy(
                cx,
                Pin::new(&mut client),
                Pin::new(&mut backend),
                &mut active,
            ) {
                Poll::Ready(Ok(())) => {
                    first_closed.get_or_insert(RelayEnd::ClientClosed);
                }
                Poll::Ready(Err(Failure::Reader)) => return Poll::Ready(RelayEnd::ClientError),
                Poll::Ready(Err(Failure::Writer)) => return Poll::Ready(RelayEnd::BackendError),
                Poll::Pending => {}
            }
        }
        if !down.done {
            match down.poll_copy(
                cx,
                Pin::new(&mut backend),
                Pin::new(&mut client),
                &mut active,
            ) {
                Poll::Ready(Ok(())) => {
                    first_closed.get_or_insert(RelayEnd::BackendClosed);
                }
                Poll::Ready(Err(Failure::Reader)) => return Poll::Ready(RelayEnd::BackendError),
                Poll::Ready(Err(Failure::Writer)) => return Poll::Ready(RelayEnd::ClientError),
                Poll::Pending => {}
            }
        }
        report(&up, &down);
        if first_close.is_none() {
            if up.frames.saw_close {
                first_close = Some(Side::Client);
            } else if down.frames.saw_close {
                first_close = Some(Side::Backend);
            }
        }
        if draining && !(up.eof && down.eof) {
            let sent = up.inject.is_none() && down.inject.is_none();
            let flushed = up.pending.is_none() && down.pending.is_none();
            let answered =
                up.frames.closes > up.closes_before && down.frames.closes > down.closes_before;
            if sent && flushed && answered {
                // Both peers answered our Close: shut both sockets down cleanly.
                up.eof = true;
                down.eof = true;
                cx.waker().wake_by_ref();
            }
        }
        if up.done && down.done {
            if draining {
                return Poll::Ready(RelayEnd::Drained);
            }
            return Poll::Ready(first_closed.unwrap_or(RelayEnd::ClientClosed));
        }
        if let Some(end) = first_closed {
            let timer = linger.get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(end);
            }
        }
        if let (Some(sleep), Some(limit)) = (idle.as_mut(), idle_timeout) {
            if active {
                last_activity = Instant::now();
            }
            // The timer is only re-armed when it fires, not on every byte.
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = last_activity + limit;
                if deadline <= Instant::now() {
                    return Poll::Ready(RelayEnd::IdleTimeout);
                }
                sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    })
    .await;
    if (up.bytes, down.bytes) != reported {
        on_bytes(up.bytes - reported.0, down.bytes - reported.1);
    }
    RelayStats {
        client_to_backend: up.bytes,
        backend_to_client: down.bytes,
        end,
        first_close: first_close.or(if up.frames.saw_close {
            Some(Side::Client)
        } else if down.frames.saw_close {
            Some(Side::Backend)
        } else {
            None
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn copies_both_ways_and_handles_half_close() {
        let (mut client, client_side) = duplex(64);
        let (backend_side, mut backend) = duplex(64);
        let counted = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let tally = counted.clone();
        let task = tokio::spawn(relay(
            client_side,
            backend_side,
            None,
            move |a, b| {
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                t.0 += a;
                t.1 += b;
            },
            std::future::pending(),
        ));
        // More than the duplex capacity, so the pending-buffer path runs.
        let big = vec![7u8; 100_000];
        let writer = {
            let big = big.clone();
            tokio::spawn(async move {
                client.write_all(&big).await?;
                client.shutdown().await?;
                let mut back = Vec::new();
                client.read_to_end(&mut back).await?;
                io::Result::Ok(back)
            })
        };
        let mut got = Vec::new();
        backend
            .read_to_end(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, big);
        // The client half-closed; the backend can still answer.
        backend
            .write_all(b"bye")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        backend.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
        let back = writer
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, b"bye");
        let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            stats,
            RelayStats {
                client_to_backend: 100_000,
                backend_to_client: 3,
                end: RelayEnd::ClientClosed,
                first_close: None,
            }
        );
        assert_eq!(
            *counted.lock().unwrap_or_else(|p| p.into_inner()),
            (100_000, 3)
        );
    }

    #[tokio::test]
    async fn drain_sends_close_1001_at_frame_boundaries_and_waits_for_both_answers() {
        let (mut client, client_side) = duplex(1 << 16);
        let (backend_side, mut backend) = duplex(1 << 16);
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay(client_side, backend_side, None, |_, _| {}, async {
            let _ = drain_rx.await;
        }));
        // The backend is halfway through a 10-byte binary frame when the drain starts.
        let frame: Vec<u8> = [vec![0x82, 10], vec![9u8; 10]].concat();
        backend
            .write_all(&frame[..6])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = vec![0u8; 6];
        client
            .read_exact(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drain_tx.send(()).unwrap_or_else(|_| panic!("relay gone"));
        // The backend finishes its frame and starts another one, which must not reach the client.
        backend
            .write_all(&frame[6..])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        backend
            .write_all(&[0x81, 2, b'n', b'o'])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut rest = vec![0u8; 6 + 4];
        client
            .read_exact(&mut rest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&rest[..6], &frame[6..], "the frame in flight completes");
        assert_eq!(&rest[6..], &CLOSE_GOING_AWAY, "then Close 1001");
        // The backend got a masked Close 1001.
        let mut to_backend = vec![0u8; 8];
        backend
            .read_exact(&mut to_backend)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&to_backend[..2], &[0x88, 0x82]);
        let key = &to_backend[2..6];
        assert_eq!(
            [to_backend[6] ^ key[0], to_backend[7] ^ key[1]],
            [0x03, 0xe9]
        );
        // Both answer; the relay ends with a clean shutdown on both sides.
        client
            .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        backend
            .write_all(&CLOSE_GOING_AWAY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.end, RelayEnd::Drained);
        assert_eq!(stats.reason(), "drain");
        let mut tail = Vec::new();
        client
            .read_to_end(&mut tail)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(tail.is_empty(), "nothing after our Close: {tail:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_closes_its_half_is_cut_after_the_linger() {
        let (mut client, client_side) = duplex(64);
        let (backend_side, backend) = duplex(64);
        let task = tokio::spawn(relay(
            client_side,
            backend_side,
            None,
            |_, _| {},
            std::future::pending(),
        ));
        // The backend closes; the client keeps its socket open and silent.
        drop(backend);
        let mut buf = [0u8; 1];
        let n = client
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 0, "the client sees the backend's FIN");
        tokio::time::sleep(LINGER - Duration::from_secs(1)).await;
        assert!(!task.is_finished());
        let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.end, RelayEnd::BackendClosed);
        assert_eq!(stats.reason(), "backend");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_only_without_traffic() {
        let (mut client, client_side) = duplex(64);
        let (backend_side, mut backend) = duplex(64);
        let task = tokio::spawn(relay(
            client_side,
            backend_side,
            Some(Duration::from_secs(10)),
            |_, _| {},
            std::future::pending(),
        ));
        // Traffic every 6 s keeps it alive past the 10 s limit.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client
                .write_all(b"x")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut b = [0u8; 1];
            backend
                .read_exact(&mut b)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(!task.is_finished());
        let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.end, RelayEnd::IdleTimeout);
        assert_eq!(stats.client_to_backend, 3);
    }
}
