//! `vigil audit verify|public-key|purge|auth-failures`: check the chain offline; hand out the
//! key that checks it; apply retention; list refused logins.

use super::open;
use crate::config::Config;
use crate::StoreArgs;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_audit::export::StoreSource;
use vigil_audit::{AuditError, AuditOptions, AuditWriter, VerifyingKey};
use vigil_store::AuditLog;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the whole chain: hashes, sequence, checkpoint signatures and the anchor.
    /// Exits 0 when intact, 1 when tampered (naming the first bad record), 2 on other errors.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// The gateway's public key (PEM), as exported by `vigil audit public-key`. Without
        /// it, the key is derived from the gateway's own signing key file.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The anchor file (default: audit-anchor.json in the data directory).
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List refused logins (`AuthFailed` records), newest first: when, why, the user given,
    /// the connection asked for, the client, and the identity when the credential was good.
    /// Never a token. The `auth_failures` export has the same rows.
    AuthFailures {
        #[command(flatten)]
        filter: super::export::FilterArgs,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines (the export's rows) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the public key that verifies this gateway's checkpoints (PEM).
    PublicKey {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete records past their retention ([retention] in the config), except those under a
    /// legal hold and every checkpoint; the purge is recorded and sealed before anything goes.
    Purge {
        /// The config (its [retention] applies; required).
        #[arg(long, short = 'c', env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where the signing key and anchor are, for a config or a bare store URL.
pub(crate) fn data_paths(
    config: Option<&Config>,
    store_url: Option<&str>,
) -> Result<(PathBuf, PathBuf)> {
    if let Some(c) = config {
        if store_url.is_none() {
            return Ok((c.signing_key_path()?, c.anchor_path()));
        }
    }
    let dir = match (store_url, config) {
        (Some(url), _) => crate::wiring::data_dir_of(url).unwrap_or_else(|| PathBuf::from(".")),
        (None, Some(c)) => c.data_dir.clone(),
        (None, None) => PathBuf::from("."),
    };
    Ok((
        dir.join("audit-signing-key.pem"),
        dir.join("audit-anchor.json"),
    ))
}

fn own_public_key(key_path: &Path) -> Result<VerifyingKey> {
    if !key_path.exists() {
        anyhow::bail!(
            "no --public-key given and no signing key at {}; pass the gateway's public key (vigil audit public-key)",
            key_path.display()
        );
    }
    Ok(vigil_audit::load_or_generate_signing_key(key_path)?.verifying_key())
}

/// An audit writer for a CLI command that records something (token issue/revoke).
pub fn cli_writer(config: Option<&Config>, store: Arc<dyn AuditLog>) -> Result<AuditWriter> {
    let (key_path, anchor) = data_paths(config, None)?;
    let key = vigil_audit::load_or_generate_signing_key(&key_path)
        .with_context(|| format!("audit signing key {}", key_path.display()))?;
    let mut options = AuditOptions::new(key);
    options.anchor_path = Some(anchor);
    AuditWriter::start(store, options).context("cannot open the audit trail")
}

pub fn run(cmd: AuditCommand) -> Result<i32> {
    match cmd {
        AuditCommand::Verify {
            store,
            public_key,
            anchor,
            json,
        } => {
            let (config, st) = open(&store)?;
            let (key_path, default_anchor) = data_paths(config.as_ref(), store.store.as_deref())?;
            let key = match public_key {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read public key {}", p.display()))?;
                    vigil_audit::parse_public_key(&text)?
                }
                None => {
                    eprintln!(
                        "note: verifying with the key derived from {}; an auditor should pass --public-key",
                        key_path.display()
                    );
                    own_public_key(&key_path)?
                }
            };
            let anchor = anchor.or_else(|| default_anchor.exists().then_some(default_anchor));
            if anchor.is_none() {
                eprintln!(
                    "note: no anchor file: truncation of the chain's tail cannot be detected"
                );
            }
            match vigil_audit::verify(&*st.audit, &key, anchor.as_deref()) {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "intact": true,
                                "records": report.records,
                                "checkpoints": report.checkpoints,
                                "last_seq": report.last_seq,
                                "sealed_through": report.sealed_through,
                                "unsealed": report.unsealed,
                                "anchor_seq": report.anchor_seq,
                                "purged": report.purged,
                                "key_id": vigil_audit::key_id(&key),
                            })
                        );
                    } else {
                        println!("audit trail intact: {report}");
                    }
                    Ok(0)
                }
                Err(e @ AuditError::Tamper { .. }) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"intact": false, "first_bad_seq": e.tampered_seq(), "reason": e.to_string()})
                        );
                    } else {
                        if let AuditError::Tamper { seq, reason } = &e {
                            println!("AUDIT TRAIL TAMPERED at record {seq}: {reason}");
                        }
                    }
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        AuditCommand::Purge { config, dry_run } => {
            let args = StoreArgs {
                config: Some(config),
                store: None,
            };
            let (config, store) = open(&args)?;
            let config = config.expect("a config was given");
            let policy = config.retention.policy()?;
            let plan = vigil_audit::retention::plan_purge(
                &*store.audit,
                &policy,
                vigil_core::Timestamp::now(),
            )?;
            let families: Vec<String> = plan
                .by_family
                .iter()
                .map(|(f, n)| format!("{f} {n}"))
                .collect();
            let what = format!(
                "{} records past retention in {} runs ({}); {} kept by legal holds; {} replay captures past retention",
                plan.deleted,
                plan.ranges.len(),
                if families.is_empty() {
                    "none".to_string()
                } else {
                    families.join(", ")
                },
                plan.held,
                plan.expired_captures.len()
            );
            if dry_run {
                println!("would purge {what}");
                return Ok(0);
            }
            let writer = cli_writer(Some(&config), store.audit.clone())?;
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            // The holds this purge applies are on record before it.
            let changes = vigil_audit::retention::record_hold_changes(
                &*store.audit,
                &writer,
                &policy.holds,
                &format!("cli:{user}"),
            )?;
            for id in &changes.placed {
                println!("legal hold {id} placed (recorded)");
            }
            for id in &changes.released {
                println!("legal hold {id} released (recorded)");
            }
            let deleted = vigil_audit::retention::purge(
                &*store.audit,
                writer,
                &plan,
                &format!("cli:{user}"),
            )?;
            println!("purged {what}; {deleted} records deleted");
            // The purge record (sealed) names the captures before their files go.
            let dir = config.replay_dir();
            let mut removed = 0;
            for session in &plan.expired_captures {
                // While written, and once compressed.
                while let Some(path) = vigil_replay::find_capture(&dir, session) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            eprintln!("warning: cannot delete {}: {e}", path.display());
                            break;
                        }
                    }
                }
            }
            if !plan.expired_captures.is_empty() {
                println!("{removed} replay captures past retention deleted");
            }
            Ok(0)
        }
        AuditCommand::AuthFailures {
            filter,
            limit,
            json,
            store,
        } => {
            let (_, store) = open(&store)?;
            list_auth_failures(&super::export_source(&store), &filter, limit, json)?;
            Ok(0)
        }
        AuditCommand::PublicKey { store } => {
            let config = match &store.config {
                Some(p) => Some(Config::load(p)?),
                None => None,
            };
            let (key_path, _) = data_paths(config.as_ref(), store.store.as_deref())?;
            let key = own_public_key(&key_path)?;
            print!("{}", vigil_audit::public_key_pem(&key));
            eprintln!("key id {}", vigil_audit::key_id(&key));
            Ok(0)
        }
    }
}

