//! The WebSocket frame tracker, on any byte stream cut into any chunks (the first byte of the
//! input picks the cut points): the frames and Close frames it counts do not depend on how the
//! stream was cut, and `next_boundary` names exactly the bytes after which the tracker is
//! between two frames — the property the relay's drain relies on to splice a Close in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::proxy::frames::FrameTracker;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut whole = FrameTracker::default();
    whole.feed(stream);

    let mut cut = FrameTracker::default();
    let step = usize::from(seed % 17) + 1;
    let mut rest = stream;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        if let Some(b) = cut.next_boundary(chunk) {
            let mut probe = cut.clone();
            probe.feed(&chunk[..b]);
            assert!(probe.at_boundary(), "next_boundary {b} is no boundary");
        }
        cut.feed(chunk);
        rest = tail;
    }
    assert_eq!(
        (cut.frames, cut.closes, cut.saw_close, cut.at_boundary()),
        (whole.frames, whole.closes, whole.saw_close, whole.at_boundary())
    );
});
