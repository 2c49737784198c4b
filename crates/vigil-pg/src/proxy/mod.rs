//! The proxy loop of one session, once both ends are logged in.
//!
//! Two halves run concurrently in the session's task: [`frontend`] reads the client, records
//! and forwards; [`backend`] reads the server, accounts and forwards. They must be concurrent:
//! a pipelining client and a server blocked writing results would otherwise deadlock a proxy
//! that waits on one side at a time.
//!
//! They share [`Shared`] (behind a mutex held only for short, await-free sections):
//!
//! - a FIFO of [`Item`]s, one per client message that the server answers (Parse, Bind, Describe,
//!   Close, Sync, and the statements: Query, Execute, FunctionCall). The frontend pushes an item
//!   *before* forwarding its message; the backend pops items as their responses arrive, so
//!   every result byte is attributed to the statement that produced it, and after an error in
//!   an extended-protocol pipeline the items the server skips (up to Sync) are marked skipped.
//! - the session's prepared statements and portals, as Vigil predicts them to be on the
//!   server. The prediction is what the audit trail says ran, so it must never be wrong in a
//!   way that matters: each Parse/Bind/Close is applied when forwarded and settled when its
//!   outcome arrives (success keeps it; failure or skip restores what PostgreSQL keeps), and
//!   the frontend waits for outcomes whenever a message's meaning depends on one that is still
//!   unknown across a Sync. See [`Slot`].
//! - the settings that decide how the server reads statement text (`standard_conforming_strings`,
//!   `client_encoding`), as last reported in ParameterStatus, and the last item answered by
//!   ReadyForQuery, before which the server sends those reports: a text whose literals depend on
//!   settings that a statement still in flight may have changed is read only once they are
//!   known (see [`ReportedSettings`]).

mod backend;
mod frontend;
mod names;

pub use names::fuzz_resolve as fuzz_session_names;

use crate::config::Limits;
use crate::encoding::TextEncoding;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use vigil_core::event::{
    Event, ParameterMode, SessionEndReason, StatementFinished, StatementShape, StatementStatus,
};
use vigil_core::{EventDraft, EventSink, Principal, SessionId, Timestamp};

/// What a session's proxy needs to know and where it reports.
pub(crate) struct SessionContext {
    pub session_id: SessionId,
    pub principal: Arc<Principal>,
    pub connection: Arc<str>,
    pub sink: Arc<dyn EventSink>,
    pub analyzer: Arc<vigil_sql::Analyzer>,
    pub policy: SessionPolicy,
    pub limits: Limits,
    pub parameter_mode: ParameterMode,
    /// Key for `hmac-sha256` parameter recording.
    pub parameter_key: Option<Arc<[u8]>>,
    /// Masking of results, when any applies to this session.
    pub masking: Option<Arc<dyn crate::masking::SessionMasking>>,
    /// The session's replay capture, when captures are on.
    pub replay: Option<Box<dyn vigil_core::ReplayRecorder>>,
    /// Per-statement review, when configured.
    pub review: Option<Arc<dyn crate::StatementReview>>,
    /// Just-in-time approval, for statements that need an elevation (`policy.elevations`).
    pub approvals: Option<Arc<dyn crate::ApprovalGate>>,
    /// Revoked grants: a session stops using a grant revoked while it runs.
    pub revocations: Arc<crate::Revocations>,
    pub client_addr: String,
    /// Why the client says it needs access (`vigil.reason`, else application_name), for the
    /// access requests its statements raise.
    pub reason: Option<String>,
}

impl SessionContext {
    pub fn draft(&self, event: Event) -> EventDraft {
        EventDraft {
            at: Timestamp::now(),
            session_id: Some(self.session_id),
            identity: Some(self.principal.clone()),
            connection: Some(self.connection.clone()),
            event,
        }
    }
}

