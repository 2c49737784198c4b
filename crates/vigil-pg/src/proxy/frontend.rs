//! Client → server: decode, analyse, record (durably, before forwarding), forward.
//!
//! Messages are handled in batches: everything whole in one read is scanned, the start records
//! of its statements are appended in one atomic call and awaited once, and then the batch is
//! written upstream in one write. If the audit trail refuses the records, each statement of the
//! batch is replaced by a *stand-in*: an Execute of a portal that cannot exist. The server
//! answers it with an error and, in a pipeline, skips to the next Sync, exactly as if the
//! statement had failed; the backend half then swaps the server's error for Vigil's. This keeps
//! the server's transaction state and the client's view of the protocol in step without Vigil
//! having to fake a server.

use super::names::{self, Named, Position};
use super::{
    Change, Internal, Item, ItemKind, LexSettings, Link, MutationEntry, Namespace, Portal,
    Prepared, Run, SessionContext, Slot,
};
use crate::catalog::SessionCatalog;
use crate::codec::{next_frame, Frame};
use crate::encoding::TextEncoding;
use crate::messages::execute::encode_sync;
use crate::messages::tag::frontend as tag;
use crate::messages::{
    Bind, Close, Describe, ErrorFields, Execute, FunctionCall, Parse, Query, Target,
};
use crate::protocol_path::StatementProtocol;
use crate::sqlstate;
use bytes::{Buf, BytesMut};
use hmac::{Hmac, Mac};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vigil_core::event::{
    Event, NamedKind, ParameterMode, PolicyDenied, RecordedParameters, SessionEndReason,
    SessionGrantAdded, StatementShape, StatementStarted,
};
use vigil_core::EventDraft;
use vigil_policy::{Decision, Denial, Grant};
use vigil_sql::{Access, CommandClass, HazardKind};

/// The portal name of stand-in Executes. Clients may not use it (a Bind naming it is refused),
/// so the server always answers "portal does not exist".
pub(crate) const STAND_IN_PORTAL: &[u8] = b"\x01vigil-refused";

const READ_CHUNK: usize = 16 * 1024;

/// A change to the forwarded batch: `start..end` replaced.
struct Edit {
    start: usize,
    end: usize,
    with: EditKind,
}

enum EditKind {
    /// The stand-in, with a Sync when the refused message was not itself inside a pipeline
    /// (simple Query, FunctionCall): the client will wait for ReadyForQuery.
    StandIn { with_sync: bool },
    /// These bytes instead: Vigil's own message inserted (`end == start`), or nothing (a
    /// message the server would skip).
    Replace(Vec<u8>),
}

/// A statement of the current batch, in case the audit trail refuses the batch.
struct BatchStatement {
    item_id: u64,
    start: usize,
    end: usize,
    simple: bool,
}

/// A statement about to be forwarded, for [`Frontend::start_statement`].
struct Start {
    protocol: StatementProtocol,
    /// The text that runs (for an Execute, the prepared statement's).
    shape: Arc<StatementShape>,
    prepared_statement: Option<String>,
    parameters: Option<RecordedParameters>,
    grant: Option<Arc<Grant>>,
    request_id: Option<String>,
    /// An Execute's result formats (from its Bind).
    result_formats: Option<Arc<[u8]>>,
    /// The portal an Execute runs (its rows count against the grant's caps together).
    portal: Option<Arc<[u8]>>,
    /// The names it uses and what it does to them.
    named: Option<Named>,
}

/// What scanning a message decided.
enum Step {
    /// Keep scanning.
    Next,
    /// The message depends on the outcome of item `id`, not yet known: forward what came
    /// before, wait, then look at the message again.
    WaitFor(u64),
    /// The client asked to end the session.
    Terminate,
    /// The catalog must be read again before the message can be checked: forward what came
    /// before, run the internal query, then look at the message again.
    RefreshCatalog,
    /// The statement needs an approval first (an elevation, or a reviewer's): forward what came
    /// before, settle it with the binary (raise or reuse the request; with `mode = "wait"`,
    /// wait for the decision), then look at the message again.
    Hold(Box<Hold>),
}

/// Why a statement waits for a human.
enum Hold {
    /// The session's grants refuse it and the scope of approval-required `policy` allows it.
    Elevate {
        policy: String,
        shape: Arc<StatementShape>,
    },
    /// `grant` allows it, but its policy holds statements of this kind for review.
    Review {
        grant: Arc<Grant>,
        access: Arc<Access>,
        exact_text: Vec<u8>,
        literal_text: Option<String>,
    },
}

/// What a hold came to, for the message looked at again.
enum Resolved {
    /// A reviewer approved this very statement (the approval is now used): it runs.
    Reviewed {
        request_id: String,
    },
    Refused(Refused),
}

/// A refusal, as the client and the `PolicyDenied` record get it.
struct Refused {
    denial: Denial,
    grant_id: Option<String>,
    /// The access request the refusal names.
    request_id: Option<String>,
    /// Instead of the usual "ask your administrator" hint.
    hint: Option<String>,
    /// Where in the text the refused name is (an unknown relation or column).
    position: Option<u32>,
}

impl From<(Denial, Option<String>)> for Refused {
    fn from((denial, grant_id): (Denial, Option<String>)) -> Self {
        Refused {
            denial,
            grant_id,
            request_id: None,
            hint: None,
            position: None,
        }
    }
}

/// What the session's grants (and review, and elevation) say of a statement.
enum Verdict {
    Allow {
        grant: Arc<Grant>,
        /// The approval it runs under (its grant's request, or a reviewer's approval).
        request_id: Option<String>,
    },
    Deny(Refused),
    Hold(Box<Hold>),
}

struct Frontend<'a> {
    ctx: &'a SessionContext,
    link: &'a Link,
    next_item: u64,
    /// Sync-delimited segment the scan is in.
    segment: u64,
    statement_seq: u64,
    /// The last Execute forwarded, until a CopyDone/CopyFail or another message ends the
    /// window in which a Sync could be swallowed by copy-in mode.
    copy_window: Option<u64>,
    drafts: Vec<EventDraft>,
    edits: Vec<Edit>,
    statements: Vec<BatchStatement>,
    out: Vec<u8>,
    /// Prepared-statement shapes by text, so that re-preparing the same text (drivers do it
    /// for every unnamed statement) skips the analyser. All read with `shapes_read_with`: the
    /// same bytes can hold other literals after `SET standard_conforming_strings` or
    /// `SET client_encoding`, so the cache is emptied when the settings change.
    accesses_by_text: HashMap<Box<[u8]>, Arc<Access>>,
    accesses_read_with: Option<(LexSettings, u64)>,
    /// The connection's catalog under this session's search path.
    catalog: SessionCatalog,
    /// A statement that may change the catalog or the search path was forwarded: read both
    /// again before the next statement is checked.
    catalog_stale: bool,
    /// Extended-protocol messages were sent since the last Sync (no internal query then).
    in_segment: bool,
    /// Vigil refused a message of this extended-protocol segment: the server will fail its
    /// stand-in and skip everything up to the Sync, so what follows until then is neither
    /// decided nor recorded (nor sent: the server would ignore it).
    skipping: bool,
    /// The catalog was just read again for the message being looked at (read it once only).
    just_refreshed: bool,
    /// The last read of the catalog failed: statements are refused until one succeeds.
    catalog_unreadable: bool,
    /// Item id of the last statement (Query, Execute, FunctionCall) forwarded.
    last_statement: u64,
    /// The item after `last_statement` that the server will answer with ReadyForQuery (the
    /// statement itself if simple, or a later Sync), if any.
    ready_after_last_statement: Option<u64>,
    /// Whether the last Execute may have started COPY FROM STDIN (see `copy_window`).
    execute_may_copy_in: bool,
    /// The grants statements are decided under: the session's, less those revoked since, plus
    /// those it was elevated to.
    grants: Vec<Arc<Grant>>,
    /// Ids of the grants the session was elevated to (they leave when they end).
    elevated: Vec<String>,
    /// `Revocations::epoch` when `grants` was last checked against it.
    revocation_epoch: u64,
    /// The message being looked at asked for an elevation already (ask once).
    elevation_tried: bool,
    /// The outcome of the hold of the message being looked at.
    resolved: Option<Resolved>,
}

/// How a statement's text is to be read.
enum Reading {
    /// With these settings: what the server does with it.
    With(LexSettings),
    /// The settings may have changed (a statement that may have changed them is still in
    /// flight), the text reads differently depending on them, and no ReadyForQuery is coming
    /// to settle it: record it without its text.
    Withheld,
}

/// The shape recorded for a text whose literals Vigil cannot place for certain.
fn withheld_shape() -> Arc<StatementShape> {
    let text = "$1".to_string();
    Arc::new(StatementShape {
        fingerprint: fingerprint_of(&text),
        text,
        commands: Vec::new(),
        command_classes: Vec::new(),
        objects: Vec::new(),
        parse_error: Some(
            "not analysed: the text reads differently depending on standard_conforming_strings \
             or client_encoding, which an earlier statement still in flight may have changed; \
             recorded as one placeholder"
                .into(),
        ),
    })
}

