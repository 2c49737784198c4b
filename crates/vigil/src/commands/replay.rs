//! `vigil replay SESSION`: a recorded session, statement by statement, as psql showed it.

use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: Option<ReplayCommand>,
    /// The session id (see `vigil sessions list`).
    #[arg(required = true)]
    pub session: Option<String>,
    /// Playback speed: 1 = as recorded, 10 = ten times faster, 0 = no pauses.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start at this statement number.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// `text` (statements and results as psql shows them), `jsonl` (the capture file itself) or
    /// `pcapng` (for Wireshark; needs -o).
    #[arg(long, value_enum, default_value_t = ReplayFormat::Text)]
    pub format: ReplayFormat,
    /// Write to this file instead of the terminal.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// With --check: re-run the recorded read statements on this sandbox database
    /// (`postgres://…`) and compare each result's digest with the recorded one.
    #[arg(long, value_name = "URL")]
    pub against: Option<String>,
    /// Compare results on the sandbox given by --against instead of playing the session.
    #[arg(long, requires = "against")]
    pub check: bool,
    /// The directory of captures (default: the config's, or `replay/` beside the store).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The age identity file that decrypts captures encrypted at rest (`[replay] encrypt_to`),
    /// as `vigil replay keygen` or `age-keygen` wrote it.
    #[arg(long, env = "VIGIL_REPLAY_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Subcommand)]
pub enum ReplayCommand {
    /// Make an age identity for reading captures encrypted at rest: writes it (mode 0600, never
    /// over a file) and prints its recipient, for `[replay] encrypt_to`. Keep the identity off
    /// the gateway's host.
    Keygen {
        /// Where to write the identity; without it, to standard output (the recipient then goes
        /// to standard error).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `vigil replay keygen`.
fn keygen(output: Option<&std::path::Path>) -> Result<i32> {
    let (identity, recipient) = vigil_replay::seal::generate_identity();
    match output {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow::anyhow!(
                        "{} exists: not overwritten (an identity lost is every capture encrypted to it lost); choose another path",
                        path.display()
                    )
                } else {
                    anyhow::anyhow!("cannot create {}: {e}", path.display())
                }
            })?;
            file.write_all(identity.as_bytes())?;
            file.sync_all()?;
            eprintln!(
                "identity written to {} (keep it off the gateway's host); its recipient, for [replay] encrypt_to:",
                path.display()
            );
            println!("{recipient}");
        }
        None => {
            std::io::stdout().write_all(identity.as_bytes())?;
            eprintln!("Public key: {recipient}");
        }
    }
    Ok(0)
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReplayFormat {
    Text,
    Jsonl,
    Pcapng,
}

