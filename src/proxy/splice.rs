//! What one direction of the relay writes for what it reads, while frames are spliced in.
//!
//! Pure state, no I/O: the relay reads a chunk, asks [`Splice::on_read`] what to write, and
//! writes it. Normally that is the chunk itself (no copy). Once a graceful drain has asked for
//! a Close frame, the Close goes out at the next frame boundary of the stream — never inside a
//! frame, so the peer's parser stays in step — and everything the reader sends after it is
//! dropped (RFC 6455 §5.5.1: no data frames after a Close), though still followed, so the
//! peer's answering Close is seen.

use super::frames::FrameTracker;

/// One direction's frame position and pending Close.
#[derive(Debug, Default, Clone)]
pub struct Splice {
    /// The frames of the stream read so far (all of it, dropped bytes included).
    pub frames: FrameTracker,
    /// A Close frame to send at the next frame boundary.
    close: Option<Vec<u8>>,
    /// Our Close went out: the reader's bytes are followed, not forwarded.
    discard: bool,
    /// Close frames the reader had sent when ours was asked for.
    closes_before: u64,
}

/// What to write for a chunk that was read.
#[derive(Debug, PartialEq, Eq)]
pub enum Write<'a> {
    /// The chunk as it is.
    Through(&'a [u8]),
    /// These bytes instead: the end of the current frame, then our Close.
    Spliced(Vec<u8>),
    /// Nothing: our Close already went out.
    Nothing,
}

impl Splice {
    /// Asks for `close` to go out at the next frame boundary.
    pub fn send_close(&mut self, close: Vec<u8>) {
        if self.close.is_none() && !self.discard {
            self.close = Some(close);
            self.closes_before = self.frames.closes;
        }
    }

    /// The Close to write now, before reading more, when the stream already is at a boundary.
    pub fn due(&mut self) -> Option<Vec<u8>> {
        if self.close.is_some() && self.frames.at_boundary() {
            self.discard = true;
            return self.close.take();
        }
        None
    }

    /// Follows `data`, the stream's next bytes, and says what to write for them.
    pub fn on_read<'a>(&mut self, data: &'a [u8]) -> Write<'a> {
        if self.discard {
            self.frames.feed(data);
            return Write::Nothing;
        }
        let cut = match &self.close {
            Some(_) => self.frames.next_boundary(data),
            None => None,
        };
        self.frames.feed(data);
        match (cut, self.close.take()) {
            (Some(cut), Some(close)) => {
                let mut out = Vec::with_capacity(cut + close.len());
                out.extend_from_slice(&data[..cut]);
                out.extend(close);
                self.discard = true;
                Write::Spliced(out)
            }
            (_, close) => {
                self.close = close;
                Write::Through(data)
            }
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
        assert_eq!(s.due(), None);
        assert_eq!(s.on_read(&f[3..]), Write::Through(&f[3..]));
        assert!(!s.close_sent());
    }

    #[test]
    fn at_a_boundary_the_close_is_due_at_once_and_later_bytes_are_dropped() {
        let mut s = Splice::default();
        let f = frame(1, b"hi");
        assert_eq!(s.on_read(&f), Write::Through(&f[..]));
        s.send_close(CLOSE.to_vec());
        assert_eq!(s.due(), Some(CLOSE.to_vec()));
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
        assert_eq!(s.due(), None, "mid-frame");
        // The frame's end and the next frame arrive together: the end, our Close, nothing more.
        let mut rest = first[4..].to_vec();
        rest.extend_from_slice(&second);
        let mut want = first[4..].to_vec();
        want.extend_from_slice(&CLOSE);
        assert_eq!(s.on_read(&rest), Write::Spliced(want));
        assert_eq!(s.due(), None, "sent once");
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
        assert_eq!(s.due(), Some(CLOSE.to_vec()));
    }
}