/// Session totals, for the `SessionEnded` record.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    /// Statements decided: forwarded (whatever came of them) or refused.
    pub statements: u64,
    /// Statements that failed: an error, or refused.
    pub errors: u64,
    /// Statements refused by Vigil (never forwarded).
    pub refused: u64,
    /// Statements cut off by the session's end.
    pub interrupted: u64,
    pub rows: u64,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
}

/// A prepared statement as Vigil believes the server holds it.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub shape: Arc<StatementShape>,
    /// What it accesses, for the decision at each Execute.
    pub access: Arc<vigil_sql::Access>,
}

/// A portal as Vigil believes the server holds it: bound by the protocol, or a cursor
/// (`DECLARE`).
#[derive(Clone, Debug)]
pub(crate) struct Portal {
    pub shape: Arc<StatementShape>,
    pub access: Arc<vigil_sql::Access>,
    /// The prepared statement it was bound from (empty for the unnamed one, and for cursors).
    pub statement_name: Arc<[u8]>,
    pub parameters: Option<vigil_core::event::RecordedParameters>,
    /// The Bind's result format codes.
    pub result_formats: Arc<[u8]>,
    /// A cursor `WITH HOLD`: it outlives its transaction if that commits.
    pub hold: bool,
    /// A held cursor whose transaction committed: it lives until closed.
    pub kept: bool,
    /// Rows it has sent the client so far, for the grant's caps: a statement's rows may come in
    /// several Executes (a row limit per Execute) or FETCHes.
    pub delivered: Delivered,
}

/// Rows (DataRow, CopyData) and their bytes sent to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub rows: u64,
    pub bytes: u64,
}

/// Which of the grant's caps withheld rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapReached {
    Rows(u64),
    Bytes(u64),
    SessionRows(u64),
    SessionBytes(u64),
}

/// The grant's caps on what one statement and the session may return, and what went out.
///
/// A statement's rows are counted over its portal or cursor, whatever number of Executes (each
/// with a row limit) or FETCHes bring them; the session's over all its statements. Once a cap
/// is reached, every further row of the run is withheld (a smaller row after a larger one must
/// not slip through a byte cap).
#[derive(Debug, Default)]
pub(crate) struct ResultCaps {
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub session_rows: Option<u64>,
    pub session_bytes: Option<u64>,
    /// The portal or cursor whose rows these are.
    pub portal: Option<Arc<[u8]>>,
    /// What that portal delivered before this run (read at the run's first row, when earlier
    /// Executes of it have finished).
    pub before: Option<Delivered>,
    /// What this run delivered.
    pub out: Delivered,
    pub reached: Option<CapReached>,
}

impl ResultCaps {
    /// Caps from a grant's scope; `None` when it sets none.
    pub fn of(scope: &vigil_policy::Scope, portal: Option<Arc<[u8]>>) -> Option<Box<ResultCaps>> {
        let caps = ResultCaps {
            rows: scope.row_cap,
            bytes: scope.byte_cap,
            session_rows: scope.session_row_cap,
            session_bytes: scope.session_byte_cap,
            portal,
            ..Default::default()
        };
        (caps.rows.is_some()
            || caps.bytes.is_some()
            || caps.session_rows.is_some()
            || caps.session_bytes.is_some())
        .then(|| Box::new(caps))
    }

    /// Whether a row of `len` bytes may go out; counts it if so.
    pub fn admit(
        &mut self,
        len: u64,
        session: Delivered,
        portals: &HashMap<Arc<[u8]>, Slot<Portal>>,
    ) -> bool {
        if self.reached.is_some() {
            return false;
        }
        let portal = &self.portal;
        let before = *self.before.get_or_insert_with(|| {
            portal
                .as_ref()
                .and_then(|p| portals.get(p))
                .and_then(|slot| slot.entry.as_ref())
                .map(|p| p.delivered)
                .unwrap_or_default()
        });
        let (rows, bytes) = (before.rows + self.out.rows, before.bytes + self.out.bytes);
        self.reached = match () {
            _ if self.rows.is_some_and(|cap| rows >= cap) => self.rows.map(CapReached::Rows),
            _ if self.bytes.is_some_and(|cap| bytes + len > cap) => {
                self.bytes.map(CapReached::Bytes)
            }
            _ if self.session_rows.is_some_and(|cap| session.rows >= cap) => {
                self.session_rows.map(CapReached::SessionRows)
            }
            _ if self
                .session_bytes
                .is_some_and(|cap| session.bytes + len > cap) =>
            {
                self.session_bytes.map(CapReached::SessionBytes)
            }
            _ => None,
        };
        if self.reached.is_some() {
            return false;
        }
        self.out.rows += 1;
        self.out.bytes += len;
        true
    }
}