/// `vigil audit auth-failures`: the rows of the `auth_failures` export, newest first.
fn list_auth_failures(
    source: &StoreSource<'_>,
    filter: &super::export::FilterArgs,
    limit: usize,
    json: bool,
) -> Result<()> {
    use vigil_audit::export::{self, Artifact};
    let artifact = Artifact::AuthFailures;
    let filter = filter.to_filter(vigil_core::Timestamp::now())?;
    let range = export::plan(source.log, &filter, None)?;
    // Only the newest `limit` rows are kept while the chain is read.
    let mut newest = std::collections::VecDeque::with_capacity(limit.min(10_000));
    export::export_rows(source, artifact, &filter, range, &mut |row| {
        if newest.len() == limit {
            newest.pop_front();
        }
        if limit > 0 {
            newest.push_back(row);
        }
        Ok(())
    })?;
    let columns = artifact.columns();
    let text = |row: &export::Row, name: &str| -> String {
        let i = columns
            .iter()
            .position(|c| c.name == name)
            .expect("a column");
        match &row[i] {
            serde_json::Value::Null => "-".into(),
            // Text the client chose (the user): control characters are shown escaped, never
            // sent to the terminal.
            serde_json::Value::String(s) => s
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect(),
            other => other.to_string(),
        }
    };
    if json {
        for row in newest.iter().rev() {
            let object: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .map(|c| c.name.to_string())
                .zip(row.iter().cloned())
                .collect();
            println!("{}", serde_json::Value::Object(object));
        }
        return Ok(());
    }
    println!(
        "{:<27}  {:<24} {:<16} {:<10} {:<21} {:<16} DETAIL",
        "AT", "REASON", "USER", "CONNECTION", "CLIENT", "IDENTITY"
    );
    for row in newest.iter().rev() {
        println!(
            "{:<27}  {:<24} {:<16} {:<10} {:<21} {:<16} {}",
            text(row, "at"),
            text(row, "reason"),
            text(row, "user"),
            text(row, "connection"),
            text(row, "client_addr"),
            text(row, "identity"),
            text(row, "detail"),
        );
    }
    Ok(())
}
