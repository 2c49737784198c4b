//! Latency and throughput of the audit path. Ignored by default; run in release:
//!
//! ```text
//! cargo test --release -p vigil-audit --test bench -- --ignored --nocapture
//! ```
//!
//! Figures go to stdout. The store is a real file (in the target dir), `Synchronous::Normal`
//! unless said otherwise.

mod common;

use common::*;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use vigil_audit::{wait_durable, AuditOptions, AuditWriter, SigningKey};
use vigil_core::{AuditUnavailable, DurableTicket, EventDraft, SessionId};
use vigil_store::{AuditLog, AuditRow, SqliteOptions, SqliteStore, Synchronous};

fn store(sync: Synchronous) -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let options = SqliteOptions {
        synchronous: sync,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db"), options).unwrap());
    (dir, store)
}

fn writer(store: &Arc<SqliteStore>) -> AuditWriter {
    let options = AuditOptions::new(SigningKey::from_bytes(&[9; 32]));
    AuditWriter::start(store.clone(), options).unwrap()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn summary(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let at = |q: f64| micros(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
    println!(
        "{label:<48} n={:>7}  p50={:>7.1}µs  p99={:>7.1}µs  p99.9={:>8.1}µs  max={:>8.1}µs  {:>9.0} records/s",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        micros(*samples.last().unwrap()),
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn template() -> EventDraft {
    statement_started(SessionId::new(), 1)
}

/// Busy-polls the ticket: measures the audit path alone, without the operating system's
/// wake-up of a parked thread (which on this VM costs ~45 µs when the CPU was idle).
fn spin_wait(ticket: DurableTicket) -> Result<u64, AuditUnavailable> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut ticket = pin!(ticket);
    loop {
        if let Poll::Ready(result) = ticket.as_mut().poll(&mut cx) {
            return result;
        }
        std::hint::spin_loop();
    }
}

fn single_appender(
    label: &str,
    sync: Synchronous,
    n: usize,
    wait: fn(DurableTicket) -> Result<u64, AuditUnavailable>,
) {
    let (_dir, store) = store(sync);
    let writer = writer(&store);
    let draft = template();
    for _ in 0..1_000 {
        wait(writer.append(draft.clone())).unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let d = draft.clone();
        let t = Instant::now();
        wait(writer.append(d)).unwrap();
        samples.push(t.elapsed());
    }
    summary(label, samples, wall.elapsed());
    writer.shutdown().unwrap();
}

fn concurrent(label: &str, threads: usize, per_thread: usize) {
    let (_dir, store) = store(Synchronous::Normal);
    let writer = writer(&store);
    let wall = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let draft = template();
                let mut samples = Vec::with_capacity(per_thread);
                for _ in 0..per_thread {
                    let d = draft.clone();
                    let t = Instant::now();
                    wait_durable(writer.append(d)).unwrap();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let samples: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    summary(label, samples, wall.elapsed());
    writer.shutdown().unwrap();
}

/// Like the gateway: async tasks on a 2-worker runtime, each awaiting its ticket.
fn concurrent_tasks(label: &str, tasks: usize, per_task: usize) {
    let (_dir, store) = store(Synchronous::Normal);
    let writer = writer(&store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wall = Instant::now();
    let samples: Vec<Duration> = runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let draft = template();
                    let mut samples = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let d = draft.clone();
                        let t = Instant::now();
                        writer.append(d).await.unwrap();
                        samples.push(t.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    summary(label, samples, wall.elapsed());
    writer.shutdown().unwrap();
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_audit_path() {
    let body_len = serde_json::to_vec(&template().into_record(1, "00".repeat(32)))
        .unwrap()
        .len();
    println!("record body: {body_len} bytes (a StatementStarted with its shape)");

    // The floor: one-row store transactions without the writer.
    {
        let (_dir, store) = store(Synchronous::Normal);
        let body = vec![b'x'; body_len];
        let mut samples = Vec::new();
        let wall = Instant::now();
        for seq in 1..=20_000u64 {
            let row = AuditRow {
                seq,
                at_us: 0,
                kind: "StatementStarted".into(),
                session_id: Some("0190c0de-0000-7000-8000-000000000000".into()),
                identity: Some("etl".into()),
                connection: Some("ehr".into()),
                body: body.clone(),
                hash: [0; 32],
            };
            let t = Instant::now();
            store.append_audit(std::slice::from_ref(&row)).unwrap();
            samples.push(t.elapsed());
        }
        summary(
            "store.append_audit, 1 row, no writer (Normal)",
            samples,
            wall.elapsed(),
        );
    }

    single_appender(
        "writer, 1 appender, spin-waited (Normal)",
        Synchronous::Normal,
        20_000,
        spin_wait,
    );
    single_appender(
        "writer, 1 appender, parked (Normal)",
        Synchronous::Normal,
        20_000,
        wait_durable,
    );
    single_appender(
        "writer, 1 appender, spin-waited (Full)",
        Synchronous::Full,
        2_000,
        spin_wait,
    );
    concurrent("writer, 16 threads, waited (Normal)", 16, 4_000);
    concurrent_tasks("writer, 64 tokio tasks / 2 workers (Normal)", 64, 2_000);
    concurrent_tasks("writer, 512 tokio tasks / 2 workers (Normal)", 512, 400);

    // Detached flood: how fast the writer drains a backlog in max_batch transactions.
    {
        let (_dir, store) = store(Synchronous::Normal);
        let writer = writer(&store);
        let draft = template();
        let n = 200_000;
        let wall = Instant::now();
        for _ in 0..n {
            writer.append_detached(draft.clone());
        }
        let sent = wall.elapsed();
        wait_durable(writer.checkpoint_now()).unwrap();
        let wall = wall.elapsed();
        println!(
            "{:<48} n={n:>7}  enqueue={:.2}µs/record  drained in {:.2}s = {:.0} records/s",
            "writer, detached flood (Normal)",
            micros(sent) / n as f64,
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64()
        );
        writer.shutdown().unwrap();
        let t = Instant::now();
        let report = vigil_audit::verify(
            &*store,
            &SigningKey::from_bytes(&[9; 32]).verifying_key(),
            None,
        )
        .unwrap();
        println!(
            "{:<48} n={:>7}  in {:.2}s = {:.0} records/s",
            "verify",
            report.records,
            t.elapsed().as_secs_f64(),
            report.records as f64 / t.elapsed().as_secs_f64()
        );
    }
}
