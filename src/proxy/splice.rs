//! What one direction of the relay writes for what it reads, while frames are spliced in.
//!
//! Pure state, no I/O: the relay reads a chunk, asks [`Splice::on_read`] what to write, and
//! writes it. Normally that is the chunk itself (no copy). wsgate's own frames — a keepalive
//! Ping, the Close of a drain — go out at the next frame boundary of the stream, never inside
//! a frame, so the peer's parser stays in step; between the fragments of a message is fine,
//! as control frames may be interleaved there (RFC 6455 §5.4). After our Close, everything the
//! reader sends is dropped (RFC 6455 §5.5.1: no data frames after a Close), though still
//! followed, so the peer's answering Close is seen. While a Ping of ours is unanswered, the
//! reader's Pong frames are held until complete (a control frame is at most 125 bytes of
//! payload, §5.5) and the one echoing our Ping is dropped; every other frame, the
//! application's pings and pongs included, passes untouched.

use super::frames::{FrameTracker, OPCODE_PONG};

/// Largest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One direction's frame position, frames to splice in and Pongs to take out.
#[derive(Debug, Default, Clone)]
pub struct Splice {
    /// The frames of the stream read so far (all of it, dropped bytes included).
    pub frames: FrameTracker,
    /// A Close frame to send at the next frame boundary.
    close: Option<Box<[u8]>>,
    /// A Ping frame to send at the next frame boundary.
    ping: Option<Box<[u8]>>,
    /// Our Close went out: the reader's bytes are followed, not forwarded.
    discard: bool,
    /// Close frames the reader had sent when ours was asked for.
    closes_before: u64,
    /// Pongs of ours the reader still owes, and their payload.
    pongs: Option<Pongs>,
    /// A Pong frame being collected (complete frames only are judged).
    held: Vec<u8>,
    holding: bool,
}

/// The Pongs that answer our Pings: how many are outstanding and what they carry.
#[derive(Debug, Clone, Copy)]
struct Pongs {
    owed: u8,
    payload: [u8; 8],
}

/// What to write for a chunk that was read.
#[derive(Debug, PartialEq, Eq)]
pub enum Write<'a> {
    /// The chunk as it is.
    Through(&'a [u8]),
    /// These bytes instead: the chunk with our frames spliced in or a Pong of ours taken out.
    Spliced(Vec<u8>),
    /// Nothing: our Close already went out, or the chunk was only our Pong.
    Nothing,
}

impl Splice {
    /// Asks for `close` to go out at the next frame boundary; a Ping not yet sent is dropped.
    pub fn send_close(&mut self, close: Vec<u8>) {
        if self.close.is_none() && !self.discard {
            self.close = Some(close.into_boxed_slice());
            self.ping = None;
            self.closes_before = self.frames.closes;
        }
    }

    /// Asks for `ping` to go out at the next frame boundary (unless closing).
    pub fn send_ping(&mut self, ping: Vec<u8>) {
        if self.close.is_none() && !self.discard {
            self.ping = Some(ping.into_boxed_slice());
        }
    }

    /// Expects one more Pong carrying `payload` from the reader: it will not be forwarded.
    pub fn expect_pong(&mut self, payload: [u8; 8]) {
        let owed = match self.pongs {
            Some(p) if p.payload == payload => p.owed.saturating_add(1),
            _ => 1,
        };
        self.pongs = Some(Pongs { owed, payload });
    }

    /// Whether a Ping asked for has not gone out yet.
    pub fn ping_pending(&self) -> bool {
        self.ping.is_some()
    }

    /// The frame to write now, before reading more, when the stream already is at a boundary.
    pub fn due(&mut self) -> Option<Box<[u8]>> {
        if !self.frames.at_boundary() || self.holding {
            return None;
        }
        if let Some(close) = self.close.take() {
            self.discard = true;
            return Some(close);
        }
        self.ping.take()
    }