pub fn run(args: ReplayArgs) -> Result<i32> {
    if let Some(ReplayCommand::Keygen { output }) = &args.command {
        return keygen(output.as_deref());
    }
    let session = args.session.clone().unwrap_or_default();
    let config = match &args.store.config {
        Some(path) => Some(crate::config::Config::load(path)?),
        None => None,
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => capture_dir(config.as_ref(), args.store.store.as_deref()).context(
            "no capture directory: pass --config FILE, --store sqlite://PATH or --dir DIR",
        )?,
    };
    if session.contains(['/', '\\']) || session.starts_with('.') {
        bail!("{:?} is not a session id", session);
    }
    let keys = match &args.identity {
        Some(path) => Some(vigil_replay::Keyring::from_file(path)?),
        None => None,
    };
    let opened = vigil_replay::open_capture_with(&dir, &session, keys.as_ref()).and_then(
        |(path, mut input)| {
            let mut bytes = Vec::new();
            input.read_to_end(&mut bytes)?;
            Ok((path, bytes))
        },
    );
    let (path, bytes) = match opened {
        Ok(opened) => opened,
        Err(e) if vigil_replay::SealedError::of(&e).is_some() => bail!("{e}"),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "no capture of session {} in {} (captures are off, the id is wrong, or it was rotated out or purged)",
                    session,
                    dir.display()
                )
            })
        }
    };
    // Check the capture against the digest its session's end record holds, when the store is
    // at hand: a capture that was edited says so.
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    if config.is_some() || args.store.store.is_some() {
        let (_, store) = super::open(&args.store)?;
        let recorded = match vigil_audit::sessions::recorded_capture(
            &*store.audit,
            &*store.sessions,
            &session,
        )? {
            Some(vigil_audit::sessions::CaptureRecord::Ended { replay_sha256, .. }) => {
                replay_sha256
            }
            _ => None,
        };
        match recorded {
            Some(d) if d == digest => {
                eprintln!("capture {} matches its session's end record", path.display())
            }
            Some(d) => bail!(
                "capture {} does not match its session's end record (recorded SHA-256 {d}, file {digest}): it was altered",
                path.display()
            ),
            None => eprintln!(
                "warning: session {} has no end record with a capture digest yet (still running, or ended abnormally)",
                session
            ),
        }
    }
    let name = path.display().to_string();
    if args.check {
        let capture = vigil_replay::parse_capture(&bytes[..], &name)?;
        return check(
            &capture,
            args.against.as_deref().unwrap_or_default(),
            args.from,
        );
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        ReplayFormat::Jsonl => out.write_all(&bytes)?,
        ReplayFormat::Pcapng => {
            if args.output.is_none() {
                bail!("--format pcapng writes a binary file: give -o FILE");
            }
            let capture = vigil_replay::parse_capture(&bytes[..], &name)?;
            out.write_all(&vigil_replay::pcapng::export(&capture))?;
        }
        ReplayFormat::Text => {
            let capture = vigil_replay::parse_capture(&bytes[..], &name)?;
            let h = &capture.header.session;
            writeln!(
                out,
                "-- session {} · {} ({}) on {} from {} · started {}",
                h.session_id,
                h.identity,
                h.identity_kind.as_str(),
                h.connection,
                h.client_addr,
                h.started_at
            )?;
            if capture.header.literals_redacted() {
                writeln!(
                    out,
                    "-- client literals and parameter values were withheld from this capture ($1, $2… mark them)"
                )?;
            }
            let mut last_t = None;
            for step in vigil_replay::render::steps(&capture) {
                if step.seq < args.from {
                    continue;
                }
                if args.speed > 0.0 {
                    if let Some(prev) = last_t {
                        let gap = step.t_us.saturating_sub(prev) as f64 / args.speed;
                        out.flush()?;
                        std::thread::sleep(Duration::from_micros(gap.min(10e6) as u64));
                    }
                    last_t = Some(step.t_us);
                }
                let mut text = String::new();
                vigil_replay::render::render_step(&step, &mut text);
                out.write_all(text.as_bytes())?;
            }
            if let Some(t) = &capture.truncated {
                writeln!(
                    out,
                    "-- capture stopped at +{}.{:06}s: {} ({} bytes) reached; the rest of the session is in the audit trail only",
                    t.at_us / 1_000_000,
                    t.at_us % 1_000_000,
                    t.reason,
                    t.limit_bytes
                )?;
            }
            if let Some(t) = &capture.trailer {
                writeln!(out, "-- session ended {} ({})", t.end, t.reason)?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}

/// The directory of replay captures: the config's, or `replay/` beside the store.
pub fn capture_dir(
    config: Option<&crate::config::Config>,
    store_url: Option<&str>,
) -> Option<PathBuf> {
    match (config, store_url) {
        (Some(c), _) => Some(c.replay_dir()),
        (None, Some(url)) => Some(
            crate::wiring::data_dir_of(url)
                .unwrap_or_else(|| PathBuf::from("."))
                .join("replay"),
        ),
        (None, None) => None,
    }
}

/// Re-runs the session's read statements on a sandbox and compares result digests. Exit code 0
/// when every compared statement matched, 1 when one did not.
fn check(capture: &vigil_replay::Capture, url: &str, from: u64) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| "cannot connect to the sandbox given by --against")?;
        tokio::spawn(connection);
        let analyzer = vigil_sql::Analyzer::new(64);
        let redacted = capture.header.literals_redacted();
        let (mut matched, mut mismatched, mut skipped) = (0, 0, 0);
        for step in vigil_replay::render::steps(capture) {
            if step.seq < from {
                continue;
            }
            let shape = analyzer.analyze(&step.text, vigil_sql::LexOptions::default());
            let why_not = if step.failed {
                Some("it failed when recorded")
            } else if step.has_parameters {
                Some("it bound parameters")
            } else if shape.command_classes.is_empty()
                || shape.command_classes.iter().any(|c| c != "read")
            {
                Some("not a read")
            } else if redacted && has_placeholder(&step.text) {
                Some("its literals were withheld from the capture")
            } else {
                None
            };
            if let Some(why) = why_not {
                skipped += 1;
                println!("[{}] skipped ({why}): {}", step.seq, one_line(&step.text));
                continue;
            }
            let (digest, rows) = match client.simple_query(&step.text).await {
                Ok(messages) => sandbox_digest(&messages),
                Err(e) => {
                    mismatched += 1;
                    println!("[{}] MISMATCH: the sandbox refused it ({e}): {}", step.seq, one_line(&step.text));
                    continue;
                }
            };
            if digest == step.result_digest {
                matched += 1;
                println!("[{}] match ({rows} rows): {}", step.seq, one_line(&step.text));
            } else {
                mismatched += 1;
                println!(
                    "[{}] MISMATCH: recorded {} rows (digest {}), sandbox {rows} rows (digest {digest}): {}",
                    step.seq,
                    step.rows,
                    &step.result_digest[..16],
                    one_line(&step.text)
                );
            }
        }
        println!("{matched} matched, {mismatched} mismatched, {skipped} skipped");
        Ok(i32::from(mismatched > 0))
    })
}

/// Whether a text holds a `$n` placeholder (where the capture withheld a literal).
fn has_placeholder(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The digest the gateway computes over a result's DataRow bodies, from a simple query's rows.
fn sandbox_digest(messages: &[tokio_postgres::SimpleQueryMessage]) -> (String, u64) {
    let mut digest = sha2::Sha256::new();
    let mut rows = 0;
    let mut body = Vec::new();
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            body.clear();
            body.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for i in 0..row.len() {
                match row.get(i) {
                    Some(v) => {
                        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        body.extend_from_slice(v.as_bytes());
                    }
                    None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            digest.update(&body);
            rows += 1;
        }
    }
    (hex::encode(digest.finalize()), rows)
}
