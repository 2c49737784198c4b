//! The background writer: sessions format their lines on the data path (cheap, no I/O) and one
//! thread appends them to the files. Two more threads keep the directory: one compresses closed
//! captures; the other, when the directory passes `max_total_bytes`, rotates out the oldest
//! closed captures (compressed yet or not) that no legal hold covers, recorded in the audit
//! trail before they go. Rotation never waits behind compression.

use crate::file::{compressed_path, frame_line, Header, Trailer, TruncationLine, FORMAT};
use crate::redact::Redactor;
use crate::seal::{envelope_bytes, is_sealed, sealed_path, Recipients, SealedWriter};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::event::{ReplayCapturesRotated, ReplayTruncated};
use vigil_core::{ReplayEnd, ReplayHeader, ReplayRecorder, ReplaySink, Timestamp};

/// Bytes a session may have waiting for the writer thread. A disk that falls this far behind
/// fails the capture (and so ends the session) rather than growing memory without bound.
const MAX_PENDING: usize = 64 << 20;
/// How often the writer thread takes what sessions have formatted. Sessions never wake it:
/// on a busy gateway one sweep writes many statements' lines at once.
const SWEEP: Duration = Duration::from_millis(5);
/// Room kept under `max_session_bytes` for the truncation line and the trailer.
const END_RESERVE: u64 = 512;
/// The smallest `max_session_bytes` that leaves room for a header, some frames and the end.
pub const MIN_SESSION_BYTES: u64 = 16 * 1024;
/// Rotation frees down to this share of `max_total_bytes`, so that it runs (and is recorded)
/// once for many sessions rather than once for each.
const ROTATE_TO_PERCENT: u64 = 90;

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot create the replay directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the replay directory {path}: {source}")]
    Scan {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the replay writer thread: {0}")]
    Thread(std::io::Error),
}

/// Whether a legal hold covers a capture (by its session, identity and start).
pub type HoldCheck = Arc<dyn Fn(&ReplayHeader) -> bool + Send + Sync>;
/// Records a rotation in the audit trail, durably, before the files go; `Err`: not recorded,
/// nothing is deleted.
pub type RotationRecorder = Arc<dyn Fn(&ReplayCapturesRotated) -> Result<(), String> + Send + Sync>;
/// The session of a capture, by its id, from elsewhere than its file (the audit trail): the
/// header of an encrypted capture is not readable here.
pub type SessionLookup = Arc<dyn Fn(&str) -> Option<ReplayHeader> + Send + Sync>;

/// How captures are bounded. The default bounds nothing (tests, tools).
#[derive(Clone)]
pub struct CaptureBounds {
    /// Bytes one capture file may reach (uncompressed); the capture then stops with a
    /// truncation line.
    pub max_session_bytes: Option<u64>,
    /// Bytes the replay directory may hold, open and closed captures together.
    pub max_total_bytes: Option<u64>,
    /// Gzip closed captures (`<id>.jsonl.gz`); encrypted ones are gzipped as they are written,
    /// before encryption (`<id>.jsonl.gz.age`).
    pub compress: bool,
    /// Encrypt captures to these age recipients from their first byte (`<id>.jsonl.age`).
    pub encrypt_to: Option<Recipients>,
    pub is_held: HoldCheck,
    pub record_rotation: RotationRecorder,
    /// Whose the encrypted captures found in the directory at start are (for rotation and
    /// holds); a capture it does not know is counted, never rotated out.
    pub describe: SessionLookup,
}

impl Default for CaptureBounds {
    fn default() -> Self {
        CaptureBounds {
            max_session_bytes: None,
            max_total_bytes: None,
            compress: false,
            encrypt_to: None,
            is_held: Arc::new(|_| false),
            record_rotation: Arc::new(|_| Err("no audit trail to record rotations in".into())),
            describe: Arc::new(|_| None),
        }
    }
}