/// One name's state in a namespace (statements or portals).
///
/// `entry` is the predicted state after every forwarded message. `by` is the item that last
/// changed it; while that item is not yet answered (`by > popped_through`) the prediction is
/// provisional. `segment` is the Sync-delimited segment in which it changed: a message in the
/// same segment is skipped by the server if the change failed, so it may rely on the
/// provisional state; a message in a later segment may not, and waits.
#[derive(Clone, Debug)]
pub(crate) struct Slot<T> {
    pub entry: Option<T>,
    pub by: u64,
    pub segment: u64,
}

/// The two namespaces a client names things in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Namespace {
    Statement,
    Portal,
}

/// What the server must answer, in order.
pub(crate) struct Item {
    pub id: u64,
    pub kind: ItemKind,
    /// When Vigil refused the message, the ErrorResponse (encoded) the client gets instead of the
    /// server's answer to the stand-in message Vigil sent.
    pub refusal: Option<Arc<[u8]>>,
}

/// A change to one name of a namespace, applied when its message is forwarded; `previous` is
/// the entry before, which the name holds again if the change does not take effect.
pub(crate) struct Change {
    pub namespace: Namespace,
    pub name: Arc<[u8]>,
    pub previous: Option<MutationEntry>,
}

pub(crate) enum ItemKind {
    /// Parse or Bind (or Close): changed one name.
    Mutation {
        change: Change,
        /// What a failure leaves behind: `previous`, or nothing (unnamed statement: PostgreSQL
        /// drops it before parsing the new one).
        failure_keeps_previous: bool,
        /// Close is answered by CloseComplete, Parse by ParseComplete, Bind by BindComplete.
        answered_by: u8,
    },
    /// A Describe. `injected`: Vigil's own Describe of the portal an Execute runs, sent just
    /// before it so that the Execute's rows are read with their RowDescription: its answer
    /// becomes the run's plan and never reaches the client. `outputs`: where the described
    /// statement's result columns come from, as the analysis knows them (the client's Describe
    /// and Vigil's must plan a result alike).
    Describe {
        injected: bool,
        outputs: Option<Outputs>,
    },
    /// A query Vigil runs for itself (a catalog refresh): nothing of its answer reaches the
    /// client; the rows go to `done`.
    Internal(Box<Internal>),
    /// `after_execute`: the Execute this Sync followed with no CopyDone/CopyFail between. If
    /// that Execute started COPY FROM STDIN, the server was in copy-in mode when the Sync
    /// arrived and ignored it (as the protocol says), so it will never be answered.
    Sync {
        after_execute: Option<u64>,
    },
    /// A refused message (answered by the stand-in's ErrorResponse). `until_ready`: the
    /// stand-in carries its own Sync (the refused message was a simple Query or FunctionCall),
    /// so it ends at ReadyForQuery.
    Refused {
        until_ready: bool,
    },
    Statement(Box<Run>),
}

/// The entry a mutation replaced, of either namespace.
#[derive(Clone, Debug)]
pub(crate) enum MutationEntry {
    Statement(Prepared),
    Portal(Portal),
}

/// Where each column of a statement's result comes from, as the access analysis knows it.
pub(crate) type Outputs = Arc<[vigil_sql::OutputOrigin]>;

