//! The background writer: sessions format their lines on the data path (cheap, no I/O) and one
//! thread appends them to the files.

use crate::file::{frame_line, Header, Trailer, FORMAT};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::{ReplayHeader, ReplayRecorder, ReplaySink, Timestamp};

/// Bytes a session may have waiting for the writer thread. A disk that falls this far behind
/// fails the capture (and so ends the session) rather than growing memory without bound.
const MAX_PENDING: usize = 64 << 20;
/// How often the writer thread takes what sessions have formatted. Sessions never wake it:
/// on a busy gateway one sweep writes many statements' lines at once.
const SWEEP: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot create the replay directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the replay writer thread: {0}")]
    Thread(std::io::Error),
}

/// One session's lines on their way to its file.
struct SessionBuf {
    id: String,
    pending: Mutex<Vec<u8>>,
    failed: AtomicBool,
}

enum Control {
    Open(Arc<SessionBuf>, std::fs::File),
    Close(Arc<SessionBuf>, Sender<bool>),
}

/// Writes capture files into one directory. Cheap to clone.
#[derive(Clone)]
pub struct CaptureWriter {
    dir: PathBuf,
    tx: Sender<Control>,
}

impl CaptureWriter {
    /// Starts the writer thread for `dir` (created if missing, mode 0700 on Unix).
    pub fn start(dir: &Path) -> Result<CaptureWriter, WriterError> {
        std::fs::create_dir_all(dir).map_err(|source| WriterError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("vigil-replay".into())
            .spawn(move || run(rx))
            .map_err(WriterError::Thread)?;
        Ok(CaptureWriter {
            dir: dir.to_path_buf(),
            tx,
        })
    }

    /// The file of a session's capture.
    pub fn path_of(dir: &Path, session_id: &str) -> PathBuf {
        dir.join(format!("{session_id}.jsonl"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct OpenFile {
    buf: Arc<SessionBuf>,
    file: Option<std::fs::File>,
}

impl OpenFile {
    /// Writes what the session has formatted since the last sweep.
    fn drain(&mut self, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(&mut *self.buf.pending.lock(), spare);
        if spare.is_empty() || self.buf.failed.load(Ordering::Relaxed) {
            return;
        }
        let written = match &mut self.file {
            Some(f) => f.write_all(spare),
            None => Err(std::io::Error::other(
                "the capture file could not be created",
            )),
        };
        if let Err(e) = written {
            tracing::error!(session = %self.buf.id, error = %e, "replay capture write failed");
            self.buf.failed.store(true, Ordering::Relaxed);
        }
    }
}

fn run(rx: Receiver<Control>) {
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
        match control {
            Some(Control::Open(buf, file)) => open.push(OpenFile {
                buf,
                file: Some(file),
            }),
            Some(Control::Close(buf, done)) => {
                let ok = match open.iter().position(|o| Arc::ptr_eq(&o.buf, &buf)) {
                    Some(i) => {
                        let mut o = open.swap_remove(i);
                        o.drain(&mut spare);
                        !o.buf.failed.load(Ordering::Relaxed)
                    }
                    None => false,
                };
                let _ = done.send(ok);
            }
            None => {}
        }
        for o in &mut open {
            o.drain(&mut spare);
        }
    }
}

impl ReplaySink for CaptureWriter {
    /// Creates the capture file (blocking: call it off the async path).
    fn open(&self, session: &ReplayHeader) -> Result<Box<dyn ReplayRecorder>, String> {
        let path = CaptureWriter::path_of(&self.dir, &session.session_id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let header = Header {
            format: FORMAT.into(),
            session: session.clone(),
        };
        let mut line = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut digest = Sha256::new();
        digest.update(&line);
        let buf = Arc::new(SessionBuf {
            id: session.session_id.clone(),
            pending: Mutex::new(line),
            failed: AtomicBool::new(false),
        });
        self.tx
            .send(Control::Open(buf.clone(), file))
            .map_err(|_| "the replay writer has stopped".to_string())?;
        Ok(Box::new(Recorder {
            buf,
            tx: self.tx.clone(),
            state: Mutex::new(State {
                started: Instant::now(),
                digest,
                finished: false,
            }),
        }))
    }
}

struct Recorder {
    buf: Arc<SessionBuf>,
    tx: Sender<Control>,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    digest: Sha256,
    finished: bool,
}

impl ReplayRecorder for Recorder {
    fn record(&self, from_client: bool, bytes: &[u8]) {
        if bytes.is_empty() || self.buf.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        if state.finished {
            return;
        }
        let t = state.started.elapsed().as_micros() as u64;
        let mut pending = self.buf.pending.lock();
        let start = pending.len();
        frame_line(t, from_client, bytes, &mut pending);
        state.digest.update(&pending[start..]);
        if pending.len() > MAX_PENDING {
            self.buf.failed.store(true, Ordering::Relaxed);
        }
    }

    fn healthy(&self) -> bool {
        !self.buf.failed.load(Ordering::Relaxed)
    }

    fn finish(&self, reason: &str) -> Option<String> {
        let mut state = self.state.lock();
        if state.finished {
            return None;
        }
        state.finished = true;
        let trailer = Trailer {
            end: Timestamp::now(),
            reason: reason.to_string(),
        };
        let mut line = serde_json::to_vec(&trailer).ok()?;
        line.push(b'\n');
        state.digest.update(&line);
        self.buf.pending.lock().extend_from_slice(&line);
        let digest = hex::encode(std::mem::take(&mut state.digest).finalize());
        let (done, wait) = crossbeam_channel::bounded(1);
        self.tx.send(Control::Close(self.buf.clone(), done)).ok()?;
        // The file is complete (or failed) before its digest is reported.
        let ok = wait.recv().unwrap_or(false);
        (ok && self.healthy()).then_some(digest)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.state.lock().finished {
            let _ = self.finish("dropped");
        }
    }
}
