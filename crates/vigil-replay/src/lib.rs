//! Session replay captures.
//!
//! A capture is one JSON-lines file per session, `<dir>/<session id>.jsonl`:
//!
//! ```text
//! {"format":"vigil-replay/1","session_id":"…","identity":"etl","identity_kind":"machine",…}
//! {"t":1520,"d":"c","b":"UQAAABFTRUxFQ1QgMTsA"}
//! {"t":1893,"d":"s","b":"VAAAACEAAT9jb2x1bW4/…"}
//! {"end":"2026-11-28T14:02:03.123456Z","reason":"client_disconnected"}
//! ```
//!
//! - the first line is the [`Header`] (the session, who, where, when);
//! - each further line is a [`Frame`]: `t` microseconds since the session started, `d` the
//!   direction (`c`: the client sent it, `s`: the client was sent it), `b` the bytes as they
//!   crossed the gateway, base64 (PostgreSQL v3 protocol messages, from the end of the
//!   authentication on; what the client received is what it received *after masking*);
//! - the last line, when the session ended cleanly, is the [`Trailer`].
//!
//! The SHA-256 of the whole file is recorded in the session's `SessionEnded` record, which ties
//! the capture to the tamper-evident audit trail.

mod file;
pub mod pcapng;
pub mod redact;
pub mod render;
mod writer;

pub use file::{
    find_capture, open_capture, open_content, parse_capture, read_capture, Capture, Frame, Header,
    ReadError, Trailer, TruncationLine, FORMAT, FORMAT_V1,
};
pub use writer::{
    CaptureBounds, CaptureWriter, HoldCheck, RotationRecorder, WriterError, MIN_SESSION_BYTES,
};
