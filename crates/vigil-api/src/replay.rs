//! `GET /api/v1/sessions/{id}/replay[?format=pcapng]`: a session's replay capture, checked
//! against the digest its `SessionEnded` record holds before a byte is sent.
//!
//! Captures hold what the client received (results after masking) and what it sent with its
//! literals and values withheld: PHI all the same. Only the auditor role reads them; the admin role, which never sees a
//! value through this API, does not.

use super::{authorize, internal, ApiError, ApiState, Role, CHUNK_BYTES};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Arc;
use vigil_audit::sessions::{self, CaptureRecord};
use vigil_core::SessionId;

/// How far the chain vouches for the bytes served.
pub const STATUS_HEADER: HeaderName = HeaderName::from_static("vigil-replay-status");
/// SHA-256 (hex) of the capture bytes served (JSON lines) or converted (pcapng).
pub const SHA256_HEADER: HeaderName = HeaderName::from_static("vigil-replay-sha256");

#[derive(Deserialize)]
pub(crate) struct ReplayParams {
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplayFormat {
    Jsonl,
    Pcapng,
}

/// A capture file opened and checked: what will be served.
struct Checked {
    /// Where the capture was read from (the directory), to read it again as it is sent.
    dir: std::path::PathBuf,
    id: String,
    /// Bytes to serve: the whole file of an ended session; for a live one, up to its last
    /// complete line.
    len: u64,
    sha256: String,
    /// `verified` (matches the end record), `live` (no end record yet), `unverified` (the
    /// session ended without a capture digest).
    status: &'static str,
    /// The bytes, when the format needs them whole (pcapng).
    bytes: Option<Vec<u8>>,
}

fn not_found(message: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, message)
}

/// Opens the capture of `id` and checks it against the chain.
fn open_checked(state: &ApiState, id: &str, keep_bytes: bool) -> Result<Checked, ApiError> {
    let Some(dir) = &state.replay_dir else {
        return Err(not_found(
            "this gateway serves no replay captures (no replay directory configured)".into(),
        ));
    };
    let recorded = sessions::recorded_capture(&*state.audit, &*state.sessions, id)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no session {id}")))?;
    // Encrypted at rest: the gateway holds no key that reads it, by design.
    if let Some(path) = vigil_replay::find_capture(dir, id).filter(|p| vigil_replay::is_sealed(p)) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "the capture of session {id} is encrypted at rest ({name}, [replay] encrypt_to) \
                 and this gateway holds no key that reads it: read it where its identity file is, \
                 with `vigil replay {id} --identity FILE`, or take it in an evidence bundle \
                 (`vigil evidence bundle`, then `vigil evidence verify --replay-identity FILE`)"
            ),
        ));
    }
    // `<id>.jsonl` while written, `<id>.jsonl.gz` once closed and compressed: the content
    // (decompressed) is what the end record's digest covers and what is served.
    let (path, mut file) = match vigil_replay::open_capture(dir, id) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(match &recorded {
                CaptureRecord::Ended {
                    replay_sha256: Some(digest),
                    ended_seq,
                } => format!(
                    "session {id} has no capture file, although its end record (seq {ended_seq}) \
                     names one (SHA-256 {digest}): it was removed from the replay directory"
                ),
                _ => format!("session {id} has no replay capture (captures were off when it ran)"),
            }))
        }
        Err(e) => return Err(internal(format!("cannot open the capture of {id}: {e}"))),
    };
    // A file being written is read up to its size now; a compressed one to its end.
    let size = if path.extension().is_some_and(|e| e == "gz") {
        u64::MAX
    } else {
        std::fs::metadata(&path).map_err(internal)?.len()
    };
    let live = recorded == CaptureRecord::Open;
    let mut hasher = Sha256::new();
    let mut bytes = keep_bytes.then(Vec::new);
    // A live capture is still being appended to: serve its complete lines only.
    let mut pending: Vec<u8> = Vec::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut remaining = size;
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want]).map_err(internal)?;
        if n == 0 {
            break;
        }
        remaining -= n as u64;
        let chunk = &buf[..n];
        let complete = if live {
            match chunk.iter().rposition(|b| *b == b'\n') {
                Some(nl) => {
                    pending.extend_from_slice(&chunk[..=nl]);
                    let done = std::mem::take(&mut pending);
                    pending.extend_from_slice(&chunk[nl + 1..]);
                    done
                }
                None => {
                    pending.extend_from_slice(chunk);
                    continue;
                }
            }
        } else {
            chunk.to_vec()
        };
        hasher.update(&complete);
        len += complete.len() as u64;
        if let Some(b) = &mut bytes {
            b.extend_from_slice(&complete);
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    let status = match recorded {
        CaptureRecord::Open => "live",
        CaptureRecord::Ended {
            replay_sha256: None,
            ..
        } => "unverified",
        CaptureRecord::Ended {
            replay_sha256: Some(digest),
            ended_seq,
        } => {
            if digest != sha256 {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "the capture of session {id} does not match its end record (seq \
                         {ended_seq}): recorded SHA-256 {digest}, file {sha256}; it was altered \
                         or replaced, and is not served"
                    ),
                ));
            }
            "verified"
        }
    };
    Ok(Checked {
        dir: dir.clone(),
        id: id.to_string(),
        len,
        sha256,
        status,
        bytes,
    })
}

