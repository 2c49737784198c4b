//! The client → gateway stream after login: framing, then every message decoder. Input is a
//! raw byte stream as a hostile client would send it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_pg::codec::next_frame;
use vigil_pg::messages::decode_frontend;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A small limit so that the oversized-message path is exercised too.
    while let Ok(Some(frame)) = next_frame(rest, 4096) {
        let _ = decode_frontend(frame.tag, frame.body);
        assert!(frame.len >= 5 && frame.len <= rest.len());
        rest = &rest[frame.len..];
    }
});
