//! WebSocket frame boundaries (RFC 6455 §5.2), tracked from the byte stream the relay copies.
//!
//! Only frame headers are parsed; payloads are skipped by length, never buffered or unmasked.
//! This tells the relay which side sent the first Close frame (so a close can be attributed
//! correctly even though, per RFC 6455 §7.1.1, the server closes TCP first) and where frame
//! boundaries are, so a graceful drain can splice in its Close without cutting a frame in half.

/// Opcode of a Close frame.
const OPCODE_CLOSE: u8 = 0x8;
/// Opcode of a Pong frame.
pub const OPCODE_PONG: u8 = 0xA;

/// Follows frame headers across arbitrary chunk boundaries.
#[derive(Debug, Default, Clone)]
pub struct FrameTracker {
    header: [u8; 14],
    have: usize,
    /// Payload bytes left in the current frame; 0 means the next byte starts a header.
    remaining: u64,
    /// Frames whose header has been seen completely.
    pub frames: u64,
    /// Whether a Close frame was seen.
    pub saw_close: bool,
    /// How many Close frames were seen.
    pub closes: u64,
}

impl FrameTracker {
    /// Whether the stream is between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// How many bytes of `data` (the stream's next bytes) lie before the next frame boundary:
    /// 0 when already at one, `None` when the current frame does not end within `data`.
    pub fn next_boundary(&self, data: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let mut t = self.clone();
        let n = t.advance(data);
        t.at_boundary().then_some(n)
    }

    /// Consumes `data` up to the end of the frame under way (the next frame when at a
    /// boundary), or all of it when that frame does not end within it; returns how many bytes.
    pub fn advance(&mut self, data: &[u8]) -> usize {
        let mut off = 0;
        while off < data.len() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .map_or(data.len() - off, |r| r.min(data.len() - off));
                self.remaining -= skip as u64;
                off += skip;
            } else {
                self.feed(&data[off..off + 1]);
                off += 1;
            }
            if self.at_boundary() {
                break;
            }
        }
        off
    }

    /// Consumes only header bytes: those of the frame under way, or of the next frame when at
    /// a boundary, stopping once the header is complete; returns how many bytes.
    pub fn advance_header(&mut self, data: &[u8]) -> usize {
        let mut off = 0;
        while off < data.len() && self.remaining == 0 {
            self.feed(&data[off..off + 1]);
            off += 1;
            if self.have == 0 {
                break;
            }
        }
        off
    }

    /// Payload bytes left in the frame under way.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Consumes the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip =
                    usize::try_from(self.remaining).map_or(data.len(), |r| r.min(data.len()));
                self.remaining -= skip as u64;
                data = &data[skip..];
                continue;
            }
            // Collect header bytes until the whole header is in.
            let need = header_len(&self.header[..self.have]);
            let take = (need - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == need && need == header_len(&self.header[..self.have]) {
                self.finish_header();
            }
        }
    }

    fn finish_header(&mut self) {
        let h = &self.header[..self.have];
        let opcode = h[0] & 0x0f;
        let len7 = h[1] & 0x7f;
        let payload = match len7 {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        if opcode == OPCODE_CLOSE {
            self.saw_close = true;
            self.closes += 1;
        }
        self.frames += 1;
        self.remaining = payload;
        self.have = 0;
    }
}