    /// Follows `data`, the stream's next bytes, and says what to write for them.
    pub fn on_read<'a>(&mut self, data: &'a [u8]) -> Write<'a> {
        if self.discard {
            self.frames.feed(data);
            return Write::Nothing;
        }
        if self.close.is_none() && self.ping.is_none() && self.pongs.is_none() && !self.holding {
            self.frames.feed(data);
            return Write::Through(data);
        }
        let mut out = Rewrite::new(data);
        if self.holding {
            // A Pong begun in an earlier chunk goes on here.
            out.hold_from(0);
        }
        let mut pos = 0;
        loop {
            if self.frames.at_boundary() && !self.holding {
                if let Some(close) = self.close.take() {
                    out.insert(pos, &close);
                    self.discard = true;
                    self.frames.feed(&data[pos..]);
                    out.drop_from(pos);
                    return out.finish(false);
                }
                if let Some(ping) = self.ping.take() {
                    out.insert(pos, &ping);
                }
            }
            if pos == data.len() {
                return out.finish(self.holding);
            }
            let starts_pong = self.frames.at_boundary()
                && !self.holding
                && self.pongs.is_some()
                && data[pos] & 0x0f == OPCODE_PONG;
            if starts_pong {
                self.holding = true;
                out.hold_from(pos);
            }
            // A held frame's header is taken alone first, so a "Pong" longer than any control
            // frame is let go before a byte of its payload is held.
            let n = if self.holding && self.frames.remaining() == 0 {
                self.frames.advance_header(&data[pos..])
            } else {
                self.frames.advance(&data[pos..])
            };
            if self.holding {
                self.held.extend_from_slice(&data[pos..pos + n]);
            }
            pos += n;
            if self.holding && (self.frames.at_boundary() || self.oversized_pong()) {
                self.judge_held(&mut out, pos);
            }
        }
    }

    /// A frame with a Pong opcode but more payload than a control frame may carry: not ours,
    /// and not to be buffered.
    fn oversized_pong(&self) -> bool {
        self.frames.remaining() > MAX_CONTROL_PAYLOAD
    }

    /// The held Pong is complete (or too long to be ours): drop it if it answers our Ping,
    /// else pass it on; `pos` is where the chunk continues.
    fn judge_held(&mut self, out: &mut Rewrite<'_>, pos: usize) {
        self.holding = false;
        let held = std::mem::take(&mut self.held);
        let ours =
            self.frames.at_boundary() && self.pongs.is_some_and(|p| echoes(&held, &p.payload));
        if ours {
            self.pongs = match self.pongs {
                Some(p) if p.owed > 1 => Some(Pongs {
                    owed: p.owed - 1,
                    payload: p.payload,
                }),
                _ => None,
            };
            out.release(pos, None);
        } else {
            out.release(pos, Some(&held));
        }
    }

    /// Whether the Close asked for has been handed out to be written.
    pub fn close_sent(&self) -> bool {
        self.discard
    }

    /// Whether the reader sent a Close after ours was asked for (its answer).
    pub fn answered(&self) -> bool {
        self.frames.closes > self.closes_before
    }

    /// Whether the stream is at a frame boundary with nothing held back: a frame of ours
    /// written after what was read lands between two frames.
    pub fn at_boundary(&self) -> bool {
        self.frames.at_boundary() && !self.holding
    }
}

/// Whether `frame` (one whole frame) is a final, unfragmented Pong echoing `payload`, masked
/// or not (RFC 6455 §5.3: the client masks, the server does not).
fn echoes(frame: &[u8], payload: &[u8; 8]) -> bool {
    let [first, second, rest @ ..] = frame else {
        return false;
    };
    if *first != 0x80 | OPCODE_PONG || second & 0x7f != 8 {
        return false;
    }
    match (second & 0x80 != 0, rest) {
        (false, body) => body == payload,
        (true, [k0, k1, k2, k3, body @ ..]) if body.len() == 8 => {
            let key = [*k0, *k1, *k2, *k3];
            body.iter()
                .zip(payload)
                .enumerate()
                .all(|(i, (b, p))| b ^ key[i % 4] == *p)
        }
        _ => false,
    }
}

/// The output for one chunk, built only once it differs from the chunk: until then it is
/// the chunk's prefix read so far, without a copy.
struct Rewrite<'a> {
    data: &'a [u8],
    /// `None` while the output is `data[..copied]` unchanged.
    out: Option<Vec<u8>>,
    /// Bytes of `data` accounted for in `out` (copied, held or dropped).
    copied: usize,
}

impl<'a> Rewrite<'a> {
    fn new(data: &'a [u8]) -> Self {
        Rewrite {
            data,
            out: None,
            copied: 0,
        }
    }

