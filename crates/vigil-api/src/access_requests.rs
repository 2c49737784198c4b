//! `/api/v1/access-requests`: just-in-time approval (docs/APPROVALS.md).
//!
//! The API authenticates the caller and routes; vigil-approval's [`Approvals`] owns the rules
//! (who may approve, quorum, grants) and records every step in the audit trail. Its refusals
//! come as error kinds, answered here with status codes.

use crate::{authorize, ApiError, ApiState, Role};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use vigil_approval::{
    Action, ApprovalError, Approvals, ErrorKind, Literals, NewRequest, RequestFilter,
    RequestStatus, RequestView, Requester,
};
use vigil_core::Principal;

pub use vigil_approval::Caller;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Proves a bearer credential that is not the admin token: a human's OIDC token, or a machine's
/// service token or OIDC token (the binary gives vigil-identity's `Authenticator`). `Err`: what
/// the caller is told.
pub trait BearerAuthenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, bearer: &'a str)
        -> BoxFuture<'a, Result<Arc<Principal>, String>>;
}

/// Just-in-time approval behind the routes.
#[derive(Clone)]
pub struct AccessRequests {
    pub approvals: Arc<Approvals>,
    pub callers: Arc<dyn BearerAuthenticator>,
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

/// The status the API answers a refusal or failure of the approval service with.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotApplicable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        ApiError(status_of(e.kind()), e.to_string())
    }
}

/// A request as the API shows it: the request's own JSON, and for a held statement what this
/// caller may see of its literals and the use of its approval.
fn view_json(view: RequestView) -> Value {
    let mut shown = json!(view.request);
    if let Some(statement) = view.statement {
        if let Literals::Shown(text) = &statement.literals {
            shown["subject"]["statement"]["text_with_literals"] = json!(text);
        }
        shown["literals"] = json!(statement.literals.as_str());
        if let Some(a) = statement.approval {
            shown["statement_approval"] = json!({
                "approved_at": a.approved_at,
                "expires_at": a.expires_at,
                "used_at": a.used_at,
                "used_session": a.used_session,
            });
        }
    }
    shown
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
        .callers
        .authenticate(bearer)
        .await
        .map(Caller::Identity)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e))
}

fn service(state: &ApiState) -> Result<&AccessRequests, ApiError> {
    state.access_requests.as_ref().ok_or_else(|| {
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
    let approvals = &service(&state)?.approvals;
    let requester = Requester::of(&caller, body.identity)?;
    let duration = body
        .duration
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("duration: {e}")))?;
    let ask = NewRequest {
        connection: body.connection,
        policy: body.policy,
        reason: body.reason,
        duration,
        client_addr: None,
    };
    let request = approvals.create(requester, ask).await?;
    Ok((StatusCode::CREATED, Json(request)).into_response())
}

pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let approvals = &service(&state)?.approvals;
    let status = match query.status.as_deref().map(str::parse::<RequestStatus>) {
        None => None,
        Some(Ok(status)) => Some(status),
        // No request has it.
        Some(Err(_)) => return Ok(Json(json!({ "access_requests": [] })).into_response()),
    };
    let filter = RequestFilter {
        identity: query.identity,
        connection: query.connection,
        status,
        grant_id: None,
        limit: query.limit,
    };
    let found = approvals.list(&caller, filter).await?;
    Ok(Json(json!({ "access_requests": found })).into_response())
}

pub(crate) async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let view = service(&state)?.approvals.show(&caller, &id).await?;
    Ok(Json(view_json(view)).into_response())
}

pub(crate) async fn decide(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Json(body): Json<DecideBody>,
) -> Result<Response, ApiError> {
    let action: Action = action.parse().map_err(|e: vigil_approval::UnknownAction| {
        ApiError(StatusCode::NOT_FOUND, e.to_string())
    })?;
    let caller = caller(&state, &headers).await?;
    let rationale = body.reason.unwrap_or_default();
    let request = service(&state)?
        .approvals
        .decide(&caller, &id, action, &rationale, body.acting_as.as_deref())
        .await?;
    Ok(Json(request).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vigil_approval::{AccessRequest, StatementApproval, StatementView, Subject};
    use vigil_core::Timestamp;

    fn held(id: &str) -> AccessRequest {
        let at = Timestamp::from_micros(1_700_000_000_000_000);
        AccessRequest {
            id: id.into(),
            identity: "etl".into(),
            connection: "ehr".into(),
            subject: Subject::Statement {
                policy: "p".into(),
                fingerprint: "f".into(),
                text: "CREATE TABLE t (a text DEFAULT $1)".into(),
                statement_digest: "d".into(),
                session_id: Some("s".into()),
            },
            duration: Duration::ZERO,
            reason: None,
            client_addr: None,
            created_at: at,
            expires_at: at,
            decisions: Vec::new(),
            status: RequestStatus::Approved,
            grant_id: None,
        }
    }

    #[test]
    fn refusals_answer_with_the_status_of_their_kind() {
        let e = ApiError::from(ApprovalError::NoSuchRequest("r1".into()));
        assert_eq!(
            (e.0, e.1.as_str()),
            (StatusCode::NOT_FOUND, "no access request r1")
        );
        for (kind, status) in [
            (ErrorKind::Invalid, 400),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::NotApplicable, 422),
            (ErrorKind::Failed, 500),
        ] {
            assert_eq!(status_of(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn a_held_statement_shows_what_this_caller_may_see() {
        let request = held("r1");
        let plain = view_json(RequestView {
            request: request.clone(),
            statement: None,
        });
        assert_eq!(plain, json!(request));
        assert_eq!(plain["status"], "approved");
        assert!(plain.get("literals").is_none());

        let approved_at = Timestamp::from_micros(1_700_000_001_000_000);
        let shown = view_json(RequestView {
            request: request.clone(),
            statement: Some(StatementView {
                literals: Literals::Shown("CREATE TABLE t (a text DEFAULT 'x')".into()),
                approval: Some(StatementApproval {
                    request_id: "r1".into(),
                    identity: "etl".into(),
                    connection: "ehr".into(),
                    statement_digest: "d".into(),
                    approved_at,
                    expires_at: approved_at,
                    used_at: None,
                    used_session: None,
                }),
            }),
        });
        assert_eq!(shown["literals"], "shown");
        assert_eq!(
            shown["subject"]["statement"]["text_with_literals"],
            "CREATE TABLE t (a text DEFAULT 'x')"
        );
        assert_eq!(
            shown["subject"]["statement"]["text"],
            "CREATE TABLE t (a text DEFAULT $1)"
        );
        assert_eq!(
            shown["statement_approval"],
            json!({"approved_at": approved_at, "expires_at": approved_at, "used_at": null, "used_session": null})
        );

        let withheld = view_json(RequestView {
            request,
            statement: Some(StatementView {
                literals: Literals::Withheld,
                approval: None,
            }),
        });
        assert_eq!(withheld["literals"], "withheld");
        assert!(withheld["subject"]["statement"]
            .get("text_with_literals")
            .is_none());
        assert!(withheld.get("statement_approval").is_none());
    }
}
