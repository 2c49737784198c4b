//! The writer: one OS thread that owns the chain's head and appends with group commit.
//!
//! Callers send messages over an unbounded channel (sending never blocks, so the async data
//! path can call [`EventSink`] methods directly). The thread blocks for the first message,
//! takes everything else already queued (up to `max_batch` records), numbers and hashes the
//! records, appends them in one store transaction and only then resolves the tickets. There is
//! no timer on that path: a lone record is written as soon as it arrives.
//!
//! Everything not yet stored waits in one queue, in order. Detached records that failed stay
//! at its front and are retried with backoff; a waited append or a checkpoint arriving
//! meanwhile is attempted at once (behind them), so nobody waits for a backoff timer.

use crate::anchor::{read_anchor, write_anchor, Anchor, ANCHOR_FORMAT};
use crate::keys::{key_id, sign_checkpoint};
use crate::AuditError;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use ed25519_dalek::{SigningKey, VerifyingKey};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_core::event::Checkpoint;
use vigil_core::sink::DurableSender;
use vigil_core::{
    AuditUnavailable, DurableTicket, Event, EventDraft, EventKind, EventSink, Record, Timestamp,
};
use vigil_store::{AuditLog, AuditRow, StoreError};

/// Conflicts with another writer are normal (each costs one head reload), but a chain that
/// moves this often while we try one batch means something is wrong.
const MAX_CONFLICTS_PER_BATCH: u32 = 64;
/// Spare `prev_hash` strings kept for reuse.
const SPARE_STRINGS: usize = 4096;

/// Settings of an [`AuditWriter`].
pub struct AuditOptions {
    /// How often to seal new records with a signed checkpoint. Default 10 s.
    pub checkpoint_interval: Duration,
    /// Most records in one store transaction (an `append_all` larger than this still goes in
    /// one). Default 512.
    pub max_batch: usize,
    /// Signs checkpoints. See [`crate::load_or_generate_signing_key`].
    pub signing_key: SigningKey,
    /// Where to keep the anchor file; `None` = no anchor (truncation of the chain's tail then
    /// goes undetected).
    pub anchor_path: Option<PathBuf>,
    /// First wait before retrying detached records after a store failure; doubles up to
    /// `retry_max`. Defaults 50 ms and 5 s.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// At shutdown, how many times to try storing what is still queued before giving up.
    /// Default 3.
    pub shutdown_attempts: u32,
    /// How long detached records may wait for a waited append to share its commit. Nobody
    /// waits for a detached record, and on a busy gateway the next statement's start record
    /// comes within a millisecond: riding along halves the commits per statement (a
    /// statement's finish record with the next one's start). Default 5 ms; zero = at once.
    pub detached_linger: Duration,
}

impl AuditOptions {
    /// Defaults, with this signing key and no anchor file.
    pub fn new(signing_key: SigningKey) -> Self {
        AuditOptions {
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 512,
            signing_key,
            anchor_path: None,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            shutdown_attempts: 3,
            detached_linger: Duration::from_millis(5),
        }
    }
}

impl fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditOptions")
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("max_batch", &self.max_batch)
            .field("key_id", &key_id(&self.signing_key.verifying_key()))
            .field("anchor_path", &self.anchor_path)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("shutdown_attempts", &self.shutdown_attempts)
            .field("detached_linger", &self.detached_linger)
            .finish()
    }
}

enum Msg {
    One(EventDraft, DurableSender),
    Many(Vec<EventDraft>, DurableSender),
    Detached(EventDraft),
    Checkpoint(DurableSender),
    Shutdown(Sender<Result<(), AuditError>>),
}