/// A statement in flight: what is known when it finishes.
pub(crate) struct Run {
    pub seq: u64,
    /// Query and FunctionCall end at ReadyForQuery; Execute at its own completion message.
    pub until_ready: bool,
    pub started: Instant,
    pub rows: u64,
    pub rows_since_tag: u64,
    pub bytes: u64,
    pub digest: Sha256,
    pub tags: Vec<String>,
    pub sqlstate: Option<[u8; 5]>,
    pub refused: bool,
    /// The server answered CopyInResponse: it is (or was) in copy-in mode for this statement.
    pub copy_in: bool,
    /// The server answered CopyOutResponse in binary format.
    pub copy_out_binary: bool,
    /// The grant's caps on rows and bytes, if it sets any.
    pub caps: Option<Box<ResultCaps>>,
    /// No row may go out (its RowDescription could not be read).
    pub withhold_rows: bool,
    /// Rows received from the server but withheld from the client by the row cap.
    pub capped: u64,
    /// Of those, in the current result set (since the last command tag).
    pub capped_since_tag: u64,
    /// Rows forwarded to the client (DataRow or CopyData), for the row cap.
    pub forwarded: u64,
    /// How result rows are rewritten: columns the grant denies that reached a result anyway
    /// (withheld: the second line of defence behind the analysis) and masking.
    pub plan: Option<Arc<crate::masking::RowPlan>>,
    /// The result format codes of the Execute's Bind (empty: text).
    pub result_formats: Arc<[u8]>,
    /// Values withheld by `plan` (denied columns).
    pub masked_values: u64,
    /// Of those, already announced to the client in a notice.
    pub masked_reported: u64,
    /// Values masked, per column and rule.
    pub tally: crate::masking::MaskTally,
    /// Changes to the session's names made by the text's statements (`PREPARE`, `DECLARE`,
    /// `DEALLOCATE`, `CLOSE`, `DISCARD ALL`), with the index of the statement making each: a
    /// change takes effect only if its statement completed.
    pub changes: Vec<(usize, Change)>,
    /// Per statement of the text, where its result columns come from (when the analysis knows
    /// them): a RowDescription is of the statement after the `completed` ones.
    pub outputs: Vec<Option<Outputs>>,
    /// Statements of the text that have completed (CommandComplete), whether or not their tag
    /// could be read.
    pub completed: usize,
}

/// The state of an internal query.
pub(crate) struct Internal {
    pub sets: crate::catalog::ResultSets,
    pub rows: Vec<Vec<Option<String>>>,
    pub error: Option<InternalError>,
    pub done:
        Option<tokio::sync::oneshot::Sender<Result<crate::catalog::ResultSets, InternalError>>>,
}

/// The server's error for an internal query.
#[derive(Debug)]
pub(crate) struct InternalError {
    pub code: String,
    pub message: String,
}

/// What the session may do, and what the gateway needs to enforce it.
pub(crate) struct SessionPolicy {
    /// The grants the session started under (the frontend adds elevations to its own copy).
    pub grants: Vec<Arc<vigil_policy::Grant>>,
    /// `(table OID, column number)` of every column that no grant of the session allows. The
    /// frontend replaces it when the session's grants change.
    pub withheld: parking_lot::RwLock<Arc<std::collections::HashSet<(u32, i16)>>>,
    pub cache: Arc<crate::catalog::CatalogCache>,
    /// Approval-required scopes a refused statement may ask to be elevated to.
    pub elevations: Vec<crate::Elevation>,
}

impl Run {
    pub fn new(seq: u64, until_ready: bool) -> Self {
        Run {
            seq,
            until_ready,
            started: Instant::now(),
            rows: 0,
            rows_since_tag: 0,
            bytes: 0,
            digest: Sha256::new(),
            tags: Vec::new(),
            sqlstate: None,
            refused: false,
            copy_in: false,
            copy_out_binary: false,
            caps: None,
            withhold_rows: false,
            capped: 0,
            capped_since_tag: 0,
            forwarded: 0,
            plan: None,
            result_formats: Arc::from(&[][..]),
            masked_values: 0,
            tally: Default::default(),
            masked_reported: 0,
            changes: Vec::new(),
            outputs: Vec::new(),
            completed: 0,
        }
    }

