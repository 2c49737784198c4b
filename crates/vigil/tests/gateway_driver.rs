//! A Rust driver (tokio-postgres: extended protocol, binary results, pipelining) through the
//! real gateway: prepared statements, cancel, COPY, NOTIFY, and a large streamed result.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use std::time::{Duration, Instant};
use support::*;
use tokio_postgres::{AsyncMessage, Client, NoTls};

async fn connect(vigil: &Vigil, token: &str) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, conn) = tokio_postgres::connect(&vigil.conn_string("etl", token), NoTls)
        .await
        .expect("connect through vigil");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binary_results_and_pipelining() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE patients (id int primary key, name text, dob date, weight float8)",
    );
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let (client, _task) = connect(&vigil, &token).await;

    // Named prepared statement, binary parameters and results.
    let insert = client
        .prepare("INSERT INTO patients VALUES ($1, $2, $3::text::date, $4)")
        .await
        .unwrap();
    for i in 0..20i32 {
        client
            .execute(
                &insert,
                &[
                    &i,
                    &format!("Patient {i}"),
                    &"1970-01-01",
                    &(60.5 + i as f64),
                ],
            )
            .await
            .unwrap();
    }
    let row = client
        .query_one("SELECT name, weight FROM patients WHERE id = $1", &[&7i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Patient 7");
    assert_eq!(row.get::<_, f64>(1), 67.5);

    // Pipelining: many queries in flight at once on one connection.
    let select = client
        .prepare("SELECT name FROM patients WHERE id = $1")
        .await
        .unwrap();
    let futures: Vec<_> = (0..20i32)
        .map(|i| {
            let c = &client;
            let s = &select;
            async move { c.query_one(s, &[&i]).await.map(|r| r.get::<_, String>(0)) }
        })
        .collect();
    let names = futures_util::future::join_all(futures).await;
    for (i, n) in names.into_iter().enumerate() {
        assert_eq!(n.unwrap(), format!("Patient {i}"));
    }

    // An error in the middle of a pipeline: the failing statement errs, the others are fine.
    let bad = client.query("SELECT 1/0", &[]);
    let good = client.query_one("SELECT count(*) FROM patients", &[]);
    let (bad, good) = tokio::join!(bad, good);
    assert_eq!(bad.unwrap_err().code().unwrap().code(), "22012");
    assert_eq!(good.unwrap().get::<_, i64>(0), 20);

    // Transactions through the gateway.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("DELETE FROM patients WHERE id < 10", &[])
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM patients"), "20");

    drop(client);
    let store = cfg.store_path();
    let finished = eventually("statement records", || {
        let f = records_of(&store, "StatementFinished");
        (f.len() >= 45).then_some(f)
    });
    let started = records_of(&store, "StatementStarted");
    let insert_rec = started
        .iter()
        .find(|s| s["text"].as_str().unwrap().starts_with("INSERT"))
        .unwrap();
    assert_eq!(insert_rec["protocol"], "extended");
    assert_eq!(insert_rec["parameters"]["count"], 4);
    assert_eq!(insert_rec["parameters"]["mode"], "redacted");
    assert!(insert_rec["prepared_statement"].is_string());
    let div = finished
        .iter()
        .find(|f| f["sqlstate"] == "22012")
        .expect("division error recorded");
    assert_eq!(div["status"], "error");
    let text = serde_json::to_string(&audit_records(&store)).unwrap();
    assert!(
        !text.contains("Patient 7"),
        "parameter values must not be recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_only_its_own_session() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let (client, _task) = connect(&vigil, &token).await;
    let (other, _t2) = connect(&vigil, &token).await;

    // The client sees the real backend pid (so pg_backend_pid() matches BackendKeyData).
    let cancel = client.cancel_token();
    let slow = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    cancel.cancel_query(NoTls).await.unwrap();
    let err = slow.await.unwrap().unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The other session was not touched.
    assert_eq!(
        other
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_and_notify_with_a_driver() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE t (id int, v text)");
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    let (listener, mut conn) = tokio_postgres::connect(&vigil.conn_string("etl", &token), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        if let Ok(AsyncMessage::Notification(n)) = m {
            let _ = tx.send((
                n.channel().to_string(),
                n.payload().to_string(),
                n.process_id(),
            ));
        }
        futures_util::future::ready(())
    }));
    listener.batch_execute("LISTEN events").await.unwrap();
    let listener_pid: i32 = listener
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let (client, _task) = connect(&vigil, &token).await;
    let sink = client.copy_in("COPY t FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let data: String = (0..5000).map(|i| format!("{i}\trow {i}\n")).collect();
    sink.send(Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let out = client
        .copy_out("COPY t TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    assert!(chunks.iter().map(|c| c.len()).sum::<usize>() > 5000 * 10);

    let sender_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("NOTIFY events, 'hello'")
        .await
        .unwrap();
    let (channel, payload, pid) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((channel.as_str(), payload.as_str()), ("events", "hello"));
    assert_eq!(
        pid, sender_pid,
        "NOTIFY carries the sender's real backend pid"
    );
    assert_ne!(pid, listener_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_stream_with_flat_memory() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let (client, _task) = connect(&vigil, &token).await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    let baseline = rss_kb(vigil.child.id());

    let params: [&str; 0] = [];
    let rows = client
        .query_raw(
            "SELECT g, repeat('x', 200) FROM generate_series(1, 1000000) g",
            params,
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let (mut n, mut peak) = (0u64, baseline);
    while let Some(row) = rows.next().await {
        row.unwrap();
        n += 1;
        if n % 50_000 == 0 {
            peak = peak.max(rss_kb(vigil.child.id()));
            // A slow reader: the gateway must not buffer ahead of it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(n, 1_000_000);
    // ~215 MB went through; the gateway's memory must not follow it.
    assert!(
        peak < baseline + 40_000,
        "gateway RSS grew from {baseline} kB to {peak} kB while streaming"
    );
    let store = cfg.store_path();
    let f = eventually("finish record", || {
        records_of(&store, "StatementFinished")
            .into_iter()
            .find(|f| f["rows"] == 1_000_000)
    });
    assert!(f["bytes"].as_u64().unwrap() > 200_000_000);
}
