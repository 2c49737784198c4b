//! `vigil serve`: build the store, the audit writer, the authenticator, the analyser and the
//! gateways from the config, run them until SIGINT/SIGTERM, then stop in order (listeners,
//! sessions, API, audit writer) so that every session's end record is sealed.

use crate::config::{Config, Protocol};
use crate::wiring::{self, ConfiguredAccess, IdentityAuth};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use vigil_audit::{AuditOptions, AuditWriter};
use vigil_identity::Authenticator;
use vigil_pg::{Gateway, GatewayParts};

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VIGIL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The async runtime, its pool for blocking work bounded by `blocking_threads`
/// (`[limits] blocking_threads`): tokio's default of 512 let a burst of logins leave behind
/// threads whose stacks and allocator caches the process kept.
pub fn runtime(blocking_threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vigil")
        .max_blocking_threads(blocking_threads)
        .build()
        .context("cannot start the async runtime")
}

pub fn run_from_file(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    init_tracing();
    runtime(config.limits.blocking_threads)?.block_on(async {
        let running = start(config).await?;
        wait_for_signal().await;
        running.stop().await
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// A running gateway.
pub struct Running {
    pub store_url: String,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    writer: AuditWriter,
}

pub async fn start(config: Config) -> Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    restrict_permissions(&config.data_dir);

    let stores = wiring::open_store(Some(&config), None)?;
    let key_path = config.signing_key_path()?;
    let signing_key = vigil_audit::load_or_generate_signing_key(&key_path)?;
    let verifying_key = signing_key.verifying_key();
    let mut options = AuditOptions::new(signing_key);
    options.checkpoint_interval = config.audit.checkpoint_interval;
    options.anchor_path = Some(config.anchor_path());
    let writer = AuditWriter::start(stores.audit.clone(), options)
        .context("cannot start the audit trail")?;
    tracing::info!(
        key_id = %vigil_audit::key_id(&verifying_key),
        store = %config.store_url(),
        "audit trail ready"
    );
    // The legal holds of this configuration take effect now: the chain says so.
    let holds = config.retention.policy()?.holds;
    let changes = {
        let (store, writer) = (stores.audit.clone(), writer.clone());
        tokio::task::spawn_blocking(move || {
            vigil_audit::retention::record_hold_changes(&*store, &writer, &holds, "serve")
        })
        .await
        .context("recording legal holds panicked")?
        .context("cannot record the configuration's legal holds")?
    };
    if !changes.placed.is_empty() || !changes.released.is_empty() {
        tracing::info!(placed = ?changes.placed, released = ?changes.released, "legal holds recorded");
    }

    let authenticator = Arc::new(
        Authenticator::new(
            stores.tokens.clone(),
            config.identities.clone(),
            config.oidc_providers.clone(),
        )
        .context("invalid identities or OIDC providers")?,
    );
    {
        let auth = authenticator.clone();
        tokio::spawn(async move {
            for status in auth.warm_up().await {
                tracing::info!(?status, "OIDC provider");
            }
        });
    }
    let analyzer = Arc::new(vigil_sql::Analyzer::with_memory(
        config.limits.analysis_cache_mib,
    ));
    let sink: Arc<dyn vigil_core::EventSink> = Arc::new(writer.clone());
    let revocations = Arc::new(vigil_pg::Revocations::new());
    let grant_provider: Arc<dyn vigil_pg::GrantProvider> =
        Arc::new(crate::grants::PolicyGrants::new(
            stores.grants.clone(),
            stores.access_requests.clone(),
            sink.clone(),
            config.policies.clone(),
            &config.identities,
        ));
    let approval_service = crate::approvals::service(
        crate::approval_store::StoredApprovals {
            requests: stores.access_requests.clone(),
            grants: stores.grants.clone(),
            statements: stores.statement_approvals.clone(),
        },
        sink.clone(),
        revocations.clone(),
        &config.policies,
        &config.identities,
        &config.approvals,
        config.api.as_ref().map(|a| a.listen),
    )?;
    let approvals: Option<Arc<dyn vigil_pg::ApprovalGate>> =
        approval_service.any_session_rules().then(|| {
            Arc::new(crate::approvals::Gate(approval_service.clone()))
                as Arc<dyn vigil_pg::ApprovalGate>
        });
    let statement_review: Option<Arc<dyn vigil_pg::StatementReview>> =
        approval_service.any_statement_review().then(|| {
            Arc::new(crate::approvals::Reviewer(approval_service.clone()))
                as Arc<dyn vigil_pg::StatementReview>
        });
    let access: Arc<dyn vigil_pg::ConnectionAuthorizer> =
        Arc::new(ConfiguredAccess::new(&config.identities));
    let targets = wiring::targets(&config)?;
    let parameter_key = match &config.audit.parameter_key {
        Some(r) => Some(Arc::<[u8]>::from(
            r.resolve()
                .context("audit.parameter_key")?
                .expose()
                .as_bytes(),
        )),
        None => None,
    };
    // Compiled before anything listens: a rule that cannot work stops startup.
    let masking: Option<Arc<dyn vigil_pg::masking::Masking>> = match &config.masking {
        Some(m) if m.enabled => {
            let masker = crate::masking::compile(m).context("invalid [masking] configuration")?;
            tracing::info!(masker = ?masker, "masking on");
            Some(Arc::new(crate::masking::EngineMasking::new(
                masker,
                &config.identities,
            )))
        }
        _ => None,
    };
    let replay: Option<Arc<dyn vigil_core::ReplaySink>> = if config.replay.enabled {
        let dir = config.replay_dir();
        let writer = vigil_replay::CaptureWriter::start_bounded(
            &dir,
            replay_bounds(&config, &sink, &stores.sessions)?,
        )
        .with_context(|| format!("replay captures in {}", dir.display()))?;
        Some(Arc::new(writer))
    } else {
        None
    };

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Session limits count across listeners.
    let slots = Arc::new(vigil_core::SessionSlots::default());
    for listener in &config.listeners {
        match listener.protocol {
            Protocol::Postgres => {}
        }
        let settings = listener.settings();
        let server_tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(vigil_pg::load_server_tls(cert, key)?),
            _ => None,
        };
        let gateway = Gateway::new(GatewayParts {
            listener: settings.clone(),
            server_tls,
            targets: targets.clone(),
            limits: config.limits.clone(),
            authenticator: Arc::new(IdentityAuth(authenticator.clone())),
            authorizer: access.clone(),
            analyzer: analyzer.clone(),
            grants: grant_provider.clone(),
            revocations: revocations.clone(),
            sink: sink.clone(),
            parameter_mode: config.audit.parameters,
            parameter_key: parameter_key.clone(),
            masking: masking.clone(),
            replay: replay.clone(),
            approvals: approvals.clone(),
            statement_review: statement_review.clone(),
            slots: slots.clone(),
        })?;
        let tcp = tokio::net::TcpListener::bind(settings.address)
            .await
            .with_context(|| format!("cannot listen on {}", settings.address))?;
        let addr = tcp.local_addr()?;
        tracing::info!(%addr, tls = ?settings.effective_tls(), "PostgreSQL listener ready");
        tasks.spawn(vigil_pg::serve(tcp, Arc::new(gateway), stopped.clone()));
    }

    {
        let (grants, sink, revocations) =
            (stores.grants.clone(), sink.clone(), revocations.clone());
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = crate::grants::watch(grants, sink, revocations, std::time::Duration::from_secs(1)) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
    if approval_service.any_rules() {
        let approvals = approval_service.clone();
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = approvals.sweep_every(std::time::Duration::from_secs(1)) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
    if let Some(api) = &config.api {
        let token = api.admin_token.resolve().context("api.admin_token")?;
        let state = vigil_api::ApiState {
            audit: stores.audit.clone(),
            sessions: stores.sessions.clone(),
            grants: stores.grants.clone(),
            requests: stores.access_requests.clone(),
            verifying_key,
            anchor_path: Some(config.anchor_path()),
            admin_token: token,
            auditor_token: api
                .auditor_token
                .as_ref()
                .map(|t| t.resolve().context("api.auditor_token"))
                .transpose()?,
            // Captures written while captures were on stay readable after they are turned off.
            replay_dir: Some(config.replay_dir()),
            access_requests: Some(vigil_api::access_requests::AccessRequests {
                approvals: approval_service.clone(),
                callers: Arc::new(crate::approvals::ApiCallers(authenticator.clone())),
            }),
        };
        if state
            .auditor_token
            .as_ref()
            .is_some_and(|a| a.expose() == state.admin_token.expose())
        {
            anyhow::bail!("api.auditor_token must differ from api.admin_token (separate roles)");
        }
        let tcp = tokio::net::TcpListener::bind(api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (api)", api.listen))?;
        tracing::info!(addr = %tcp.local_addr()?, "HTTP API ready");
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(tcp, vigil_api::router(state))
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        });
    }

    Ok(Running {
        store_url: config.store_url(),
        stop,
        tasks,
        writer,
    })
}

impl Running {
    /// Ends sessions, stops listeners and the API, then seals and closes the audit trail.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || writer.shutdown())
            .await
            .context("audit writer shutdown panicked")?
            .context("the audit trail could not be sealed at shutdown")?;
        tracing::info!("stopped");
        Ok(())
    }
}

fn restrict_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// `[replay]`'s bounds: legal holds from `[retention]`, rotations recorded in the audit trail
/// (durably) before their files go, encryption to `encrypt_to`.
fn replay_bounds(
    config: &Config,
    sink: &Arc<dyn vigil_core::EventSink>,
    index: &Arc<dyn vigil_store::SessionsIndex>,
) -> Result<vigil_replay::CaptureBounds> {
    let index = index.clone();
    let holds = Arc::new(config.retention.policy()?.holds);
    let sink = sink.clone();
    let nonzero = |v: u64| (v != 0).then_some(v);
    Ok(vigil_replay::CaptureBounds {
        max_session_bytes: nonzero(config.replay.max_session_bytes),
        max_total_bytes: nonzero(config.replay.max_total_bytes),
        compress: config.replay.compress,
        encrypt_to: config.replay.recipients()?,
        is_held: Arc::new(move |h: &vigil_core::ReplayHeader| {
            holds.iter().any(|hold| {
                hold.covers(
                    Some(&h.session_id),
                    Some(&h.identity),
                    h.started_at.as_micros(),
                )
            })
        }),
        record_rotation: Arc::new(move |rotated| {
            let draft = vigil_core::EventDraft::new(vigil_core::Event::ReplayCapturesRotated(
                rotated.clone(),
            ));
            vigil_audit::wait_durable(sink.append(draft))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        // An encrypted capture's header is not readable here: whose it is (what holds and
        // rotation look at: the session, the identity, the start) comes from the session index.
        describe: Arc::new(move |session_id: &str| {
            let session = index.session_index(session_id).ok().flatten()?;
            Some(vigil_core::ReplayHeader {
                session_id: session.session_id,
                identity: session.identity.unwrap_or_default(),
                identity_kind: vigil_core::IdentityKind::default(),
                connection: session.connection.unwrap_or_default(),
                client_addr: String::new(),
                started_at: vigil_core::Timestamp::from_micros(session.started_at_us),
            })
        }),
    })
}