/// The audit trail's [`EventSink`]: a cheap, cloneable handle to the writer thread.
///
/// - `append`/`append_all` tickets resolve once the records are committed to the store (at
///   its `synchronous` level), or to [`AuditUnavailable`] if the store failed them (the
///   records are then dropped, all of them for `append_all`).
/// - `append_detached` records are kept in order and retried with backoff until stored
///   (in memory: a long store outage grows the queue by what the data path keeps sending).
/// - Another process appending to the same chain (`vigil token create`) is normal: the
///   writer reloads the head and renumbers its batch. A chain that shrank or changed under
///   the writer is not: it then refuses every append (fail closed) until restarted, and a
///   restart refuses to build on a chain that lacks the anchored checkpoint.
/// - Calls never block; the writer's queue is unbounded ([`AuditWriter::queued`] shows it).
///
/// Stop it with [`AuditWriter::shutdown`] once the data path has stopped sending. Dropping
/// every handle without it also stores what is queued and seals the chain, but nobody waits
/// for that to finish: a process that exits right after may leave the tail unsealed (never
/// lost once its ticket resolved).
#[derive(Clone)]
pub struct AuditWriter {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    verifying_key: VerifyingKey,
    key_id: String,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("key_id", &self.inner.key_id)
            .field("queued", &self.inner.tx.len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl AuditWriter {
    /// Starts the writer on `store`. Before returning it seals whatever the chain holds that
    /// no checkpoint covers (or writes a genesis checkpoint into an empty chain), so an error
    /// here means the store is not usable. If an anchor file exists, the chain must still
    /// hold the checkpoint it names: a writer never builds on (and re-anchors) a chain that
    /// was truncated or rewritten, which would erase the evidence.
    pub fn start(
        store: Arc<dyn AuditLog>,
        options: AuditOptions,
    ) -> Result<AuditWriter, AuditError> {
        if let Some(path) = &options.anchor_path {
            check_chain_holds_anchor(&*store, path)?;
        }
        let head = store.audit_head()?;
        let sealed = match head {
            Some(h) => store
                .audit_row(h.seq)?
                .is_some_and(|row| row.kind == EventKind::Checkpoint.as_str()),
            None => false,
        };
        let verifying_key = options.signing_key.verifying_key();
        let key_id = key_id(&verifying_key);
        let (tx, rx) = crossbeam_channel::unbounded();
        let head_seq = head.map_or(0, |h| h.seq);
        let mut writer = Writer {
            store,
            rx,
            key_id: key_id.clone(),
            key: options.signing_key,
            anchor_path: options.anchor_path,
            interval: options.checkpoint_interval,
            max_batch: options.max_batch.max(1),
            retry_initial: options.retry_initial,
            retry_max: options.retry_max.max(options.retry_initial),
            shutdown_attempts: options.shutdown_attempts.max(1),
            detached_linger: options.detached_linger,
            head_seq,
            head_hash: head.map_or([0; 32], |h| h.hash),
            sealed_seq: if sealed { head_seq } else { 0 },
            checkpoint_due: Instant::now() + options.checkpoint_interval,
            pending: VecDeque::new(),
            urgent: 0,
            retry_delay: options.retry_initial,
            retry_at: None,
            linger_until: None,
            last_error: None,
            rows: Vec::new(),
            spare: Vec::new(),
            scratch: Vec::new(),
            shutdown_reply: None,
        };
        if !sealed {
            writer.push_checkpoint(None);
            if !writer.commit_front() {
                return Err(AuditError::Unavailable(format!(
                    "cannot write the start checkpoint: {}",
                    writer.last_error.as_deref().unwrap_or("unknown error")
                )));
            }
        }
        let thread = std::thread::Builder::new()
            .name("vigil-audit".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::Stopped(format!("cannot start its thread: {e}")))?;
        Ok(AuditWriter {
            inner: Arc::new(Inner {
                tx,
                closed: AtomicBool::new(false),
                thread: Mutex::new(Some(thread)),
                verifying_key,
                key_id,
            }),
        })
    }

    /// Stores everything queued, writes a final checkpoint (if anything is unsealed) and its
    /// anchor, and stops the thread. Idempotent: later calls return `Ok(())` at once, and
    /// appends after it fail with [`AuditUnavailable`]. Blocks (from async code, call it in
    /// `spawn_blocking`). If the store stays unavailable, gives up after `shutdown_attempts`
    /// and returns [`AuditError::Lost`] with the number of detached records not stored.
    pub fn shutdown(&self) -> Result<(), AuditError> {
        let mut thread = self.inner.thread.lock();
        let Some(handle) = thread.take() else {
            return Ok(());
        };
        self.inner.closed.store(true, Ordering::SeqCst);
        let (reply, result) = crossbeam_channel::bounded(1);
        let result = match self.inner.tx.send(Msg::Shutdown(reply)) {
            Ok(()) => result
                .recv()
                .unwrap_or_else(|_| Err(AuditError::Stopped("its thread ended early".into()))),
            Err(_) => Err(AuditError::Stopped("its thread ended early".into())),
        };
        if handle.join().is_err() {
            return Err(AuditError::Stopped("its thread panicked".into()));
        }
        result
    }

    /// Asks for a checkpoint now (after everything queued before it). The ticket resolves
    /// with the checkpoint's seq once it is durable and the anchor file is written.
    pub fn checkpoint_now(&self) -> DurableTicket {
        let (reply, ticket) = DurableTicket::channel();
        self.send(Msg::Checkpoint(reply), ticket)
    }

    /// Id of the key that signs this writer's checkpoints.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The public half of the signing key, to verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.inner.verifying_key
    }

    /// Messages sent but not yet taken by the writer thread (a gauge for monitoring).
    pub fn queued(&self) -> usize {
        self.inner.tx.len()
    }

    fn send(&self, msg: Msg, ticket: DurableTicket) -> DurableTicket {
        if self.inner.closed.load(Ordering::Acquire) || self.inner.tx.send(msg).is_err() {
            return DurableTicket::ready(Err(AuditUnavailable(
                "the audit writer is shut down".into(),
            )));
        }
        ticket
    }
}

/// The [`EventSink`] methods, also inherent so that callers need not import the trait.
impl AuditWriter {
    /// Appends one record; the ticket resolves with its seq once it is durable.
    pub fn append(&self, draft: EventDraft) -> DurableTicket {
        let (reply, ticket) = DurableTicket::channel();
        self.send(Msg::One(draft, reply), ticket)
    }