/// One session's lines on their way to its file.
struct SessionBuf {
    id: String,
    pending: Mutex<Vec<u8>>,
    failed: AtomicBool,
}

/// Where a capture's lines go.
enum CaptureOut {
    /// The file itself (JSON lines).
    Plain(std::fs::File),
    /// Through age encryption (and gzip first, when compressing).
    Sealed(Box<SealedWriter>),
}

/// A capture closed by the writer thread: whether it is whole on disk, and the SHA-256 of the
/// file as stored when that is not its content (encrypted).
struct CloseOutcome {
    ok: bool,
    file_sha256: Option<String>,
}

enum Control {
    Open(Arc<SessionBuf>, CaptureOut, Box<ReplayHeader>, PathBuf),
    Close(Arc<SessionBuf>, Sender<CloseOutcome>),
}

/// What the threads and recorders share.
struct Shared {
    /// Bytes of every capture file in the directory (as written or compressed).
    total: AtomicU64,
    /// The directory is at its bound and nothing in it may be rotated out.
    full: AtomicBool,
    rotation_asked: AtomicBool,
    /// The closed captures, oldest first once sorted: what rotation may delete. Kept only
    /// when the directory is bounded (nothing else reads it).
    closed: Mutex<Vec<Closed>>,
    names: Interner,
    dir: PathBuf,
    bounds: CaptureBounds,
}

/// Writes capture files into one directory. Cheap to clone.
#[derive(Clone)]
pub struct CaptureWriter {
    dir: PathBuf,
    tx: Sender<Control>,
    shared: Arc<Shared>,
}

/// A closed capture in the directory: what rotation needs of it, and no more. The index holds
/// one per capture file (tens of thousands on a busy gateway), so it keeps no path and no
/// header: its file is `<dir>/<session_id><suffix>`, and the identity is shared.
struct Closed {
    session_id: Box<str>,
    identity: Arc<str>,
    started_at: Timestamp,
    /// Its file's suffix now (`.jsonl` until compressed): one of [`CAPTURE_SUFFIXES`].
    suffix: &'static str,
    bytes: u64,
    /// Named in a rotation record being written: not to be chosen again meanwhile.
    rotating: bool,
}

/// The names a closed capture's file may end with, done ones first.
const CAPTURE_SUFFIXES: [&str; 4] = [".jsonl.age", ".jsonl.gz.age", ".jsonl.gz", ".jsonl"];

impl Closed {
    fn new(
        header: &ReplayHeader,
        file: &Path,
        bytes: u64,
        shared_names: &Interner,
    ) -> Option<Self> {
        let name = file.file_name()?.to_str()?;
        let suffix = CAPTURE_SUFFIXES
            .into_iter()
            .find(|s| name.strip_suffix(s) == Some(header.session_id.as_str()))?;
        Some(Closed {
            session_id: header.session_id.as_str().into(),
            identity: shared_names.intern(&header.identity),
            started_at: header.started_at,
            suffix,
            bytes,
            rotating: false,
        })
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}{}", self.session_id, self.suffix))
    }

    /// What a legal hold is decided on.
    fn held(&self, is_held: &(dyn Fn(&ReplayHeader) -> bool + Send + Sync)) -> bool {
        is_held(&ReplayHeader {
            session_id: self.session_id.to_string(),
            identity: self.identity.to_string(),
            identity_kind: Default::default(),
            connection: String::new(),
            client_addr: String::new(),
            started_at: self.started_at,
        })
    }
}

/// Identity names, one allocation each, shared by the index's entries.
#[derive(Default)]
struct Interner(Mutex<std::collections::HashSet<Arc<str>>>);

impl Interner {
    fn intern(&self, name: &str) -> Arc<str> {
        let mut names = self.0.lock();
        if let Some(found) = names.get(name) {
            return found.clone();
        }
        let name: Arc<str> = name.into();
        names.insert(name.clone());
        name
    }
}

