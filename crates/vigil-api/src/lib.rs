//! # vigil-api
//!
//! Vigil's HTTP API (axum). It reads the store (sessions, the audit trail) and never writes to
//! it. Every route but `/healthz` needs a bearer token, which carries a role: the **admin**
//! token (operators) or the **auditor** token (evidence). Both read sessions and verify the chain;
//! only the auditor exports evidence and reads replay captures, so that handing evidence out is a
//! separate duty (and captures, which hold PHI in clear, reach no one else).
//! Store reads are blocking, so each runs on the blocking pool, never on the async workers;
//! exports stream from a blocking task through a bounded channel (memory stays flat).
//! Access requests are changed only through vigil-approval's service (`access_requests`).
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness (no auth) |
//! | `GET /api/v1/sessions?identity=&connection=&since=&until=&limit=` | session summaries, newest first |
//! | `GET /api/v1/sessions/{id}` | one session: summary, every statement, every refused one |
//! | `GET /api/v1/audit/verify` | verify the chain now (200 intact, 409 tampered) |
//! | `GET /api/v1/audit/public-key` | the checkpoint-signing public key (PEM) |
//! | `GET /api/v1/exports/{artifact}?since=&until=&identity=&connection=&format=` | an evidence export, streamed (auditor only) |
//! | `GET /api/v1/sessions/{id}/replay?format=jsonl\|pcapng` | a session's replay capture, checked against its end record (auditor only) |
//! | `GET, POST /api/v1/access-requests`, `GET /api/v1/access-requests/{id}` | access requests (admin token, or a declared identity's own token) |
//! | `POST /api/v1/access-requests/{id}/approve\|deny\|revoke` | decide (a human's OIDC token, or the admin token acting `as` a human) |
//!
//! ```no_run
//! # async fn run(state: vigil_api::ApiState) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9480").await?;
//! axum::serve(listener, vigil_api::router(state)).await
//! # }
//! ```

pub mod access_requests;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use vigil_audit::export::{self, Artifact, ExportFilter, Format, RowWriter};
use vigil_audit::sessions::{self, SessionQuery};
use vigil_audit::VerifyingKey;
use vigil_core::{SecretString, Timestamp};
use vigil_store::{AccessRequestStore, AuditLog, GrantStore, SessionsIndex};

mod replay;
pub use replay::{SHA256_HEADER as REPLAY_SHA256_HEADER, STATUS_HEADER as REPLAY_STATUS_HEADER};

/// What the API serves from. It reads the store concerns below and writes none of them.
#[derive(Clone)]
pub struct ApiState {
    /// The audit chain: sessions' records, verification, exports.
    pub audit: Arc<dyn AuditLog>,
    /// The sessions index (kept by the same store as `audit`).
    pub sessions: Arc<dyn SessionsIndex>,
    /// Grants and access requests as stored, read by exports only (who an older grant or
    /// request was for); requests change through `access_requests`.
    pub grants: Arc<dyn GrantStore>,
    pub requests: Arc<dyn AccessRequestStore>,
    pub verifying_key: VerifyingKey,
    pub anchor_path: Option<PathBuf>,
    pub admin_token: SecretString,
    /// The token of the auditor role (exports); `None`: no one may export over HTTP.
    pub auditor_token: Option<SecretString>,
    /// The directory of replay captures (`<session id>.jsonl`); `None`: the replay route
    /// answers 404.
    pub replay_dir: Option<PathBuf>,
    /// Just-in-time approval; `None`: the access-request routes answer 404.
    pub access_requests: Option<access_requests::AccessRequests>,
}

impl ApiState {
    /// What exports read.
    fn export_source(&self) -> export::StoreSource<'_> {
        export::StoreSource {
            log: &*self.audit,
            grants: &*self.grants,
            requests: &*self.requests,
        }
    }
}

/// What a bearer token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Admin,
    Auditor,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{id}", get(show_session))
        .route("/api/v1/sessions/{id}/replay", get(replay::session_replay))
        .route("/api/v1/audit/verify", get(verify))
        .route("/api/v1/audit/public-key", get(public_key))
        .route("/api/v1/exports/{artifact}", get(export))
        .route(
            "/api/v1/access-requests",
            get(access_requests::list).post(access_requests::create),
        )
        .route("/api/v1/access-requests/{id}", get(access_requests::show))
        .route(
            "/api/v1/access-requests/{id}/{action}",
            axum::routing::post(access_requests::decide),
        )
        .with_state(Arc::new(state))
}

