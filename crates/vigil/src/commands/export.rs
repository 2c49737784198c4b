//! `vigil export ARTIFACT`: an evidence artifact from the store, streamed to a file or stdout.

use super::open;
use crate::StoreArgs;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use vigil_audit::export::{self, Artifact, ExportFilter, Format};
use vigil_core::Timestamp;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// approvals, sessions, statements, masking, grants, denials or auth_failures.
    #[arg(value_parser = parse_artifact)]
    pub artifact: Artifact,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// json (one array), jsonl (one object per line) or csv (RFC 4180, one header row).
    /// Default: from the -o file's extension, else jsonl.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The period and subject of an export or bundle.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// From this time on: RFC 3339 (2026-11-28T00:00:00Z) or a span before now (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time, same forms.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only this connection.
    #[arg(long)]
    pub connection: Option<String>,
}

impl FilterArgs {
    pub fn to_filter(&self, now: Timestamp) -> Result<ExportFilter> {
        let time = |name: &str, v: &Option<String>| -> Result<Option<Timestamp>> {
            v.as_deref()
                .map(|v| export::parse_time_bound(v, now).with_context(|| format!("--{name}")))
                .transpose()
        };
        Ok(ExportFilter {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            identity: self.identity.clone(),
            connection: self.connection.clone(),
        })
    }
}

pub fn parse_artifact(s: &str) -> Result<Artifact, String> {
    Artifact::parse(s).ok_or_else(|| {
        format!(
            "unknown artifact {s:?}: one of {}",
            Artifact::ALL.map(|a| a.as_str()).join(", ")
        )
    })
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format {s:?}: json, jsonl or csv"))
}

pub fn run(args: ExportArgs) -> Result<()> {
    let (_, stores) = open(&args.store)?;
    let source = super::export_source(&stores);
    let filter = args.filter.to_filter(Timestamp::now())?;
    let format = args.format.unwrap_or_else(|| {
        args.output
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| Format::parse(&e.to_string_lossy()))
            .unwrap_or(Format::Jsonl)
    });
    let started = Instant::now();
    let stats = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
            let stats = export::export_to(&source, args.artifact, &filter, format, &mut out)?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            stats
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
            let stats = export::export_to(&source, args.artifact, &filter, format, &mut out)?;
            out.flush()?;
            stats
        }
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} {} rows in {:.2}s ({:.0} rows/s)",
        stats.rows,
        args.artifact,
        secs,
        stats.rows as f64 / secs.max(1e-9)
    );
    Ok(())
}