impl CaptureWriter {
    /// Starts the writer for `dir` (created if missing, mode 0700 on Unix), unbounded.
    pub fn start(dir: &Path) -> Result<CaptureWriter, WriterError> {
        CaptureWriter::start_bounded(dir, CaptureBounds::default())
    }

    /// Starts the writer for `dir` with `bounds`. Captures already in the directory count
    /// toward `max_total_bytes`; those left uncompressed (a gateway stopped abruptly) are
    /// compressed.
    pub fn start_bounded(dir: &Path, bounds: CaptureBounds) -> Result<CaptureWriter, WriterError> {
        std::fs::create_dir_all(dir).map_err(|source| WriterError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let names = Interner::default();
        let (closed, leftovers, total) =
            scan(dir, &bounds.describe, &names).map_err(|source| WriterError::Scan {
                path: dir.display().to_string(),
                source,
            })?;
        let shared = Arc::new(Shared {
            total: AtomicU64::new(total),
            full: AtomicBool::new(false),
            rotation_asked: AtomicBool::new(false),
            closed: Mutex::new(closed),
            names,
            dir: dir.to_path_buf(),
            bounds,
        });
        let (compress_tx, compress_rx) = crossbeam_channel::unbounded();
        let (rotate_tx, rotate_rx) = crossbeam_channel::unbounded();
        for path in leftovers {
            let _ = compress_tx.send(path);
        }
        if shared.over_bound() {
            shared.rotation_asked.store(true, Ordering::Relaxed);
            let _ = rotate_tx.send(());
        }
        let compressing = shared.clone();
        std::thread::Builder::new()
            .name("vigil-replay-gzip".into())
            .spawn(move || {
                while let Ok(plain) = compress_rx.recv() {
                    compress(&plain, &compressing);
                }
            })
            .map_err(WriterError::Thread)?;
        let rotating = shared.clone();
        std::thread::Builder::new()
            .name("vigil-replay-rotate".into())
            .spawn(move || {
                while rotate_rx.recv().is_ok() {
                    rotating.rotation_asked.store(false, Ordering::Relaxed);
                    rotate(&rotating);
                }
            })
            .map_err(WriterError::Thread)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer_shared = shared.clone();
        let compress_tx = writer_shared.bounds.compress.then_some(compress_tx);
        std::thread::Builder::new()
            .name("vigil-replay".into())
            .spawn(move || run(rx, writer_shared, compress_tx, rotate_tx))
            .map_err(WriterError::Thread)?;
        Ok(CaptureWriter {
            dir: dir.to_path_buf(),
            tx,
            shared,
        })
    }

    /// The file of a session's capture while it is written (`<id>.jsonl`; once closed and
    /// compressed, `<id>.jsonl.gz`: see [`crate::find_capture`]).
    pub fn path_of(dir: &Path, session_id: &str) -> PathBuf {
        dir.join(format!("{session_id}.jsonl"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the directory's captures take now, as this writer counts them.
    pub fn total_bytes(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn over_bound(&self) -> bool {
        self.bounds
            .max_total_bytes
            .is_some_and(|max| self.total.load(Ordering::Relaxed) > max)
    }
}

/// The session id of a capture file name, and whether it is a plain one (to compress).
fn capture_name(name: &str) -> Option<(&str, bool)> {
    for done in [".jsonl.age", ".jsonl.gz.age", ".jsonl.gz"] {
        if let Some(id) = name.strip_suffix(done) {
            return Some((id, false));
        }
    }
    name.strip_suffix(".jsonl").map(|id| (id, true))
}

/// The header line of a capture file, if it has a readable one.
fn read_header(path: &Path) -> Option<ReplayHeader> {
    let input = crate::file::open_content(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(input).read_line(&mut line).ok()?;
    serde_json::from_str::<Header>(&line)
        .ok()
        .map(|h| h.session)
}

type Scanned = (Vec<Closed>, Vec<PathBuf>, u64);

/// The captures already in `dir` (none is open: the gateway starts), the plain ones among them
/// (to compress), and the bytes they take.
fn scan(dir: &Path, describe: &SessionLookup, names: &Interner) -> std::io::Result<Scanned> {
    let mut closed = Vec::new();
    let mut plain = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".jsonl.gz.tmp")) {
            // A compression cut short: its plain file is still there.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let Some((id, uncompressed)) = name.to_str().and_then(capture_name) else {
            continue;
        };
        let path = entry.path();
        let bytes = entry.metadata()?.len();
        total += bytes;
        // A file without a readable header still counts toward the bound; it is never rotated
        // out (nothing says whose it is, nor whether a hold covers it). An encrypted one's
        // header is not readable without its key: the audit trail says whose it is.
        let header = if is_sealed(&path) {
            describe(id).filter(|h| h.session_id == id)
        } else {
            read_header(&path)
        };
        let Some(header) = header else {
            continue;
        };
        if uncompressed {
            plain.push(path.clone());
        }
        closed.extend(Closed::new(&header, &path, bytes, names));
    }
    Ok((closed, plain, total))
}

struct OpenFile {
    buf: Arc<SessionBuf>,
    out: Option<CaptureOut>,
    header: Box<ReplayHeader>,
    path: PathBuf,
    /// Bytes of an encrypted capture's file already counted toward the directory's total.
    counted: u64,
}

impl OpenFile {
    /// Writes what the session has formatted since the last sweep; returns the bytes that
    /// reached the file.
    fn drain(&mut self, spare: &mut Vec<u8>) -> u64 {
        spare.clear();
        std::mem::swap(&mut *self.buf.pending.lock(), spare);
        if self.buf.failed.load(Ordering::Relaxed) {
            return 0;
        }
        let written = match &mut self.out {
            _ if spare.is_empty() => Ok(()),
            Some(CaptureOut::Plain(f)) => f.write_all(spare),
            Some(CaptureOut::Sealed(w)) => w.write_all(spare),
            None => Err(std::io::Error::other(
                "the capture file could not be created",
            )),
        };
        match written {
            Ok(()) => match &self.out {
                Some(CaptureOut::Sealed(w)) => self.count_stored(w.stored_bytes()),
                _ => spare.len() as u64,
            },
            Err(e) => {
                tracing::error!(session = %self.buf.id, error = %e, "replay capture write failed");
                self.buf.failed.store(true, Ordering::Relaxed);
                0
            }
        }
    }

    /// The bytes of an encrypted capture's file not counted yet (age writes whole chunks, so
    /// what reaches the file lags what was written to it).
    fn count_stored(&mut self, stored: u64) -> u64 {
        let new = stored.saturating_sub(self.counted);
        self.counted = stored;
        new
    }

    /// Ends the file: writes what an encrypted one still holds, syncs it. Returns whether it
    /// is whole on disk, the SHA-256 of an encrypted file, and the bytes that reached it now.
    fn close(&mut self) -> (bool, Option<String>, u64) {
        let ok = !self.buf.failed.load(Ordering::Relaxed);
        let (file, file_sha256, written) = match self.out.take() {
            None => return (false, None, 0),
            Some(CaptureOut::Plain(f)) => (f, None, 0),
            Some(CaptureOut::Sealed(w)) => {
                if !ok {
                    return (false, None, 0);
                }
                match w.finish() {
                    Ok((file, sha256)) => {
                        let stored = file.metadata().map_or(self.counted, |m| m.len());
                        let written = self.count_stored(stored);
                        (file, Some(sha256), written)
                    }
                    Err(e) => {
                        tracing::error!(session = %self.buf.id, error = %e, "replay capture write failed");
                        self.buf.failed.store(true, Ordering::Relaxed);
                        return (false, None, 0);
                    }
                }
            }
        };
        // On disk before the digest is reported and the file compressed.
        let synced = file.sync_data().is_ok();
        (ok && synced, file_sha256, written)
    }
}

fn run(
    rx: Receiver<Control>,
    shared: Arc<Shared>,
    compress: Option<Sender<PathBuf>>,
    rotate: Sender<()>,
) {
    let mut open: Vec<OpenFile> = Vec::new();
    let mut spare = Vec::new();
    loop {
        // No session open: nothing to sweep until one opens.
        let next = if open.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(SWEEP)
        };
        let control = match next {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) if open.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(SWEEP);
                None
            }
        };
        let mut written = 0;
        match control {
            Some(Control::Open(buf, out, header, path)) => open.push(OpenFile {
                buf,
                out: Some(out),
                header,
                path,
                counted: 0,
            }),
            Some(Control::Close(buf, done)) => {
                let outcome = match open.iter().position(|o| Arc::ptr_eq(&o.buf, &buf)) {
                    Some(i) => {
                        let mut o = open.swap_remove(i);
                        written += o.drain(&mut spare);
                        let (ok, file_sha256, last) = o.close();
                        written += last;
                        if ok {
                            let bytes = std::fs::metadata(&o.path).map_or(0, |m| m.len());
                            let sealed = file_sha256.is_some();
                            if shared.bounds.max_total_bytes.is_some() {
                                if let Some(c) =
                                    Closed::new(&o.header, &o.path, bytes, &shared.names)
                                {
                                    shared.closed.lock().push(c);
                                }
                            }
                            // An encrypted capture was compressed as it was written.
                            if let (Some(c), false) = (&compress, sealed) {
                                let _ = c.send(o.path);
                            }
                        }
                        CloseOutcome { ok, file_sha256 }
                    }
                    None => CloseOutcome {
                        ok: false,
                        file_sha256: None,
                    },
                };
                // Counted before the session hears its capture is closed.
                shared
                    .total
                    .fetch_add(std::mem::take(&mut written), Ordering::Relaxed);
                let _ = done.send(outcome);
            }
            None => {}
        }
        for o in &mut open {
            written += o.drain(&mut spare);
        }
        if written > 0 {
            shared.total.fetch_add(written, Ordering::Relaxed);
        }
        if shared.over_bound() && !shared.rotation_asked.swap(true, Ordering::Relaxed) {
            let _ = rotate.send(());
        } else if shared.full.load(Ordering::Relaxed) && !shared.over_bound() {
            // Room was made (a purge, a compression): sessions may open again.
            shared.full.store(false, Ordering::Relaxed);
        }
    }
}

