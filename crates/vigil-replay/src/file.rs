//! The capture file: its lines, and reading them back.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;
use vigil_core::ReplayHeader;

/// The `format` of the header line.
pub const FORMAT: &str = "vigil-replay/1";

/// The first line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    #[serde(flatten)]
    pub session: ReplayHeader,
}

/// Bytes that crossed the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Microseconds since the session started.
    pub t_us: u64,
    pub from_client: bool,
    pub bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct FrameLine {
    t: u64,
    d: String,
    b: String,
}

/// The last line of a capture whose session ended cleanly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    pub end: vigil_core::Timestamp,
    pub reason: String,
}

/// A capture read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    pub header: Header,
    pub frames: Vec<Frame>,
    pub trailer: Option<Trailer>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Appends the line of a frame (with its newline) to `out`.
pub(crate) fn frame_line(t_us: u64, from_client: bool, bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"t\":");
    out.extend_from_slice(t_us.to_string().as_bytes());
    out.extend_from_slice(if from_client {
        b",\"d\":\"c\",\"b\":\""
    } else {
        b",\"d\":\"s\",\"b\":\""
    });
    let start = out.len();
    let encoded_len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + encoded_len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(b"\"}\n");
}

/// Reads a capture file.
pub fn read_capture(path: &Path) -> Result<Capture, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_capture(std::io::BufReader::new(file), &path.display().to_string())
}

/// Reads a capture from any reader (`name` says where it comes from, for errors).
pub fn parse_capture(input: impl BufRead, name: &str) -> Result<Capture, ReadError> {
    let io = |source| ReadError::Io {
        path: name.to_string(),
        source,
    };
    let mut lines = input.lines();
    let first = lines
        .next()
        .ok_or(ReadError::Line {
            line: 1,
            reason: "empty file: no header".into(),
        })?
        .map_err(io)?;
    let header: Header = serde_json::from_str(&first).map_err(|e| ReadError::Line {
        line: 1,
        reason: format!("not a capture header: {e}"),
    })?;
    if header.format != FORMAT {
        return Err(ReadError::Line {
            line: 1,
            reason: format!("format {:?}, expected {FORMAT:?}", header.format),
        });
    }
    let mut frames = Vec::new();
    let mut trailer = None;
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.map_err(io)?;
        if trailer.is_some() {
            return Err(ReadError::Line {
                line: n,
                reason: "a line after the trailer".into(),
            });
        }
        if line.starts_with("{\"end\"") {
            trailer = Some(serde_json::from_str(&line).map_err(|e| ReadError::Line {
                line: n,
                reason: format!("bad trailer: {e}"),
            })?);
            continue;
        }
        let f: FrameLine = serde_json::from_str(&line).map_err(|e| ReadError::Line {
            line: n,
            reason: format!("bad frame: {e}"),
        })?;
        let from_client = match f.d.as_str() {
            "c" => true,
            "s" => false,
            other => {
                return Err(ReadError::Line {
                    line: n,
                    reason: format!("direction {other:?}, expected \"c\" or \"s\""),
                })
            }
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(f.b)
            .map_err(|e| ReadError::Line {
                line: n,
                reason: format!("bad base64: {e}"),
            })?;
        frames.push(Frame {
            t_us: f.t,
            from_client,
            bytes,
        });
    }
    Ok(Capture {
        header,
        frames,
        trailer,
    })
}
