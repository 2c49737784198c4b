//! # vigil-api
//!
//! Vigil's HTTP API (axum). It reads the store (sessions, the audit trail); access requests are
//! changed only through the binary's `AccessRequestService`; every route but `/healthz` needs the admin bearer token. Store reads are blocking, so
//! each runs on the blocking pool, never on the async workers.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness (no auth) |
//! | `GET /api/v1/sessions?identity=&connection=&since=&until=&limit=` | session summaries, newest first |
//! | `GET /api/v1/sessions/{id}` | one session: summary and every statement |
//! | `GET /api/v1/audit/verify` | verify the chain now (200 intact, 409 tampered) |
//! | `GET /api/v1/audit/public-key` | the checkpoint-signing public key (PEM) |
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
use vigil_audit::sessions::{self, SessionQuery};
use vigil_audit::VerifyingKey;
use vigil_core::{SecretString, Timestamp};
use vigil_store::Store;

/// What the API serves from.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub verifying_key: VerifyingKey,
    pub anchor_path: Option<PathBuf>,
    pub admin_token: SecretString,
    /// Just-in-time approval; `None`: the access-request routes answer 404.
    pub access_requests: Option<Arc<dyn access_requests::AccessRequestService>>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{id}", get(show_session))
        .route("/api/v1/audit/verify", get(verify))
        .route("/api/v1/audit/public-key", get(public_key))
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

/// Checks the bearer token in constant time (comparing digests, so length leaks nothing).
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <admin token>".into(),
            )
        })?;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(state.admin_token.expose().as_bytes());
    let same = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "invalid bearer token".into(),
        ))
    }
}

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
    authorize(&state, &headers)?;
    let query = SessionQuery {
        identity: params.identity,
        connection: params.connection,
        since: parse_time("since", params.since)?,
        until: parse_time("until", params.until)?,
        limit: Some(params.limit.unwrap_or(100).min(10_000)),
    };
    let store = state.store.clone();
    let list = blocking(move || sessions::list(&*store, &query).map_err(internal)).await?;
    Ok(Json(json!({ "sessions": list })).into_response())
}

async fn show_session(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let store = state.store.clone();
    let wanted = id.clone();
    let detail = blocking(move || sessions::detail(&*store, &wanted).map_err(internal)).await?;
    match detail {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}"))),
    }
}

async fn verify(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let st = state.clone();
    let result = blocking(move || {
        Ok(vigil_audit::verify(
            &*st.store,
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
    authorize(&state, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        vigil_audit::public_key_pem(&state.verifying_key),
    )
        .into_response())
}