/// Gzips a closed capture into `<plain>.gz` (written whole and synced before the plain file
/// goes). On failure the plain file stays, and is what is kept.
fn compress(plain: &Path, shared: &Shared) {
    let gz = compressed_path(plain);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> std::io::Result<u64> {
        let mut input = std::fs::File::open(plain)?;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        let out = encoder.finish()?;
        out.sync_all()?;
        let len = out.metadata()?.len();
        drop(out);
        std::fs::rename(&tmp, &gz)?;
        Ok(len)
    })();
    let gz_len = match result {
        Ok(len) => len,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %plain.display(), error = %e, "cannot compress a closed capture; kept as it is");
            }
            return;
        }
    };
    // The index says whether the capture is still wanted (rotation may have taken it meanwhile);
    // without a bound there is no index and no rotation. Captures are compressed soon after
    // they close, so the entry is searched for from the newest.
    let mut closed = shared.closed.lock();
    let session = plain
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".jsonl"));
    let entry = closed
        .iter_mut()
        .rev()
        .find(|c| c.suffix == ".jsonl" && Some(&*c.session_id) == session);
    let wanted = match entry {
        Some(entry) => {
            entry.suffix = ".jsonl.gz";
            Some(std::mem::replace(&mut entry.bytes, gz_len))
        }
        None if shared.bounds.max_total_bytes.is_none() => {
            Some(std::fs::metadata(plain).map_or(0, |m| m.len()))
        }
        None => None,
    };
    match wanted {
        Some(before) => {
            shared.total.fetch_add(gz_len, Ordering::Relaxed);
            shared.total.fetch_sub(before, Ordering::Relaxed);
            drop(closed);
            if let Err(e) = std::fs::remove_file(plain) {
                tracing::warn!(path = %plain.display(), error = %e, "cannot remove a compressed capture's plain file");
            }
        }
        None => {
            drop(closed);
            let _ = std::fs::remove_file(&gz);
        }
    }
}

