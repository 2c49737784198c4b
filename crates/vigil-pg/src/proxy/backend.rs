//! Server → client: attribute each message to the item it answers, count, digest, forward.
//!
//! Nothing is buffered beyond the message being read: what one read brings is walked, accounted
//! and written on in one write, so memory stays flat for any result size. Only a stand-in's
//! error is rewritten; every other byte goes out as it came in.

use super::{
    finish_run, record_masking, CapReached, Change, Delivered, Item, ItemKind, Link, MutationEntry,
    NameLookup, Namespace, Portal, Run, SessionContext, Shared,
};
use crate::codec::{next_frame, pending_len};
use crate::masking::{self, MaskTally, RowPlan, Scratch};
use crate::messages::error_response::sqlstate;
use crate::messages::tag::backend as tag;
use crate::messages::{
    data_row, CommandComplete, ErrorFields, ParameterStatus, ReadyForQuery, Severity,
    TransactionStatus,
};
use bytes::{Buf, BytesMut};
use sha2::Digest;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vigil_core::event::{SessionEndReason, StatementStatus};

/// The server is trusted to frame correctly; this only stops a runaway allocation.
const MAX_BACKEND_MESSAGE: usize = 1 << 30;
const READ_CHUNK: usize = 64 * 1024;

/// What to send instead of a server message.
enum Replacement {
    Bytes(Arc<[u8]>),
    /// This range of [`Rewrites::side`].
    Rewritten(usize, usize),
    /// [`Rewrites::out`] already holds the bytes pending before the message and what replaces
    /// it (the DataRows of a masked result: each row is copied once, rewritten or not).
    InOut,
}

/// Buffers reused across reads: nothing is allocated per row.
#[derive(Default)]
struct Rewrites {
    /// What goes to the client for this read once a message in it is replaced.
    out: Vec<u8>,
    /// Replacements built apart (errors, notices, notifications, COPY rows).
    side: Vec<u8>,
    scratch: Scratch,
}

impl Rewrites {
    fn since(&self, start: usize) -> Option<Replacement> {
        Some(Replacement::Rewritten(start, self.side.len()))
    }
}

/// The message being handled, within the read buffer.
struct Frame<'a> {
    /// The bytes after the last replacement and before this message, not yet in
    /// [`Rewrites::out`].
    pending: &'a [u8],
    /// The whole message (tag, length, body).
    whole: &'a [u8],
}

/// How an item ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Skipped,
}

pub(super) async fn run<R, W>(
    ctx: &SessionContext,
    link: &Link,
    mut upstream: R,
    client: &mut W,
) -> SessionEndReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut rewrites = Rewrites::default();
    loop {
        let want = pending_len(&buf)
            .map(|total| total.saturating_sub(buf.len()))
            .unwrap_or(0)
            .max(READ_CHUNK / 4);
        buf.reserve(want);
        // Every whole message read so far has been written on: a message of Vigil's own for
        // the client goes out between the server's.
        let read = tokio::select! {
            read = upstream.read_buf(&mut buf) => read,
            _ = link.to_client_ready.notified() => {
                let own = std::mem::take(&mut *link.to_client.lock());
                if own.is_empty() {
                    continue;
                }
                link.shared.lock().totals.bytes_to_client += own.len() as u64;
                if let Some(replay) = &ctx.replay {
                    replay.record(false, &own);
                }
                if client.write_all(&own).await.is_err() || client.flush().await.is_err() {
                    return SessionEndReason::ClientDisconnected;
                }
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => return SessionEndReason::UpstreamClosed,
            Ok(_) => {}
        }
        let mut pos = 0;
        // `buf[..at]` is in `rewrites.out` (or replaced there); `edited`: something was.
        let mut at = 0;
        let mut edited = false;
        rewrites.out.clear();
        rewrites.side.clear();
        {
            let mut shared = link.shared.lock();
            loop {
                let frame = match next_frame(&buf[pos..], MAX_BACKEND_MESSAGE) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(session = %ctx.session_id, error = %e, "malformed message from upstream");
                        return SessionEndReason::Error;
                    }
                };
                let end = pos + frame.len;
                let here = Frame {
                    pending: &buf[at..pos],
                    whole: &buf[pos..end],
                };
                match on_message(
                    ctx,
                    &mut shared,
                    frame.tag,
                    frame.body,
                    frame.len,
                    &here,
                    &mut rewrites,
                ) {
                    None => {}
                    Some(replacement) => {
                        match replacement {
                            Replacement::Bytes(b) => {
                                rewrites.out.extend_from_slice(&buf[at..pos]);
                                rewrites.out.extend_from_slice(&b);
                            }
                            Replacement::Rewritten(from, to) => {
                                rewrites.out.extend_from_slice(&buf[at..pos]);
                                rewrites.out.extend_from_slice(&rewrites.side[from..to]);
                            }
                            Replacement::InOut => {}
                        }
                        at = end;
                        edited = true;
                    }
                }
                pos = end;
            }
            shared.totals.bytes_to_client += pos as u64;
        }
        link.settled.notify_one();
        if pos == 0 {
            continue;
        }
        let sent: &[u8] = if edited {
            rewrites.out.extend_from_slice(&buf[at..pos]);
            &rewrites.out
        } else {
            &buf[..pos]
        };
        if let Some(replay) = &ctx.replay {
            replay.record(false, sent);
        }
        let written = client.write_all(sent).await;
        if written.is_err() || client.flush().await.is_err() {
            return SessionEndReason::ClientDisconnected;
        }
        buf.advance(pos);
    }
}

