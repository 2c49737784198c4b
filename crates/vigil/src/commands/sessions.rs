//! `vigil sessions list|show`: what an auditor needs to read a session.

use super::open;
use crate::StoreArgs;
use anyhow::{Context, Result};
use clap::Subcommand;
use vigil_audit::sessions::{self, SessionDetail, SessionQuery, SessionSummary};
use vigil_core::Timestamp;

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List {
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// RFC 3339 time, e.g. 2026-11-28T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one session: who, from where, when, and each statement with its outcome.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn time(name: &str, v: Option<String>) -> Result<Option<Timestamp>> {
    v.map(|s| Timestamp::parse_rfc3339(&s).with_context(|| format!("--{name} {s:?}: use RFC 3339")))
        .transpose()
}

pub fn run(cmd: SessionsCommand) -> Result<()> {
    match cmd {
        SessionsCommand::List {
            identity,
            connection,
            since,
            until,
            limit,
            json,
            store,
        } => {
            let (_, store) = open(&store)?;
            let query = SessionQuery {
                identity,
                connection,
                since: time("since", since)?,
                until: time("until", until)?,
                limit: Some(limit),
            };
            let list = sessions::list(&*store.audit, &*store.sessions, &query)?;
            if json {
                for s in &list {
                    println!("{}", serde_json::to_string(s)?);
                }
            } else {
                print_table(&list);
            }
            Ok(())
        }
        SessionsCommand::Show { id, json, store } => {
            let (_, store) = open(&store)?;
            let detail = sessions::detail(&*store.sessions, &id)?
                .with_context(|| format!("no session {id} (see `vigil sessions list`)"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
            Ok(())
        }
    }
}

fn print_table(list: &[SessionSummary]) {
    println!(
        "{:<36}  {:<27}  {:<16} {:<8} {:<10} {:<21} {:>6} {:>5} {:>7} {:>9}  END",
        "SESSION",
        "STARTED",
        "IDENTITY",
        "KIND",
        "CONNECTION",
        "CLIENT",
        "STMTS",
        "ERRS",
        "REFUSED",
        "ROWS"
    );
    for s in list {
        println!(
            "{:<36}  {:<27}  {:<16} {:<8} {:<10} {:<21} {:>6} {:>5} {:>7} {:>9}  {}",
            s.session_id,
            s.started_at.to_string(),
            s.identity.as_ref().map(|i| i.name.as_str()).unwrap_or("?"),
            s.identity.as_ref().map(|i| i.kind.as_str()).unwrap_or("?"),
            s.connection.as_deref().unwrap_or("?"),
            s.client_addr,
            s.statements,
            s.errors,
            s.refused,
            s.rows,
            match (&s.end_reason, s.ended_at) {
                (Some(r), Some(t)) => format!(
                    "{} at {t}",
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                _ => "open".into(),
            }
        );
    }
}

fn print_detail(d: &SessionDetail) {
    let s = &d.summary;
    println!("session       {}", s.session_id);
    if let Some(i) = &s.identity {
        print!("identity      {} ({}, {}", i.name, i.kind, i.auth_method);
        if let Some(iss) = &i.issuer {
            print!(", issuer {iss}");
        }
        if let Some(sub) = &i.subject {
            print!(", subject {sub}");
        }
        if let Some(id) = &i.credential_id {
            print!(", token {id}");
        }
        println!(")");
    }
    println!(
        "connection    {} → {}",
        s.connection.as_deref().unwrap_or("?"),
        s.upstream
    );
    println!(
        "client        {} (tls: {}){}",
        s.client_addr,
        s.client_tls,
        s.application_name
            .as_ref()
            .map(|a| format!(", application_name {a}"))
            .unwrap_or_default()
    );
    println!("started       {}", s.started_at);
    match (s.ended_at, &s.end_reason) {
        (Some(t), Some(r)) => println!(
            "ended         {t} ({})",
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        _ => println!("ended         (still open, or ended without a record)"),
    }
    println!(
        "totals        {} statements ({} refused, {} interrupted), {} errors, {} rows, {} bytes to client, {} bytes from client",
        s.statements,
        s.refused,
        s.interrupted,
        s.errors,
        s.rows,
        s.bytes_to_client,
        s.bytes_from_client
    );
    if s.ended_at.is_some() && d.denials.len() as u64 > s.refused {
        // Sessions recorded before refusals were counted.
        println!(
            "note          the end record counts {} refused statements; {} are listed below (it was written before refusals were counted)",
            s.refused,
            d.denials.len()
        );
    }
    println!();
    // Forwarded and refused statements, in the session's order.
    let mut denials = d.denials.iter().peekable();
    let print_denial = |dn: &vigil_audit::sessions::DenialView| {
        let r = &dn.denied;
        println!(
            "#{:<4} {} seq {} {} [{}] {}",
            r.statement_seq,
            dn.at,
            dn.seq,
            r.protocol,
            r.shape.command_classes.join(","),
            r.shape.text
        );
        println!(
            "      → refused by rule {} sqlstate={}: {}{}",
            r.rule,
            r.sqlstate,
            r.reason,
            r.grant_id
                .as_ref()
                .map(|g| format!(" (grant {g})"))
                .unwrap_or_default()
        );
    };
    for st in &d.statements {
        while let Some(dn) =
            denials.next_if(|dn| dn.denied.statement_seq < st.started.statement_seq)
        {
            print_denial(dn);
        }
        let outcome = match &st.finished {
            Some(f) => format!(
                "{}{} rows={} bytes={} {}µs tags=[{}] digest={}",
                serde_json::to_value(f.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                f.sqlstate
                    .as_ref()
                    .map(|c| format!(" sqlstate={c}"))
                    .unwrap_or_default(),
                f.rows,
                f.bytes,
                f.duration_us,
                f.command_tags.join(", "),
                &f.result_digest[..16.min(f.result_digest.len())],
            ),
            None => "no outcome recorded".into(),
        };
        println!(
            "#{:<4} {} seq {} {} [{}] {}",
            st.started.statement_seq,
            st.at,
            st.seq,
            st.started.protocol,
            st.started.shape.command_classes.join(","),
            st.started.shape.text
        );
        if let Some(p) = &st.started.parameters {
            println!("      parameters: {} ({:?})", p.count, p.mode);
        }
        println!("      → {outcome}");
    }
    for dn in denials {
        print_denial(dn);
    }
}