/// Deletes the oldest closed captures under no hold until the directory is within its bound
/// (down to 90% of it), recording them first. Marks the directory full when it cannot.
fn rotate(shared: &Shared) {
    let Some(max) = shared.bounds.max_total_bytes else {
        return;
    };
    if !shared.over_bound() {
        shared.full.store(false, Ordering::Relaxed);
        return;
    }
    let target = max / 100 * ROTATE_TO_PERCENT;
    let (sessions, planned) = {
        let mut closed = shared.closed.lock();
        // Files removed behind the gateway's back (`vigil audit purge`) no longer count.
        closed.retain(|c| {
            let there = c.rotating || c.path(&shared.dir).exists();
            if !there {
                shared.total.fetch_sub(c.bytes, Ordering::Relaxed);
            }
            there
        });
        closed.sort_by_key(|c| c.started_at.as_micros());
        let total = shared.total.load(Ordering::Relaxed);
        let mut freed = 0u64;
        let mut sessions = Vec::new();
        for c in closed.iter_mut() {
            if total.saturating_sub(freed) <= target {
                break;
            }
            if c.rotating || c.held(&*shared.bounds.is_held) {
                continue;
            }
            c.rotating = true;
            freed += c.bytes;
            sessions.push(c.session_id.to_string());
        }
        (sessions, freed)
    };
    if !sessions.is_empty() {
        let record = ReplayCapturesRotated {
            captures: sessions.clone(),
            bytes: planned,
            max_total_bytes: max,
        };
        let recorded = (shared.bounds.record_rotation)(&record);
        // Taken out of the index as they are now (compressed meanwhile or not).
        let taken: Vec<Closed> = {
            let mut closed = shared.closed.lock();
            if recorded.is_ok() {
                let (taken, kept) = std::mem::take(&mut *closed)
                    .into_iter()
                    .partition(|c| c.rotating);
                *closed = kept;
                taken
            } else {
                for c in closed.iter_mut() {
                    c.rotating = false;
                }
                Vec::new()
            }
        };
        match recorded {
            Ok(()) => {
                for c in &taken {
                    let path = c.path(&shared.dir);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot delete a rotated capture");
                            continue;
                        }
                    }
                    shared.total.fetch_sub(c.bytes, Ordering::Relaxed);
                }
                tracing::info!(
                    captures = taken.len(),
                    bytes = planned,
                    "replay captures rotated out to stay within max_total_bytes"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record a replay rotation: nothing deleted");
            }
        }
    }
    let full = shared.over_bound();
    if full && !shared.full.load(Ordering::Relaxed) {
        tracing::error!(
            max_total_bytes = max,
            "replay directory full: every capture left is open or under a legal hold; open captures stop and new sessions are refused"
        );
    }
    shared.full.store(full, Ordering::Relaxed);
}