/// Accounts for one server message; returns what to send instead, if anything.
fn on_message(
    ctx: &SessionContext,
    shared: &mut Shared,
    kind: u8,
    body: &[u8],
    len: usize,
    frame: &Frame<'_>,
    rw: &mut Rewrites,
) -> Option<Replacement> {
    if matches!(
        shared.items.front(),
        Some(Item {
            kind: ItemKind::Internal(_),
            ..
        })
    ) {
        return on_internal(shared, kind, body).map(Replacement::Bytes);
    }
    match kind {
        tag::DATA_ROW | tag::COPY_DATA => {
            let Shared {
                items,
                portals,
                delivered,
                ..
            } = shared;
            let Some(Item {
                kind: ItemKind::Statement(run),
                ..
            }) = items.front_mut()
            else {
                return None;
            };
            let admitted = !run.withhold_rows
                && run
                    .caps
                    .as_mut()
                    .is_none_or(|caps| caps.admit(len as u64, *delivered, portals));
            if !admitted {
                run.capped += 1;
                run.capped_since_tag += 1;
                return Some(Replacement::Bytes(Arc::from(Vec::new())));
            }
            delivered.rows += 1;
            delivered.bytes += len as u64;
            run.forwarded += 1;
            run.rows_since_tag += 1;
            run.bytes += len as u64;
            if kind == tag::COPY_DATA && !run.copy_in {
                if let Some(masking) = &ctx.masking {
                    return copy_row(run, masking.as_ref(), body, rw);
                }
            }
            if let (tag::DATA_ROW, Some(plan)) = (kind, &run.plan) {
                rw.out.extend_from_slice(frame.pending);
                let start = rw.out.len();
                match masking::rewrite_row(
                    body,
                    plan,
                    &run.result_formats,
                    &mut rw.out,
                    &mut rw.scratch,
                    &mut run.tally,
                ) {
                    Ok(r) if r.changed => {
                        run.masked_values += r.withheld;
                        run.digest.update(&rw.out[start + 5..]);
                    }
                    Ok(_) => {
                        rw.out.extend_from_slice(frame.whole);
                        run.digest.update(body);
                    }
                    // A row that cannot be read cannot be cleaned: it is withheld whole.
                    Err(_) => {
                        rw.out.truncate(start);
                        run.capped += 1;
                    }
                }
                return Some(Replacement::InOut);
            }
            run.digest.update(body);
            None
        }
        tag::COMMAND_COMPLETE => {
            let mut replacement = None;
            let mut transaction_failed = false;
            let done = match head_run(shared) {
                Some(run) => {
                    run.bytes += len as u64;
                    run.completed += 1;
                    if let Ok(cc) = CommandComplete::decode(body) {
                        let tag_text = String::from_utf8_lossy(cc.tag).into_owned();
                        // `ROLLBACK`, also the tag of a `COMMIT` of a failed transaction (and,
                        // conservatively, of `ROLLBACK TO SAVEPOINT`).
                        if cc.tag.starts_with(b"ROLLBACK") {
                            transaction_failed = true;
                        }
                        if run.capped_since_tag > 0 || run.masked_values > run.masked_reported {
                            replacement = Some(Replacement::Bytes(withheld_notice(run, &tag_text)));
                        }
                        run.rows += if run.capped_since_tag > 0 {
                            run.rows_since_tag
                        } else {
                            cc.rows().unwrap_or(run.rows_since_tag)
                        };
                        run.rows_since_tag = 0;
                        run.capped_since_tag = 0;
                        run.masked_reported = run.masked_values;
                        run.tags.push(tag_text);
                    }
                    !run.until_ready
                }
                None => false,
            };
            shared.transaction_failed |= transaction_failed;
            if done {
                pop_settle(ctx, shared, Outcome::Ok);
            }
            replacement
        }
        tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED => {
            let done = match head_run(shared) {
                Some(run) => {
                    run.bytes += len as u64;
                    !run.until_ready
                }
                None => false,
            };
            if done {
                pop_settle(ctx, shared, Outcome::Ok);
            }
            None
        }
        tag::PARSE_COMPLETE | tag::BIND_COMPLETE | tag::CLOSE_COMPLETE => {
            if matches!(
                shared.items.front(),
                Some(Item { kind: ItemKind::Mutation { answered_by, .. }, .. }) if *answered_by == kind
            ) {
                pop_settle(ctx, shared, Outcome::Ok);
            }
            None
        }
        tag::NO_DATA | tag::ROW_DESCRIPTION => {
            let plan = if kind == tag::ROW_DESCRIPTION {
                row_plan(ctx, shared, body)
            } else {
                Ok(None)
            };
            // A description Vigil cannot read: its rows cannot be checked, so none go out.
            let (plan, unreadable) = match plan {
                Ok(p) => (p, false),
                Err(()) => (None, true),
            };
            let replacement = plan
                .as_ref()
                .and_then(|p| p.description.clone())
                .map(Replacement::Bytes);
            match shared.items.front_mut() {
                Some(Item {
                    kind: ItemKind::Describe { injected, .. },
                    ..
                }) => {
                    let injected = *injected;
                    pop_settle(ctx, shared, Outcome::Ok);
                    if injected {
                        // Vigil's own Describe of the portal the next Execute runs: its rows
                        // are read with this description, which the client never asked for.
                        if let Some(run) = head_run(shared) {
                            set_plan(run, plan, unreadable);
                        }
                        return Some(Replacement::Bytes(Arc::from(Vec::new())));
                    }
                }
                Some(Item {
                    kind: ItemKind::Statement(run),
                    ..
                }) => {
                    run.bytes += len as u64;
                    if kind == tag::ROW_DESCRIPTION {
                        set_plan(run, plan, unreadable);
                    }
                }
                _ => {}
            }
            replacement
        }
        tag::ERROR_RESPONSE => {
            let ours = on_error(ctx, shared, body, len);
            if ours.is_some() {
                return ours.map(Replacement::Bytes);
            }
            scrub_message(ctx, shared, kind, body, rw, "error")
        }
        tag::NOTICE_RESPONSE => scrub_message(ctx, shared, kind, body, rw, "notice"),
        tag::NOTIFICATION_RESPONSE => scrub_message(ctx, shared, kind, body, rw, "notification"),
        tag::READY_FOR_QUERY => {
            on_ready(ctx, shared, body);
            None
        }
        tag::PARAMETER_STATUS => {
            if let Ok(p) = ParameterStatus::decode(body) {
                if shared.settings.update(p.name, p.value) {
                    shared.lex = shared.settings.lex();
                }
            }
            None
        }
        tag::COPY_IN_RESPONSE => {
            if let Some(run) = head_run(shared) {
                run.bytes += len as u64;
                run.copy_in = true;
            }
            None
        }
        tag::COPY_OUT_RESPONSE => {
            if let Some(run) = head_run(shared) {
                run.bytes += len as u64;
                run.copy_out_binary = body.first() == Some(&1);
            }
            None
        }
        tag::COPY_DONE | tag::COPY_BOTH_RESPONSE | tag::FUNCTION_CALL_RESPONSE => {
            if let Some(run) = head_run(shared) {
                run.bytes += len as u64;
            }
            None
        }
        // Asynchronous messages belong to no statement.
        _ => None,
    }
}