    /// The `StatementFinished` event for this run.
    pub fn finish(self, status: StatementStatus) -> (Event, u64) {
        let rows = self.rows + self.rows_since_tag;
        let status = if self.refused {
            StatementStatus::Refused
        } else if self.sqlstate.is_some() && status == StatementStatus::Ok {
            StatementStatus::Error
        } else {
            status
        };
        let event = Event::StatementFinished(StatementFinished {
            statement_seq: self.seq,
            status,
            sqlstate: self
                .sqlstate
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
            command_tags: self.tags,
            rows,
            bytes: self.bytes,
            duration_us: self.started.elapsed().as_micros() as u64,
            result_digest: hex::encode(self.digest.finalize()),
            rows_withheld: self.capped,
            values_withheld: self.masked_values,
            values_masked: self.tally.total(),
        });
        (event, rows)
    }
}

/// The settings the server reports (ParameterStatus) that decide how it lexes statement text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReportedSettings {
    pub standard_conforming_strings: bool,
    pub client_encoding: String,
    pub server_encoding: String,
}

impl Default for ReportedSettings {
    /// PostgreSQL's defaults (it reports all three at login).
    fn default() -> Self {
        ReportedSettings {
            standard_conforming_strings: true,
            client_encoding: "UTF8".into(),
            server_encoding: "UTF8".into(),
        }
    }
}

impl ReportedSettings {
    /// Takes a ParameterStatus into account; `true` if it was one of these settings.
    pub fn update(&mut self, name: &[u8], value: &[u8]) -> bool {
        let value = || String::from_utf8_lossy(value).into_owned();
        match name {
            b"standard_conforming_strings" => self.standard_conforming_strings = value() == "on",
            b"client_encoding" => self.client_encoding = value(),
            b"server_encoding" => self.server_encoding = value(),
            _ => return false,
        }
        true
    }

    pub fn lex(&self) -> LexSettings {
        LexSettings {
            standard_conforming_strings: self.standard_conforming_strings,
            encoding: TextEncoding::from_settings(&self.client_encoding, &self.server_encoding),
        }
    }
}

/// How to read and lex a statement's text: what the server would do with it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LexSettings {
    pub standard_conforming_strings: bool,
    pub encoding: TextEncoding,
}

/// State shared by the two halves.
pub(crate) struct Shared {
    pub items: VecDeque<Item>,
    /// Ids of items answered so far: every item with `id <= popped_through` is settled.
    pub popped_through: u64,
    /// The id of the last item answered by ReadyForQuery. The server reports setting changes
    /// (ParameterStatus) just before ReadyForQuery, so `settings` reflects every statement up
    /// to this item; statements after it may have changed them without the report yet.
    pub ready_through: u64,
    pub statements: HashMap<Arc<[u8]>, Slot<Prepared>>,
    pub portals: HashMap<Arc<[u8]>, Slot<Portal>>,
    /// Rows and bytes the session sent the client, for the session caps.
    pub delivered: Delivered,
    /// An error or a `ROLLBACK` since the last ReadyForQuery outside a transaction: the
    /// transaction ending next does not commit (its held cursors go with it).
    pub transaction_failed: bool,
    /// Values masked so far, by entity type (the session's summary).
    pub masked: std::collections::BTreeMap<String, u64>,
    /// Table columns' names by `(table OID, column number)`, for masking rules and evidence.
    pub names: ColumnNameCache,
    pub settings: ReportedSettings,
    /// The last ReadyForQuery said the session is in no transaction (as at login).
    pub idle: bool,
    /// `settings.lex()`, kept up to date.
    pub lex: LexSettings,
    pub totals: Totals,
}

