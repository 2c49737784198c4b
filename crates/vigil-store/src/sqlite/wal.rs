//! Keeping the WAL short: background checkpoints, and a WAL that starts over.
//!
//! Every commit appends its pages to the `-wal` file; a checkpoint copies them back into the
//! database file. SQLite starts the WAL over from its beginning (reusing the file, not growing
//! it) only when a write transaction begins after a checkpoint has copied *all* of it. Two
//! ordinary loads never get there on their own:
//!
//! - **a writer that keeps committing**: a PASSIVE checkpoint copies what the WAL held when it
//!   began; by the time it ends, more has been appended, so it is never complete and the WAL
//!   grows without bound (22 GB in an 8-minute benchmark);
//! - **a burst that ends between two kicks**: its tail stays uncopied until the next burst.
//!
//! So the checkpointer thread runs a PASSIVE pass when kicked (every [`WalTuning::kick_after`]
//! units of appended work) and when the appends of this process have been idle for
//! [`WalTuning::idle_after`]; an idle pass copies everything, so the next append starts the WAL
//! over. And when the WAL has grown past [`WalTuning::restart_bytes`] under a writer that never
//! pauses, it **catches up**: it takes the store's writer lock (appends in this process wait),
//! copies what the last pass could not, and lets go; the next append starts the WAL over. Only
//! when little is left to copy, so that the pause is short: the copy of the pages appended during
//! the previous pass and two `fsync`s. [`WalStats`] counts the pauses.
//!
//! Nothing here is needed for correctness: a failed or skipped checkpoint only leaves the WAL
//! longer, and the next one tries again.

use parking_lot::Mutex;
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The one write connection, behind the mutex every write takes; the checkpointer takes it too,
/// to pause appends while it catches up.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Appended work since the checkpointer was last kicked (see [`WalTuning::kick_after`]).
    pub(super) unkicked: u64,
}

/// When the checkpointer runs. Not configuration: the defaults suit any load; tests shrink them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalTuning {
    /// Kick a pass after this much appended work, counted as one per commit plus one per 16
    /// rows (roughly the pages the WAL grew by).
    pub kick_after: u64,
    /// Past this size (frames × their size), the checkpointer catches up so that the WAL starts
    /// over. This bounds the WAL file under any load (while no reader pins an old snapshot).
    pub restart_bytes: u64,
    /// Appends idle this long: copy everything, so that the next append starts the WAL over.
    pub idle_after: Duration,
    /// Catch up (pausing appends) only when a pass left at most this many frames uncopied;
    /// otherwise run another pass first.
    pub catch_up_frames: i64,
}

impl Default for WalTuning {
    fn default() -> Self {
        WalTuning {
            kick_after: 256,
            restart_bytes: 32 << 20,
            idle_after: Duration::from_millis(50),
            catch_up_frames: 1024,
        }
    }
}

/// What the checkpointer did since the store was opened (this handle only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Checkpoint passes run.
    pub passes: u64,
    /// Times appends were paused to let the WAL start over.
    pub catch_ups: u64,
    /// The longest such pause (from taking the writer lock to releasing it).
    pub max_pause: Duration,
    /// All such pauses together.
    pub total_pause: Duration,
}

/// State shared by the store's appends and the checkpointer thread.
#[derive(Default)]
pub(super) struct WalShared {
    /// Commits by this handle, ever.
    commits: AtomicU64,
    stats: Mutex<WalStats>,
}

impl WalShared {
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> WalStats {
        *self.stats.lock()
    }
}

/// The background checkpointer. Dropping it stops and joins its thread.
pub(super) struct Checkpointer {
    kick: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    pub shared: Arc<WalShared>,
}