impl ReplaySink for CaptureWriter {
    /// Creates the capture file (blocking: call it off the async path).
    fn open(&self, session: &ReplayHeader) -> Result<Box<dyn ReplayRecorder>, String> {
        if self.shared.full.load(Ordering::Relaxed) {
            return Err(format!(
                "the replay directory is at its bound (max_total_bytes = {}) and holds nothing \
                 that may be rotated out (open captures and legal holds)",
                self.shared.bounds.max_total_bytes.unwrap_or(0)
            ));
        }
        let plain = CaptureWriter::path_of(&self.dir, &session.session_id);
        if crate::find_capture(&self.dir, &session.session_id).is_some() {
            return Err(format!(
                "a capture of session {} exists",
                session.session_id
            ));
        }
        let bounds = &self.shared.bounds;
        let path = match &bounds.encrypt_to {
            Some(_) => sealed_path(&plain, bounds.compress),
            None => plain,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        // Encrypted from the first byte: the age header is written now, the lines after it.
        let out = match &bounds.encrypt_to {
            Some(recipients) => CaptureOut::Sealed(Box::new(
                SealedWriter::start(file, recipients, bounds.compress).map_err(|e| {
                    // Nothing but a partial age header: no capture to keep.
                    let _ = std::fs::remove_file(&path);
                    format!("cannot start the encrypted capture {}: {e}", path.display())
                })?,
            )),
            None => CaptureOut::Plain(file),
        };
        // The cap bounds the file as stored: an encrypted one keeps room for its envelope.
        let content_cap = bounds.max_session_bytes.map(|max| match &out {
            CaptureOut::Sealed(w) => {
                max.saturating_sub(envelope_bytes(max, w.stored_bytes(), bounds.compress))
            }
            CaptureOut::Plain(_) => max,
        });
        let header = Header {
            format: FORMAT.into(),
            session: session.clone(),
            client_literals: Some("redacted".into()),
            max_session_bytes: self.shared.bounds.max_session_bytes,
        };
        let mut line = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut digest = Sha256::new();
        digest.update(&line);
        let buf = Arc::new(SessionBuf {
            id: session.session_id.clone(),
            pending: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
        });
        let written = line.len() as u64;
        buf.pending.lock().extend_from_slice(&line);
        self.tx
            .send(Control::Open(
                buf.clone(),
                out,
                Box::new(session.clone()),
                path,
            ))
            .map_err(|_| "the replay writer has stopped".to_string())?;
        Ok(Box::new(Recorder {
            buf,
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            state: Mutex::new(State {
                started: Instant::now(),
                digest,
                finished: false,
                written,
                content_cap,
                truncated: None,
                redactor: Redactor::default(),
                redacted: Vec::new(),
            }),
        }))
    }
}

struct Recorder {
    buf: Arc<SessionBuf>,
    tx: Sender<Control>,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    digest: Sha256,
    finished: bool,
    /// Bytes of the file so far (its lines, uncompressed).
    written: u64,
    /// Bytes of lines the capture may hold: `max_session_bytes`, less an encrypted file's
    /// envelope.
    content_cap: Option<u64>,
    truncated: Option<ReplayTruncated>,
    redactor: Redactor,
    /// What the capture keeps of the bytes being recorded (reused).
    redacted: Vec<u8>,
}

impl State {
    /// Appends `line` to the session's pending bytes and its digest.
    fn append(&mut self, buf: &SessionBuf, line: &[u8]) {
        self.digest.update(line);
        self.written += line.len() as u64;
        buf.pending.lock().extend_from_slice(line);
    }