impl Shared {
    fn new(settings: ReportedSettings) -> Self {
        Shared {
            items: VecDeque::new(),
            popped_through: 0,
            ready_through: 0,
            statements: HashMap::new(),
            portals: HashMap::new(),
            transaction_failed: false,
            delivered: Delivered::default(),
            masked: Default::default(),
            names: ColumnNameCache::default(),
            lex: settings.lex(),
            settings,
            idle: true,
            totals: Totals::default(),
        }
    }
}

/// The shared state and the signal the backend gives when it settles items.
pub(crate) struct Link {
    pub shared: parking_lot::Mutex<Shared>,
    pub settled: Notify,
    /// Messages for the client that answer nothing the server sent (a notice that a statement
    /// is held for an approval): the backend writes them between the server's messages.
    pub to_client: parking_lot::Mutex<Vec<u8>>,
    pub to_client_ready: Notify,
}

impl Link {
    /// Queues `message` (whole, encoded) for the client.
    pub fn send_to_client(&self, message: &[u8]) {
        self.to_client.lock().extend_from_slice(message);
        self.to_client_ready.notify_one();
    }
}

/// Table and column names by `(table OID, column number)`, from the connection's catalog.
#[derive(Default)]
pub(crate) struct ColumnNameCache {
    by_oid: HashMap<u32, Arc<vigil_sql::RelationInfo>>,
}

/// [`ColumnNameCache`] with the catalog to reload from when it meets a table it does not know.
pub(crate) struct NameLookup<'a> {
    pub names: &'a mut ColumnNameCache,
    pub cache: &'a crate::catalog::CatalogCache,
    reloaded: bool,
}

impl<'a> NameLookup<'a> {
    pub fn new(names: &'a mut ColumnNameCache, cache: &'a crate::catalog::CatalogCache) -> Self {
        NameLookup {
            names,
            cache,
            reloaded: false,
        }
    }
}

impl crate::masking::ColumnNames for NameLookup<'_> {
    fn names(&mut self, table: u32, column: i16) -> Option<(Arc<str>, Arc<str>, Arc<str>)> {
        if !self.names.by_oid.contains_key(&table) && !self.reloaded {
            // At most once per RowDescription: a table created since the last refresh.
            self.reloaded = true;
            self.names.by_oid = self
                .cache
                .relations()
                .into_iter()
                .map(|r| (r.oid, r))
                .collect();
        }
        let rel = self.names.by_oid.get(&table)?;
        let col = rel.columns.iter().find(|c| c.attnum == column)?;
        Some((
            rel.schema.as_str().into(),
            rel.name.as_str().into(),
            col.name.as_str().into(),
        ))
    }
}

/// Settles a finished statement: its `StatementFinished` record, then one `MaskingApplied`
/// record per column and rule that masked values. Returns the rows it counted.
pub(crate) fn finish_run(
    ctx: &SessionContext,
    shared: &mut Shared,
    mut run: Box<Run>,
    status: StatementStatus,
) -> u64 {
    let seq = run.seq;
    let tally = std::mem::take(&mut run.tally);
    let (event, rows) = run.finish(status);
    if let Event::StatementFinished(f) = &event {
        match f.status {
            StatementStatus::Error => shared.totals.errors += 1,
            StatementStatus::Refused => {
                shared.totals.errors += 1;
                shared.totals.refused += 1;
            }
            StatementStatus::Interrupted => shared.totals.interrupted += 1,
            StatementStatus::Ok | StatementStatus::Skipped => {}
        }
    }
    ctx.sink.append_detached(ctx.draft(event));
    record_masking(ctx, shared, Some(seq), tally);
    rows
}