/// An internal query's answer: collected, never forwarded (asynchronous messages excepted).
fn on_internal(shared: &mut Shared, kind: u8, body: &[u8]) -> Option<Arc<[u8]>> {
    let Some(Item {
        kind: ItemKind::Internal(q),
        ..
    }) = shared.items.front_mut()
    else {
        return None;
    };
    match kind {
        tag::NOTIFICATION_RESPONSE | tag::NOTICE_RESPONSE => return None,
        tag::PARAMETER_STATUS => {
            if let Ok(p) = ParameterStatus::decode(body) {
                if shared.settings.update(p.name, p.value) {
                    shared.lex = shared.settings.lex();
                }
            }
            return None;
        }
        tag::DATA_ROW => q.rows.push(data_row::text_fields(body).unwrap_or_default()),
        tag::COMMAND_COMPLETE => {
            let rows = std::mem::take(&mut q.rows);
            q.sets.push(rows);
        }
        tag::ERROR_RESPONSE => {
            let text = |f: u8| {
                crate::messages::error_response::field(body, f)
                    .ok()
                    .flatten()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .unwrap_or_default()
            };
            q.error = Some(super::InternalError {
                code: text(b'C'),
                message: text(b'M'),
            })
        }
        tag::READY_FOR_QUERY => {
            // An internal query that failed in a transaction aborted it.
            shared.idle =
                ReadyForQuery::decode(body).is_ok_and(|r| r.status == TransactionStatus::Idle);
            if let Some(item) = shared.items.pop_front() {
                shared.popped_through = item.id;
                if let ItemKind::Internal(mut q) = item.kind {
                    let result = match q.error.take() {
                        Some(e) => Err(e),
                        None => Ok(std::mem::take(&mut q.sets)),
                    };
                    if let Some(done) = q.done.take() {
                        let _ = done.send(result);
                    }
                }
            }
        }
        _ => {}
    }
    Some(Arc::from(Vec::new()))
}