/// A refusal of a name the catalog does not have, with where the name is in the text (as
/// PostgreSQL's own error has it: clients show it, and some read it).
fn with_position(mut refused: Refused, text: &[u8]) -> Refused {
    if refused.denial.rule == "unresolved" && matches!(refused.denial.sqlstate, "42P01" | "42703") {
        refused.position = quoted_name(&refused.denial.reason)
            .and_then(|name| name_position(&String::from_utf8_lossy(text), name));
    }
    refused
}

/// The name in `relation "x" does not exist`.
fn quoted_name(reason: &str) -> Option<&str> {
    let start = reason.find('"')? + 1;
    let end = start + reason[start..].rfind('"')?;
    Some(&reason[start..end])
}

/// 1-based character position of `name` in `text` as a whole identifier (any case), outside
/// string literals; `None` if not found.
fn name_position(text: &str, name: &str) -> Option<u32> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let lower = text.to_lowercase();
    let wanted = name.to_lowercase();
    if lower.len() != text.len() || wanted.is_empty() {
        return None;
    }
    let mut in_string = false;
    for (at, c) in lower.char_indices() {
        if c == '\'' {
            in_string = !in_string;
            continue;
        }
        if in_string || !lower[at..].starts_with(&wanted) {
            continue;
        }
        let before = lower[..at].chars().next_back();
        let after = lower[at + wanted.len()..].chars().next();
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            continue;
        }
        return u32::try_from(lower[..at].chars().count() + 1).ok();
    }
    None
}

/// A message refused before it reached the server.
fn refusal(code: &'static str, message: String, hint: Option<&str>) -> Arc<[u8]> {
    let mut fields = ErrorFields::error(code, message);
    if let Some(h) = hint {
        fields = fields.with_hint(h);
    }
    fields.to_bytes().into()
}

fn protocol_violation(message: String) -> (SessionEndReason, Option<Vec<u8>>) {
    (
        SessionEndReason::ProtocolError,
        Some(ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, message).to_bytes()),
    )
}

fn replay_failed() -> (SessionEndReason, Option<Vec<u8>>) {
    tracing::error!("replay capture failed: ending the session");
    (
        SessionEndReason::AuditUnavailable,
        Some(
            ErrorFields::fatal(
                sqlstate::SYSTEM_ERROR,
                "Vigil could not record this session's replay capture, so the session was ended",
            )
            .with_hint("tell your Vigil operator (the gateway log has the cause)")
            .to_bytes(),
        ),
    )
}

fn show_name(name: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(name)
}

/// Ends a session whose client left a transaction open without a Sync for longer than its
/// grant's `idle_in_transaction_timeout`, as the server would have (25P03).
fn idle_in_transaction() -> (SessionEndReason, Option<Vec<u8>>) {
    let error = ErrorFields::fatal(
        "25P03",
        "terminating connection due to idle-in-transaction timeout (Vigil: messages were left without a Sync)",
    );
    (SessionEndReason::IdleTimeout, Some(error.to_bytes()))
}

pub(super) async fn run<R, W>(
    ctx: &SessionContext,
    link: &Link,
    mut client: R,
    mut upstream: W,
    catalog: SessionCatalog,
) -> (SessionEndReason, Option<Vec<u8>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut f = Frontend {
        ctx,
        link,
        next_item: 0,
        segment: 0,
        statement_seq: 0,
        copy_window: None,
        drafts: Vec::new(),
        edits: Vec::new(),
        statements: Vec::new(),
        out: Vec::new(),
        accesses_by_text: HashMap::new(),
        accesses_read_with: None,
        catalog,
        catalog_stale: false,
        in_segment: false,
        skipping: false,
        just_refreshed: false,
        catalog_unreadable: false,
        last_statement: 0,
        ready_after_last_statement: None,
        execute_may_copy_in: false,
        grants: ctx.policy.grants.clone(),
        elevated: Vec::new(),
        revocation_epoch: ctx.revocations.epoch(),
        elevation_tried: false,
        resolved: None,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // The server arms idle_in_transaction_session_timeout only when it sends ReadyForQuery: a
    // client that leaves a transaction open without a Sync is timed here instead.
    let idle_bound = vigil_policy::SessionBounds::of(ctx.policy.grants.iter().map(|g| &g.scope))
        .idle_in_transaction_timeout;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            let want = crate::codec::pending_len(&buf)
                .map(|total| total.saturating_sub(buf.len()))
                .unwrap_or(0)
                .max(READ_CHUNK);
            buf.reserve(want);
        }
        let read = match idle_bound {
            Some(bound) => {
                // Idle: nothing owed by the server at one check, and no client byte for a whole
                // bound after it (so between one and two bounds of real idleness).
                let mut server_idle_since_check = false;
                loop {
                    match tokio::time::timeout(bound, client.read_buf(&mut buf)).await {
                        Ok(read) => break read,
                        Err(_) => {
                            let waiting = f.in_segment && link.shared.lock().items.is_empty();
                            if waiting && server_idle_since_check {
                                return idle_in_transaction();
                            }
                            server_idle_since_check = waiting;
                        }
                    }
                }
            }
            None => client.read_buf(&mut buf).await,
        };
        let n = match read {
            Ok(0) => return (SessionEndReason::ClientDisconnected, None),
            Ok(n) => n,
            Err(_) => return (SessionEndReason::ClientDisconnected, None),
        };
        link.shared.lock().totals.bytes_from_client += n as u64;
        if let Some(replay) = &ctx.replay {
            // Nothing the capture missed may reach the database.
            if !replay.healthy() {
                return replay_failed();
            }
            replay.record(true, &buf[buf.len() - n..]);
        }

        let mut pos = 0;
        loop {
            let frame = match next_frame(&buf[pos..], ctx.limits.max_message_bytes) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return protocol_violation(e.to_string()),
            };
            let (start, end) = (pos, pos + frame.len);
            match f.scan(frame, start, end) {
                Ok(Step::Next) => {
                    pos = end;
                    f.just_refreshed = false;
                    f.elevation_tried = false;
                    f.resolved = None;
                }
                Ok(Step::Hold(hold)) => {
                    if f.flush(&mut buf, pos, &mut upstream).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    pos = 0;
                    f.hold(*hold).await;
                }
                Ok(Step::Terminate) => {
                    pos = end;
                    if f.flush(&mut buf, pos, &mut upstream).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    return (SessionEndReason::ClientTerminated, None);
                }
                Ok(Step::WaitFor(id)) => {
                    if f.flush(&mut buf, pos, &mut upstream).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    pos = 0;
                    // The server holds its answers until Sync or Flush: ask for them.
                    let mut flush_msg = Vec::with_capacity(5);
                    crate::codec::put_message(&mut flush_msg, tag::FLUSH, |_| {});
                    if upstream.write_all(&flush_msg).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    loop {
                        let settled = link.settled.notified();
                        if link.shared.lock().popped_through >= id {
                            break;
                        }
                        settled.await;
                    }
                }
                Ok(Step::RefreshCatalog) => {
                    if f.flush(&mut buf, pos, &mut upstream).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    pos = 0;
                    if f.refresh_catalog(&mut upstream).await.is_err() {
                        return (SessionEndReason::UpstreamClosed, None);
                    }
                    f.just_refreshed = true;
                }
                Err(message) => return protocol_violation(message),
            }
        }
        if pos > 0 && f.flush(&mut buf, pos, &mut upstream).await.is_err() {
            return (SessionEndReason::UpstreamClosed, None);
        }
    }
}