    /// Appends records in one transaction (all or none); the ticket resolves with the last
    /// one's seq. An empty batch resolves at once to `Ok(0)`.
    pub fn append_all(&self, drafts: Vec<EventDraft>) -> DurableTicket {
        if drafts.is_empty() {
            return DurableTicket::ready(Ok(0));
        }
        let (reply, ticket) = DurableTicket::channel();
        self.send(Msg::Many(drafts, reply), ticket)
    }

    /// Appends a record of something that already happened: kept and retried until stored.
    pub fn append_detached(&self, draft: EventDraft) {
        let kind = draft.event.kind();
        if self.inner.closed.load(Ordering::Acquire)
            || self.inner.tx.send(Msg::Detached(draft)).is_err()
        {
            tracing::error!(
                kind = kind.as_str(),
                "audit record dropped: the audit writer is shut down"
            );
        }
    }
}

impl EventSink for AuditWriter {
    fn append(&self, draft: EventDraft) -> DurableTicket {
        AuditWriter::append(self, draft)
    }

    fn append_all(&self, drafts: Vec<EventDraft>) -> DurableTicket {
        AuditWriter::append_all(self, drafts)
    }

    fn append_detached(&self, draft: EventDraft) {
        AuditWriter::append_detached(self, draft)
    }
}

/// Refuses to start on a chain that lacks the checkpoint the anchor file names.
fn check_chain_holds_anchor(store: &dyn AuditLog, path: &Path) -> Result<(), AuditError> {
    let Some(anchor) = read_anchor(path)? else {
        return Ok(());
    };
    let advice = "run `vigil audit verify` and investigate before writing to this chain";
    match store.audit_row(anchor.seq)? {
        Some(row) if hex::encode(row.hash) == anchor.hash => Ok(()),
        Some(_) => Err(AuditError::Tamper {
            seq: anchor.seq,
            reason: format!(
                "record {} is not the checkpoint that the anchor file {} records (chain \
                 rewritten?): {advice}",
                anchor.seq,
                path.display()
            ),
        }),
        None => {
            let end = store.audit_head()?.map_or(0, |h| h.seq);
            Err(AuditError::Tamper {
                seq: end + 1,
                reason: format!(
                    "chain ends at {end} but the anchor file {} covers {} (truncated?): {advice}",
                    path.display(),
                    anchor.seq
                ),
            })
        }
    }
}

/// What a queued record is for.
enum Tag {
    /// `append_detached`: retried until stored.
    Detached,
    /// First record of a waited append of `len` records; the ticket gets the last one's seq.
    Head { len: usize, reply: DurableSender },
    /// A following record of a waited append (dropped with its head on failure).
    Tail,
    /// A checkpoint; `reply` when someone asked for it.
    Checkpoint(Option<DurableSender>),
}

struct Entry {
    rec: Record,
    tag: Tag,
}

struct Writer {
    store: Arc<dyn AuditLog>,
    rx: Receiver<Msg>,
    key: SigningKey,
    key_id: String,
    anchor_path: Option<PathBuf>,
    interval: Duration,
    max_batch: usize,
    retry_initial: Duration,
    retry_max: Duration,
    shutdown_attempts: u32,
    detached_linger: Duration,