/// `MaskingApplied` records for a tally, and the session's summary.
pub(crate) fn record_masking(
    ctx: &SessionContext,
    shared: &mut Shared,
    statement_seq: Option<u64>,
    tally: crate::masking::MaskTally,
) {
    for (column, key, count) in tally.entries {
        // Vigil's own withholding (errors and notices of protected sessions), or the engine's.
        let label = match (crate::masking::errors::Withheld::label(key), &ctx.masking) {
            (Some(label), _) => label,
            (None, Some(masking)) => masking.label(key),
            (None, None) => continue,
        };
        *shared.masked.entry(label.entity.clone()).or_default() += count;
        ctx.sink.append_detached(ctx.draft(Event::MaskingApplied(
            vigil_core::event::MaskingApplied {
                statement_seq,
                column: column.name.to_string(),
                rule: label.rule,
                entity: label.entity,
                operator: label.operator,
                count,
                table: column.table.as_deref().map(str::to_string),
            },
        )));
    }
}

/// How the proxy loop ended.
pub(crate) struct ProxyOutcome {
    pub reason: SessionEndReason,
    pub totals: Totals,
    /// Values masked, by entity type.
    pub masked: std::collections::BTreeMap<String, u64>,
    /// A FATAL error to send to the client before closing (protocol violation…), if the client
    /// connection is still usable.
    pub farewell: Option<Vec<u8>>,
    /// The server still owed answers when the session ended: a statement may be running.
    pub upstream_busy: bool,
}

/// Runs the session until one side ends it.
///
/// `ends` resolves when the session must end for reasons of its own (its grants expired or were
/// revoked, it reached its longest duration, the gateway shuts down): with the reason and the
/// FATAL error to send.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<CR, CW, UR, UW, E>(
    ctx: &SessionContext,
    client_read: CR,
    client_write: &mut CW,
    upstream_read: UR,
    upstream_write: UW,
    settings: ReportedSettings,
    catalog: crate::catalog::SessionCatalog,
    ends: E,
) -> ProxyOutcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
    E: std::future::Future<Output = (SessionEndReason, Vec<u8>)>,
{
    let link = Link {
        shared: parking_lot::Mutex::new(Shared::new(settings)),
        settled: Notify::new(),
        to_client: parking_lot::Mutex::new(Vec::new()),
        to_client_ready: Notify::new(),
    };
    let (reason, farewell) = {
        let front = frontend::run(ctx, &link, client_read, upstream_write, catalog);
        let back = backend::run(ctx, &link, upstream_read, client_write);
        tokio::pin!(front, back, ends);
        tokio::select! {
            end = &mut front => end,
            end = &mut back => (end, None),
            (reason, farewell) = &mut ends => (reason, Some(farewell)),
        }
    };
    // Statements still in flight never completed: record them as interrupted.
    let mut shared = link.shared.lock();
    let upstream_busy = !shared.items.is_empty();
    let items: Vec<Item> = shared.items.drain(..).collect();
    for item in items {
        if let ItemKind::Statement(run) = item.kind {
            let rows = finish_run(ctx, &mut shared, run, StatementStatus::Interrupted);
            shared.totals.statements += 1;
            shared.totals.rows += rows;
        }
    }
    ProxyOutcome {
        reason,
        totals: shared.totals,
        masked: std::mem::take(&mut shared.masked),
        farewell,
        upstream_busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_settings_follow_parameter_status() {
        let mut s = ReportedSettings::default();
        assert_eq!(
            s.lex(),
            LexSettings {
                standard_conforming_strings: true,
                encoding: TextEncoding::Utf8
            }
        );
        assert!(s.update(b"client_encoding", b"SJIS"));
        assert!(s.update(b"standard_conforming_strings", b"off"));
        assert!(!s.update(b"DateStyle", b"ISO, MDY"));
        assert_eq!(
            s.lex(),
            LexSettings {
                standard_conforming_strings: false,
                encoding: TextEncoding::ShiftJis
            }
        );
        // A server that does no conversion lexes the client's bytes as they come.
        assert!(s.update(b"server_encoding", b"SQL_ASCII"));
        assert_eq!(s.lex().encoding, TextEncoding::Utf8);
    }
}
