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
//!
//! With `[replay] encrypt_to`, captures are written as age files to those recipients from their
//! first byte (`<id>.jsonl.age`, `<id>.jsonl.gz.age`): see [`seal`]. The end record then also
//! holds the SHA-256 of the file as stored, checked without the key.

mod file;
pub mod pcapng;
pub mod redact;
pub mod render;
pub mod seal;
mod writer;

pub use file::{
    find_capture, open_capture, open_capture_with, open_content, open_content_with, parse_capture,
    read_capture, read_capture_with, Capture, Frame, Header, ReadError, Trailer, TruncationLine,
    FORMAT, FORMAT_V1,
};
pub use seal::{file_sha256, is_sealed, KeyError, Keyring, Recipients, SealedError};
pub use writer::{
    CaptureBounds, CaptureWriter, HoldCheck, RotationRecorder, SessionLookup, WriterError,
    MIN_SESSION_BYTES,
};