/// An error as the API returns it: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Whether `presented` is `expected`, in constant time (comparing digests, so length leaks
/// nothing).
fn same_token(presented: &str, expected: &SecretString) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The role of the bearer token, if it is one of ours; `allowed` lists the roles the route
/// admits (a known token of another role gets 403).
fn authorize(state: &ApiState, headers: &HeaderMap, allowed: &[Role]) -> Result<Role, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <token>".into(),
            )
        })?;
    // Both comparisons always run, so timing does not tell which token was close.
    let admin = same_token(presented, &state.admin_token);
    let auditor = state
        .auditor_token
        .as_ref()
        .is_some_and(|t| same_token(presented, t));
    let role = match (admin, auditor) {
        (_, true) => Role::Auditor,
        (true, false) => Role::Admin,
        (false, false) => {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "invalid bearer token".into(),
            ))
        }
    };
    if allowed.contains(&role) {
        Ok(role)
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "this needs the auditor role: use the token that api.auditor_token refers to".into(),
        ))
    }
}

const READERS: &[Role] = &[Role::Admin, Role::Auditor];

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

#[derive(Deserialize)]
struct SessionParams {
    identity: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse_rfc3339(&v).map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{name}: {e} (use RFC 3339, e.g. 2026-11-28T00:00:00Z)"),
                )
            })
        })
        .transpose()
}

async fn list_sessions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<SessionParams>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, READERS)?;
    let query = SessionQuery {
        identity: params.identity,
        connection: params.connection,
        since: parse_time("since", params.since)?,
        until: parse_time("until", params.until)?,
        limit: Some(params.limit.unwrap_or(100).min(10_000)),
    };
    let st = state.clone();
    let list =
        blocking(move || sessions::list(&*st.audit, &*st.sessions, &query).map_err(internal))
            .await?;
    Ok(Json(json!({ "sessions": list })).into_response())
}

async fn show_session(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, READERS)?;
    let index = state.sessions.clone();
    let wanted = id.clone();
    let detail = blocking(move || sessions::detail(&*index, &wanted).map_err(internal)).await?;
    match detail {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}"))),
    }
}

async fn verify(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, READERS)?;
    let st = state.clone();
    let result = blocking(move || {
        Ok(vigil_audit::verify(
            &*st.audit,
            &st.verifying_key,
            st.anchor_path.as_deref().filter(|p| p.exists()),
        ))
    })
    .await?;
    match result {
        Ok(report) => Ok(Json(json!({
            "intact": true,
            "records": report.records,
            "checkpoints": report.checkpoints,
            "last_seq": report.last_seq,
            "sealed_through": report.sealed_through,
            "unsealed": report.unsealed,
            "anchor_seq": report.anchor_seq,
            "purged": report.purged,
        }))
        .into_response()),
        Err(e) => match e.tampered_seq() {
            Some(seq) => Ok((
                StatusCode::CONFLICT,
                Json(json!({"intact": false, "first_bad_seq": seq, "reason": e.to_string()})),
            )
                .into_response()),
            None => Err(internal(e)),
        },
    }
}

async fn public_key(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, READERS)?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        vigil_audit::public_key_pem(&state.verifying_key),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ExportParams {
    since: Option<String>,
    until: Option<String>,
    identity: Option<String>,
    connection: Option<String>,
    format: Option<String>,
}

/// Bytes handed from the blocking export to the response body, a chunk at a time. The channel
/// is bounded: a slow client slows the export down instead of growing memory.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
}

const CHUNK_BYTES: usize = 64 * 1024;

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

async fn export(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(artifact): Path<String>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Auditor])?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let artifact = Artifact::parse(&artifact).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no artifact {artifact:?}: one of {}",
                Artifact::ALL.map(|a| a.as_str()).join(", ")
            ),
        )
    })?;
    let format = match params.format.as_deref() {
        None => Format::Jsonl,
        Some(f) => {
            Format::parse(f).ok_or_else(|| bad(format!("format {f:?}: use json, jsonl or csv")))?
        }
    };
    let now = Timestamp::now();
    let time = |name: &str, v: Option<String>| {
        v.map(|v| export::parse_time_bound(&v, now).map_err(|e| bad(format!("{name}: {e}"))))
            .transpose()
    };
    let filter = ExportFilter {
        since: time("since", params.since)?,
        until: time("until", params.until)?,
        identity: params.identity,
        connection: params.connection,
    };
    let log = state.audit.clone();
    let plan_filter = filter.clone();
    let range = blocking(move || export::plan(&*log, &plan_filter, None).map_err(internal)).await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChunkWriter {
            buf: Vec::with_capacity(CHUNK_BYTES),
            tx: tx.clone(),
        };
        let result = (|| {
            let mut writer = RowWriter::new(format, artifact, out)?;
            export::export_rows(&st.export_source(), artifact, &filter, range, &mut |row| {
                writer.write(&row)
            })?;
            let mut out = writer.finish()?;
            std::io::Write::flush(&mut out)
                .map_err(|e| vigil_audit::AuditError::Export(e.to_string()))
        })();
        if let Err(e) = result {
            // The status line is gone already: end the body with an error, so the client sees
            // a broken transfer rather than a short export that looks complete.
            tracing::warn!(artifact = %artifact, error = %e, "export failed while streaming");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let disposition = format!(
        "attachment; filename=\"vigil-{}.{}\"",
        artifact.as_str(),
        format.as_str()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
