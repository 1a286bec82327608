//! The drain's Close splicing on any byte stream cut into any chunks, with the drain asked for
//! between any two chunks (the first bytes of the input pick the cuts and the moment): what is
//! written is exactly the stream up to the first frame boundary at or after that moment, then
//! our Close, then nothing — so no frame is ever cut in half and nothing follows the Close —
//! and the peer's answer is seen exactly when a Close frame begins after that moment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::proxy::frames::FrameTracker;
use wsgate::proxy::splice::{Splice, Write};

/// Close 1001, unmasked (to a client) or masked (to a server).
const CLOSES: [&[u8]; 2] = [
    &[0x88, 0x02, 0x03, 0xe9],
    &[0x88, 0x82, 1, 2, 3, 4, 0x02, 0xeb],
];

fuzz_target!(|data: &[u8]| {
    let [step, when, rest @ ..] = data else {
        return;
    };
    let stream = rest;
    let close = CLOSES[usize::from(*when & 1)];
    let step = usize::from(step % 31) + 1;
    // The drain is asked for before the chunk with this index (past the end: never).
    let ask_at = usize::from(*when >> 1);

    // Where the stream is between frames, and how many Close frames have begun after each
    // byte, from a tracker fed one byte at a time.
    let mut t = FrameTracker::default();
    let mut boundaries = vec![0usize];
    let mut closes = vec![0u64];
    for (i, b) in stream.iter().enumerate() {
        t.feed(std::slice::from_ref(b));
        closes.push(t.closes);
        if t.at_boundary() {
            boundaries.push(i + 1);
        }
    }

    let mut s = Splice::default();
    let mut out = Vec::new();
    let mut asked = None;
    let mut off = 0;
    for (i, chunk) in stream.chunks(step).enumerate() {
        if i == ask_at {
            s.send_close(close.to_vec());
            asked = Some(off);
        }
        if let Some(c) = s.due() {
            out.extend_from_slice(&c);
        }
        match s.on_read(chunk) {
            Write::Through(d) => {
                assert_eq!(d, chunk);
                out.extend_from_slice(d);
            }
            Write::Spliced(d) => out.extend(d),
            Write::Nothing => {}
        }
        off += chunk.len();
    }
    if asked.is_none() && ask_at == stream.len().div_ceil(step) {
        s.send_close(close.to_vec());
        asked = Some(off);
    }
    if let Some(c) = s.due() {
        out.extend_from_slice(&c);
    }

    let Some(asked) = asked else {
        assert!(!s.close_sent());
        assert_eq!(out, stream);
        return;
    };
    match boundaries.iter().find(|at| **at >= asked) {
        Some(&cut) => {
            let mut want = stream[..cut].to_vec();
            want.extend_from_slice(close);
            assert_eq!(out, want, "asked after {asked} bytes");
            assert!(s.close_sent());
            assert_eq!(s.answered(), t.closes > closes[asked]);
        }
        None => {
            // The stream ended inside a frame: the Close still waits; all was forwarded.
            assert!(!s.close_sent());
            assert_eq!(out, stream);
        }
    }
    assert_eq!(s.frames.closes, t.closes);
});