impl Frontend<'_> {
    fn new_item_id(&mut self) -> u64 {
        self.next_item += 1;
        self.next_item
    }

    /// The shape of statement text read with `settings`.
    fn analyze(&self, text: &[u8], settings: LexSettings) -> Arc<StatementShape> {
        self.ctx.analyzer.analyze(
            &settings.encoding.decode(text),
            vigil_sql::LexOptions {
                standard_conforming_strings: settings.standard_conforming_strings,
            },
        )
    }

    /// How to read `text`, a statement the client sends now. `Err(id)`: wait until item `id`
    /// (a ReadyForQuery) is answered, then ask again.
    ///
    /// The server lexes a text with its settings of the moment; it reports a change to them
    /// (ParameterStatus) only just before its next ReadyForQuery. While a statement sent
    /// earlier is not yet answered by one, it may have changed them (`SET`, `set_config()`, a
    /// `ROLLBACK` undoing either…). That matters only for a text whose literals are placed
    /// differently with other settings (it needs a backslash): it waits for the
    /// ReadyForQuery if one is coming, and otherwise (same extended-protocol segment) is
    /// recorded without its text.
    fn reading(&self, text: &[u8]) -> Result<Reading, u64> {
        let (settings, settled) = {
            let shared = self.link.shared.lock();
            (shared.lex, shared.ready_through >= self.last_statement)
        };
        if settled || !text.contains(&b'\\') {
            return Ok(Reading::With(settings));
        }
        let other = LexSettings {
            standard_conforming_strings: !settings.standard_conforming_strings,
            ..settings
        };
        let ambiguous = TextEncoding::ambiguous_across_encodings(text)
            || self.analyze(text, settings).text != self.analyze(text, other).text;
        match (ambiguous, self.ready_after_last_statement) {
            (false, _) => Ok(Reading::With(settings)),
            (true, Some(id)) => Err(id),
            (true, None) => Ok(Reading::Withheld),
        }
    }

    /// The access analysis of `text` read with `settings`, against the current catalog.
    fn access(&mut self, text: &[u8], settings: LexSettings) -> Arc<Access> {
        let catalog = self.catalog.current(&self.ctx.policy.cache);
        let key = (settings, vigil_sql::Catalog::version(&*catalog));
        // Re-preparing the same text (drivers do it for every unnamed statement) skips even
        // the normalizer; the cache is emptied when the settings or the catalog change.
        if self.accesses_read_with != Some(key) {
            self.accesses_by_text.clear();
            self.accesses_read_with = Some(key);
        }
        if let Some(a) = self.accesses_by_text.get(text) {
            return a.clone();
        }
        let access = self.ctx.analyzer.access(
            &settings.encoding.decode(text),
            vigil_sql::LexOptions {
                standard_conforming_strings: settings.standard_conforming_strings,
            },
            &*catalog,
        );
        // Bounded like the session's statements: a client cannot grow it without limit.
        if self.accesses_by_text.len() >= self.ctx.limits.max_prepared_statements {
            self.accesses_by_text.clear();
        }
        self.accesses_by_text.insert(text.into(), access.clone());
        access
    }

    /// The access of a statement text, or `None` when it cannot be read for certain (then it
    /// cannot be checked either, and is refused).
    fn access_of(&mut self, text: &[u8], reading: Reading) -> Option<Arc<Access>> {
        match reading {
            Reading::With(settings) => Some(self.access(text, settings)),
            Reading::Withheld => None,
        }
    }

    /// Drops the grants the session may no longer use: revoked ones (a session that holds
    /// others goes on without them), and elevations that ended. The second line follows.
    fn prune_grants(&mut self) {
        let epoch = self.ctx.revocations.epoch();
        if epoch == self.revocation_epoch && self.elevated.is_empty() {
            return;
        }
        self.revocation_epoch = epoch;
        let now = vigil_core::Timestamp::now();
        let before = self.grants.len();
        let (revocations, elevated) = (&self.ctx.revocations, &self.elevated);
        self.grants.retain(|g| {
            let ended = elevated.contains(&g.id) && g.live(now).is_err();
            !revocations.is_revoked(&g.id) && !ended
        });
        if self.grants.len() != before {
            let grants = &self.grants;
            self.elevated
                .retain(|id| grants.iter().any(|g| &g.id == id));
            self.refresh_withheld();
        }
    }

    /// The second line (columns no grant of the session allows), for the grants held now.
    fn refresh_withheld(&self) {
        let withheld =
            crate::server::withheld_columns(&self.grants, &self.ctx.policy.cache.relations());
        *self.ctx.policy.withheld.write() = Arc::new(withheld);
    }

    /// Decides a statement under the session's grants. `checked` has each `EXECUTE name` and
    /// `FETCH name` merged with what the name runs ([`names::resolve`]).
    fn decide(&mut self, checked: &Access) -> Result<Arc<Grant>, (Denial, Option<String>)> {
        self.prune_grants();
        match vigil_policy::decide(
            &self.grants,
            checked,
            &self.catalog.functions(),
            vigil_core::Timestamp::now(),
        ) {
            Decision::Allow(g) => match self.masking_refusal(checked) {
                Some(denial) => Err((denial, Some(g.id.clone()))),
                None => Ok(g),
            },
            Decision::Deny { denial, grant_id } => Err((denial, grant_id)),
        }
    }

    /// The approval-required policy whose scope would allow what the session's grants refuse,
    /// if any (and if nothing else, masking, would refuse it anyway).
    fn elevation_for(&self, checked: &Access) -> Option<String> {
        if self.ctx.policy.elevations.is_empty() || self.ctx.approvals.is_none() {
            return None;
        }
        let now = vigil_core::Timestamp::now();
        let functions = self.catalog.functions();
        let elevation = self.ctx.policy.elevations.iter().find(|e| {
            e.scope.window.as_ref().is_none_or(|w| w.is_open(now))
                && e.scope.check(checked, &functions).is_ok()
        })?;
        if self.masking_refusal(checked).is_some() {
            return None;
        }
        Some(elevation.policy.clone())
    }

    /// Decides a statement (its names looked up), with per-statement review (`review`: the
    /// bytes an approval is for, and whether they hold literals) and elevation.
    /// The refusal of a statement (Query, Parse) while the catalog could not be read again.
    fn unreadable_catalog(&self) -> Option<Refused> {
        self.catalog_unreadable
            .then(|| (catalog_unread(), None).into())
    }

    fn verdict(&mut self, named: &Named, review: Option<(&[u8], bool)>) -> Verdict {
        let reviewed = match self.resolved.take() {
            Some(Resolved::Refused(r)) => return Verdict::Deny(r),
            Some(Resolved::Reviewed { request_id }) => Some(request_id),
            None => None,
        };
        if let Some(denial) = &named.refused {
            return Verdict::Deny((denial.clone(), None).into());
        }
        let access = &named.checked;
        match self.decide(access) {
            Ok(grant) => {
                if let (Some(reviewer), Some((exact, literals))) = (&self.ctx.review, review) {
                    if reviewer.needs_review(&grant, access) {
                        if let Some(request_id) = reviewed {
                            return Verdict::Allow {
                                grant,
                                request_id: Some(request_id),
                            };
                        }
                        let literal_text = literals.then(|| {
                            let encoding = self.link.shared.lock().lex.encoding;
                            encoding.decode(exact).into_owned()
                        });
                        return Verdict::Hold(Box::new(Hold::Review {
                            grant,
                            access: access.clone(),
                            exact_text: exact.to_vec(),
                            literal_text,
                        }));
                    }
                }
                let request_id = grant.request_id.clone();
                Verdict::Allow { grant, request_id }
            }
            Err(refusal) => {
                if !self.elevation_tried {
                    if let Some(policy) = self.elevation_for(access) {
                        return Verdict::Hold(Box::new(Hold::Elevate {
                            policy,
                            shape: access.shape.clone(),
                        }));
                    }
                }
                Verdict::Deny(refusal.into())
            }
        }
    }

    /// Settles a hold with the binary; the outcome waits in `resolved` (or the session holds
    /// the new grant) for the message to be looked at again.
    async fn hold(&mut self, hold: Hold) {
        let session_id = self.ctx.session_id.to_string();
        match hold {
            Hold::Elevate { policy, shape } => {
                self.elevation_tried = true;
                let Some(gate) = self.ctx.approvals.clone() else {
                    return;
                };
                let ask = crate::ElevationAsk {
                    principal: &self.ctx.principal,
                    connection: &self.ctx.connection,
                    session_id: &session_id,
                    client_addr: &self.ctx.client_addr,
                    reason: self.ctx.reason.as_deref(),
                    policy: &policy,
                    shape: &shape,
                };
                let pending = gate.elevate(ask).await;
                let outcome = self.settle(pending, "approval_required", None).await;
                match outcome {
                    Ok(grant) => {
                        if let Err(r) = self.add_grant(grant).await {
                            self.resolved = Some(Resolved::Refused(r));
                        }
                    }
                    Err(r) => self.resolved = Some(Resolved::Refused(r)),
                }
            }
            Hold::Review {
                grant,
                access,
                exact_text,
                literal_text,
            } => {
                let Some(reviewer) = self.ctx.review.clone() else {
                    return;
                };
                let ask = crate::ReviewAsk {
                    principal: &self.ctx.principal,
                    connection: &self.ctx.connection,
                    session_id: &session_id,
                    grant: &grant,
                    access: &access,
                    exact_text: &exact_text,
                    literal_text,
                };
                let pending = reviewer.hold(ask).await;
                let grant_id = Some(grant.id.clone());
                self.resolved = Some(
                    match self.settle(pending, "statement_review", grant_id).await {
                        Ok(request_id) => Resolved::Reviewed { request_id },
                        Err(r) => Resolved::Refused(r),
                    },
                );
            }
        }
    }

    /// Waits out a pending approval (`Wait`: the client is told by a notice), or turns it into
    /// the refusal the client gets.
    async fn settle<T>(
        &self,
        pending: Result<crate::Pending<T>, String>,
        rule: &'static str,
        grant_id: Option<String>,
    ) -> Result<T, Refused> {
        let refused = |reason: String, request_id: Option<String>, hint: &str| Refused {
            denial: Denial {
                rule,
                reason,
                sqlstate: sqlstate::INSUFFICIENT_PRIVILEGE,
            },
            grant_id: grant_id.clone(),
            request_id,
            hint: Some(hint.to_string()),
            position: None,
        };
        match pending {
            Ok(crate::Pending::Ready(t)) => Ok(t),
            Ok(crate::Pending::Fail {
                request_id,
                message,
                hint,
            }) => Err(refused(message, Some(request_id), &hint)),
            Ok(crate::Pending::Wait {
                request_id,
                notice,
                decided,
            }) => {
                let notice = ErrorFields::new(
                    crate::messages::error_response::Severity::Notice,
                    "00000",
                    notice,
                );
                self.link.send_to_client(&notice.to_bytes());
                decided.await.map_err(|why| {
                    refused(
                        why,
                        Some(request_id),
                        "nothing was run; ask an approver, then send the statement again",
                    )
                })
            }
            Err(e) => {
                tracing::error!(session = %self.ctx.session_id, error = %e, "access request failed: refusing statement");
                Err(Refused {
                    denial: Denial {
                        rule,
                        reason: "Vigil could not raise an access request for this statement".into(),
                        sqlstate: sqlstate::SYSTEM_ERROR,
                    },
                    grant_id: grant_id.clone(),
                    request_id: None,
                    hint: Some(
                        "nothing was run; retry later; if this persists, tell your Vigil operator"
                            .into(),
                    ),
                    position: None,
                })
            }
        }
    }

    /// The session now holds `grant` too (an approved elevation): recorded
    /// (`SessionGrantAdded`) before any statement runs under it.
    async fn add_grant(&mut self, grant: Arc<Grant>) -> Result<(), Refused> {
        if self.grants.iter().any(|g| g.id == grant.id) {
            return Ok(());
        }
        let draft = self.ctx.draft(Event::SessionGrantAdded(SessionGrantAdded {
            grant: crate::grants::enforced(&grant),
        }));
        if let Err(e) = self.ctx.sink.append(draft).await {
            tracing::error!(session = %self.ctx.session_id, error = %e, "audit trail unavailable: grant not added");
            return Err(Refused {
                denial: Denial {
                    rule: "approval_required",
                    reason: "Vigil could not record the grant this statement needs in its audit trail, so it was not run".into(),
                    sqlstate: sqlstate::SYSTEM_ERROR,
                },
                grant_id: Some(grant.id.clone()),
                request_id: grant.request_id.clone(),
                hint: Some("retry later; if this persists, ask your Vigil operator to check the audit store".into()),
                position: None,
            });
        }
        tracing::info!(session = %self.ctx.session_id, grant = %grant.id, "session elevated");
        self.elevated.push(grant.id.clone());
        self.grants.push(grant);
        self.refresh_withheld();
        Ok(())
    }

    /// Masked columns may only leave as bare result columns, where PostgreSQL names them in
    /// RowDescription and their values are masked on the way: a statement that reads one in an
    /// expression, a filter, an ordering, a join, a set operation or into another table (its
    /// result would carry the value, or facts about it, unmasked), or copies one out (a copy
    /// stream names no columns), is refused; so is a write the server compares with one
    /// (`StatementAccess::compared`).
    fn masking_refusal(&self, access: &Access) -> Option<vigil_policy::Denial> {
        let masking = self.ctx.masking.as_deref()?;
        let mut relations = None;
        for s in &access.statements {
            let copy_out = s.class == vigil_sql::CommandClass::CopyOut;
            for r in s.relations.iter().filter(|r| r.read) {
                let used = if copy_out {
                    &r.read_columns
                } else {
                    &r.derived_columns
                };
                if used.is_empty() {
                    continue;
                }
                let schema = r.relation.schema.as_deref().unwrap_or("public");
                let columns: Vec<String> = match used {
                    vigil_sql::ColumnSet::Columns(c) => c.clone(),
                    vigil_sql::ColumnSet::All => {
                        let all =
                            relations.get_or_insert_with(|| self.ctx.policy.cache.relations());
                        all.iter()
                            .find(|rel| Some(rel.oid) == r.oid)
                            .map(|rel| rel.columns.iter().map(|c| c.name.clone()).collect())
                            .unwrap_or_default()
                    }
                };
                for column in &columns {
                    let source = crate::masking::ColumnSource {
                        schema,
                        table: &r.relation.name,
                        column,
                    };
                    if !masking.has_rule(source) {
                        continue;
                    }
                    let name = format!("{schema}.{}.{column}", r.relation.name);
                    return Some(vigil_policy::Denial {
                        rule: if copy_out {
                            "copy_of_masked_column"
                        } else {
                            "masked_column_derived"
                        },
                        reason: if copy_out {
                            format!(
                                "COPY … TO would send column {name}, which is masked for this \
                                 session, unmasked; SELECT it instead (its values are masked)"
                            )
                        } else {
                            format!(
                                "column {name} is masked for this session: select it as a bare \
                                 column (its values are then masked); it cannot be used in \
                                 expressions, filters, joins, ordering, grouping, set \
                                 operations or copied into another table"
                            )
                        },
                        sqlstate: crate::sqlstate::INSUFFICIENT_PRIVILEGE,
                    });
                }
            }
            // A write the server compares with stored values (unique index, foreign key…)
            // tells whether a guessed value is there.
            for c in &s.compared {
                let schema = c.relation.schema.as_deref().unwrap_or("public");
                let source = crate::masking::ColumnSource {
                    schema,
                    table: &c.relation.name,
                    column: &c.column,
                };
                if masking.has_rule(source) {
                    return Some(vigil_policy::Denial {
                        rule: "masked_column_compared",
                        reason: format!(
                            "this write is compared with column {schema}.{}.{}, which is masked \
                             for this session (constraint {}): whether it succeeds would reveal \
                             that column's values",
                            c.relation.name,
                            c.column,
                            c.constraint.as_deref().unwrap_or("unknown")
                        ),
                        sqlstate: crate::sqlstate::INSUFFICIENT_PRIVILEGE,
                    });
                }
            }
        }
        None
    }

    /// Bookkeeping after a statement was allowed: whether the catalog must be read again.
    /// (What it does to the session's names is applied with its record: [`Self::apply`].)
    fn allowed(&mut self, checked: &Access) {
        for s in &checked.statements {
            if s.hazards
                .iter()
                .any(|h| h.kind == HazardKind::RedirectsNames)
            {
                self.catalog_stale = true;
            }
            let command = s.command.as_str();
            if s.class == CommandClass::Ddl
                || matches!(
                    command,
                    "DISCARD ALL"
                        | "RESET"
                        | "ROLLBACK"
                        | "DISCARD"
                        | "COMMIT"
                        | "PREPARE TRANSACTION"
                )
            {
                self.catalog_stale = true;
            }
            // The transaction's own changes a read saw may be undone (a COMMIT of a failed
            // transaction rolls back; a prepared one's are no longer the session's).
            if matches!(command, "ROLLBACK" | "COMMIT" | "PREPARE TRANSACTION") {
                self.catalog.transaction_ended();
            }
        }
    }

    /// The key of a name in a protocol message; `None`: refuse the message.
    fn name_key(&self, raw: &[u8]) -> Option<Arc<[u8]>> {
        if raw.is_ascii() {
            return Some(raw.into());
        }
        let encoding = self.link.shared.lock().lex.encoding;
        names::protocol_key(raw, encoding)
    }

    /// Whether result rows must be read with their RowDescription: the session has masking or
    /// columns to withhold.
    fn needs_row_plans(&self) -> bool {
        self.ctx.masking.is_some() || !self.ctx.policy.withheld.read().is_empty()
    }

    /// Sends Vigil's own Describe of `portal` just before the Execute at `at`: the rows an
    /// Execute returns come without a RowDescription, and a client need not have asked for one
    /// (or may have asked before the portal's name was reused), so Vigil asks for itself; the
    /// backend half reads the rows with the answer and keeps it from the client.
    fn describe_before(&mut self, at: usize, raw_name: &[u8], outputs: Option<super::Outputs>) {
        let mut bytes = Vec::with_capacity(raw_name.len() + 7);
        Describe {
            target: Target::Portal,
            name: raw_name,
        }
        .encode(&mut bytes);
        let id = self.new_item_id();
        self.link.shared.lock().items.push_back(Item {
            id,
            kind: ItemKind::Describe {
                injected: true,
                outputs,
            },
            refusal: None,
        });
        self.edits.push(Edit {
            start: at,
            end: at,
            with: EditKind::Replace(bytes),
        });
    }

    /// Where the scan is, for [`names::lookup`].
    fn position(&self, popped_through: u64) -> Position {
        Position {
            popped_through,
            segment: self.segment,
        }
    }

    /// Looks up the names a text uses; `Err(id)`: wait for item `id` first.
    fn resolve(&self, access: &Arc<Access>) -> Result<Named, u64> {
        let shared = self.link.shared.lock();
        let at = self.position(shared.popped_through);
        names::resolve(access, &shared, at, &self.ctx.limits)
    }

    /// Applies what a statement forwarded as item `id` does to the session's names: at once
    /// (what follows is read against it), provisionally (settled by the server's answer).
    fn apply(&self, named: Named, id: u64) -> Vec<(usize, Change)> {
        if named.changes.is_empty() {
            return Vec::new();
        }
        let mut shared = self.link.shared.lock();
        let mut applied = Vec::with_capacity(named.changes.len());
        for change in named.changes {
            let names::NameChange {
                statement: index,
                namespace,
                name,
                entry,
            } = change;
            let segment = self.segment;
            let previous = match (namespace, entry) {
                (Namespace::Statement, entry) => {
                    let entry = entry.and_then(|e| match e {
                        MutationEntry::Statement(p) => Some(p),
                        MutationEntry::Portal(_) => None,
                    });
                    shared
                        .statements
                        .insert(
                            name.clone(),
                            Slot {
                                entry,
                                by: id,
                                segment,
                            },
                        )
                        .and_then(|s| s.entry)
                        .map(MutationEntry::Statement)
                }
                (Namespace::Portal, entry) => {
                    let entry = entry.and_then(|e| match e {
                        MutationEntry::Portal(p) => Some(p),
                        MutationEntry::Statement(_) => None,
                    });
                    shared
                        .portals
                        .insert(
                            name.clone(),
                            Slot {
                                entry,
                                by: id,
                                segment,
                            },
                        )
                        .and_then(|s| s.entry)
                        .map(MutationEntry::Portal)
                }
            };
            applied.push((
                index,
                Change {
                    namespace,
                    name,
                    previous,
                },
            ));
        }
        applied
    }

    /// Refuses a statement the grants do not allow: recorded as PolicyDenied, never forwarded.
    fn deny(
        &mut self,
        protocol: StatementProtocol,
        shape: Arc<StatementShape>,
        refused: Refused,
        start: usize,
        end: usize,
        simple: bool,
    ) {
        let Refused {
            denial,
            grant_id,
            request_id,
            hint,
            position,
        } = refused;
        self.statement_seq += 1;
        {
            // A refused statement is one of the session's statements, and a failed one.
            let totals = &mut self.link.shared.lock().totals;
            totals.statements += 1;
            totals.errors += 1;
            totals.refused += 1;
        }
        let error = {
            // A name that does not exist is reported as PostgreSQL reports it.
            let message = if matches!(denial.rule, "unresolved" | "unknown_name")
                && denial.sqlstate != "42501"
            {
                denial.reason.clone()
            } else {
                format!("Vigil refused this statement: {}", denial.reason)
            };
            let mut fields = ErrorFields::error(denial.sqlstate, message).with_hint(
                hint.unwrap_or_else(|| "nothing was run; ask your Vigil administrator for a grant that allows it (`vigil policy test` shows what a grant allows)".into()),
            );
            fields.position = position;
            fields.detail = Some(format!(
                "rule {}{}{}",
                denial.rule,
                grant_id
                    .as_ref()
                    .map(|g| format!(", grant {g}"))
                    .unwrap_or_default(),
                request_id
                    .as_ref()
                    .map(|r| format!(", access request {r}"))
                    .unwrap_or_default()
            ));
            Arc::<[u8]>::from(fields.to_bytes())
        };
        self.drafts
            .push(self.ctx.draft(Event::PolicyDenied(PolicyDenied {
                statement_seq: self.statement_seq,
                protocol: protocol.path(),
                shape,
                rule: denial.rule.to_string(),
                reason: denial.reason,
                grant_id,
                sqlstate: denial.sqlstate.to_string(),
                request_id,
            })));
        self.refuse(start, end, error, simple);
    }

    /// Reads the catalog and search path again, through internal queries on the session's
    /// upstream connection, in sequence with the client's statements: what changed since the
    /// session's last read (one query, more when something was dropped), or all of it. Until it
    /// has been read, statements are refused (but in an aborted transaction, where the server
    /// refuses them too): checked against the catalog as it was, a name could stand for another
    /// relation than the server's (after a SET search_path, a DROP).
    async fn refresh_catalog<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> std::io::Result<()> {
        self.catalog_stale = false;
        self.catalog_unreadable = false;
        let cache = &self.ctx.policy.cache;
        let mut refresh = self.catalog.refresh(cache);
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let id = self.new_item_id();
            let unbounded = {
                let mut shared = self.link.shared.lock();
                // In no transaction, with nothing in flight, the read lifts the session's
                // statement_timeout for itself (until the end of its text). In a transaction the
                // lift would outlast it: the read is then the client's to bound.
                let unbounded = shared.idle && shared.items.is_empty();
                shared.items.push_back(Item {
                    id,
                    kind: ItemKind::Internal(Box::new(Internal {
                        sets: Vec::new(),
                        rows: Vec::new(),
                        error: None,
                        done: Some(tx),
                    })),
                    refusal: None,
                });
                unbounded
            };
            let (sql, extra_sets) = if unbounded {
                (
                    std::borrow::Cow::Owned(crate::catalog::unbounded(refresh.query())),
                    crate::catalog::UNBOUNDED_EXTRA_SETS,
                )
            } else {
                (std::borrow::Cow::Borrowed(refresh.query()), 0)
            };
            let mut out = Vec::with_capacity(sql.len() + 6);
            Query {
                text: sql.as_bytes(),
            }
            .encode(&mut out);
            upstream.write_all(&out).await?;
            upstream.flush().await?;
            match rx.await {
                Ok(Ok(mut sets)) => {
                    sets.drain(..extra_sets.min(sets.len()));
                    match refresh.take(cache, sets) {
                        Ok(None) => continue,
                        Ok(Some(catalog)) => self.catalog = catalog,
                        Err(e) => {
                            tracing::warn!(session = %self.ctx.session_id, error = %e, "catalog refresh unreadable");
                            self.catalog_stale = true;
                            self.catalog_unreadable = true;
                        }
                    }
                }
                // An aborted transaction refuses every query but its end: keep the catalog for
                // this one, and read it again for the next.
                Ok(Err(e)) if e.code == sqlstate::IN_FAILED_SQL_TRANSACTION => {
                    self.catalog_stale = true;
                }
                // Cancelled (the session's statement_timeout, in a transaction or with
                // statements in flight), or failed.
                Ok(Err(e)) => {
                    tracing::warn!(session = %self.ctx.session_id, code = %e.code, error = %e.message, "catalog refresh failed: refusing statements until it is read");
                    self.catalog_stale = true;
                    self.catalog_unreadable = true;
                }
                Err(_) => return Err(std::io::ErrorKind::BrokenPipe.into()),
            }
            return Ok(());
        }
    }

    /// Refuses the message at `start..end` with `error`: it is replaced by a stand-in whose
    /// error the backend swaps for this one.
    fn refuse(&mut self, start: usize, end: usize, error: Arc<[u8]>, with_sync: bool) {
        self.skipping |= !with_sync;
        let id = self.new_item_id();
        self.link.shared.lock().items.push_back(Item {
            id,
            kind: ItemKind::Refused {
                until_ready: with_sync,
            },
            refusal: Some(error),
        });
        self.edits.push(Edit {
            start,
            end,
            with: EditKind::StandIn { with_sync },
        });
    }

    /// Records a statement as started (its draft joins the batch) and queues its run; what it
    /// does to the session's names is applied now, provisionally.
    fn start_statement(&mut self, s: Start, start: usize, end: usize) {
        self.statement_seq += 1;
        let seq = self.statement_seq;
        let simple = s.protocol != StatementProtocol::Extended;
        let copies_in = may_copy_in(&s.shape);
        // With one grant, the session's start record says which; with several, this record does.
        let grant_id = s
            .grant
            .as_ref()
            .filter(|_| self.grants.len() > 1)
            .map(|g| g.id.clone());
        let id = self.new_item_id();
        let outputs = s
            .named
            .as_ref()
            .map(|n| {
                n.checked
                    .statements
                    .iter()
                    .map(|st| st.outputs.clone())
                    .collect()
            })
            .unwrap_or_default();
        let (executed, changes) = match s.named {
            Some(mut named) => (std::mem::take(&mut named.executed), self.apply(named, id)),
            None => (Vec::new(), Vec::new()),
        };
        // A FETCH's rows are its cursor's.
        let portal = executed
            .iter()
            .find(|e| e.kind == NamedKind::Portal)
            .map(|e| Arc::from(e.name.as_bytes()))
            .or(s.portal);
        self.drafts
            .push(self.ctx.draft(Event::StatementStarted(StatementStarted {
                statement_seq: seq,
                protocol: s.protocol.path(),
                shape: s.shape,
                prepared_statement: s.prepared_statement,
                parameters: s.parameters,
                grant_id,
                request_id: s.request_id,
                executed,
            })));
        let mut run = Run::new(seq, simple);
        run.caps = s
            .grant
            .as_ref()
            .and_then(|g| super::ResultCaps::of(&g.scope, portal));
        run.changes = changes;
        run.outputs = outputs;
        if let Some(formats) = s.result_formats {
            run.result_formats = formats;
        }
        self.link.shared.lock().items.push_back(Item {
            id,
            kind: ItemKind::Statement(Box::new(run)),
            refusal: None,
        });
        self.last_statement = id;
        // A simple statement is answered with ReadyForQuery (once the client ends its COPY
        // FROM STDIN, if it starts one); an Execute waits for a Sync.
        self.ready_after_last_statement = (simple && !copies_in).then_some(id);
        self.statements.push(BatchStatement {
            item_id: id,
            start,
            end,
            simple,
        });
    }

    fn record_parameters(&self, bind: &Bind<'_>) -> Option<RecordedParameters> {
        if bind.param_count == 0 {
            return None;
        }
        let values = match (self.ctx.parameter_mode, &self.ctx.parameter_key) {
            (ParameterMode::HmacSha256, Some(key)) => bind
                .params()
                .map(|v| {
                    v.map(|v| {
                        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)
                            .expect("HMAC takes keys of any length");
                        mac.update(v);
                        hex::encode(mac.finalize().into_bytes())
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(RecordedParameters {
            count: bind.param_count,
            mode: if values.is_empty() {
                ParameterMode::Redacted
            } else {
                ParameterMode::HmacSha256
            },
            values,
        })
    }

    /// Looks at one message. `Err` is a protocol violation (message for the client).
    fn scan(&mut self, frame: Frame<'_>, start: usize, end: usize) -> Result<Step, String> {
        let body = frame.body;
        if self.skipping
            && matches!(
                frame.tag,
                tag::PARSE
                    | tag::BIND
                    | tag::DESCRIBE
                    | tag::EXECUTE
                    | tag::CLOSE
                    | tag::QUERY
                    | tag::FUNCTION_CALL
                    | tag::FLUSH
            )
        {
            // The server ignores these until the Sync (it failed Vigil's stand-in): so does
            // Vigil, and it keeps them from the server, which would only skip them.
            self.edits.push(Edit {
                start,
                end,
                with: EditKind::Replace(Vec::new()),
            });
            return Ok(Step::Next);
        }
        if !matches!(
            frame.tag,
            tag::SYNC | tag::FLUSH | tag::COPY_DATA | tag::EXECUTE
        ) {
            self.copy_window = None;
        }
        // The catalog is read again between statements, never inside a pipeline segment.
        let may_refresh = !self.in_segment && !self.just_refreshed;
        if matches!(
            frame.tag,
            tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE
        ) {
            self.in_segment = true;
        }
        if self.catalog_stale
            && may_refresh
            && matches!(frame.tag, tag::QUERY | tag::FUNCTION_CALL | tag::PARSE)
        {
            self.in_segment = false;
            return Ok(Step::RefreshCatalog);
        }
        match frame.tag {
            tag::QUERY => {
                let q = Query::decode(body).map_err(|e| e.to_string())?;
                let access = match self.reading(q.text) {
                    Err(id) => return Ok(Step::WaitFor(id)),
                    Ok(reading) => self.access_of(q.text, reading),
                };
                {
                    let mut shared = self.link.shared.lock();
                    // A simple Query drops the unnamed statement and portal.
                    shared.statements.remove(&b""[..]);
                    shared.portals.remove(&b""[..]);
                }
                let Some(access) = access else {
                    self.deny(
                        StatementProtocol::Simple,
                        withheld_shape(),
                        (unreadable(), None).into(),
                        start,
                        end,
                        true,
                    );
                    return Ok(Step::Next);
                };
                // A name the catalog lacks may be new (made by another session): read the
                // catalog again once before refusing.
                if may_refresh && has_unresolved(&access) {
                    return Ok(Step::RefreshCatalog);
                }
                let named = match self.resolve(&access) {
                    Err(id) => return Ok(Step::WaitFor(id)),
                    Ok(named) => named,
                };
                let verdict = match self.unreadable_catalog() {
                    Some(refused) => Verdict::Deny(refused),
                    None => self.verdict(&named, Some((q.text, true))),
                };
                match verdict {
                    Verdict::Hold(hold) => return Ok(Step::Hold(hold)),
                    Verdict::Allow { grant, request_id } => {
                        self.allowed(&named.checked);
                        let changes_names = !named.changes.is_empty();
                        self.start_statement(
                            Start {
                                protocol: StatementProtocol::Simple,
                                shape: access.shape.clone(),
                                prepared_statement: None,
                                parameters: None,
                                grant: Some(grant),
                                request_id,
                                result_formats: None,
                                portal: None,
                                named: Some(named),
                            },
                            start,
                            end,
                        );
                        if changes_names {
                            // Whether a simple query's changes took effect is known only at its
                            // ReadyForQuery, and an error in it does not make the server skip
                            // what follows: what follows must not rely on them until then.
                            self.segment += 1;
                        }
                    }
                    Verdict::Deny(refused) => self.deny(
                        StatementProtocol::Simple,
                        access.shape.clone(),
                        with_position(refused, q.text),
                        start,
                        end,
                        true,
                    ),
                }
            }
            tag::PARSE => {
                let p = Parse::decode(body).map_err(|e| e.to_string())?;
                let reading = match self.reading(p.query) {
                    Err(id) => return Ok(Step::WaitFor(id)),
                    Ok(reading) => reading,
                };
                let access = self.access_of(p.query, reading);
                if may_refresh && access.as_ref().is_some_and(|a| has_unresolved(a)) {
                    self.in_segment = false;
                    return Ok(Step::RefreshCatalog);
                }
                let shape = access
                    .as_ref()
                    .map_or_else(withheld_shape, |a| a.shape.clone());
                let Some(name) = self.name_key(p.name) else {
                    let refused = (names::unreadable_name(), None).into();
                    self.deny(
                        StatementProtocol::Extended,
                        shape,
                        with_position(refused, p.query),
                        start,
                        end,
                        false,
                    );
                    return Ok(Step::Next);
                };
                {
                    let shared = self.link.shared.lock();
                    let at = self.position(shared.popped_through);
                    if let Err(id) = names::lookup(&shared.statements, &name, at) {
                        return Ok(Step::WaitFor(id));
                    }
                }
                // Decided at Parse already: a text Vigil refuses never reaches the server, under
                // any name, so no later message (Bind, `EXECUTE`, a name reused by `PREPARE`)
                // can make the server run it. Bind and Execute decide again (grants expire).
                let refused = match &access {
                    None => Some((unreadable(), None).into()),
                    Some(access) => {
                        let named = match self.resolve(access) {
                            Err(id) => return Ok(Step::WaitFor(id)),
                            Ok(named) => named,
                        };
                        let verdict = match self.unreadable_catalog() {
                            Some(refused) => Verdict::Deny(refused),
                            None => self.verdict(&named, None),
                        };
                        match verdict {
                            Verdict::Hold(hold) => return Ok(Step::Hold(hold)),
                            Verdict::Allow { .. } => None,
                            Verdict::Deny(refused) => Some(refused),
                        }
                    }
                };
                if let Some(refused) = refused {
                    if name.is_empty() {
                        // PostgreSQL drops the unnamed statement before parsing a new one; the
                        // server keeps it here (it never saw the Parse), so Vigil forgets it:
                        // a Bind of it is refused, never run as the old text.
                        let mut shared = self.link.shared.lock();
                        shared.statements.remove(&name);
                    }
                    self.deny(
                        StatementProtocol::Extended,
                        shape,
                        refused,
                        start,
                        end,
                        false,
                    );
                    return Ok(Step::Next);
                }
                let Some(access) = access else {
                    unreachable!("an unreadable text is refused above");
                };
                let id = self.next_item + 1;
                let mut shared = self.link.shared.lock();
                let existing = shared.statements.get(&name);
                if existing.is_none()
                    && shared.statements.len() >= self.ctx.limits.max_prepared_statements
                {
                    drop(shared);
                    let limit = self.ctx.limits.max_prepared_statements;
                    self.refuse(
                        start,
                        end,
                        refusal(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            format!("this session holds {limit} prepared statements, the most Vigil allows"),
                            Some("close prepared statements you no longer need"),
                        ),
                        false,
                    );
                    return Ok(Step::Next);
                }
                let previous = existing
                    .and_then(|s| s.entry.clone())
                    .map(MutationEntry::Statement);
                shared.statements.insert(
                    name.clone(),
                    Slot {
                        entry: Some(Prepared {
                            shape: access.shape.clone(),
                            access,
                        }),
                        by: id,
                        segment: self.segment,
                    },
                );
                shared.items.push_back(Item {
                    id,
                    kind: ItemKind::Mutation {
                        failure_keeps_previous: !name.is_empty(),
                        change: Change {
                            namespace: Namespace::Statement,
                            name,
                            previous,
                        },
                        answered_by: crate::messages::tag::backend::PARSE_COMPLETE,
                    },
                    refusal: None,
                });
                drop(shared);
                self.next_item = id;
            }
            tag::BIND => {
                let b = Bind::decode(body).map_err(|e| e.to_string())?;
                if b.portal == STAND_IN_PORTAL {
                    let error = refusal(
                        sqlstate::INVALID_CURSOR_NAME,
                        "this portal name is reserved by Vigil".into(),
                        None,
                    );
                    self.refuse(start, end, error, false);
                    return Ok(Step::Next);
                }
                let parameters = self.record_parameters(&b);
                let (Some(statement_key), Some(portal_key)) =
                    (self.name_key(b.statement), self.name_key(b.portal))
                else {
                    let refused = (names::unreadable_name(), None).into();
                    self.deny(
                        StatementProtocol::Extended,
                        withheld_shape(),
                        refused,
                        start,
                        end,
                        false,
                    );
                    return Ok(Step::Next);
                };
                let statement = {
                    let shared = self.link.shared.lock();
                    let at = self.position(shared.popped_through);
                    let statement = match names::lookup(&shared.statements, &statement_key, at) {
                        Err(id) => return Ok(Step::WaitFor(id)),
                        Ok(statement) => statement,
                    };
                    if let Err(id) = names::lookup(&shared.portals, &portal_key, at) {
                        return Ok(Step::WaitFor(id));
                    }
                    statement
                };
                let Some(statement) = statement else {
                    let what = if b.statement.is_empty() {
                        "unnamed prepared statement does not exist".to_string()
                    } else {
                        format!(
                            "prepared statement \"{}\" does not exist",
                            show_name(b.statement)
                        )
                    };
                    self.refuse(
                        start,
                        end,
                        refusal(sqlstate::INVALID_SQL_STATEMENT_NAME, what, None),
                        false,
                    );
                    return Ok(Step::Next);
                };
                // Decided again at Bind, not only at Execute: binding an unnamed statement
                // plans it, and planning evaluates immutable and stable functions (constant
                // folding, estimates), so a refused statement must not get that far (grants
                // expire between Parse and Bind). Execute decides again; this Bind's portal is
                // not created, so the client's Execute of it is refused as unknown, and skipped
                // by the server after this error anyway. Review is at Execute (each run); an
                // elevation is asked for here, at the first decision that needs one.
                let named = match self.resolve(&statement.access) {
                    Err(id) => return Ok(Step::WaitFor(id)),
                    Ok(named) => named,
                };
                let refused = match self.verdict(&named, None) {
                    Verdict::Hold(hold) => return Ok(Step::Hold(hold)),
                    Verdict::Allow { .. } => None,
                    Verdict::Deny(refused) => Some(refused),
                };
                if let Some(refused) = refused {
                    // The portal name now names nothing Vigil will run: the client's Execute
                    // of it is refused (the server skips it after this error anyway), rather
                    // than deciding on whatever portal had the name before.
                    if let Some(slot) = self.link.shared.lock().portals.get_mut(&portal_key) {
                        *slot = Slot {
                            entry: None,
                            by: self.next_item + 1,
                            segment: self.segment,
                        };
                    }
                    self.deny(
                        StatementProtocol::Extended,
                        statement.shape,
                        refused,
                        start,
                        end,
                        false,
                    );
                    return Ok(Step::Next);
                }
                let id = self.next_item + 1;
                let mut shared = self.link.shared.lock();
                if !shared.portals.contains_key(&portal_key)
                    && shared.portals.len() >= self.ctx.limits.max_portals
                {
                    drop(shared);
                    let limit = self.ctx.limits.max_portals;
                    self.refuse(
                        start,
                        end,
                        refusal(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            format!(
                                "this session holds {limit} open portals, the most Vigil allows"
                            ),
                            Some("close portals you no longer need"),
                        ),
                        false,
                    );
                    return Ok(Step::Next);
                }
                let name = portal_key;
                let previous = shared
                    .portals
                    .get(&name)
                    .and_then(|s| s.entry.clone())
                    .map(MutationEntry::Portal);
                shared.portals.insert(
                    name.clone(),
                    Slot {
                        entry: Some(Portal {
                            shape: statement.shape,
                            access: statement.access,
                            statement_name: statement_key,
                            parameters,
                            result_formats: b.result_formats.into(),
                            hold: false,
                            kept: false,
                            delivered: Default::default(),
                        }),
                        by: id,
                        segment: self.segment,
                    },
                );
                shared.items.push_back(Item {
                    id,
                    kind: ItemKind::Mutation {
                        failure_keeps_previous: !name.is_empty(),
                        change: Change {
                            namespace: Namespace::Portal,
                            name,
                            previous,
                        },
                        answered_by: crate::messages::tag::backend::BIND_COMPLETE,
                    },
                    refusal: None,
                });
                drop(shared);
                self.next_item = id;
            }
            tag::EXECUTE => {
                let e = Execute::decode(body).map_err(|e| e.to_string())?;
                let Some(portal_key) = self.name_key(e.portal) else {
                    let refused = (names::unreadable_name(), None).into();
                    self.deny(
                        StatementProtocol::Extended,
                        withheld_shape(),
                        refused,
                        start,
                        end,
                        false,
                    );
                    self.copy_window = None;
                    return Ok(Step::Next);
                };
                let portal = {
                    let shared = self.link.shared.lock();
                    let at = self.position(shared.popped_through);
                    match names::lookup(&shared.portals, &portal_key, at) {
                        Err(id) => return Ok(Step::WaitFor(id)),
                        Ok(portal) => portal,
                    }
                };
                let Some(portal) = portal else {
                    let what = if e.portal.is_empty() {
                        "unnamed portal does not exist".to_string()
                    } else {
                        format!("portal \"{}\" does not exist", show_name(e.portal))
                    };
                    self.refuse(
                        start,
                        end,
                        refusal(sqlstate::INVALID_CURSOR_NAME, what, None),
                        false,
                    );
                    self.copy_window = None;
                    return Ok(Step::Next);
                };
                let name = (!portal.statement_name.is_empty())
                    .then(|| show_name(&portal.statement_name).into_owned());
                let named = match self.resolve(&portal.access) {
                    Err(id) => return Ok(Step::WaitFor(id)),
                    Ok(named) => named,
                };
                // Extended protocol: parameters travel apart, so review is of the statement's
                // literal-free text.
                match self.verdict(&named, Some((portal.shape.text.as_bytes(), false))) {
                    Verdict::Hold(hold) => return Ok(Step::Hold(hold)),
                    Verdict::Allow { grant, request_id } => {
                        self.allowed(&named.checked);
                        self.execute_may_copy_in = may_copy_in(&portal.shape);
                        if self.needs_row_plans() {
                            let outputs = single_outputs(&named.checked);
                            self.describe_before(start, e.portal, outputs);
                        }
                        self.start_statement(
                            Start {
                                protocol: StatementProtocol::Extended,
                                shape: portal.shape,
                                prepared_statement: name,
                                parameters: portal.parameters,
                                grant: Some(grant),
                                request_id,
                                result_formats: Some(portal.result_formats.clone()),
                                portal: Some(portal_key),
                                named: Some(named),
                            },
                            start,
                            end,
                        );
                        self.copy_window = Some(self.next_item);
                    }
                    Verdict::Deny(refused) => {
                        self.deny(
                            StatementProtocol::Extended,
                            portal.shape,
                            refused,
                            start,
                            end,
                            false,
                        );
                        self.copy_window = None;
                    }
                }
            }
            tag::DESCRIBE => {
                let d = Describe::decode(body).map_err(|e| e.to_string())?;
                // What the analysis says of the described result's columns, so that this
                // description is planned as the rows of an Execute will be.
                let outputs = match self.name_key(d.name) {
                    None => None,
                    Some(key) => {
                        let shared = self.link.shared.lock();
                        let at = self.position(shared.popped_through);
                        let access = match d.target {
                            Target::Statement => names::lookup(&shared.statements, &key, at)
                                .map(|p| p.map(|p| p.access)),
                            Target::Portal => names::lookup(&shared.portals, &key, at)
                                .map(|p| p.map(|p| p.access)),
                        };
                        match access {
                            Err(id) => return Ok(Step::WaitFor(id)),
                            Ok(access) => access.and_then(|a| single_outputs(&a)),
                        }
                    }
                };
                let id = self.new_item_id();
                self.link.shared.lock().items.push_back(Item {
                    id,
                    kind: ItemKind::Describe {
                        injected: false,
                        outputs,
                    },
                    refusal: None,
                });
            }
            tag::CLOSE => {
                let c = Close::decode(body).map_err(|e| e.to_string())?;
                let Some(name) = self.name_key(c.name) else {
                    let refused = (names::unreadable_name(), None).into();
                    self.deny(
                        StatementProtocol::Extended,
                        withheld_shape(),
                        refused,
                        start,
                        end,
                        false,
                    );
                    return Ok(Step::Next);
                };
                let id = self.next_item + 1;
                let mut shared = self.link.shared.lock();
                let at = self.position(shared.popped_through);
                let segment = self.segment;

                let (namespace, previous) = match c.target {
                    Target::Statement => {
                        let previous = match names::lookup(&shared.statements, &name, at) {
                            Err(id) => return Ok(Step::WaitFor(id)),
                            Ok(p) => p,
                        };
                        shared.statements.insert(
                            name.clone(),
                            Slot {
                                entry: None,
                                by: id,
                                segment,
                            },
                        );
                        (Namespace::Statement, previous.map(MutationEntry::Statement))
                    }
                    Target::Portal => {
                        let previous = match names::lookup(&shared.portals, &name, at) {
                            Err(id) => return Ok(Step::WaitFor(id)),
                            Ok(p) => p,
                        };
                        shared.portals.insert(
                            name.clone(),
                            Slot {
                                entry: None,
                                by: id,
                                segment,
                            },
                        );
                        (Namespace::Portal, previous.map(MutationEntry::Portal))
                    }
                };
                shared.items.push_back(Item {
                    id,
                    kind: ItemKind::Mutation {
                        change: Change {
                            namespace,
                            name,
                            previous,
                        },
                        // Closing a name that does not exist is not an error: only a skip
                        // (after an earlier error) leaves the entry in place.
                        failure_keeps_previous: true,
                        answered_by: crate::messages::tag::backend::CLOSE_COMPLETE,
                    },
                    refusal: None,
                });
                drop(shared);
                self.next_item = id;
            }
            tag::SYNC => {
                let id = self.new_item_id();
                self.link.shared.lock().items.push_back(Item {
                    id,
                    kind: ItemKind::Sync {
                        after_execute: self.copy_window,
                    },
                    refusal: None,
                });
                self.segment += 1;
                self.in_segment = false;
                self.skipping = false;
                // A Sync right after an Execute that may start COPY FROM STDIN may be
                // swallowed by copy-in mode: only count on one that is sure to be answered.
                let swallowable = self.copy_window.is_some() && self.execute_may_copy_in;
                if !swallowable && self.ready_after_last_statement.is_none() {
                    self.ready_after_last_statement = Some(id);
                }
            }
            tag::FUNCTION_CALL => {
                let call = FunctionCall::decode(body).map_err(|e| e.to_string())?;
                let text = format!("FunctionCall(oid {})", call.function_oid);
                let shape = Arc::new(StatementShape {
                    fingerprint: fingerprint_of(&text),
                    text,
                    commands: vec!["FUNCTION CALL".into()],
                    command_classes: vec!["function".into()],
                    objects: Vec::new(),
                    parse_error: None,
                });
                let parameters = (call.arg_count > 0).then(|| RecordedParameters {
                    count: call.arg_count,
                    mode: ParameterMode::Redacted,
                    values: Vec::new(),
                });
                // The fast-path call names its function by OID, which the analysis cannot
                // check: a grant must allow the message by name.
                self.prune_grants();
                let grant = self.grants.iter().find(|g| {
                    g.live(vigil_core::Timestamp::now()).is_ok()
                        && g.scope
                            .allow
                            .contains(&vigil_policy::Allowance::FunctionCall)
                });
                match grant.cloned() {
                    Some(grant) => self.start_statement(
                        Start {
                            protocol: StatementProtocol::FunctionCall,
                            shape,
                            prepared_statement: None,
                            parameters,
                            request_id: grant.request_id.clone(),
                            grant: Some(grant),
                            result_formats: None,
                            portal: None,
                            named: None,
                        },
                        start,
                        end,
                    ),
                    None => {
                        let denial = Denial {
                            rule: "construct_denied",
                            reason: "a FunctionCall message (fast-path call by OID, used by large-object APIs) must be allowed by name in the grant (function_call)".into(),
                            sqlstate: "42501",
                        };
                        self.deny(
                            StatementProtocol::FunctionCall,
                            shape,
                            (denial, None).into(),
                            start,
                            end,
                            true,
                        );
                    }
                }
            }
            tag::FLUSH | tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => {}
            tag::TERMINATE => return Ok(Step::Terminate),
            other => {
                return Err(format!(
                    "unexpected message type {} from the client",
                    crate::codec::TagName(other)
                ))
            }
        }
        Ok(Step::Next)
    }

    /// Records the batch's statements durably, then forwards `buf[..end]` (with stand-ins for
    /// anything refused) and drops it from the buffer.
    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        buf: &mut BytesMut,
        end: usize,
        upstream: &mut W,
    ) -> std::io::Result<()> {
        if !self.drafts.is_empty() {
            let drafts = std::mem::take(&mut self.drafts);
            if let Err(e) = self.ctx.sink.append_all(drafts).await {
                tracing::error!(
                    session = %self.ctx.session_id,
                    statements = self.statements.len(),
                    error = %e,
                    "audit trail unavailable: refusing statements"
                );
                let error = refusal(
                    sqlstate::SYSTEM_ERROR,
                    "Vigil could not record this statement in its audit trail, so it was not run".into(),
                    Some("retry later; if this persists, ask your Vigil operator to check the audit store"),
                );
                let mut shared = self.link.shared.lock();
                for s in &self.statements {
                    if let Some(item) = shared.items.iter_mut().rev().find(|i| i.id == s.item_id) {
                        item.refusal = Some(error.clone());
                        if let ItemKind::Statement(run) = &mut item.kind {
                            run.refused = true;
                        }
                    }
                }
                drop(shared);
                for s in &self.statements {
                    self.edits.push(Edit {
                        start: s.start,
                        end: s.end,
                        with: EditKind::StandIn {
                            with_sync: s.simple,
                        },
                    });
                }
                // Stable: an insertion before a message stays before its stand-in.
                self.edits.sort_by_key(|e| e.start);
            }
        }
        self.statements.clear();
        let result = if self.edits.is_empty() {
            upstream.write_all(&buf[..end]).await
        } else {
            self.out.clear();
            let mut at = 0;
            for edit in &self.edits {
                self.out.extend_from_slice(&buf[at..edit.start]);
                match &edit.with {
                    EditKind::StandIn { with_sync } => {
                        Execute {
                            portal: STAND_IN_PORTAL,
                            max_rows: 0,
                        }
                        .encode(&mut self.out);
                        if *with_sync {
                            encode_sync(&mut self.out);
                        }
                    }
                    EditKind::Replace(bytes) => self.out.extend_from_slice(bytes),
                }
                at = edit.end;
            }
            self.out.extend_from_slice(&buf[at..end]);
            self.edits.clear();
            upstream.write_all(&self.out).await
        };
        buf.advance(end);
        result?;
        upstream.flush().await
    }
}

/// Where the result columns of a text of one statement (what Parse allows) come from, as
/// the analysis knows them.
fn single_outputs(access: &Access) -> Option<super::Outputs> {
    match access.statements.as_slice() {
        [only] => only.outputs.clone(),
        _ => None,
    }
}

fn has_unresolved(access: &Access) -> bool {
    access.statements.iter().any(|s| !s.unresolved.is_empty())
}

/// The refusal of a statement while the catalog could not be read again.
fn catalog_unread() -> Denial {
    Denial {
        rule: "catalog_unreadable",
        reason: "Vigil could not read the database catalog again after a statement that may have changed it or the search path (the read was cancelled, e.g. by a statement_timeout shorter than it, or failed), so it cannot check this statement; it reads the catalog again before the next one".into(),
        sqlstate: crate::sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
    }
}

/// The refusal of a text Vigil cannot read for certain.
fn unreadable() -> Denial {
    Denial {
        rule: "unreadable",
        reason: "the statement reads differently depending on settings an earlier statement still in flight may have changed; send it again once that statement has completed".into(),
        sqlstate: "42601",
    }
}

/// Whether running `shape` may put the server in copy-in mode, where it answers nothing until
/// the client's CopyDone or CopyFail. Unknown commands (a text that did not parse) may be
/// anything.
fn may_copy_in(shape: &StatementShape) -> bool {
    let classes = &shape.command_classes;
    classes.is_empty() || classes.iter().any(|c| c == "copy_in")
}

/// The fingerprint of Vigil-made statement text (same definition as the analyser's).
fn fingerprint_of(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}