/// Header length implied by the bytes seen so far (2 until the second byte is known).
fn header_len(seen: &[u8]) -> usize {
    let Some(&second) = seen.get(1) else {
        return 2;
    };
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes a frame the way a peer would (mask bytes are arbitrary).
    fn frame(opcode: u8, payload_len: usize, masked: bool) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload_len {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        // Payload bytes that look like headers, to catch a tracker that loses its place.
        out.extend(std::iter::repeat_n(0x88u8, payload_len));
        out
    }

    #[test]
    fn counts_frames_and_sees_close() {
        let mut stream = Vec::new();
        stream.extend(frame(0x1, 5, true));
        stream.extend(frame(0x2, 300, true));
        stream.extend(frame(0x2, 70_000, false));
        let mut t = FrameTracker::default();
        t.feed(&stream);
        assert_eq!((t.frames, t.saw_close, t.at_boundary()), (3, false, true));
        t.feed(&frame(OPCODE_CLOSE, 2, true)[..3]);
        assert!(!t.at_boundary());
        t.feed(&frame(OPCODE_CLOSE, 2, true)[3..]);
        assert_eq!((t.frames, t.saw_close, t.at_boundary()), (4, true, true));
    }

    #[test]
    fn finds_the_next_boundary() {
        let mut stream = frame(0x2, 300, true);
        let first_len = stream.len();
        stream.extend(frame(0x1, 0, false));
        let second_end = stream.len();
        stream.extend(frame(0x1, 10, true));
        let mut t = FrameTracker::default();
        assert_eq!(t.next_boundary(&stream), Some(0));
        t.feed(&stream[..5]);
        assert_eq!(t.next_boundary(&stream[5..]), Some(first_len - 5));
        t.feed(&stream[5..first_len + 1]);
        assert_eq!(
            t.next_boundary(&stream[first_len + 1..]),
            Some(second_end - first_len - 1)
        );
        assert_eq!(t.next_boundary(&stream[first_len + 1..first_len + 1]), None);
    }

    #[test]
    fn advance_stops_at_each_frame_end() {
        let mut stream = frame(0x2, 3, true);
        let first = stream.len();
        stream.extend(frame(0x1, 0, false));
        let second = stream.len();
        stream.extend(frame(0x2, 200, false));
        let mut t = FrameTracker::default();
        assert_eq!(t.advance(&stream), first);
        assert_eq!(t.advance(&stream[first..]), second - first);
        assert_eq!(t.advance(&stream[second..second + 5]), 5);
        assert!(!t.at_boundary());
        assert_eq!(t.remaining(), 199);
        assert_eq!(t.advance(&stream[second + 5..]), stream.len() - second - 5);
        assert!(t.at_boundary());
        // Header bytes alone: the 4-byte header of the 200-byte frame, not its payload.
        let mut h = FrameTracker::default();
        assert_eq!(h.advance_header(&stream[second..second + 3]), 3);
        assert_eq!(h.advance_header(&stream[second + 3..]), 1);
        assert_eq!(h.remaining(), 200);
        assert_eq!(h.advance_header(&stream[second + 4..]), 0, "in the payload");
    }

    proptest! {
        #[test]
        fn boundaries_agree_with_feeding(
            lens in proptest::collection::vec(0usize..300, 1..5),
            start in 0usize..400,
        ) {
            let mut stream = Vec::new();
            for len in &lens {
                stream.extend(frame(0x2, *len, true));
            }
            let start = start.min(stream.len());
            let mut t = FrameTracker::default();
            t.feed(&stream[..start]);
            let rest = &stream[start..];
            if let Some(cut) = t.next_boundary(rest) {
                let mut u = t.clone();
                u.feed(&rest[..cut]);
                prop_assert!(u.at_boundary());
                // No earlier boundary.
                for shorter in 0..cut {
                    let mut v = t.clone();
                    v.feed(&rest[..shorter]);
                    prop_assert!(!v.at_boundary() || shorter == 0 && t.at_boundary());
                }
            } else {
                prop_assert!(!t.at_boundary());
            }
        }

        #[test]
        fn chunking_does_not_matter(
            frames in proptest::collection::vec((0u8..3, 0usize..70_000, any::<bool>()), 1..6),
            cuts in proptest::collection::vec(1usize..5000, 1..40),
        ) {
            let opcodes = [0x1, 0x2, OPCODE_CLOSE];
            let mut stream = Vec::new();
            for (op, len, masked) in &frames {
                stream.extend(frame(opcodes[*op as usize], *len, *masked));
            }
            let mut whole = FrameTracker::default();
            whole.feed(&stream);
            let mut pieces = FrameTracker::default();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                pieces.feed(&rest[..n]);
                rest = &rest[n..];
                i += 1;
            }
            prop_assert_eq!(whole.frames, frames.len() as u64);
            prop_assert_eq!(pieces.frames, whole.frames);
            prop_assert_eq!(pieces.saw_close, frames.iter().any(|f| f.0 == 2));
            prop_assert!(pieces.at_boundary());
        }
    }
}
