//! The listener and each client's way in: startup, TLS, token, upstream login, session record,
//! then the proxy loop, then the session's end record.

use crate::cancel::{CancelRegistry, CancelTarget};
use crate::codec::{next_frame, put_cstr, put_message};
use crate::config::{Limits, ListenerSettings, ListenerTlsMode, Target};
use crate::messages::authentication::{encode_cleartext_request, encode_ok};
use crate::messages::startup::{body_len, StartupPacket, StartupRequest};
use crate::messages::tag::{backend, frontend};
use crate::messages::{BackendKeyData, ErrorFields, ReadyForQuery, TransactionStatus};
use crate::proxy::{self, SessionContext};
use crate::stream::Stream;
use crate::tls::{upstream_client_config, TlsError};
use crate::upstream::{self, UpstreamError};
use crate::{
    sqlstate, AccessAsk, ApprovalGate, AuthRejection, ClientAuthenticator, ConnectionAuthorizer,
    GrantProvider, PendingAccess, Revocations,
};
use bytes::BytesMut;
use rustls::{ClientConfig, ServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use vigil_core::event::{
    AuthFailed, AuthFailureReason, Event, ParameterMode, SessionEndReason, SessionEnded,
    SessionStarted,
};
use vigil_core::{EventDraft, EventSink, Principal, SessionId, Timestamp};

/// Everything a gateway is built from.
pub struct GatewayParts {
    pub listener: ListenerSettings,
    /// Required when the listener's TLS mode is `required`, used when `optional`.
    pub server_tls: Option<Arc<ServerConfig>>,
    pub targets: Vec<Target>,
    pub limits: Limits,
    pub authenticator: Arc<dyn ClientAuthenticator>,
    pub authorizer: Arc<dyn ConnectionAuthorizer>,
    pub analyzer: Arc<vigil_sql::Analyzer>,
    pub grants: Arc<dyn GrantProvider>,
    pub revocations: Arc<Revocations>,
    pub sink: Arc<dyn EventSink>,
    pub parameter_mode: ParameterMode,
    pub parameter_key: Option<Arc<[u8]>>,
    /// Masking of results in flight; `None`: off.
    pub masking: Option<Arc<dyn crate::masking::Masking>>,
    /// Replay captures of sessions; `None`: off.
    pub replay: Option<Arc<dyn vigil_core::ReplaySink>>,
    /// Just-in-time approval of sessions without a grant; `None`: such sessions are refused.
    pub approvals: Option<Arc<dyn ApprovalGate>>,
    /// Per-statement review; `None`: off.
    pub statement_review: Option<Arc<dyn crate::StatementReview>>,
    /// Sessions open now, per connection and identity: shared by every listener.
    pub slots: Arc<vigil_core::SessionSlots>,
}

struct Upstreams {
    target: Arc<Target>,
    tls: Option<Arc<ClientConfig>>,
    catalog: Arc<crate::catalog::CatalogCache>,
}

/// A PostgreSQL gateway: shared by all of a listener's sessions.
pub struct Gateway {
    tls_mode: ListenerTlsMode,
    server_tls: Option<Arc<ServerConfig>>,
    targets: HashMap<String, Upstreams>,
    limits: Limits,
    authenticator: Arc<dyn ClientAuthenticator>,
    authorizer: Arc<dyn ConnectionAuthorizer>,
    analyzer: Arc<vigil_sql::Analyzer>,
    grants: Arc<dyn GrantProvider>,
    revocations: Arc<Revocations>,
    sink: Arc<dyn EventSink>,
    parameter_mode: ParameterMode,
    parameter_key: Option<Arc<[u8]>>,
    masking: Option<Arc<dyn crate::masking::Masking>>,
    replay: Option<Arc<dyn vigil_core::ReplaySink>>,
    approvals: Option<Arc<dyn ApprovalGate>>,
    statement_review: Option<Arc<dyn crate::StatementReview>>,
    slots: Arc<vigil_core::SessionSlots>,
    cancels: CancelRegistry,
    active: AtomicUsize,
    idle: Notify,
}

impl Gateway {
    pub fn new(parts: GatewayParts) -> Result<Gateway, TlsError> {
        let tls_mode = parts.listener.effective_tls();
        if tls_mode == ListenerTlsMode::Required && parts.server_tls.is_none() {
            return Err(TlsError::Config(format!(
                "the listener on {} requires TLS (it is not a loopback address) but has no \
                 tls_cert/tls_key; configure them, or set tls = \"disabled\" to accept \
                 plaintext on purpose",
                parts.listener.address
            )));
        }
        let mut targets = HashMap::new();
        for target in parts.targets {
            let tls = upstream_client_config(target.tls, target.ca_file.as_deref())?;
            targets.insert(
                target.name.to_string(),
                Upstreams {
                    target: Arc::new(target),
                    tls,
                    catalog: Arc::default(),
                },
            );
        }
        Ok(Gateway {
            server_tls: if tls_mode == ListenerTlsMode::Disabled {
                None
            } else {
                parts.server_tls
            },
            tls_mode,
            targets,
            limits: parts.limits,
            authenticator: parts.authenticator,
            authorizer: parts.authorizer,
            analyzer: parts.analyzer,
            grants: parts.grants,
            revocations: parts.revocations,
            sink: parts.sink,
            parameter_mode: parts.parameter_mode,
            parameter_key: parts.parameter_key,
            masking: parts.masking,
            replay: parts.replay,
            approvals: parts.approvals,
            statement_review: parts.statement_review,
            slots: parts.slots,
            cancels: CancelRegistry::default(),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Client connections being served (including those still authenticating).
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Accepts clients until `shutdown` turns true, then ends live sessions (each gets a FATAL
/// "shutting down" and its end record) and returns once they are gone or after 10 s.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let gw = gateway.clone();
                    let stop = shutdown.clone();
                    gw.active.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        handle_client(&gw, tcp, peer, stop).await;
                        if gw.active.fetch_sub(1, Ordering::Relaxed) == 1 {
                            gw.idle.notify_waiters();
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gateway.active.load(Ordering::Relaxed) > 0 {
        let idle = gateway.idle.notified();
        if gateway.active.load(Ordering::Relaxed) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            tracing::warn!(
                sessions = gateway.active.load(Ordering::Relaxed),
                "sessions still open at shutdown deadline"
            );
            break;
        }
    }
}

/// Why the handshake stopped before a session began.
enum Refusal {
    /// Tell the client (FATAL) and, if `record` is set, record the refusal.
    Fatal {
        error: ErrorFields,
        record: Option<Box<AuthFailed>>,
    },
    /// The client went away or sent garbage we answer with silence.
    Silent,
}

impl Refusal {
    fn fatal(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Fatal {
            error: ErrorFields::fatal(code, message),
            record: None,
        }
    }
}

/// What the client asked for, once past TLS negotiation.
struct Startup {
    stream: Stream,
    user: String,
    database: String,
    application_name: Option<String>,
    /// Parameters to pass upstream.
    pass_on: Vec<(String, String)>,
}

async fn handle_client(
    gw: &Gateway,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let client_addr = peer.to_string();
    let mut stream = Stream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(1024);

    let startup = tokio::time::timeout(
        gw.limits.auth_timeout,
        read_startup(gw, &mut stream, &mut buf, &client_addr),
    )
    .await;
    let startup = match startup {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return, // cancel request handled, or nothing to do
        Ok(Err(refusal)) => return refuse(gw, &mut stream, refusal, None).await,
        Err(_) => {
            let error =
                ErrorFields::fatal(sqlstate::CONNECTION_EXCEPTION, "authentication timed out");
            return refuse_unrecorded(gw, &mut stream, error, None).await;
        }
    };
    let Startup {
        mut stream,
        user,
        database,
        application_name,
        pass_on,
    } = startup;
    let auth_failed = |reason: AuthFailureReason, detail: String| AuthFailed {
        reason,
        user: user.chars().take(128).collect(),
        requested_connection: Some(database.chars().take(128).collect()),
        client_addr: client_addr.clone(),
        issuer: None,
        subject: None,
        detail,
    };

    // The token travels as a cleartext password; TLS (required off loopback) protects it.
    let token = tokio::time::timeout(
        gw.limits.auth_timeout,
        read_token(gw, &mut stream, &mut buf),
    )
    .await;
    let token = match token {
        Ok(Ok(Some(t))) => t,
        // psql asks for a password by disconnecting and reconnecting: not a failure.
        Ok(Ok(None)) => return,
        Ok(Err(message)) => {
            return refuse(
                gw,
                &mut stream,
                Refusal::fatal(sqlstate::PROTOCOL_VIOLATION, message),
                None,
            )
            .await
        }
        Err(_) => {
            let record = Some(Box::new(auth_failed(
                AuthFailureReason::Timeout,
                "no token within the authentication timeout".into(),
            )));
            let error =
                ErrorFields::fatal(sqlstate::CONNECTION_EXCEPTION, "authentication timed out");
            return refuse(gw, &mut stream, Refusal::Fatal { error, record }, None).await;
        }
    };

    let principal = match gw.authenticator.authenticate(&user, &token).await {
        Ok(p) => p,
        Err(AuthRejection {
            reason,
            detail,
            client_message,
            issuer,
            subject,
        }) => {
            let mut record = auth_failed(reason, detail);
            record.issuer = issuer;
            record.subject = subject;
            let error = ErrorFields::fatal(sqlstate::INVALID_PASSWORD, client_message);
            return refuse(
                gw,
                &mut stream,
                Refusal::Fatal {
                    error,
                    record: Some(Box::new(record)),
                },
                None,
            )
            .await;
        }
    };
    drop(token);

    let Some(upstreams) = gw.targets.get(&database) else {
        let record = auth_failed(
            AuthFailureReason::UnknownConnection,
            format!("no connection named {database:?}"),
        );
        let error = ErrorFields::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("Vigil has no connection named \"{database}\""),
        )
        .with_hint("set dbname to the name of a Vigil connection; ask your Vigil administrator which ones you may use");
        return refuse_recorded(gw, &mut stream, error, record, Some(&principal)).await;
    };
    if let Err(why) = gw.authorizer.may_connect(&principal, &database) {
        let record = auth_failed(AuthFailureReason::ConnectionNotAllowed, why.clone());
        let error = ErrorFields::fatal(sqlstate::INVALID_AUTHORIZATION, why);
        return refuse_recorded(gw, &mut stream, error, record, Some(&principal)).await;
    }

    // The reason a client gives for its access travels in `options`; it is Vigil's, not the
    // server's, so it is taken out before the options go upstream.
    let mut pass_on = pass_on;
    let reason = take_vigil_reason(&mut pass_on).or_else(|| application_name.clone());
    let mut grants = gw.grants.session_grants(&principal, &database).await;
    // Whether AuthenticationOk went out already (a client waiting for an approval got it).
    let mut authenticated_sent = false;
    if let (Ok(g), Some(gate)) = (&grants, &gw.approvals) {
        if g.is_empty() {
            let ask = AccessAsk {
                principal: &principal,
                connection: &database,
                client_addr: &client_addr,
                reason: reason.as_deref(),
            };
            let refusal = |message: String, hint: String| Refusal::Fatal {
                error: ErrorFields::fatal(sqlstate::INVALID_AUTHORIZATION, message).with_hint(hint),
                record: None,
            };
            match gate.on_missing_grant(ask).await {
                Ok(PendingAccess::NotApplicable) => {}
                Ok(PendingAccess::Fail { message, hint }) => {
                    return refuse(gw, &mut stream, refusal(message, hint), Some(&principal)).await;
                }
                Ok(PendingAccess::Wait { notice, decided }) => {
                    // Clients accept notices only once authenticated.
                    let mut out = Vec::with_capacity(256);
                    encode_ok(&mut out);
                    ErrorFields::new(
                        crate::messages::error_response::Severity::Notice,
                        "00000",
                        notice,
                    )
                    .encode(&mut out);
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    authenticated_sent = true;
                    // A client says nothing before ReadyForQuery: anything it sends (or its
                    // leaving) ends the wait.
                    let mut probe = [0u8; 1];
                    let decided = tokio::select! {
                        d = decided => d,
                        _ = stream.read(&mut probe) => {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    };
                    if let Err(why) = decided {
                        return refuse(
                            gw,
                            &mut stream,
                            refusal(why, "ask an approver again, or retry later".into()),
                            Some(&principal),
                        )
                        .await;
                    }
                    grants = gw.grants.session_grants(&principal, &database).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "access request failed: refusing session");
                    let error = ErrorFields::fatal(
                        sqlstate::SYSTEM_ERROR,
                        "Vigil could not raise an access request for this session",
                    )
                    .with_hint("retry later; if this persists, tell your Vigil operator");
                    return refuse_unrecorded(gw, &mut stream, error, Some(&principal)).await;
                }
            }
        }
    }
    let grants = match grants {
        Ok(g) if !g.is_empty() => g,
        result => {
            let why = match result {
                Err(e) => {
                    tracing::error!(error = %e, "grants unavailable: refusing session");
                    "Vigil could not establish the grants for this session".to_string()
                }
                _ => format!(
                    "no grant allows identity \"{}\" on connection \"{database}\" now",
                    principal.name
                ),
            };
            let record = auth_failed(AuthFailureReason::ConnectionNotAllowed, why.clone());
            let error = ErrorFields::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, why).with_hint(
                "a policy must bind this identity to the connection, within its time window; ask your Vigil administrator",
            );
            return refuse_recorded(gw, &mut stream, error, record, Some(&principal)).await;
        }
    };

    let target = upstreams.target.clone();
    // Startup parameters are SETs the server runs at login: the same policy holds for them.
    let settings = crate::startup_settings::parse(&pass_on)
        .and_then(|s| crate::startup_settings::check(&s, &grants, &gw.analyzer).map(|()| s));
    let settings = match settings {
        Ok(s) => s,
        Err(r) => {
            let record = auth_failed(
                AuthFailureReason::StartupSettingRefused,
                format!(
                    "startup parameter {}: {} (rule {})",
                    r.setting, r.reason, r.rule
                ),
            );
            let error = ErrorFields::fatal(
                r.sqlstate,
                format!("Vigil refused the startup parameter \"{}\": {}", r.setting, r.reason),
            )
            .with_hint("startup parameters (PGOPTIONS, options=…) pass the same policy as the SET they amount to; connect without it");
            return refuse_recorded(gw, &mut stream, error, record, Some(&principal)).await;
        }
    };
    // One identity may not take every upstream slot: limits per connection and per identity.
    let per_identity = grants
        .iter()
        .filter_map(|g| g.scope.max_sessions)
        .chain(target.max_sessions_per_identity)
        .min();
    let _slot = match gw.slots.acquire(
        &target.name,
        &principal.name,
        target.max_sessions,
        per_identity,
    ) {
        Ok(slot) => slot,
        Err(why) => {
            let record = auth_failed(AuthFailureReason::SessionLimit, why.to_string());
            let error = ErrorFields::fatal(sqlstate::TOO_MANY_CONNECTIONS, why.to_string())
                .with_hint("close a session and retry; the limits are the connection's max_sessions and max_sessions_per_identity, and the grant's max_sessions");
            return refuse_recorded(gw, &mut stream, error, record, Some(&principal)).await;
        }
    };
    // Bounds the identity cannot lift go upstream as the session's login values (RESET returns
    // to them); read-only grants: the server enforces it too, behind the analysis.
    let bounds = vigil_policy::SessionBounds::of(grants.iter().map(|g| &g.scope));
    let read_only: &[(&str, &str)] = if grants.iter().all(|g| g.scope.read_only) {
        &[("default_transaction_read_only", "on")]
    } else {
        &[]
    };
    let pass_on = crate::startup_settings::upstream_params(&settings, &bounds, read_only);
    let params: Vec<(&str, &str)> = pass_on
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let connected = tokio::time::timeout(
        gw.limits.upstream_connect_timeout,
        upstream::connect(&target, upstreams.tls.as_ref(), &params),
    )
    .await;
    let mut upstream = match connected {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::warn!(connection = %target.name, error = %e, "upstream login failed");
            let (code, message) = match &e {
                UpstreamError::Rejected { .. }
                | UpstreamError::NoPassword
                | UpstreamError::UnsupportedAuth(_) => (
                    sqlstate::SQLSERVER_REJECTED_CONNECTION,
                    format!(
                        "Vigil could not log in to the database of connection \"{}\"",
                        target.name
                    ),
                ),
                _ => (
                    sqlstate::CONNECTION_FAILURE,
                    format!(
                        "Vigil could not reach the database of connection \"{}\"",
                        target.name
                    ),
                ),
            };
            let error = ErrorFields::fatal(code, message)
                .with_hint("this is a problem on Vigil's side: tell your Vigil operator (the gateway log has the cause)");
            return refuse_unrecorded(gw, &mut stream, error, Some(&principal)).await;
        }
        Err(_) => {
            let error = ErrorFields::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!(
                    "Vigil timed out connecting to the database of connection \"{}\"",
                    target.name
                ),
            );
            return refuse_unrecorded(gw, &mut stream, error, Some(&principal)).await;
        }
    };

    // The catalog the analysis resolves names against, read before the client is let in.
    let cache = upstreams.catalog.clone();
    let sql = crate::catalog::unbounded(&crate::catalog::refresh_query(cache.needs_builtins()));
    let catalog = match tokio::time::timeout(
        gw.limits.upstream_connect_timeout,
        upstream::simple_query(&mut upstream.stream, &sql),
    )
    .await
    {
        Ok(Ok(mut sets)) => {
            sets.drain(..crate::catalog::UNBOUNDED_EXTRA_SETS.min(sets.len()));
            cache.load(sets).map_err(|e| e.to_string())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(connection = %target.name, error = %e, "catalog unreadable: refusing session");
            let error = ErrorFields::fatal(
                sqlstate::CONNECTION_FAILURE,
                "Vigil could not read the database catalog it checks statements against, so the session was not opened",
            )
            .with_hint("tell your Vigil operator (the gateway log has the cause)");
            return refuse_unrecorded(gw, &mut stream, error, Some(&principal)).await;
        }
    };
    let withheld = Arc::new(withheld_columns(&grants, &catalog_relations(&cache)));
    let enforced = grants.iter().map(|g| crate::grants::enforced(g)).collect();
    // Scopes a statement may ask to be elevated to (approval-required policies), unless the
    // session already holds a grant of that policy.
    let elevations = gw
        .approvals
        .as_ref()
        .map(|gate| gate.elevations(&principal, &target.name))
        .unwrap_or_default();

    let masking = gw
        .masking
        .as_ref()
        .and_then(|m| m.session(&principal, &target.name));
    let mut ctx = SessionContext {
        masking,
        replay: None,
        review: gw.statement_review.clone(),
        approvals: gw.approvals.clone(),
        revocations: gw.revocations.clone(),
        client_addr: client_addr.clone(),
        reason,
        session_id: SessionId::new(),
        principal,
        connection: target.name.clone(),
        sink: gw.sink.clone(),
        analyzer: gw.analyzer.clone(),
        policy: proxy::SessionPolicy {
            grants: grants.clone(),
            withheld: parking_lot::RwLock::new(withheld),
            cache,
            elevations,
        },
        limits: gw.limits.clone(),
        parameter_mode: gw.parameter_mode,
        parameter_key: gw.parameter_key.clone(),
    };
    let started_at = Timestamp::now();
    let started = Instant::now();
    let start_record = SessionStarted {
        protocol: "postgres".into(),
        client_addr: client_addr.clone(),
        application_name,
        client_tls: stream.is_tls(),
        upstream: target.describe(),
        upstream_user: target.user.clone(),
        upstream_tls: upstream.stream.is_tls(),
        upstream_pid: Some(upstream.key.process_id),
        grants: enforced,
    };
    // Fail closed: no session without its start record.
    if let Err(e) = gw
        .sink
        .append(ctx.draft(Event::SessionStarted(start_record)))
        .await
    {
        tracing::error!(error = %e, "audit trail unavailable: refusing session");
        let error = ErrorFields::fatal(
            sqlstate::SYSTEM_ERROR,
            "Vigil could not record this session in its audit trail, so it was not opened",
        )
        .with_hint(
            "retry later; if this persists, ask your Vigil operator to check the audit store",
        );
        return refuse_unrecorded(gw, &mut stream, error, None).await;
    }

    if let Some(sink) = &gw.replay {
        let header = vigil_core::ReplayHeader {
            session_id: ctx.session_id.to_string(),
            identity: ctx.principal.name.clone(),
            identity_kind: ctx.principal.kind,
            connection: ctx.connection.to_string(),
            client_addr: client_addr.clone(),
            started_at,
        };
        let sink = sink.clone();
        let opened = tokio::task::spawn_blocking(move || sink.open(&header))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match opened {
            Ok(recorder) => ctx.replay = Some(recorder),
            Err(e) => {
                // Fail closed: no session that its capture would miss.
                tracing::error!(error = %e, "replay capture unavailable: refusing session");
                let error = ErrorFields::fatal(
                    sqlstate::SYSTEM_ERROR,
                    "Vigil could not start this session's replay capture, so it was not opened",
                )
                .with_hint("retry later; if this persists, tell your Vigil operator");
                ctx.sink
                    .append_detached(ctx.draft(Event::SessionEnded(SessionEnded {
                        reason: SessionEndReason::AuditUnavailable,
                        started_at,
                        duration_us: started.elapsed().as_micros() as u64,
                        statements: 0,
                        errors: 0,
                        rows: 0,
                        bytes_to_client: 0,
                        bytes_from_client: 0,
                        refused: 0,
                        interrupted: 0,
                        masked: Default::default(),
                        replay_sha256: None,
                        replay_file_sha256: None,
                        replay_truncated: None,
                    })));
                return refuse_unrecorded(gw, &mut stream, error, None).await;
            }
        }
    }

    let client_key = gw.cancels.register(CancelTarget {
        target: target.clone(),
        upstream_key: upstream.key,
    });
    let mut hello = Vec::with_capacity(512);
    if !authenticated_sent {
        encode_ok(&mut hello);
    }
    hello.extend_from_slice(&upstream.parameter_status);
    client_key.encode(&mut hello);
    ReadyForQuery {
        status: TransactionStatus::Idle,
    }
    .encode(&mut hello);
    if let Some(replay) = &ctx.replay {
        replay.record(false, &hello);
    }
    let outcome = if stream.write_all(&hello).await.is_ok() && stream.flush().await.is_ok() {
        let ends = session_ends(grants, gw.revocations.clone(), shutdown, started);
        Some(
            run_proxy(
                &ctx,
                stream,
                upstream.stream,
                upstream.settings,
                catalog,
                ends,
                Teardown {
                    target: target.clone(),
                    tls: upstreams.tls.clone(),
                    key: upstream.key,
                },
            )
            .await,
        )
    } else {
        None
    };
    gw.cancels.unregister(&client_key);

    let (reason, totals, masked) = match outcome {
        Some(o) => (o.reason, o.totals, o.masked),
        None => (
            SessionEndReason::ClientDisconnected,
            Default::default(),
            Default::default(),
        ),
    };
    // Closing the capture waits for its file to be complete: off the async path.
    let replay_end = match ctx.replay.take() {
        Some(replay) => {
            let why = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            tokio::task::spawn_blocking(move || replay.finish(&why))
                .await
                .unwrap_or_default()
        }
        None => Default::default(),
    };
    gw.sink
        .append_detached(ctx.draft(Event::SessionEnded(SessionEnded {
            reason,
            started_at,
            duration_us: started.elapsed().as_micros() as u64,
            statements: totals.statements,
            errors: totals.errors,
            rows: totals.rows,
            bytes_to_client: totals.bytes_to_client,
            bytes_from_client: totals.bytes_from_client,
            refused: totals.refused,
            interrupted: totals.interrupted,
            masked,
            replay_sha256: replay_end.sha256,
            replay_file_sha256: replay_end.file_sha256,
            replay_truncated: replay_end.truncated,
        })));
}

/// What it takes to end the upstream side of a session for certain.
struct Teardown {
    target: Arc<Target>,
    tls: Option<Arc<ClientConfig>>,
    key: BackendKeyData,
}

async fn run_proxy<E>(
    ctx: &SessionContext,
    client: Stream,
    upstream: Stream,
    settings: proxy::ReportedSettings,
    catalog: crate::catalog::SessionCatalog,
    ends: E,
    teardown: Teardown,
) -> proxy::ProxyOutcome
where
    E: std::future::Future<Output = (SessionEndReason, Vec<u8>)>,
{
    match (client, upstream) {
        // Plain TCP on both ends: split without a lock.
        (Stream::Plain(c), Stream::Plain(u)) => {
            let (cr, mut cw) = c.into_split();
            let (ur, uw) = u.into_split();
            proxy_until_end(ctx, cr, &mut cw, ur, uw, settings, catalog, ends, teardown).await
        }
        (c, u) => {
            let (cr, mut cw) = tokio::io::split(c);
            let (ur, uw) = tokio::io::split(u);
            proxy_until_end(ctx, cr, &mut cw, ur, uw, settings, catalog, ends, teardown).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy_until_end<CR, CW, UR, UW, E>(
    ctx: &SessionContext,
    cr: CR,
    cw: &mut CW,
    mut ur: UR,
    mut uw: UW,
    settings: proxy::ReportedSettings,
    catalog: crate::catalog::SessionCatalog,
    ends: E,
    teardown: Teardown,
) -> proxy::ProxyOutcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
    E: std::future::Future<Output = (SessionEndReason, Vec<u8>)>,
{
    let mut outcome = proxy::run(ctx, cr, cw, &mut ur, &mut uw, settings, catalog, ends).await;
    if let Some(farewell) = outcome.farewell.take() {
        let _ = cw.write_all(&farewell).await;
        let _ = cw.flush().await;
    }
    let _ = cw.shutdown().await;
    // A statement still running (its client vanished) would keep the backend, and its locks,
    // until it finished: cancel it, so the Terminate is read at once.
    if outcome.upstream_busy {
        let cancel = upstream::send_cancel(&teardown.target, teardown.tls.as_ref(), teardown.key);
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout(Duration::from_secs(5), cancel)
            .await
            .map_err(|_| UpstreamError::Io(std::io::ErrorKind::TimedOut.into()))
        {
            tracing::warn!(connection = %teardown.target.name, error = %e, "could not cancel the statement of an ended session");
        }
    }
    // Tell the server we are done, so its backend ends at once.
    let mut terminate = Vec::with_capacity(5);
    put_message(&mut terminate, frontend::TERMINATE, |_| {});
    let _ = uw.write_all(&terminate).await;
    let _ = uw.flush().await;
    // The session (and its slot) lasts until the server's backend is gone: session limits
    // count what the server holds, not what the client sees.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sink = [0u8; 8192];
        while matches!(ur.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(connection = %teardown.target.name, "the server's backend of an ended session did not close within 30 s");
    }
    let _ = uw.shutdown().await;
    outcome
}

/// Resolves when the session must end on its own: every grant expired or was revoked, the
/// session reached its longest allowed duration, or the gateway shuts down.
async fn session_ends(
    grants: Vec<Arc<vigil_policy::Grant>>,
    revocations: Arc<Revocations>,
    mut shutdown: watch::Receiver<bool>,
    started: Instant,
) -> (SessionEndReason, Vec<u8>) {
    let fatal =
        |message: String| ErrorFields::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, message).to_bytes();
    let max_session = grants.iter().filter_map(|g| g.scope.max_session).min();
    let mut revoked = revocations.subscribe();
    loop {
        let now = Timestamp::now();
        let live: Vec<&Arc<vigil_policy::Grant>> = grants
            .iter()
            .filter(|g| g.live(now).is_ok() && !revocations.is_revoked(&g.id))
            .collect();
        if live.is_empty() {
            let last = grants.last().map(|g| g.id.as_str()).unwrap_or("");
            return if grants
                .iter()
                .any(|g| revocations.is_revoked(&g.id) || g.revoked_at.is_some())
            {
                (
                    SessionEndReason::GrantRevoked,
                    fatal(format!(
                        "Vigil ended this session: its grant {last} was revoked"
                    )),
                )
            } else {
                (
                    SessionEndReason::GrantExpired,
                    fatal(format!("Vigil ended this session: its grant {last} expired (or its time window closed)")),
                )
            };
        }
        // The next moment the set of live grants can change on its own.
        let next_end = live.iter().filter_map(|g| g.ends_at(now)).min();
        let wait_grants = next_end
            .map(|t| Duration::from_micros(t.micros_since(now)))
            .unwrap_or(Duration::from_secs(3600));
        let wait_session = max_session
            .map(|m| m.saturating_sub(started.elapsed()))
            .unwrap_or(Duration::from_secs(3600));
        if max_session.is_some() && wait_session.is_zero() {
            return (
                SessionEndReason::MaxSessionReached,
                fatal(
                    "Vigil ended this session: it reached the longest duration its grant allows"
                        .into(),
                ),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(wait_grants.min(wait_session) + Duration::from_millis(1)) => {}
            _ = revoked.changed() => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                return (
                    SessionEndReason::Shutdown,
                    ErrorFields::fatal(sqlstate::ADMIN_SHUTDOWN, "Vigil is shutting down").to_bytes(),
                );
            }
        }
    }
}

/// The connection's relations as last read (for the second line of defence).
fn catalog_relations(cache: &crate::catalog::CatalogCache) -> Vec<Arc<vigil_sql::RelationInfo>> {
    cache.relations()
}

/// `(table OID, column number)` of every column that no grant of the session may see: if one
/// comes back in a result anyway, its values are withheld.
pub(crate) fn withheld_columns(
    grants: &[Arc<vigil_policy::Grant>],
    relations: &[Arc<vigil_sql::RelationInfo>],
) -> std::collections::HashSet<(u32, i16)> {
    let mut out = std::collections::HashSet::new();
    for r in relations {
        for c in &r.columns {
            let denied_by_all = grants.iter().all(|g| {
                g.scope.deny_columns.iter().any(|(pattern, columns)| {
                    vigil_policy::RelationPattern::parse(pattern)
                        .is_ok_and(|p| p.matches(&r.schema, &r.name))
                        && columns.iter().any(|cp| cp.matches(&c.name))
                })
            });
            if denied_by_all {
                out.insert((r.oid, c.attnum));
            }
        }
    }
    out
}

/// Takes `vigil.reason` out of the startup `options` (`-c vigil.reason=…` or
/// `--vigil.reason=…`, with `\\ ` for a space, as libpq writes them) and returns it.
fn take_vigil_reason(pass_on: &mut Vec<(String, String)>) -> Option<String> {
    let index = pass_on.iter().position(|(k, _)| k == "options")?;
    // Split as PostgreSQL splits (and as the check of the settings reads them).
    let words = crate::startup_settings::split_options(&pass_on[index].1);
    let mut reason = None;
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let setting = if words[i] == "-c" {
            words.get(i + 1).map(|w| (w.as_str(), 2))
        } else {
            words[i].strip_prefix("--").map(|w| (w, 1))
        };
        match setting {
            Some((w, n)) if w.starts_with("vigil.reason=") => {
                reason = Some(w["vigil.reason=".len()..].to_string());
                i += n;
            }
            _ => {
                kept.push(words[i].clone());
                i += 1;
            }
        }
    }
    reason.as_ref()?;
    if kept.is_empty() {
        pass_on.remove(index);
    } else {
        let escaped: Vec<String> = kept
            .iter()
            .map(|w| crate::startup_settings::escape_option(w))
            .collect();
        pass_on[index].1 = escaped.join(" ");
    }
    reason.filter(|r| !r.is_empty())
}

/// A FATAL refusal with its record.
async fn refuse_recorded(
    gw: &Gateway,
    stream: &mut Stream,
    error: ErrorFields,
    record: AuthFailed,
    principal: Option<&Arc<Principal>>,
) {
    let record = Some(Box::new(record));
    refuse(gw, stream, Refusal::Fatal { error, record }, principal).await
}

/// A FATAL refusal that needs no record of its own (the session's records, or the log, tell
/// the rest).
async fn refuse_unrecorded(
    gw: &Gateway,
    stream: &mut Stream,
    error: ErrorFields,
    principal: Option<&Arc<Principal>>,
) {
    refuse(
        gw,
        stream,
        Refusal::Fatal {
            error,
            record: None,
        },
        principal,
    )
    .await
}

/// Sends a FATAL (if any), records the refusal (if asked), closes.
async fn refuse(
    gw: &Gateway,
    stream: &mut Stream,
    refusal: Refusal,
    principal: Option<&Arc<Principal>>,
) {
    if let Refusal::Fatal { error, record } = refusal {
        if let Some(record) = record {
            tracing::info!(reason = ?record.reason, client = %record.client_addr, "connection refused");
            gw.sink.append_detached(EventDraft {
                at: Timestamp::now(),
                session_id: None,
                identity: principal.cloned(),
                connection: None,
                event: Event::AuthFailed(*record),
            });
        }
        let _ = stream.write_all(&error.to_bytes()).await;
        let _ = stream.flush().await;
    }
    let _ = stream.shutdown().await;
}

/// Reads startup packets until a StartupMessage, answering SSL/GSS requests on the way.
/// `Ok(None)`: the connection was a CancelRequest (handled) or closed.
async fn read_startup(
    gw: &Gateway,
    stream: &mut Stream,
    buf: &mut BytesMut,
    client_addr: &str,
) -> Result<Option<Startup>, Refusal> {
    let mut tls_done = false;
    let mut gss_refused = false;
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return Ok(None);
        }
        // A Terminate ('X', length 4) before any startup packet: a client that closed while
        // connecting (node-postgres's end() right after connect() writes it before its
        // StartupMessage). PostgreSQL closes without a word (its length error is only logged);
        // an error here would reach the client as one of its own.
        if len == [b'X', 0, 0, 0] {
            tracing::debug!(client = client_addr, "Terminate before the startup packet");
            return Ok(None);
        }
        let n = body_len(len)
            .map_err(|e| Refusal::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
        buf.clear();
        buf.resize(n, 0);
        if stream.read_exact(&mut buf[..]).await.is_err() {
            return Ok(None);
        }
        let request = StartupRequest::decode(&buf[..])
            .map_err(|e| Refusal::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
        match request {
            StartupRequest::Ssl if !tls_done => {
                let Some(config) = gw.server_tls.clone() else {
                    stream.write_all(b"N").await.map_err(|_| Refusal::Silent)?;
                    tls_done = true;
                    continue;
                };
                stream.write_all(b"S").await.map_err(|_| Refusal::Silent)?;
                let Stream::Plain(tcp) = std::mem::replace(stream, Stream::Detached) else {
                    return Err(Refusal::Silent);
                };
                let tls = tokio_rustls::TlsAcceptor::from(config)
                    .accept(tcp)
                    .await
                    .map_err(|e| {
                        tracing::debug!(client = client_addr, error = %e, "client TLS handshake failed");
                        Refusal::Silent
                    })?;
                *stream = Stream::ServerTls(Box::new(tls));
                tls_done = true;
            }
            StartupRequest::GssEnc if !gss_refused && !stream.is_tls() => {
                // Vigil does not do GSS encryption; 'N' lets the client go on with TLS or plaintext.
                stream.write_all(b"N").await.map_err(|_| Refusal::Silent)?;
                gss_refused = true;
            }
            StartupRequest::Ssl | StartupRequest::GssEnc => {
                return Err(Refusal::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "encryption negotiated twice",
                ))
            }
            StartupRequest::Cancel {
                process_id,
                secret_key,
            } => {
                forward_cancel(
                    gw,
                    BackendKeyData {
                        process_id,
                        secret_key,
                    },
                )
                .await;
                return Ok(None);
            }
            StartupRequest::Startup(packet) => {
                if gw.tls_mode == ListenerTlsMode::Required && !stream.is_tls() {
                    let user = packet.param("user").unwrap_or_default();
                    let record = AuthFailed {
                        reason: AuthFailureReason::TlsRequired,
                        user: user.chars().take(128).collect(),
                        requested_connection: packet
                            .param("database")
                            .map(|d| d.chars().take(128).collect()),
                        client_addr: client_addr.to_string(),
                        issuer: None,
                        subject: None,
                        detail: "client did not negotiate TLS".into(),
                    };
                    let error = ErrorFields::fatal(
                        sqlstate::INVALID_AUTHORIZATION,
                        "this Vigil listener requires TLS",
                    )
                    .with_hint("connect with sslmode=require (or verify-full)");
                    return Err(Refusal::Fatal {
                        error,
                        record: Some(Box::new(record)),
                    });
                }
                return accept_startup(stream, packet).await.map(Some);
            }
        }
    }
}

async fn accept_startup(
    stream: &mut Stream,
    packet: StartupPacket<'_>,
) -> Result<Startup, Refusal> {
    let Some(user) = packet.param("user").filter(|u| !u.is_empty()) else {
        return Err(Refusal::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no user name given: set user to your Vigil identity",
        ));
    };
    if matches!(packet.param("replication"), Some(v) if !matches!(v, "false" | "off" | "no" | "0"))
    {
        return Err(Refusal::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through Vigil",
        ));
    }
    let database = packet
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user);
    // Protocol 3.x with x > 0, or protocol extensions: say what we speak.
    let unsupported: Vec<&str> = packet
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| *k)
        .collect();
    if packet.minor > 0 || !unsupported.is_empty() {
        let mut msg = Vec::new();
        put_message(&mut msg, backend::NEGOTIATE_PROTOCOL_VERSION, |b| {
            b.extend_from_slice(&(3i32 << 16).to_be_bytes());
            b.extend_from_slice(&(unsupported.len() as i32).to_be_bytes());
            for opt in &unsupported {
                put_cstr(b, opt.as_bytes());
            }
        });
        stream.write_all(&msg).await.map_err(|_| Refusal::Silent)?;
    }
    let pass_on = packet
        .params
        .iter()
        .filter(|(k, _)| {
            !matches!(*k, "user" | "database" | "replication") && !k.starts_with("_pq_.")
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stream = std::mem::replace(stream, Stream::Detached);
    Ok(Startup {
        stream,
        user: user.to_string(),
        database: database.to_string(),
        application_name: packet.param("application_name").map(str::to_string),
        pass_on,
    })
}

/// Asks for the token and reads the PasswordMessage. `Ok(None)`: the client hung up (psql
/// does this to prompt for a password).
async fn read_token(
    gw: &Gateway,
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Option<String>, String> {
    let mut request = Vec::with_capacity(9);
    encode_cleartext_request(&mut request);
    if stream.write_all(&request).await.is_err() || stream.flush().await.is_err() {
        return Ok(None);
    }
    buf.clear();
    loop {
        match next_frame(buf, gw.limits.max_token_bytes) {
            Ok(Some(frame)) => {
                if frame.tag != frontend::PASSWORD {
                    return Err(format!(
                        "expected a password message, got message type {}",
                        crate::codec::TagName(frame.tag)
                    ));
                }
                if frame.len != buf.len() {
                    return Err("messages sent before authentication completed".into());
                }
                let body = frame.body;
                let token = body
                    .strip_suffix(&[0])
                    .ok_or("password message is not NUL-terminated")?;
                let token = std::str::from_utf8(token)
                    .map_err(|_| "the token is not valid UTF-8".to_string())?;
                return Ok(Some(token.to_string()));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("{e} (is this a Vigil token?)")),
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

async fn forward_cancel(gw: &Gateway, key: BackendKeyData) {
    let Some(route) = gw.cancels.lookup(&key) else {
        // As PostgreSQL does: no answer either way, so keys cannot be probed.
        tracing::debug!("cancel request with unknown key ignored");
        return;
    };
    let tls = gw
        .targets
        .get(&*route.target.name)
        .and_then(|u| u.tls.as_ref());
    if let Err(e) = upstream::send_cancel(&route.target, tls, route.upstream_key).await {
        tracing::warn!(connection = %route.target.name, error = %e, "cancel could not be forwarded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_policy::{Grant, Scope};
    use vigil_sql::{CatalogRow, StaticCatalog};

    fn grant(scope_toml: &str) -> Arc<Grant> {
        let scope: Scope = toml::from_str(scope_toml).unwrap();
        Arc::new(Grant {
            id: "g".into(),
            identity: "i".into(),
            connection: "c".into(),
            source: vigil_policy::GrantSource::Policy,
            policy: None,
            scope_digest: scope.digest(),
            scope,
            not_before: Timestamp::from_micros(0),
            expires_at: None,
            created_at: Timestamp::from_micros(0),
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            request_id: None,
        })
    }

    #[test]
    fn withheld_columns_are_those_every_grant_denies() {
        let rows = [
            (16001, "public", "patients", "id", 1),
            (16001, "public", "patients", "ssn", 2),
            (16001, "public", "patients", "home_phone", 3),
            (16002, "archive", "patients", "ssn", 1),
            (16003, "public", "encounters", "ssn", 1),
        ]
        .map(|(oid, schema, name, column, attnum)| {
            CatalogRow::new(oid, schema, name, 'r', Some((column.to_string(), attnum)))
        });
        let catalog = StaticCatalog::from_rows(rows, vec!["public".into()]);
        let relations: Vec<_> = catalog.relations().cloned().collect();
        let strict = grant(
            "relations = [\"*\"]\ndeny_columns = { \"public.patients\" = [\"ssn\", \"*phone*\"] }",
        );
        let mut got: Vec<_> = withheld_columns(std::slice::from_ref(&strict), &relations)
            .into_iter()
            .collect();
        got.sort();
        // Only public.patients' columns, by (OID, attnum); archive.patients and other
        // relations' `ssn` are not matched by the pattern.
        assert_eq!(got, [(16001, 2), (16001, 3)]);
        // A second grant that allows ssn: a column is withheld only if every grant denies it.
        let lenient =
            grant("relations = [\"*\"]\ndeny_columns = { \"patients\" = [\"home_phone\"] }");
        let got: Vec<_> = withheld_columns(&[strict, lenient], &relations)
            .into_iter()
            .collect();
        assert_eq!(got, [(16001, 3)]);
    }
}

#[cfg(test)]
mod reason_tests {
    use super::take_vigil_reason;

    #[test]
    fn the_reason_is_taken_out_of_the_options() {
        let mut p = vec![(
            "options".to_string(),
            "-c vigil.reason=ticket\\ OPS-42 -c work_mem=64MB".to_string(),
        )];
        assert_eq!(take_vigil_reason(&mut p).as_deref(), Some("ticket OPS-42"));
        assert_eq!(p[0].1, "-c work_mem=64MB");
        let mut p = vec![("options".to_string(), "--vigil.reason=backfill".to_string())];
        assert_eq!(take_vigil_reason(&mut p).as_deref(), Some("backfill"));
        assert!(p.is_empty());
        let mut p = vec![("options".to_string(), "-c work_mem=64MB".to_string())];
        assert_eq!(take_vigil_reason(&mut p), None);
        assert_eq!(p[0].1, "-c work_mem=64MB");
    }
}