/// The row plan of a RowDescription: `Ok(None)` when its rows go out untouched, `Err` when it
/// cannot be read (and the session has columns to withhold or masking).
fn row_plan(
    ctx: &SessionContext,
    shared: &mut Shared,
    body: &[u8],
) -> Result<Option<Arc<RowPlan>>, ()> {
    let withheld_now = ctx.policy.withheld.read().clone();
    if withheld_now.is_empty() && ctx.masking.is_none() {
        return Ok(None);
    }
    let withheld = |table: u32, column: i16| withheld_now.contains(&(table, column));
    // Where the described result's columns come from, as the analysis of the statement it
    // belongs to knows them: a Describe's own (the client's, or Vigil's before an Execute), or
    // the statement of a simple query that runs now (the one after those completed).
    let outputs = match shared.items.front() {
        Some(Item {
            kind: ItemKind::Describe { outputs, .. },
            ..
        }) => outputs.clone(),
        Some(Item {
            kind: ItemKind::Statement(run),
            ..
        }) => run.outputs.get(run.completed).cloned().flatten(),
        _ => None,
    };
    let mut names = NameLookup::new(&mut shared.names, &ctx.policy.cache);
    masking::plan(
        body,
        &withheld,
        ctx.masking.as_deref(),
        &mut names,
        outputs.as_deref(),
    )
    .map_err(|_| ())
}

