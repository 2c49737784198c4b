//! `vigil evidence bundle|verify`: a signed, self-verifying bundle of every artifact for a
//! period, and its offline check.

use super::open;
use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use vigil_audit::bundle;
use vigil_audit::{AuditOptions, AuditWriter};
use vigil_core::Timestamp;

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Write every artifact of the period, the replay captures of its sessions, the chain
    /// segment it comes from, the public key and a signed manifest into one .tar.gz.
    Bundle {
        /// From this time on: RFC 3339 or a span before now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Before this time, same forms.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Which sessions' replay captures to include: `all`, `none`, or `sample:N` (N drawn
        /// from the sealing checkpoint's hash, so the draw is verifiable and unforeseeable).
        #[arg(long, default_value = "all", value_name = "all|none|sample:N")]
        replay: bundle::ReplaySelection,
        /// The directory of replay captures (default: the config's, or `replay/` beside the
        /// store).
        #[arg(long, value_name = "DIR")]
        replay_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a bundle offline: manifest signature, digests, files, chain segment, artifacts.
    /// Exits 0 when it verifies, 1 naming every problem, 2 when it cannot be read.
    Verify {
        bundle: PathBuf,
        /// The gateway's public key (PEM), obtained independently of the bundle. Without it the
        /// bundle's own key is used, which catches accidents but not a forger.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
        /// The age identity file that decrypts the bundle's encrypted replay captures: their
        /// content is then checked against the end records too (without it, the files as
        /// stored are).
        #[arg(long, env = "VIGIL_REPLAY_IDENTITY", value_name = "FILE")]
        replay_identity: Option<PathBuf>,
    },
}

pub fn run(cmd: EvidenceCommand) -> Result<i32> {
    match cmd {
        EvidenceCommand::Bundle {
            since,
            until,
            output,
            replay,
            replay_dir,
            store: store_args,
        } => {
            let (config, store) = open(&store_args)?;
            // With `none` no capture is read, but the manifest still says how many there are.
            let replay_source = bundle::ReplaySource {
                dir: replay_dir
                    .or_else(|| {
                        super::replay::capture_dir(config.as_ref(), store_args.store.as_deref())
                    })
                    .context("no replay directory: pass --config, --store or --replay-dir")?,
                selection: replay,
            };
            let (key_path, anchor) =
                super::audit::data_paths(config.as_ref(), store_args.store.as_deref())?;
            if !key_path.exists() {
                bail!(
                    "no audit signing key at {}: the bundle is signed with the gateway's key (pass --config)",
                    key_path.display()
                );
            }
            let key = vigil_audit::load_or_generate_signing_key(&key_path)?;
            // Seal what the chain holds now, so that the bundle reaches the present.
            let mut options = AuditOptions::new(key.clone());
            options.anchor_path = Some(anchor);
            AuditWriter::start(store.audit.clone(), options)
                .context("cannot seal the audit trail")?
                .shutdown()?;
            let now = Timestamp::now();
            let time = |name: &str, v: &Option<String>| -> Result<Option<Timestamp>> {
                v.as_deref()
                    .map(|v| {
                        vigil_audit::export::parse_time_bound(v, now)
                            .with_context(|| format!("--{name}"))
                    })
                    .transpose()
            };
            let summary = bundle::create_bundle(
                &super::export_source(&store),
                &key,
                time("since", &since)?,
                time("until", &until)?,
                Some(&replay_source),
                &output,
            )?;
            let m = &summary.manifest;
            eprintln!(
                "wrote {}: records {}..={} (sealed by the checkpoint at {}), key {}",
                output.display(),
                m.chain.first_seq,
                m.chain.last_seq,
                m.chain.last_seq,
                m.key_id
            );
            for (artifact, rows) in &m.rows {
                eprintln!("  {artifact}: {rows} rows");
            }
            if let Some(r) = &m.replay {
                eprintln!(
                    "  replay captures ({}): {} of the period's {} bundled",
                    r.selection,
                    r.captures.len(),
                    r.recorded
                );
                for u in &r.unavailable {
                    eprintln!(
                        "  warning: the capture of session {} is not in the bundle: {}",
                        u.session_id, u.reason
                    );
                }
            }
            Ok(0)
        }
        EvidenceCommand::Verify {
            bundle: path,
            public_key,
            json,
            replay_identity,
        } => {
            let replay_keys = match &replay_identity {
                Some(p) => Some(vigil_replay::Keyring::from_file(p)?),
                None => None,
            };
            let key = match &public_key {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read public key {}", p.display()))?;
                    Some(vigil_audit::parse_public_key(&text)?)
                }
                None => None,
            };
            match bundle::verify_bundle_with(&path, key.as_ref(), replay_keys.as_ref())? {
                Ok(summary) => {
                    let m = &summary.manifest;
                    let sealed = summary.sealed_captures;
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "verified": true,
                                "key_id": m.key_id,
                                "self_keyed": summary.self_keyed,
                                "since": m.since, "until": m.until,
                                "first_seq": m.chain.first_seq, "last_seq": m.chain.last_seq,
                                "rows": m.rows,
                                "export_revision": m.export_revision,
                                "replay": m.replay,
                                "encrypted_captures": sealed.bundled,
                                "encrypted_captures_content_checked": sealed.content_checked,
                            })
                        );
                    } else {
                        println!(
                            "bundle verified: records {}..={} intact and sealed by key {}; {} files match the signed manifest; every artifact agrees with the chain (export revision {})",
                            m.chain.first_seq,
                            m.chain.last_seq,
                            m.key_id,
                            m.files.len(),
                            m.export_revision
                        );
                        if let Some(r) = &m.replay {
                            println!(
                                "replay captures ({}): {} bundled, each the capture its session's end record names; {} in the period",
                                r.selection,
                                r.captures.len(),
                                r.recorded
                            );
                            if sealed.bundled > 0 {
                                if sealed.content_checked == sealed.bundled {
                                    println!(
                                        "encrypted captures: {} checked as stored and, decrypted, against their content digests",
                                        sealed.bundled
                                    );
                                } else {
                                    println!(
                                        "encrypted captures: {} checked as stored (replay_file_sha256); their content was not decrypted: pass --replay-identity FILE to check it too",
                                        sealed.bundled
                                    );
                                }
                            }
                            for u in &r.unavailable {
                                println!(
                                    "note: the capture of session {} (end record seq {}) was not available when the bundle was made: {}",
                                    u.session_id, u.ended_seq, u.reason
                                );
                            }
                        }
                    }
                    if summary.self_keyed {
                        eprintln!("note: verified with the key inside the bundle; pass --public-key with the gateway's key obtained independently");
                    }
                    Ok(0)
                }
                Err(problems) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"verified": false, "problems": problems.0})
                        );
                    } else {
                        println!("BUNDLE DOES NOT VERIFY:\n{problems}");
                    }
                    Ok(1)
                }
            }
        }
    }
}