    /// The last stored record as this writer knows it.
    head_seq: u64,
    head_hash: [u8; 32],
    /// Seq of the last checkpoint record known to seal the chain (0: none).
    sealed_seq: u64,
    checkpoint_due: Instant,

    /// Everything accepted and not yet stored, in chain order.
    pending: VecDeque<Entry>,
    /// Entries in `pending` that must be attempted now: waited appends and checkpoints.
    urgent: usize,
    retry_delay: Duration,
    /// When failed detached records may be tried again (`None`: now).
    retry_at: Option<Instant>,
    /// Until when queued detached records wait for company (see `detached_linger`); set when
    /// the first of them arrives, cleared by every commit.
    linger_until: Option<Instant>,
    last_error: Option<String>,

    /// Reused between batches: the rows handed to the store, spare strings, a scratch list.
    rows: Vec<AuditRow>,
    spare: Vec<String>,
    scratch: Vec<Entry>,
    shutdown_reply: Option<Sender<Result<(), AuditError>>>,
}

impl Writer {
    fn run(mut self) {
        loop {
            if !self.ready_to_attempt() {
                match self.wait_for_message() {
                    Ok(msg) => {
                        if !self.accept(msg) {
                            break;
                        }
                    }
                    Err(Idle::Timer) => {}
                    Err(Idle::Disconnected) => break,
                }
            }
            // Group commit: take whatever else is already queued, without waiting for more.
            let mut stop = false;
            while self.pending.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if !self.accept(msg) {
                            stop = true;
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            }
            if stop {
                break;
            }
            if self.dirty() && Instant::now() >= self.checkpoint_due {
                self.push_checkpoint(None);
            }
            if self.ready_to_attempt() {
                self.commit_front();
            }
        }
        let result = self.finish();
        match self.shutdown_reply.take() {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "audit writer stopped without a clean shutdown");
                }
            }
        }
    }

    /// Blocks for the next message, or until a timer (retry, checkpoint) is due.
    fn wait_for_message(&self) -> Result<Msg, Idle> {
        let retry = self
            .retry_at
            .or(self.linger_until)
            .filter(|_| !self.pending.is_empty());
        let checkpoint = self.dirty().then_some(self.checkpoint_due);
        let deadline = match (retry, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match deadline {
            Some(deadline) => self.rx.recv_deadline(deadline).map_err(|e| match e {
                RecvTimeoutError::Timeout => Idle::Timer,
                RecvTimeoutError::Disconnected => Idle::Disconnected,
            }),
            None => self.rx.recv().map_err(|_| Idle::Disconnected),
        }
    }

    /// Queues a message's records; `false` when it asks the writer to stop.
    fn accept(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::One(draft, reply) => {
                let rec = self.record(draft);
                self.pending.push_back(Entry {
                    rec,
                    tag: Tag::Head { len: 1, reply },
                });
                self.urgent += 1;
            }
            Msg::Many(drafts, reply) => {
                let len = drafts.len();
                if len == 0 {
                    let _ = reply.send(Ok(0));
                    return true;
                }
                let mut reply = Some(reply);
                for draft in drafts {
                    let rec = self.record(draft);
                    let tag = match reply.take() {
                        Some(reply) => Tag::Head { len, reply },
                        None => Tag::Tail,
                    };
                    self.pending.push_back(Entry { rec, tag });
                }
                self.urgent += 1;
            }
            Msg::Detached(draft) => {
                if self.linger_until.is_none() && !self.detached_linger.is_zero() {
                    self.linger_until = Some(Instant::now() + self.detached_linger);
                }
                let rec = self.record(draft);
                self.pending.push_back(Entry {
                    rec,
                    tag: Tag::Detached,
                });
            }
            Msg::Checkpoint(reply) => self.push_checkpoint(Some(reply)),
            Msg::Shutdown(reply) => {
                self.shutdown_reply = Some(reply);
                return false;
            }
        }
        true
    }

    fn record(&mut self, draft: EventDraft) -> Record {
        draft.into_record(0, self.spare.pop().unwrap_or_default())
    }

    /// Queues a checkpoint; its fields are filled and signed when its place is known.
    fn push_checkpoint(&mut self, reply: Option<DurableSender>) {
        let rec = Record {
            seq: 0,
            prev_hash: self.spare.pop().unwrap_or_default(),
            at: Timestamp::now(),
            session_id: None,
            identity: None,
            connection: None,
            event: Event::Checkpoint(Checkpoint {
                covers_seq: 0,
                head_hash: String::new(),
                key_id: String::new(),
                signature: String::new(),
            }),
        };
        self.pending.push_back(Entry {
            rec,
            tag: Tag::Checkpoint(reply),
        });
        self.urgent += 1;
        // One periodic checkpoint per interval, even if this one fails.
        self.checkpoint_due = Instant::now() + self.interval;
    }

    /// Whether anything stored or queued is not yet covered by a checkpoint.
    fn dirty(&self) -> bool {
        self.head_seq > self.sealed_seq || !self.pending.is_empty()
    }

    fn ready_to_attempt(&self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        if self.urgent > 0 {
            return true;
        }
        // Only detached records: after a failure, wait for the retry; otherwise for company,
        // unless they already fill a batch.
        if let Some(at) = self.retry_at {
            return Instant::now() >= at;
        }
        self.pending.len() >= self.max_batch
            || self.linger_until.is_none_or(|at| Instant::now() >= at)
    }

    /// How many records from the front make the next batch: whole groups, up to `max_batch`
    /// (at least one group).
    fn batch_len(&self) -> usize {
        let mut n = 0;
        while n < self.pending.len() {
            let group = match &self.pending[n].tag {
                Tag::Head { len, .. } => *len,
                _ => 1,
            };
            if n > 0 && n + group > self.max_batch {
                break;
            }
            n += group;
        }
        n
    }

    /// Stores the front of the queue (one batch), retrying at once on chain conflicts.
    /// Returns whether it was stored.
    fn commit_front(&mut self) -> bool {
        let mut conflicts = 0;
        loop {
            let n = self.batch_len();
            if n == 0 {
                return true;
            }
            if let Err(index) = self.seal(n) {
                self.drop_group_at(index);
                continue;
            }
            match self.store.append_audit(&self.rows[..n]) {
                Ok(()) => {
                    self.stored(n);
                    return true;
                }
                Err(StoreError::ChainConflict { .. }) if conflicts < MAX_CONFLICTS_PER_BATCH => {
                    // Another process (a CLI command) appended: build on its records.
                    conflicts += 1;
                    if let Err(reason) = self.reload_head() {
                        tracing::error!(error = %reason, "audit chain changed under the writer");
                        self.failed(n, reason);
                        return false;
                    }
                }
                Err(e) => {
                    self.failed(n, e.to_string());
                    return false;
                }
            }
        }
    }

    /// Numbers, links, signs (checkpoints) and serialises the first `n` queued records into
    /// `rows[..n]`. `Err(i)` if record `i` cannot be serialised.
    fn seal(&mut self, n: usize) -> Result<(), usize> {
        if self.rows.len() < n {
            self.rows.resize_with(n, empty_row);
        }
        let mut seq = self.head_seq;
        let mut prev = self.head_hash;
        for (i, entry) in self.pending.range_mut(..n).enumerate() {
            seq += 1;
            let rec = &mut entry.rec;
            rec.seq = seq;
            set_hex(&mut rec.prev_hash, &prev);
            // Checkpoints are always (re)made here, whoever queued them: their content
            // depends on their place in the chain.
            if let Event::Checkpoint(cp) = &mut rec.event {
                cp.covers_seq = seq - 1;
                cp.head_hash.clone_from(&rec.prev_hash);
                cp.key_id.clone_from(&self.key_id);
                cp.signature = sign_checkpoint(&self.key, seq - 1, &rec.prev_hash);
            }
            let row = &mut self.rows[i];
            row.body.clear();
            if serde_json::to_writer(&mut row.body, &*rec).is_err() {
                return Err(i);
            }
            row.hash = Sha256::digest(&row.body).into();
            row.seq = seq;
            row.at_us = rec.at.as_micros();
            row.kind.clear();
            row.kind.push_str(rec.event.kind().as_str());
            set_opt(&mut row.session_id, rec.session_id.as_ref());
            set_opt(&mut row.identity, rec.identity.as_ref().map(|p| &p.name));
            set_opt(&mut row.connection, rec.connection.as_ref());
            prev = row.hash;
        }
        Ok(())
    }

    /// The first `n` queued records are stored: resolve their tickets, write the anchor.
    fn stored(&mut self, n: usize) {
        let last = &self.rows[n - 1];
        self.head_seq = last.seq;
        self.head_hash = last.hash;
        self.retry_delay = self.retry_initial;
        self.retry_at = None;
        self.linger_until = None;
        self.last_error = None;

        let mut anchor = None;
        let mut checkpoint_replies = Vec::new();
        for (i, entry) in self.pending.drain(..n).enumerate() {
            let row = &self.rows[i];
            if let Event::Checkpoint(cp) = &entry.rec.event {
                self.sealed_seq = row.seq;
                anchor = Some(Anchor {
                    format: ANCHOR_FORMAT.into(),
                    seq: row.seq,
                    hash: hex::encode(row.hash),
                    covers_seq: cp.covers_seq,
                    head_hash: cp.head_hash.clone(),
                    key_id: cp.key_id.clone(),
                    signature: cp.signature.clone(),
                    at: entry.rec.at,
                });
            }
            match entry.tag {
                Tag::Detached | Tag::Tail => {}
                Tag::Head { len, reply } => {
                    self.urgent -= 1;
                    let _ = reply.send(Ok(self.rows[i + len - 1].seq));
                }
                Tag::Checkpoint(reply) => {
                    self.urgent -= 1;
                    checkpoint_replies.extend(reply.map(|r| (r, row.seq)));
                }
            }
            if self.spare.len() < SPARE_STRINGS {
                let mut s = entry.rec.prev_hash;
                s.clear();
                self.spare.push(s);
            }
        }
        // After the waited records' tickets, so that their callers never wait for an fsync.
        if let (Some(anchor), Some(path)) = (anchor, &self.anchor_path) {
            if let Err(e) = write_anchor(path, &anchor) {
                tracing::error!(error = %e, seq = anchor.seq, "cannot write the audit anchor file");
            }
        }
        for (reply, seq) in checkpoint_replies {
            let _ = reply.send(Ok(seq));
        }
    }

    /// The first `n` queued records could not be stored: waited ones fail (their callers
    /// refuse what they cover), detached ones stay queued, in order, for a retry.
    fn failed(&mut self, n: usize, reason: String) {
        let mut refused = 0usize;
        self.scratch.extend(self.pending.drain(..n));
        let mut kept = 0usize;
        while let Some(entry) = self.scratch.pop() {
            match entry.tag {
                Tag::Detached => {
                    self.pending.push_front(entry);
                    kept += 1;
                    continue;
                }
                Tag::Tail => {}
                Tag::Head { reply, .. } => {
                    self.urgent -= 1;
                    refused += 1;
                    let _ = reply.send(Err(AuditUnavailable(reason.clone())));
                }
                Tag::Checkpoint(reply) => {
                    self.urgent -= 1;
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(AuditUnavailable(reason.clone())));
                    }
                }
            }
        }
        self.retry_at = Some(Instant::now() + self.retry_delay);
        tracing::warn!(
            error = %reason,
            refused_appends = refused,
            detached_kept = kept,
            retry_in_ms = self.retry_delay.as_millis() as u64,
            "audit store append failed"
        );
        self.retry_delay = (self.retry_delay * 2).min(self.retry_max);
        self.last_error = Some(reason);
    }

    /// Drops the group holding record `index`, which cannot be serialised (never expected:
    /// every event type serialises).
    fn drop_group_at(&mut self, index: usize) {
        let mut start = index;
        while start > 0 && matches!(self.pending[start].tag, Tag::Tail) {
            start -= 1;
        }
        let len = match &self.pending[start].tag {
            Tag::Head { len, .. } => *len,
            _ => 1,
        };
        let mut group = self.pending.drain(start..start + len);
        if let Some(first) = group.next() {
            let kind = first.rec.event.kind().as_str();
            tracing::error!(kind, "audit record cannot be serialised: dropped");
            match first.tag {
                Tag::Head { reply, .. } => {
                    self.urgent -= 1;
                    let _ = reply.send(Err(AuditUnavailable(
                        "the audit record cannot be serialised".into(),
                    )));
                }
                Tag::Checkpoint(_) => self.urgent -= 1,
                Tag::Detached | Tag::Tail => {}
            }
        }
    }

    /// After a chain conflict: take the store's head, provided the chain only grew.
    fn reload_head(&mut self) -> Result<(), String> {
        let head = self.store.audit_head().map_err(|e| e.to_string())?;
        let (seq, hash) = head.map_or((0, [0; 32]), |h| (h.seq, h.hash));
        if seq < self.head_seq {
            return Err(format!(
                "the audit chain shrank from {} to {seq} records while the writer ran \
                 (truncated?): refusing to append",
                self.head_seq
            ));
        }
        if self.head_seq > 0 {
            let ours = self
                .store
                .audit_row(self.head_seq)
                .map_err(|e| e.to_string())?;
            if ours.is_none_or(|row| row.hash != self.head_hash) {
                return Err(format!(
                    "audit record {} changed while the writer ran (rewritten?): refusing to \
                     append",
                    self.head_seq
                ));
            }
        }
        self.head_seq = seq;
        self.head_hash = hash;
        Ok(())
    }

    /// Stores what is still queued and seals the chain; gives up after `shutdown_attempts`.
    fn finish(&mut self) -> Result<(), AuditError> {
        while let Ok(msg) = self.rx.try_recv() {
            self.accept(msg);
        }
        let mut failures = 0;
        loop {
            let checkpoint_queued = self
                .pending
                .back()
                .is_some_and(|e| matches!(e.tag, Tag::Checkpoint(_)));
            // Seal last; again after a failure, which drops the queued checkpoint.
            if self.dirty() && !checkpoint_queued {
                self.push_checkpoint(None);
            }
            if self.pending.is_empty() {
                return Ok(());
            }
            if self.commit_front() {
                continue;
            }
            failures += 1;
            if failures >= self.shutdown_attempts {
                break;
            }
            std::thread::sleep(self.retry_delay.min(self.retry_max));
        }
        let count = self
            .pending
            .iter()
            .filter(|e| matches!(e.tag, Tag::Detached))
            .count();
        let reason = self.last_error.clone().unwrap_or_default();
        tracing::error!(count, error = %reason, "audit records lost at shutdown: the store stayed unavailable");
        Err(AuditError::Lost { count, reason })
    }
}

/// Why [`Writer::wait_for_message`] returned without a message.
enum Idle {
    Timer,
    Disconnected,
}

fn empty_row() -> AuditRow {
    AuditRow {
        seq: 0,
        at_us: 0,
        kind: String::new(),
        session_id: None,
        identity: None,
        connection: None,
        body: Vec::new(),
        hash: [0; 32],
    }
}

pub(crate) fn set_hex(dst: &mut String, bytes: &[u8; 32]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    dst.clear();
    for b in bytes {
        dst.push(DIGITS[usize::from(b >> 4)] as char);
        dst.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// Writes `src` into `dst`, reusing its allocation.
fn set_opt(dst: &mut Option<String>, src: Option<&impl fmt::Display>) {
    use std::fmt::Write as _;
    match src {
        Some(value) => {
            let s = dst.get_or_insert_with(String::new);
            s.clear();
            let _ = write!(s, "{value}");
        }
        None => *dst = None,
    }
}