/// A row of COPY … TO STDOUT under masking: text and CSV rows are scrubbed by the detectors as
/// free text (column rules cannot be placed in a copy stream: COPY of a column under a rule is
/// refused before it runs); binary rows cannot be read and are withheld.
fn copy_row(
    run: &mut Run,
    masking: &dyn masking::SessionMasking,
    body: &[u8],
    rw: &mut Rewrites,
) -> Option<Replacement> {
    if run.copy_out_binary {
        run.capped += 1;
        return Some(Replacement::Bytes(Arc::from(Vec::new())));
    }
    static COPY: std::sync::OnceLock<Arc<masking::MaskSource>> = std::sync::OnceLock::new();
    let label = COPY.get_or_init(|| masking::MaskSource::named("copy"));
    let start = rw.side.len();
    rw.side.extend_from_slice(&[tag::COPY_DATA, 0, 0, 0, 0]);
    rw.scratch.also.clear();
    let outcome = masking.scrub_counting(body, &mut rw.side, &mut rw.scratch.also);
    for &key in &rw.scratch.also {
        run.tally.also(label, key);
    }
    match outcome {
        masking::MaskOutcome::Unchanged => {
            rw.side.truncate(start);
            run.digest.update(body);
            None
        }
        masking::MaskOutcome::Replaced(key) => {
            run.tally.add(label, key);
            let len = (rw.side.len() - start - 1) as u32;
            rw.side[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
            run.digest.update(&rw.side[start + 5..]);
            rw.since(start)
        }
        masking::MaskOutcome::Null(key) => {
            run.tally.add(label, key);
            rw.side.truncate(start);
            run.capped += 1;
            Some(Replacement::Bytes(Arc::from(Vec::new())))
        }
    }
}

/// Masks the free text of an error, notice or notification from the server. Values masked in
/// a statement's messages count for the statement; others are recorded at once.
///
/// A session with masking rules or denied columns is *protected*: its messages are decided
/// field by field ([`masking::errors`]), because the detectors alone miss what PostgreSQL echoes
/// of stored rows. Other sessions get the detectors, or the server's bytes untouched.
fn scrub_message(
    ctx: &SessionContext,
    shared: &mut Shared,
    kind: u8,
    body: &[u8],
    rw: &mut Rewrites,
    channel: &str,
) -> Option<Replacement> {
    let withheld = ctx.policy.withheld.read().clone();
    let masking = ctx.masking.as_deref();
    let protected = !withheld.is_empty() || masking.is_some_and(|m| m.has_rules());
    if !protected && masking.is_none() {
        return None;
    }
    let label = masking::MaskSource::named(channel);
    let mut loose = MaskTally::default();
    let notification = kind == tag::NOTIFICATION_RESPONSE;
    let tally = match head_run(shared) {
        Some(run) if !notification => &mut run.tally,
        _ => &mut loose,
    };
    let start = rw.side.len();
    let changed = match (notification, masking) {
        (true, _) if protected => {
            masking::errors::withhold_payload(body, &mut rw.side, tally, &label)
        }
        (true, Some(m)) => {
            masking::scrub_notification(body, m, &mut rw.side, &mut rw.scratch, tally, &label)
        }
        (false, _) if protected => {
            let mut tables =
                masking::errors::CatalogTables::new(masking, &withheld, &ctx.policy.cache);
            masking::errors::rewrite(
                kind,
                body,
                masking,
                &mut tables,
                &mut rw.side,
                &mut rw.scratch,
                tally,
                &label,
            )
        }
        (false, Some(m)) => {
            masking::scrub_error_fields(kind, body, m, &mut rw.side, &mut rw.scratch, tally, &label)
        }
        (_, None) => false,
    };
    if !loose.entries.is_empty() {
        record_masking(ctx, shared, None, loose);
    }
    changed.then(|| rw.since(start)).flatten()
}

/// The rows that follow are read with this description: the plan, and the formats the
/// description gives (a RowDescription sent while a statement runs, or describing a portal,
/// carries the real format of each column: a `BINARY` cursor's rows are binary even in a
/// simple query). A description Vigil cannot read lets no row out.
fn set_plan(run: &mut Run, plan: Option<Arc<RowPlan>>, unreadable: bool) {
    if let Some(p) = &plan {
        run.result_formats = p.formats.clone();
    }
    run.plan = plan;
    run.withhold_rows |= unreadable;
}

/// A notice saying what was withheld, then the command tag counting what the client got.
fn withheld_notice(run: &Run, tag_text: &str) -> Arc<[u8]> {
    let mut parts = Vec::new();
    if run.capped_since_tag > 0 {
        let n = run.capped_since_tag;
        parts.push(match run.caps.as_ref().and_then(|c| c.reached) {
            Some(CapReached::Rows(cap)) => format!(
                "{n} rows beyond the grant's row cap of {cap} were withheld (the cap counts \
                 every row of a statement, over all the Executes or FETCHes of its portal or \
                 cursor)"
            ),
            Some(CapReached::Bytes(cap)) => format!(
                "{n} rows beyond the grant's byte cap of {cap} bytes per statement were withheld"
            ),
            Some(CapReached::SessionRows(cap)) => format!(
                "{n} rows were withheld: this session has received the {cap} rows its grant allows"
            ),
            Some(CapReached::SessionBytes(cap)) => format!(
                "{n} rows were withheld: this session has received the {cap} bytes of rows its \
                 grant allows"
            ),
            None => format!("{n} rows Vigil could not read were withheld"),
        });
    }
    if run.masked_values > run.masked_reported {
        parts.push(format!(
            "{} values of columns denied to this session were withheld (sent as NULL)",
            run.masked_values - run.masked_reported
        ));
    }
    let mut out = ErrorFields::new(
        Severity::Warning,
        "01000",
        format!("Vigil: {}", parts.join("; ")),
    )
    .to_bytes();
    let tag = if run.capped_since_tag > 0 {
        let mut words: Vec<&str> = tag_text.split(' ').collect();
        let count = run.rows_since_tag.to_string();
        if words.len() > 1
            && words
                .last()
                .is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit()))
        {
            words.pop();
            let mut t = words.join(" ");
            t.push(' ');
            t.push_str(&count);
            t
        } else {
            tag_text.to_string()
        }
    } else {
        tag_text.to_string()
    };
    crate::codec::put_message(&mut out, tag::COMMAND_COMPLETE, |b| {
        crate::codec::put_cstr(b, tag.as_bytes())
    });
    out.into()
}

