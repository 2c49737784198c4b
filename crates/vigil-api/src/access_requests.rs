//! `/api/v1/access-requests`: just-in-time approval (docs/APPROVALS.md).
//!
//! The API authenticates the caller and routes; the binary's [`AccessRequestService`] owns the
//! rules (who may approve, quorum, grants) and records every step in the audit trail.

use crate::{authorize, ApiError, ApiState, Role};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use vigil_core::Principal;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The admin token: it may name the human it acts for (`"as"`).
    Admin,
    /// A declared identity, proven by its own credential (a human's OIDC token, or a machine's
    /// service token or OIDC token).
    Identity(Arc<Principal>),
}

/// A refusal or failure, with the status the API answers with.
#[derive(Debug)]
pub struct ServiceError {
    pub status: StatusCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ServiceError {
            status,
            message: message.into(),
        }
    }
}

/// `POST /api/v1/access-requests`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Required with the admin token; otherwise the caller is the requester.
    pub identity: Option<String>,
    pub connection: String,
    /// The approval-required policy whose scope is asked for (default: the first that binds
    /// the identity on the connection).
    pub policy: Option<String>,
    pub reason: Option<String>,
    /// e.g. `"30m"`; capped by the rule's `max_duration`.
    pub duration: Option<String>,
}

/// `POST /api/v1/access-requests/{id}/approve|deny|revoke`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// The rationale (required).
    pub reason: Option<String>,
    /// With the admin token: the human identity the admin acts for.
    #[serde(rename = "as")]
    pub acting_as: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub limit: Option<usize>,
}

/// What the binary provides.
pub trait AccessRequestService: Send + Sync + 'static {
    /// Proves a bearer credential that is not the admin token: a human's OIDC token, or a
    /// machine's service token or OIDC token.
    fn authenticate<'a>(&'a self, bearer: &'a str)
        -> BoxFuture<'a, Result<Arc<Principal>, String>>;
    fn create<'a>(
        &'a self,
        caller: &'a Caller,
        body: CreateBody,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>>;
    fn list<'a>(
        &'a self,
        caller: &'a Caller,
        query: ListQuery,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>>;
    fn show<'a>(
        &'a self,
        caller: &'a Caller,
        id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>>;
    /// `action`: `approve`, `deny` or `revoke`.
    fn decide<'a>(
        &'a self,
        caller: &'a Caller,
        id: &'a str,
        action: &'a str,
        body: DecideBody,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>>;
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e.status, e.message)
    }
}

async fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if authorize(state, headers, &[Role::Admin]).is_ok() {
        return Ok(Caller::Admin);
    }
    let service = service(state)?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <OIDC token or admin token>"
                    .into(),
            )
        })?;
    service
        .authenticate(bearer)
        .await
        .map(Caller::Identity)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e))
}

fn service(state: &ApiState) -> Result<Arc<dyn AccessRequestService>, ApiError> {
    state.access_requests.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "access requests are not enabled on this gateway".into(),
        )
    })
}

pub(crate) async fn create(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let out = service(&state)?.create(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(service(&state)?.list(&caller, query).await?).into_response())
}

pub(crate) async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(service(&state)?.show(&caller, &id).await?).into_response())
}

pub(crate) async fn decide(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Json(body): Json<DecideBody>,
) -> Result<Response, ApiError> {
    if !matches!(action.as_str(), "approve" | "deny" | "revoke") {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown action {action:?}: use approve, deny or revoke"),
        ));
    }
    let caller = caller(&state, &headers).await?;
    Ok(Json(service(&state)?.decide(&caller, &id, &action, body).await?).into_response())
}