    /// The output so far with `data[..pos]` copied in.
    fn upto(&mut self, pos: usize) -> &mut Vec<u8> {
        let out = self.out.get_or_insert_with(Vec::new);
        out.extend_from_slice(&self.data[self.copied..pos]);
        self.copied = pos;
        out
    }

    /// Our frame goes out at `pos`.
    fn insert(&mut self, pos: usize, frame: &[u8]) {
        self.upto(pos).extend_from_slice(frame);
    }

    /// Bytes from `pos` on are held back (a Pong under judgement).
    fn hold_from(&mut self, pos: usize) {
        self.upto(pos);
    }

    /// The held bytes end at `pos`: `keep` is what to write for them.
    fn release(&mut self, pos: usize, keep: Option<&[u8]>) {
        let out = self.out.get_or_insert_with(Vec::new);
        if let Some(bytes) = keep {
            out.extend_from_slice(bytes);
        }
        self.copied = pos;
    }

    /// Nothing from `pos` on is written.
    fn drop_from(&mut self, pos: usize) {
        self.upto(pos);
        self.copied = self.data.len();
    }

    /// What to write; `holding`: the bytes from the last hold on are kept back.
    fn finish(mut self, holding: bool) -> Write<'a> {
        match self.out.take() {
            None => Write::Through(self.data),
            Some(mut out) => {
                if !holding {
                    out.extend_from_slice(&self.data[self.copied..]);
                }
                if out.is_empty() {
                    Write::Nothing
                } else {
                    Write::Spliced(out)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked frame with `payload`.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode, payload.len() as u8];
        f.extend_from_slice(payload);
        f
    }

    const CLOSE: [u8; 4] = [0x88, 0x02, 0x03, 0xe9];

    #[test]
    fn without_a_close_bytes_go_through_as_they_are() {
        let mut s = Splice::default();
        let f = frame(1, b"hello");
        assert_eq!(s.on_read(&f[..3]), Write::Through(&f[..3]));
        assert_eq!(s.due().as_deref(), None);
        assert_eq!(s.on_read(&f[3..]), Write::Through(&f[3..]));
        assert!(!s.close_sent());
    }

    #[test]
    fn at_a_boundary_the_close_is_due_at_once_and_later_bytes_are_dropped() {
        let mut s = Splice::default();
        let f = frame(1, b"hi");
        assert_eq!(s.on_read(&f), Write::Through(&f[..]));
        s.send_close(CLOSE.to_vec());
        assert_eq!(s.due().as_deref(), Some(&CLOSE[..]));
        assert!(s.close_sent());
        assert_eq!(s.on_read(&frame(1, b"late")), Write::Nothing);
        assert!(!s.answered());
        assert_eq!(s.on_read(&frame(8, &[0x03, 0xe8])), Write::Nothing);
        assert!(s.answered());
    }

    #[test]
    fn inside_a_frame_the_close_waits_for_its_end() {
        let mut s = Splice::default();
        let first = frame(2, b"abcdef");
        let second = frame(1, b"next");
        assert_eq!(s.on_read(&first[..4]), Write::Through(&first[..4]));
        s.send_close(CLOSE.to_vec());
        assert_eq!(s.due().as_deref(), None, "mid-frame");
        // The frame's end and the next frame arrive together: the end, our Close, nothing more.
        let mut rest = first[4..].to_vec();
        rest.extend_from_slice(&second);
        let mut want = first[4..].to_vec();
        want.extend_from_slice(&CLOSE);
        assert_eq!(s.on_read(&rest), Write::Spliced(want));
        assert_eq!(s.due().as_deref(), None, "sent once");
    }

    #[test]
    fn a_frame_that_does_not_end_in_the_chunk_keeps_the_close_waiting() {
        let mut s = Splice::default();
        let f = frame(2, &[7; 100]);
        assert_eq!(s.on_read(&f[..10]), Write::Through(&f[..10]));
        s.send_close(CLOSE.to_vec());
        assert_eq!(s.on_read(&f[10..50]), Write::Through(&f[10..50]));
        assert!(!s.close_sent());
        let mut want = f[50..].to_vec();
        want.extend_from_slice(&CLOSE);
        assert_eq!(s.on_read(&f[50..]), Write::Spliced(want));
    }

    #[test]
    fn a_close_the_peer_sent_before_ours_is_no_answer() {
        let mut s = Splice::default();
        assert_eq!(
            s.on_read(&frame(8, &[0x03, 0xe8])),
            Write::Through(&frame(8, &[0x03, 0xe8])[..])
        );
        s.send_close(CLOSE.to_vec());
        assert!(!s.answered());
        // Asking twice keeps the first request.
        s.send_close(vec![0]);
        assert_eq!(s.due().as_deref(), Some(&CLOSE[..]));
    }

    /// A ping of ours, unmasked (toward a client) or masked (toward a backend).
    fn our_ping(masked: bool) -> Vec<u8> {
        let mut f = vec![0x89];
        if masked {
            f.push(0x88);
            f.extend_from_slice(&KEY);
            f.extend(TOKEN.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
        } else {
            f.push(0x08);
            f.extend_from_slice(&TOKEN);
        }
        f
    }

    /// A Pong echoing `payload`, masked as a client sends it or not.
    fn pong(payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![0x8a];
        if masked {
            f.push(0x80 | payload.len() as u8);
            f.extend_from_slice(&KEY);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
        } else {
            f.push(payload.len() as u8);
            f.extend_from_slice(payload);
        }
        f
    }

    const TOKEN: [u8; 8] = *b"wsgate!!";
    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// Appends what `write` says to write.
    fn emit(out: &mut Vec<u8>, write: Write<'_>) {
        match write {
            Write::Through(d) => out.extend_from_slice(d),
            Write::Spliced(d) => out.extend(d),
            Write::Nothing => {}
        }
    }

    /// What the writer gets for `chunks` read in turn (due frames included).
    fn written(s: &mut Splice, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            if let Some(f) = s.due() {
                out.extend_from_slice(&f);
            }
            emit(&mut out, s.on_read(chunk));
        }
        if let Some(f) = s.due() {
            out.extend_from_slice(&f);
        }
        out
    }

    #[test]
    fn a_ping_goes_between_the_fragments_of_a_message_never_inside_one() {
        // A text message in two fragments (FIN clear, then a continuation with FIN set).
        let first = [0x01, 3, b'a', b'b', b'c'];
        let cont = [0x80, 2, b'd', b'e'];
        let mut s = Splice::default();
        assert_eq!(s.on_read(&first[..2]), Write::Through(&first[..2]));
        s.send_ping(our_ping(false));
        assert_eq!(s.due().as_deref(), None, "mid-frame");
        // The first fragment ends in this chunk and the continuation follows: the Ping goes
        // after the fragment, before the continuation.
        let mut rest = first[2..].to_vec();
        rest.extend_from_slice(&cont);
        let mut want = first[2..].to_vec();
        want.extend(our_ping(false));
        want.extend_from_slice(&cont);
        assert_eq!(s.on_read(&rest), Write::Spliced(want));
        assert!(!s.ping_pending());
        // Nothing is dropped: later frames pass as they are.
        let next = frame(1, b"more");
        assert_eq!(s.on_read(&next), Write::Through(&next[..]));
    }

    #[test]
    fn a_ping_at_a_boundary_is_due_at_once() {
        let mut s = Splice::default();
        s.send_ping(our_ping(true));
        assert_eq!(s.due().as_deref(), Some(&our_ping(true)[..]));
        assert_eq!(s.due().as_deref(), None);
    }

    #[test]
    fn a_ping_waits_for_a_long_frame_to_end_across_chunks() {
        let big = frame(2, &[9; 100]);
        let mut s = Splice::default();
        s.on_read(&big[..1]);
        s.send_ping(our_ping(false));
        let out = written(&mut s, &[&big[1..40], &big[40..99], &big[99..]]);
        let mut want = big[1..].to_vec();
        want.extend(our_ping(false));
        assert_eq!(out, want);
    }

    #[test]
    fn our_pong_is_taken_out_and_everything_else_passes() {
        for masked in [true, false] {
            let mut s = Splice::default();
            s.expect_pong(TOKEN);
            let app_pong = pong(b"app", masked);
            let app_ping = vec![0x89, 0x01, b'x'];
            let text = frame(1, b"hi");
            let ours = pong(&TOKEN, masked);
            let mut stream = text.clone();
            stream.extend_from_slice(&app_pong);
            stream.extend_from_slice(&ours);
            stream.extend_from_slice(&app_ping);
            let mut want = text.clone();
            want.extend_from_slice(&app_pong);
            want.extend_from_slice(&app_ping);
            assert_eq!(written(&mut s, &[&stream]), want, "masked {masked}");
            // Answered: later chunks take the fast path again, even another of our Pongs.
            assert!(s.pongs.is_none());
            assert_eq!(s.on_read(&ours), Write::Through(&ours[..]));
        }
    }

    #[test]
    fn a_pong_split_over_chunks_is_held_until_whole() {
        let ours = pong(&TOKEN, true);
        let mut s = Splice::default();
        s.expect_pong(TOKEN);
        let text = frame(1, b"abc");
        let mut first = text.clone();
        first.extend_from_slice(&ours[..3]);
        assert_eq!(s.on_read(&first), Write::Spliced(text.clone()));
        assert_eq!(s.on_read(&ours[3..7]), Write::Nothing);
        let mut last = ours[7..].to_vec();
        last.extend_from_slice(&text);
        assert_eq!(s.on_read(&last), Write::Spliced(text));
        assert!(s.pongs.is_none());
    }

    #[test]
    fn a_pong_that_is_not_ours_is_passed_on_whole_after_being_held() {
        let other = pong(b"wsgate!?", true);
        let mut s = Splice::default();
        s.expect_pong(TOKEN);
        let out = written(&mut s, &[&other[..5], &other[5..]]);
        assert_eq!(out, other);
        assert!(s.pongs.is_some(), "still owed");
        // A "Pong" longer than any control frame is not buffered: it passes as it arrives,
        // let go as soon as its header says how long it is.
        let mut long = vec![0x8a, 126, 0x01, 0x00];
        long.extend_from_slice(&[5; 256]);
        assert_eq!(s.on_read(&long[..10]), Write::Spliced(long[..10].to_vec()));
        assert!(
            !s.holding && s.held.capacity() <= 14,
            "held {}",
            s.held.capacity()
        );
        assert_eq!(written(&mut s, &[&long[10..]]), &long[10..]);
    }

    #[test]
    fn two_pings_owe_two_pongs() {
        let ours = pong(&TOKEN, false);
        let mut s = Splice::default();
        s.expect_pong(TOKEN);
        s.expect_pong(TOKEN);
        let mut both = ours.clone();
        both.extend_from_slice(&ours);
        assert_eq!(s.on_read(&both), Write::Nothing);
        assert!(s.pongs.is_none());
    }

    #[test]
    fn a_close_drops_an_unsent_ping_and_pings_are_not_sent_after_it() {
        let mut s = Splice::default();
        s.on_read(&frame(1, b"x")[..1]);
        s.send_ping(our_ping(false));
        s.send_close(CLOSE.to_vec());
        assert!(!s.ping_pending());
        let mut want = frame(1, b"x")[1..].to_vec();
        want.extend_from_slice(&CLOSE);
        assert_eq!(s.on_read(&frame(1, b"x")[1..]), Write::Spliced(want));
        s.send_ping(our_ping(false));
        assert_eq!(s.due().as_deref(), None);
    }

    /// A frame for the property test: (kind, payload length, masked).
    fn any_frame(kind: u8, len: usize, masked: bool) -> Vec<u8> {
        match kind {
            // Our Pong, as a client (masked) or a backend (unmasked) answers.
            0 => pong(&TOKEN, masked),
            // The application's Pong, Ping, text, binary (possibly long).
            1 => pong(&vec![b'p'; len % 126], masked),
            2 => {
                let mut f = pong(&vec![b'i'; len % 126], masked);
                f[0] = 0x89;
                f
            }
            3 => frame(1, &vec![b't'; len % 126]),
            _ => {
                let mut f = vec![0x82, 126];
                f.extend_from_slice(&(len as u16).to_be_bytes());
                f.extend(std::iter::repeat_n(0x8a, len));
                f
            }
        }
    }

    proptest::proptest! {
        /// However the stream is cut and whatever it holds, the writer gets exactly the
        /// stream without the Pongs we are owed (the first `owed` of ours), in order, and a Ping
        /// asked for lands at a frame boundary.
        #[test]
        fn only_owed_pongs_are_taken_out_and_pings_land_between_frames(
            frames in proptest::collection::vec((0u8..5, 0usize..600, proptest::bool::ANY), 1..12),
            cuts in proptest::collection::vec(1usize..300, 1..20),
            owed in 0u8..3,
            ping_at in 0usize..2000,
        ) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            // Frame boundaries of what the writer should get.
            let mut boundaries = vec![0];
            let mut left = owed;
            for (kind, len, masked) in &frames {
                let f = any_frame(*kind, *len, *masked);
                stream.extend_from_slice(&f);
                if *kind == 0 && left > 0 {
                    left -= 1;
                } else {
                    want.extend_from_slice(&f);
                    boundaries.push(want.len());
                }
            }
            let mut s = Splice::default();
            for _ in 0..owed {
                s.expect_pong(TOKEN);
            }
            let ping = our_ping(false);
            let ping_at = ping_at.min(stream.len());
            let mut out = Vec::new();
            let mut off = 0;
            let mut i = 0;
            let mut asked = false;
            while off < stream.len() || !asked {
                if !asked && off >= ping_at {
                    s.send_ping(ping.clone());
                    asked = true;
                }
                if let Some(f) = s.due() {
                    out.extend_from_slice(&f);
                }
                if off == stream.len() {
                    break;
                }
                let n = cuts[i % cuts.len()].min(stream.len() - off);
                i += 1;
                emit(&mut out, s.on_read(&stream[off..off + n]));
                off += n;
            }
            if let Some(f) = s.due() {
                out.extend_from_slice(&f);
            }
            // The Ping went out exactly once; without it, the output is the filtered stream.
            let at = out
                .windows(ping.len())
                .position(|w| w == &ping[..])
                .ok_or_else(|| proptest::test_runner::TestCaseError::fail("no ping"))?;
            let mut without = out[..at].to_vec();
            without.extend_from_slice(&out[at + ping.len()..]);
            proptest::prop_assert_eq!(&without, &want);
            proptest::prop_assert!(boundaries.contains(&at), "ping inside a frame at {}", at);
            proptest::prop_assert!(s.at_boundary());
        }
    }