fn head_run(shared: &mut Shared) -> Option<&mut Run> {
    match shared.items.front_mut() {
        Some(Item {
            kind: ItemKind::Statement(run),
            ..
        }) => Some(run),
        _ => None,
    }
}

fn on_error(
    ctx: &SessionContext,
    shared: &mut Shared,
    body: &[u8],
    len: usize,
) -> Option<Arc<[u8]>> {
    shared.transaction_failed = true;
    let head = shared.items.front_mut()?;
    let replacement = head.refusal.clone();
    let code = match &replacement {
        Some(ours) => sqlstate(&ours[5..]).ok().flatten(),
        None => sqlstate(body).ok().flatten(),
    };
    match &mut head.kind {
        // A refused simple statement: its stand-in's Sync brings the ReadyForQuery.
        ItemKind::Refused { until_ready: true } => return replacement,
        ItemKind::Statement(run) if run.until_ready => {
            // A simple query: more may follow until ReadyForQuery.
            run.bytes += len as u64;
            run.sqlstate = run.sqlstate.or(code);
            return replacement;
        }
        // An error at Sync (a deferred constraint failing at the implicit commit): it belongs
        // to no single statement.
        ItemKind::Sync { .. } => return None,
        ItemKind::Statement(run) => {
            run.bytes += len as u64;
            run.sqlstate = code;
        }
        _ => {}
    }
    // An error answering Parse, Bind or Describe is the error of the statement they prepare
    // (drivers send Parse/Bind/Describe/Execute together; `SELECT 1/0` fails at Bind, when it
    // is planned): the next Execute carries it, the rest are skipped.
    let mut carried = match &head.kind {
        ItemKind::Mutation { answered_by, .. } if *answered_by != tag::CLOSE_COMPLETE => code,
        ItemKind::Describe { .. } => code,
        _ => None,
    };
    pop_settle(ctx, shared, Outcome::Failed);
    // The server now skips everything up to the next Sync.
    while let Some(next) = shared.items.front_mut() {
        if let (Some(code), ItemKind::Statement(run)) = (carried, &mut next.kind) {
            if !run.until_ready {
                run.sqlstate = Some(code);
                carried = None;
                pop_settle(ctx, shared, Outcome::Failed);
                continue;
            }
        }
        let next = &*next;
        let stops = match &next.kind {
            ItemKind::Sync { .. } => true,
            // A refused simple statement carries its own Sync, which ends the skipping.
            ItemKind::Statement(run) => run.until_ready && next.refusal.is_some(),
            ItemKind::Refused { until_ready } => *until_ready,
            _ => false,
        };
        if stops {
            break;
        }
        pop_settle(ctx, shared, Outcome::Skipped);
    }
    replacement
}