    /// Stops the capture here, saying why in the file.
    fn truncate(&mut self, buf: &SessionBuf, reason: &str, at_us: u64, limit_bytes: u64) {
        let truncated = ReplayTruncated {
            reason: reason.into(),
            at_us,
            limit_bytes,
        };
        let mut line = serde_json::to_vec(&TruncationLine {
            truncated: truncated.clone(),
        })
        .unwrap_or_default();
        line.push(b'\n');
        self.append(buf, &line);
        tracing::info!(session = %buf.id, reason, limit_bytes, "replay capture truncated at its bound");
        self.truncated = Some(truncated);
    }
}

impl ReplayRecorder for Recorder {
    fn record(&self, from_client: bool, bytes: &[u8]) {
        if bytes.is_empty() || self.buf.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.finished || state.truncated.is_some() {
            return;
        }
        let t = state.started.elapsed().as_micros() as u64;
        state.redacted.clear();
        // Rows and the like are kept as the client received them: no copy.
        let kept: &[u8] = if state.redactor.passes_unchanged(from_client, bytes) {
            bytes
        } else {
            state
                .redactor
                .redact(from_client, bytes, &mut state.redacted);
            &state.redacted
        };
        if kept.is_empty() {
            return;
        }
        if self.shared.full.load(Ordering::Relaxed) {
            let limit = self.shared.bounds.max_total_bytes.unwrap_or(0);
            state.truncate(&self.buf, "max_total_bytes", t, limit);
            return;
        }
        if let (Some(max), Some(cap)) = (self.shared.bounds.max_session_bytes, state.content_cap) {
            // The frame line: its fields and the base64 of the bytes.
            let line_len = 32 + base64::encoded_len(kept.len(), true).unwrap_or(0) as u64;
            if state.written + line_len + END_RESERVE > cap {
                state.truncate(&self.buf, "max_session_bytes", t, max);
                return;
            }
        }
        let mut pending = self.buf.pending.lock();
        let start = pending.len();
        frame_line(t, from_client, kept, &mut pending);
        let line = &pending[start..];
        state.digest.update(line);
        state.written += line.len() as u64;
        if pending.len() > MAX_PENDING {
            self.buf.failed.store(true, Ordering::Relaxed);
        }
    }

