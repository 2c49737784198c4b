//! The background writer: sessions format their lines on the data path (cheap, no I/O) and one
//! thread appends them to the files.

use crate::file::{frame_line, Header, Trailer, FORMAT};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::{ReplayHeader, ReplayRecorder, ReplaySink, Timestamp};

/// Lines waiting for the writer thread, across sessions. A disk that falls this far behind
/// fails the captures (and so ends their sessions) rather than growing memory without bound.
const QUEUE: usize = 65_536;

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

enum Msg {
    Open {
        id: String,
        line: Vec<u8>,
        failed: Arc<AtomicBool>,
    },
    Line {
        id: String,
        line: Vec<u8>,
    },
    Close {
        id: String,
        line: Vec<u8>,
        done: Sender<bool>,
    },
}

/// Writes capture files into one directory. Cheap to clone.
#[derive(Clone)]
pub struct CaptureWriter {
    dir: PathBuf,
    tx: Sender<Msg>,
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
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let thread_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("vigil-replay".into())
            .spawn(move || run(&thread_dir, rx))
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

fn run(dir: &Path, rx: Receiver<Msg>) {
    struct Open {
        file: std::io::BufWriter<std::fs::File>,
        failed: Arc<AtomicBool>,
    }
    let mut files: HashMap<String, Open> = HashMap::new();
    let write = |open: &mut Open, line: &[u8]| {
        if open.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = open.file.write_all(line) {
            tracing::error!(error = %e, "replay capture write failed");
            open.failed.store(true, Ordering::Relaxed);
        }
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Open { id, line, failed } => {
                let path = CaptureWriter::path_of(dir, &id);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path);
                match file {
                    Ok(f) => {
                        let mut open = Open {
                            file: std::io::BufWriter::with_capacity(64 * 1024, f),
                            failed,
                        };
                        write(&mut open, &line);
                        files.insert(id, open);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "cannot create a replay capture");
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
            Msg::Line { id, line } => {
                if let Some(open) = files.get_mut(&id) {
                    write(open, &line);
                }
            }
            Msg::Close { id, line, done } => {
                let ok = match files.remove(&id) {
                    Some(mut open) => {
                        write(&mut open, &line);
                        let flushed = open.file.flush().is_ok();
                        flushed && !open.failed.load(Ordering::Relaxed)
                    }
                    None => false,
                };
                let _ = done.send(ok);
            }
        }
        // Flush what is buffered when the queue runs dry, so a reader sees recent frames.
        if rx.is_empty() {
            for open in files.values_mut() {
                if open.file.flush().is_err() {
                    open.failed.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

impl ReplaySink for CaptureWriter {
    fn open(&self, session: &ReplayHeader) -> Result<Box<dyn ReplayRecorder>, String> {
        let header = Header {
            format: FORMAT.into(),
            session: session.clone(),
        };
        let mut line = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut digest = Sha256::new();
        digest.update(&line);
        let failed = Arc::new(AtomicBool::new(false));
        self.tx
            .try_send(Msg::Open {
                id: session.session_id.clone(),
                line,
                failed: failed.clone(),
            })
            .map_err(|_| "the replay writer is not keeping up".to_string())?;
        Ok(Box::new(Recorder {
            id: session.session_id.clone(),
            tx: self.tx.clone(),
            failed,
            state: Mutex::new(State {
                started: Instant::now(),
                digest,
                finished: false,
            }),
        }))
    }
}

struct Recorder {
    id: String,
    tx: Sender<Msg>,
    failed: Arc<AtomicBool>,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    digest: Sha256,
    finished: bool,
}

impl ReplayRecorder for Recorder {
    fn record(&self, from_client: bool, bytes: &[u8]) {
        if bytes.is_empty() || self.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        if state.finished {
            return;
        }
        let mut line = Vec::with_capacity(bytes.len() * 4 / 3 + 40);
        frame_line(
            state.started.elapsed().as_micros() as u64,
            from_client,
            bytes,
            &mut line,
        );
        state.digest.update(&line);
        // Sent under the lock: the file's order is the digest's order.
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Msg::Line {
                id: self.id.clone(),
                line,
            })
        {
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
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
        let digest = hex::encode(std::mem::take(&mut state.digest).finalize());
        let (done, wait) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Close {
                id: self.id.clone(),
                line,
                done,
            })
            .ok()?;
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