    /// The frames of `stream` (complete ones) and the incomplete tail, by a tracker fed one
    /// byte at a time: an oracle independent of how `on_read` walks chunks.
    fn cut_into_frames(stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
        let mut t = FrameTracker::default();
        let mut frames = Vec::new();
        let mut start = 0;
        for i in 0..stream.len() {
            t.feed(&stream[i..=i]);
            if t.at_boundary() {
                frames.push(&stream[start..=i]);
                start = i + 1;
            }
        }
        (frames, &stream[start..])
    }

    proptest::proptest! {
        /// Any bytes at all, cut anywhere, with Pongs owed: no panic, and the writer gets the
        /// complete frames minus the owed Pongs of ours, then at most a prefix of the
        /// unfinished last frame (a Pong of ours being held is not written yet).
        #[test]
        fn arbitrary_bytes_never_confuse_the_pong_filter(
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            ours_at in proptest::collection::vec((0usize..64, proptest::bool::ANY), 0..4),
            cuts in proptest::collection::vec(1usize..40, 1..10),
            owed in 0u8..3,
        ) {
            // Arbitrary bytes with some real Pongs of ours spliced in.
            let mut stream = prefix;
            for (at, masked) in &ours_at {
                let at = (*at).min(stream.len());
                let pong = pong(&TOKEN, *masked);
                stream.splice(at..at, pong);
            }
            let mut s = Splice::default();
            for _ in 0..owed {
                s.expect_pong(TOKEN);
            }
            let mut out = Vec::new();
            let (mut off, mut i) = (0, 0);
            while off < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - off);
                i += 1;
                emit(&mut out, s.on_read(&stream[off..off + n]));
                off += n;
            }
            let (frames, tail) = cut_into_frames(&stream);
            let mut want = Vec::new();
            let mut left = owed;
            for f in frames {
                if left > 0 && echoes(f, &TOKEN) {
                    left -= 1;
                } else {
                    want.extend_from_slice(f);
                }
            }
            proptest::prop_assert!(out.starts_with(&want), "complete frames differ");
            proptest::prop_assert!(tail.starts_with(&out[want.len()..]), "tail differs");
        }
    }
}