impl Checkpointer {
    /// `conn` is the checkpointer's own connection; `writer` is the store's writer, locked to
    /// pause appends while catching up.
    pub fn start(
        conn: Connection,
        writer: Arc<Mutex<Writer>>,
        tuning: WalTuning,
    ) -> Result<Checkpointer, String> {
        let shared = Arc::new(WalShared::default());
        let (kick, kicks) = std::sync::mpsc::sync_channel(1);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vigil-store-wal".into())
                .spawn(move || {
                    Run {
                        conn,
                        writer,
                        shared,
                        tuning,
                    }
                    .run(kicks)
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Checkpointer {
            kick: Some(kick),
            thread: Some(thread),
            shared,
        })
    }

    /// Asks for a pass without waiting; kicks coalesce while one is pending.
    pub fn kick(&self) {
        if let Some(kick) = &self.kick {
            // Full: a pass is already due. Disconnected: the thread is gone; the WAL then
            // grows until the last connection closes, which checkpoints it.
            let _ = kick.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.kick.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Frames in the WAL and frames copied back, as a checkpoint reports them.
#[derive(Clone, Copy)]
struct Progress {
    log: i64,
    copied: i64,
}

impl Progress {
    fn left(self) -> i64 {
        self.log - self.copied
    }
}

struct Run {
    conn: Connection,
    writer: Arc<Mutex<Writer>>,
    shared: Arc<WalShared>,
    tuning: WalTuning,
}

/// Longest wait between retries of a pass or a catch-up that could not finish because a
/// reader holds an old snapshot.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// How long the catch-up's RESTART waits for readers of an older snapshot to finish, while
/// appends are paused: in steps of 100 µs (SQLite's own busy handler sleeps 1, 2, 5, 10… ms).
const READER_WAIT_STEPS: i32 = 30;

fn short_busy_wait(attempts: i32) -> bool {
    if attempts >= READER_WAIT_STEPS {
        return false;
    }
    std::thread::sleep(Duration::from_micros(100));
    true
}

impl Run {
    fn run(self, kicks: Receiver<()>) {
        let frame_bytes = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap_or(4096)
            + 24;
        let _ = self.conn.busy_handler(Some(short_busy_wait));
        // Commits counted when the last pass began, and whether that pass left frames behind.
        let mut seen = self.shared.commits.load(Ordering::Relaxed);
        let mut behind = false;
        let mut retry_wait = self.tuning.idle_after;
        // Catching up again is pointless until someone appended since the last catch-up (the
        // WAL starts over at that append), or until a failed one's backoff has passed.
        let mut caught_up_at: Option<u64> = None;
        let mut catch_up_wait = self.tuning.idle_after;
        let mut no_catch_up_before = Instant::now();
        loop {
            let dirty = behind || self.shared.commits.load(Ordering::Relaxed) != seen;
            if dirty {
                let before = self.shared.commits.load(Ordering::Relaxed);
                let wait = if behind && before == seen {
                    retry_wait
                } else {
                    self.tuning.idle_after
                };
                match kicks.recv_timeout(wait) {
                    Ok(()) => {}
                    // Still appending: the kicks take care of it.
                    Err(RecvTimeoutError::Timeout)
                        if self.shared.commits.load(Ordering::Relaxed) != before =>
                    {
                        continue
                    }
                    // Idle: copy everything.
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if kicks.recv().is_err() {
                break;
            }
            seen = self.shared.commits.load(Ordering::Relaxed);
            let Some(mut progress) = self.pass() else {
                behind = true;
                retry_wait = (retry_wait * 2).min(MAX_RETRY_WAIT);
                continue;
            };
            // The log counts frames since the WAL last started over: once it is long, the WAL
            // only starts over if appends pause at a moment when everything is copied.
            if progress.log * frame_bytes >= self.tuning.restart_bytes as i64
                && caught_up_at != Some(seen)
                && Instant::now() >= no_catch_up_before
            {
                match self.catch_up(progress) {
                    Ok(p) => {
                        progress = p;
                        caught_up_at = Some(seen);
                        catch_up_wait = self.tuning.idle_after;
                    }
                    Err(p) => {
                        progress = p;
                        no_catch_up_before = Instant::now() + catch_up_wait;
                        catch_up_wait = (catch_up_wait * 2).min(MAX_RETRY_WAIT);
                    }
                }
            }
            behind = progress.left() > 0;
            if !behind {
                retry_wait = self.tuning.idle_after;
            } else if self.shared.commits.load(Ordering::Relaxed) == seen {
                // Nobody appended during the pass and it still could not copy everything: a
                // reader holds an old snapshot. Try again later, less and less often.
                retry_wait = (retry_wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }

    /// One PASSIVE checkpoint: never waits for, nor blocks, the writer or the readers; frames
    /// it cannot copy yet (a reader still uses them) are left for the next pass.
    fn pass(&self) -> Option<Progress> {
        self.shared.stats.lock().passes += 1;
        self.checkpoint("PASSIVE").map(|(_, p)| p)
    }

    /// `(completed, progress)` of a checkpoint in `mode`.
    fn checkpoint(&self, mode: &str) -> Option<(bool, Progress)> {
        self.conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((
                    r.get::<_, i64>(0)? == 0,
                    Progress {
                        log: r.get(1)?,
                        copied: r.get(2)?,
                    },
                ))
            })
            .ok()
            .filter(|(_, p)| p.log >= 0)
    }

    /// The WAL is long and appends never stop: get close with more passes, then pause appends
    /// and copy the rest with a RESTART checkpoint, which also waits (briefly) for readers of
    /// older snapshots, so that the next append starts the WAL over. `Err` when it could not.
    fn catch_up(&self, mut progress: Progress) -> Result<Progress, Progress> {
        for _ in 0..3 {
            if progress.left() <= self.tuning.catch_up_frames {
                break;
            }
            progress = self.pass().ok_or(progress)?;
        }
        if progress.left() > self.tuning.catch_up_frames {
            // A reader holds an old snapshot: pausing appends would not help.
            return Err(progress);
        }
        let guard = self.writer.lock();
        let paused = Instant::now();
        let result = self.checkpoint("RESTART");
        drop(guard);
        let pause = paused.elapsed();
        {
            let mut stats = self.shared.stats.lock();
            stats.catch_ups += 1;
            stats.max_pause = stats.max_pause.max(pause);
            stats.total_pause += pause;
        }
        let completed = result.is_some_and(|(done, _)| done);
        tracing::debug!(
            pause_us = pause.as_micros() as u64,
            frames = progress.log,
            left = progress.left(),
            completed,
            "WAL catch-up: appends paused so that the WAL starts over"
        );
        match result {
            Some((true, p)) => Ok(p),
            Some((false, p)) => Err(p),
            None => Err(progress),
        }
    }
}
