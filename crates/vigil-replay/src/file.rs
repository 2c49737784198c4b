//! The capture file: its lines, and reading them back.

use crate::seal::{is_sealed, open_sealed, sealed_path, Keyring};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use vigil_core::ReplayHeader;

/// The `format` of the header line written now.
pub const FORMAT: &str = "vigil-replay/2";
/// The format of captures written before client literals were redacted (still read).
pub const FORMAT_V1: &str = "vigil-replay/1";

/// The first line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    #[serde(flatten)]
    pub session: ReplayHeader,
    /// `redacted`: what the client sent is kept without its literals and values (see
    /// `redact`). Absent in `vigil-replay/1` captures, which kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_literals: Option<String>,
    /// The cap this capture was written under (bytes of the file, uncompressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_bytes: Option<u64>,
}

impl Header {
    /// Whether the client's literals and values were withheld from this capture.
    pub fn literals_redacted(&self) -> bool {
        self.client_literals.as_deref() == Some("redacted")
    }
}

/// The line written where a capture stopped early: nothing of the session after it is in the
/// file (its statements are in the audit trail).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TruncationLine {
    pub truncated: vigil_core::event::ReplayTruncated,
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
    /// Where and why the capture stopped early, if it did.
    pub truncated: Option<vigil_core::event::ReplayTruncated>,
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

/// Reads a capture file (`.jsonl`, or `.jsonl.gz` once compressed; an encrypted one needs
/// [`read_capture_with`]).
pub fn read_capture(path: &Path) -> Result<Capture, ReadError> {
    read_capture_with(path, None)
}

/// Reads a capture file, decrypting it with `keys` when it is encrypted at rest.
pub fn read_capture_with(path: &Path, keys: Option<&Keyring>) -> Result<Capture, ReadError> {
    let input = open_content_with(path, keys).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_capture(std::io::BufReader::new(input), &path.display().to_string())
}

/// The file of a closed, compressed capture.
pub(crate) fn compressed_path(plain: &Path) -> PathBuf {
    let mut name = plain.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// The capture file of `session_id` in `dir`: `<id>.jsonl` while it is written, `<id>.jsonl.gz`
/// once closed and compressed; encrypted at rest, `<id>.jsonl.age` or `<id>.jsonl.gz.age`.
/// `None`: none exists.
pub fn find_capture(dir: &Path, session_id: &str) -> Option<PathBuf> {
    let plain = crate::CaptureWriter::path_of(dir, session_id);
    let names = [
        compressed_path(&plain),
        sealed_path(&plain, false),
        sealed_path(&plain, true),
    ];
    std::iter::once(plain).chain(names).find(|p| p.exists())
}

/// Opens the capture of `session_id` for reading its content (decompressed), with the path
/// opened. A capture compressed between the two looks is found under its new name. An
/// encrypted capture fails with a [`SealedError`] (see [`open_capture_with`]).
pub fn open_capture(
    dir: &Path,
    session_id: &str,
) -> std::io::Result<(PathBuf, Box<dyn Read + Send>)> {
    open_capture_with(dir, session_id, None)
}

/// Opens the capture of `session_id`, decrypting it with `keys` when it is encrypted at rest
/// (without them, or with keys for other recipients, a [`SealedError`]).
pub fn open_capture_with(
    dir: &Path,
    session_id: &str,
    keys: Option<&Keyring>,
) -> std::io::Result<(PathBuf, Box<dyn Read + Send>)> {
    let plain = crate::CaptureWriter::path_of(dir, session_id);
    match std::fs::File::open(&plain) {
        Ok(f) => Ok((plain, Box::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Compression writes the `.gz` before it removes the plain file.
            let gz = compressed_path(&plain);
            match std::fs::File::open(&gz) {
                Ok(f) => Ok((gz, Box::new(flate2::read::MultiGzDecoder::new(f)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Sealed captures are written under their final name.
                    let sealed = [sealed_path(&plain, false), sealed_path(&plain, true)]
                        .into_iter()
                        .find(|p| p.exists())
                        .ok_or(e)?;
                    let content = open_sealed(&sealed, keys)?;
                    Ok((sealed, content))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The content of a capture file, decompressed when its name ends in `.gz`. An encrypted one
/// fails with a [`SealedError`] (see [`open_content_with`]).
pub fn open_content(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    open_content_with(path, None)
}

/// The content of a capture file: decrypted with `keys` when its name ends in `.age`,
/// decompressed when it was gzipped.
pub fn open_content_with(
    path: &Path,
    keys: Option<&Keyring>,
) -> std::io::Result<Box<dyn Read + Send>> {
    if is_sealed(path) {
        return open_sealed(path, keys);
    }
    let f = std::fs::File::open(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
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
    if header.format != FORMAT && header.format != FORMAT_V1 {
        return Err(ReadError::Line {
            line: 1,
            reason: format!("format {:?}, expected {FORMAT:?}", header.format),
        });
    }
    let mut frames = Vec::new();
    let mut trailer = None;
    let mut truncated = None;
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
        if line.starts_with("{\"truncated\"") {
            let t: TruncationLine = serde_json::from_str(&line).map_err(|e| ReadError::Line {
                line: n,
                reason: format!("bad truncation line: {e}"),
            })?;
            truncated = Some(t.truncated);
            continue;
        }
        if truncated.is_some() {
            return Err(ReadError::Line {
                line: n,
                reason: "a frame after the truncation line".into(),
            });
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
        truncated,
        trailer,
    })
}