pub(crate) async fn session_replay(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<ReplayParams>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Auditor])?;
    let format = match params.format.as_deref() {
        None | Some("jsonl") => ReplayFormat::Jsonl,
        Some("pcapng") => ReplayFormat::Pcapng,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: use jsonl (the capture file) or pcapng"),
            ))
        }
    };
    // The canonical spelling of the id, which also keeps anything but a UUID out of paths.
    let id = id
        .parse::<SessionId>()
        .map_err(|_| not_found(format!("no session {id}")))?
        .to_string();
    let st = state.clone();
    let wanted = id.clone();
    let checked = tokio::task::spawn_blocking(move || {
        open_checked(&st, &wanted, format == ReplayFormat::Pcapng)
    })
    .await
    .map_err(internal)??;

    let headers = |content_type: &'static str, ext: &str, len: u64| {
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"vigil-replay-{id}.{ext}\""))
                    .expect("a UUID makes a valid header"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (STATUS_HEADER, HeaderValue::from_static(checked.status)),
            (
                SHA256_HEADER,
                HeaderValue::from_str(&checked.sha256).expect("hex is a valid header"),
            ),
        ]
    };
    match format {
        ReplayFormat::Pcapng => {
            let bytes = checked.bytes.as_deref().unwrap_or_default();
            let capture = vigil_replay::parse_capture(bytes, &format!("the capture of {id}"))
                .map_err(|e| {
                    ApiError(
                        StatusCode::CONFLICT,
                        format!("the capture of session {id} cannot be read: {e}"),
                    )
                })?;
            let pcapng = vigil_replay::pcapng::export(&capture);
            let head = headers("application/octet-stream", "pcapng", pcapng.len() as u64);
            Ok((head, pcapng).into_response())
        }
        ReplayFormat::Jsonl => {
            let head = headers("application/x-ndjson", "jsonl", checked.len);
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let Checked {
                dir,
                id,
                len,
                sha256,
                ..
            } = checked;
            tokio::task::spawn_blocking(move || {
                // The file is read again as it is sent; should it change in between, the
                // transfer is cut off rather than ended as if whole.
                let result = (|| -> std::io::Result<()> {
                    let (_, mut file) = vigil_replay::open_capture(&dir, &id)?;
                    let mut hasher = Sha256::new();
                    let mut remaining = len;
                    while remaining > 0 {
                        let mut chunk = vec![0u8; remaining.min(CHUNK_BYTES as u64) as usize];
                        file.read_exact(&mut chunk)?;
                        remaining -= chunk.len() as u64;
                        hasher.update(&chunk);
                        if tx.blocking_send(Ok(bytes::Bytes::from(chunk))).is_err() {
                            return Ok(()); // the client went away
                        }
                    }
                    if hex::encode(hasher.finalize()) != sha256 {
                        return Err(std::io::Error::other(
                            "the capture changed while it was being sent",
                        ));
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    tracing::warn!(error = %e, "replay capture transfer cut off");
                    let _ = tx.blocking_send(Err(e));
                }
            });
            let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Ok((head, axum::body::Body::from_stream(stream)).into_response())
        }
    }
}