    fn healthy(&self) -> bool {
        !self.buf.failed.load(Ordering::Relaxed)
    }

    fn finish(&self, reason: &str) -> ReplayEnd {
        let mut state = self.state.lock();
        if state.finished {
            return ReplayEnd::default();
        }
        state.finished = true;
        let trailer = Trailer {
            end: Timestamp::now(),
            reason: reason.to_string(),
        };
        let Ok(mut line) = serde_json::to_vec(&trailer) else {
            return ReplayEnd::default();
        };
        line.push(b'\n');
        state.append(&self.buf, &line);
        let digest = hex::encode(std::mem::take(&mut state.digest).finalize());
        let truncated = state.truncated.clone();
        drop(state);
        let (done, wait) = crossbeam_channel::bounded(1);
        if self
            .tx
            .send(Control::Close(self.buf.clone(), done))
            .is_err()
        {
            return ReplayEnd {
                sha256: None,
                file_sha256: None,
                truncated,
            };
        }
        // The file is complete (or failed) before its digest is reported.
        let outcome = wait.recv().unwrap_or(CloseOutcome {
            ok: false,
            file_sha256: None,
        });
        let ok = outcome.ok && self.healthy();
        ReplayEnd {
            sha256: ok.then_some(digest),
            file_sha256: outcome.file_sha256.filter(|_| ok),
            truncated,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.state.lock().finished {
            let _ = self.finish("dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index holds an entry per capture file in the directory: it must stay small (it was
    /// ~400 bytes with a header and a path, growing the gateway's heap on a busy day).
    #[test]
    fn an_index_entry_is_small_and_names_its_file() {
        assert!(std::mem::size_of::<Closed>() <= 72);
        let names = Interner::default();
        let header = ReplayHeader {
            session_id: "01a25221-ff15-7505-a911-b9b6a563c782".into(),
            identity: "etl".into(),
            identity_kind: Default::default(),
            connection: "ehr".into(),
            client_addr: "127.0.0.1:5000".into(),
            started_at: Timestamp::from_micros(1),
        };
        let dir = Path::new("/replay");
        for suffix in CAPTURE_SUFFIXES {
            let file = dir.join(format!("{}{suffix}", header.session_id));
            let entry = Closed::new(&header, &file, 10, &names).expect("a capture's name");
            assert_eq!(entry.path(dir), file);
        }
        let other = dir.join("someone-else.jsonl");
        assert!(Closed::new(&header, &other, 10, &names).is_none());
        let a = Closed::new(
            &header,
            &dir.join(format!("{}.jsonl", header.session_id)),
            1,
            &names,
        );
        let b = Closed::new(
            &header,
            &dir.join(format!("{}.jsonl", header.session_id)),
            1,
            &names,
        );
        assert!(Arc::ptr_eq(&a.unwrap().identity, &b.unwrap().identity));
    }
}
