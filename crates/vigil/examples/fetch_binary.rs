//! Fetches a query's rows with binary results (tokio-postgres, extended protocol) and prints
//! `rows seconds`: the binary-format client of bench/masking.sh.
//!
//! ```sh
//! cargo run --release --example fetch_binary -- "host=… port=… user=… password=… dbname=…" "SELECT …"
//! ```

use futures_util::TryStreamExt;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(conn), Some(query)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: fetch_binary CONNINFO QUERY");
    };
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let started = Instant::now();
    let rows = client
        .query_raw(query.as_str(), std::iter::empty::<i32>())
        .await?;
    futures_util::pin_mut!(rows);
    let (mut n, mut bytes) = (0u64, 0usize);
    while let Some(row) = rows.try_next().await? {
        n += 1;
        for i in 0..row.len() {
            // Touch every value as raw bytes, whatever its type.
            let v: Option<RawValue> = row.try_get(i)?;
            bytes += v.map_or(0, |v| v.0);
        }
    }
    println!("{n} {:.3} {bytes}", started.elapsed().as_secs_f64());
    Ok(())
}

/// A value's length in bytes, for any type.
struct RawValue(usize);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw.len()))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