fn on_ready(ctx: &SessionContext, shared: &mut Shared, body: &[u8]) {
    let status = ReadyForQuery::decode(body).map(|r| r.status).ok();
    shared.idle = status == Some(TransactionStatus::Idle);
    // Pop up to and including what this ReadyForQuery answers.
    while let Some(item) = shared.items.front() {
        let ends_here = match &item.kind {
            ItemKind::Sync { .. } | ItemKind::Refused { until_ready: true } => true,
            ItemKind::Statement(run) => run.until_ready,
            _ => false,
        };
        let outcome = if ends_here {
            Outcome::Ok
        } else {
            Outcome::Skipped
        };
        let id = item.id;
        pop_settle(ctx, shared, outcome);
        if ends_here {
            shared.ready_through = id;
            if status == Some(TransactionStatus::Idle) {
                let committed = !shared.transaction_failed;
                end_of_transaction(shared, id, committed);
                shared.transaction_failed = false;
            }
            break;
        }
    }
}

/// The transaction ended: the server dropped every portal but the cursors `WITH HOLD` of
/// committed transactions. (When Vigil cannot tell that a transaction committed, it drops its
/// held cursors too: a `FETCH` of one is then refused, never decided on a guess.)
fn end_of_transaction(shared: &mut Shared, through: u64, committed: bool) {
    let survives = |portal: &mut Portal| {
        let lives = portal.hold && (portal.kept || committed);
        portal.kept = lives;
        lives
    };
    shared
        .portals
        .retain(|_, slot| slot.by > through || slot.entry.as_mut().is_some_and(survives));
    for item in shared.items.iter_mut() {
        for change in item_changes(&mut item.kind) {
            if change.namespace == Namespace::Portal {
                let lives = match &mut change.previous {
                    Some(MutationEntry::Portal(p)) => survives(p),
                    _ => false,
                };
                if !lives {
                    change.previous = None;
                }
            }
        }
    }
}

/// The name changes an item makes.
fn item_changes(kind: &mut ItemKind) -> Box<dyn Iterator<Item = &mut Change> + '_> {
    match kind {
        ItemKind::Mutation { change, .. } => Box::new(std::iter::once(change)),
        ItemKind::Statement(run) => Box::new(run.changes.iter_mut().map(|(_, c)| c)),
        _ => Box::new(std::iter::empty()),
    }
}

/// Pops the head item and settles it with `outcome`.
fn pop_settle(ctx: &SessionContext, shared: &mut Shared, outcome: Outcome) {
    let Some(item) = shared.items.pop_front() else {
        return;
    };
    shared.popped_through = item.id;
    match item.kind {
        ItemKind::Statement(run) => {
            if run.copy_in {
                // Syncs the client sent during copy-in were ignored by the server.
                let id = item.id;
                shared.items.retain(
                    |i| !matches!(i.kind, ItemKind::Sync { after_execute: Some(e) } if e == id),
                );
            }
            let status = match outcome {
                Outcome::Ok => StatementStatus::Ok,
                Outcome::Failed => StatementStatus::Error,
                Outcome::Skipped => StatementStatus::Skipped,
            };
            let mut run = run;
            // Each statement of a text that completed sent its CommandComplete; an error ends
            // the text, so the statements from the first without one did not run.
            let completed = match outcome {
                Outcome::Ok => run.tags.len(),
                Outcome::Failed | Outcome::Skipped => 0,
            };
            if let Some(caps) = &run.caps {
                // The portal's count goes on with its next Execute or FETCH.
                if let Some(portal) = caps.portal.as_ref().and_then(|p| shared.portals.get_mut(p)) {
                    if let Some(entry) = portal.entry.as_mut() {
                        let before = caps.before.unwrap_or(entry.delivered);
                        entry.delivered = Delivered {
                            rows: before.rows + caps.out.rows,
                            bytes: before.bytes + caps.out.bytes,
                        };
                    }
                }
            }
            let changes = std::mem::take(&mut run.changes);
            for (index, change) in changes.into_iter().rev() {
                if index < completed {
                    settle_ok(shared, change.namespace, &change.name, item.id);
                } else {
                    settle_undone(
                        shared,
                        change.namespace,
                        &change.name,
                        item.id,
                        change.previous,
                    );
                }
            }
            let rows = finish_run(ctx, shared, run, status);
            shared.totals.statements += 1;
            shared.totals.rows += rows;
        }
        ItemKind::Mutation {
            change,
            failure_keeps_previous,
            ..
        } => {
            let Change {
                namespace,
                name,
                previous,
            } = change;
            let result = match outcome {
                Outcome::Ok => return settle_ok(shared, namespace, &name, item.id),
                Outcome::Failed if !failure_keeps_previous => None,
                Outcome::Failed | Outcome::Skipped => previous,
            };
            settle_undone(shared, namespace, &name, item.id, result);
        }
        ItemKind::Describe { .. }
        | ItemKind::Sync { .. }
        | ItemKind::Refused { .. }
        | ItemKind::Internal(_) => {}
    }
}

/// A mutation took effect: its slot (if still its own) is now certain. Empty slots go, so the
/// maps hold only live names.
fn settle_ok(shared: &mut Shared, namespace: Namespace, name: &Arc<[u8]>, id: u64) {
    match namespace {
        Namespace::Statement => {
            if matches!(shared.statements.get(name), Some(s) if s.by == id && s.entry.is_none()) {
                shared.statements.remove(name);
            }
        }
        Namespace::Portal => {
            if matches!(shared.portals.get(name), Some(s) if s.by == id && s.entry.is_none()) {
                shared.portals.remove(name);
            }
        }
    }
}

/// A mutation failed or was skipped: the name holds `result` on the server. If a later
/// mutation of the same name is already forwarded, that one's "previous" was this mutation's
/// provisional entry: correct it instead.
fn settle_undone(
    shared: &mut Shared,
    namespace: Namespace,
    name: &Arc<[u8]>,
    id: u64,
    result: Option<MutationEntry>,
) {
    let own_slot = match namespace {
        Namespace::Statement => matches!(shared.statements.get(name), Some(s) if s.by == id),
        Namespace::Portal => matches!(shared.portals.get(name), Some(s) if s.by == id),
    };
    if own_slot {
        match (namespace, result) {
            (Namespace::Statement, Some(MutationEntry::Statement(p))) => {
                if let Some(slot) = shared.statements.get_mut(name) {
                    slot.entry = Some(p);
                }
            }
            (Namespace::Portal, Some(MutationEntry::Portal(p))) => {
                if let Some(slot) = shared.portals.get_mut(name) {
                    slot.entry = Some(p);
                }
            }
            (Namespace::Statement, _) => {
                shared.statements.remove(name);
            }
            (Namespace::Portal, _) => {
                shared.portals.remove(name);
            }
        }
        return;
    }
    for item in shared.items.iter_mut() {
        for change in item_changes(&mut item.kind) {
            if change.namespace == namespace && &change.name == name {
                change.previous = result;
                return;
            }
        }
    }
}
