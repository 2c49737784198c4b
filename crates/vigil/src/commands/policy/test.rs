//! `vigil policy test`: decide one text without running it, and show the analysis.

use super::catalog::{CatalogChoice, LoadedCatalog};
use super::decide::{grants_at, session_verdict, Verdict};
use crate::config::Config;
use anyhow::{bail, Result};
use std::path::Path;
use vigil_core::Timestamp;
use vigil_sql::{Analyzer, Hazard, HazardKind, LexOptions, StatementAccess};

pub(super) fn run(
    config_path: &Path,
    identity: &str,
    connection: &str,
    catalog_from: &str,
    at: Option<String>,
    json: bool,
    sql: &str,
) -> Result<i32> {
    let config = Config::load(config_path)?;
    if !config.identities.iter().any(|i| i.name == identity) {
        bail!(
            "identity {identity:?} is not declared in {}",
            config_path.display()
        );
    }
    if !config.connections.iter().any(|c| c.name == connection) {
        bail!(
            "connection {connection:?} is not declared in {}",
            config_path.display()
        );
    }
    let at = match at {
        Some(t) => super::time("at", &t)?,
        None => Timestamp::now(),
    };
    let catalog = LoadedCatalog::load(&CatalogChoice::parse(catalog_from)?, &config, connection)?;
    let analyzer = Analyzer::new(64);
    let access = analyzer.access(sql, LexOptions::default(), catalog.relations());
    let (verdict, notes, standing) = match grants_at(&config, identity, connection, at) {
        Ok(grants) => (
            session_verdict(&grants, &access, &catalog, at),
            grants.notes,
            !grants.standing.is_empty(),
        ),
        Err(refusal) => (refusal, Vec::new(), false),
    };
    // Allowed, but held for a reviewer's approval of this very statement?
    let review = match &verdict {
        Verdict::Allowed { policy: Some(p) } => config
            .policies
            .iter()
            .find(|c| &c.name == p)
            .and_then(|c| c.statement_review.as_ref())
            .filter(|r| vigil_approval::needs_review_of(&r.statements, &access))
            .map(|r| {
                serde_json::json!({
                    "policy": p,
                    "approver_groups": r.approver_groups,
                    "min_approvals": r.min_approvals,
                    "mode": r.approval_rule().mode,
                })
            }),
        _ => None,
    };
    let code = match verdict {
        Verdict::Allowed { .. } if review.is_some() => 3,
        Verdict::Allowed { .. } => 0,
        Verdict::Refused { .. } => 1,
        Verdict::Undecided { .. } => 2,
        Verdict::NeedsApproval(_) => 3,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "verdict": verdict,
                "statement_review": review,
                "identity": identity,
                "connection": connection,
                "at": at,
                "text": access.shape.text,
                "fingerprint": access.shape.fingerprint,
                "parse_error": access.parse_error,
                "statements": access.statements,
                "catalog": catalog.source,
                "notes": notes,
            }))?
        );
        return Ok(code);
    }
    match &verdict {
        Verdict::Allowed { policy } => println!(
            "allowed{}",
            policy
                .as_ref()
                .map(|p| format!(" by policy {p:?}"))
                .unwrap_or_default()
        ),
        Verdict::Refused {
            rule,
            reason,
            sqlstate,
            policy,
        } => {
            println!("refused: rule {rule}, SQLSTATE {sqlstate}");
            println!("  reason: {reason}");
            if let Some(p) = policy {
                println!("  closest policy: {p:?}");
            }
        }
        Verdict::Undecided { reason } => println!("undecided: {reason}"),
        Verdict::NeedsApproval(n) => {
            let super::decide::NeedsApproval {
                policy,
                approver_groups,
                min_approvals,
                mode,
                rule,
                reason,
            } = &**n;
            if standing {
                println!("needs approval: elevation to policy {policy:?}");
                println!("  the session's standing grants refuse it: rule {rule}: {reason}");
                println!("  policy {policy:?} (approval required) allows it: the statement raises an access request (mode {mode}); once approved, the session holds that policy's grant too, until it expires");
            } else {
                println!("needs approval: policy {policy:?}");
                println!("  no standing grant allows it; policy {policy:?} (approval required) does: connecting raises an access request (mode {mode})");
            }
            println!(
                "  approvers: {min_approvals} of groups {}",
                approver_groups.join(", ")
            );
        }
    }
    if let Some(r) = &review {
        println!(
            "  held for review: policy {} reviews statements of this kind; each one runs once a reviewer of groups {} approves it (mode {})",
            r["policy"],
            r["approver_groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            r["mode"].as_str().unwrap_or("fail")
        );
    }
    for n in &notes {
        println!("  note: {n}");
    }
    println!("text: {}", access.shape.text);
    println!("fingerprint: {}", access.shape.fingerprint);
    if let Some(e) = &access.parse_error {
        println!("parse error: {e}");
    }
    for (i, s) in access.statements.iter().enumerate() {
        print_statement(i + 1, s);
    }
    println!(
        "catalog: {}{}",
        catalog.source,
        if catalog.offline() {
            String::new()
        } else {
            format!(", {} relations", catalog.relation_count())
        }
    );
    println!("nothing was run");
    Ok(code)
}

fn print_statement(n: usize, s: &StatementAccess) {
    let plan = if s.plan_only { ", plan only" } else { "" };
    println!("statement {n}: {} ({}{plan})", s.command, s.class);
    for r in &s.relations {
        let mut how = Vec::new();
        if r.read {
            how.push("read");
        }
        if r.write {
            how.push("write");
        }
        if r.ddl {
            how.push("ddl");
        }
        let cols = |c: &vigil_sql::ColumnSet| match c {
            vigil_sql::ColumnSet::All => "*".to_string(),
            vigil_sql::ColumnSet::Columns(c) if c.is_empty() => "-".to_string(),
            vigil_sql::ColumnSet::Columns(c) => c.join(", "),
        };
        println!(
            "  relation {} [{}] columns read: {}; written: {}",
            r.relation,
            how.join(", "),
            cols(&r.read_columns),
            cols(&r.write_columns)
        );
    }
    if !s.functions.is_empty() {
        let f: Vec<String> = s.functions.iter().map(|f| f.to_string()).collect();
        println!("  functions: {}", f.join(", "));
    }
    for h in &s.hazards {
        println!("  construct: {}", describe_hazard(h));
    }
    for u in &s.unresolved {
        println!("  unresolved: {u}");
    }
    for c in &s.compared {
        println!(
            "  compared with the write: {}.{} (constraint {})",
            c.relation,
            c.column,
            c.constraint.as_deref().unwrap_or("unknown")
        );
    }
}

/// A construct as an operator reads it (PostgreSQL's: the only dialect `policy test` reads).
fn describe_hazard(h: &Hazard) -> String {
    let named = |what: &str, name: &dyn std::fmt::Display| format!("{what} {name}");
    match &h.kind {
        HazardKind::RunsInlineCode { language } => format!(
            "DO block ({})",
            language.as_deref().unwrap_or("language given as a string")
        ),
        HazardKind::DefinesCode { name, language } => format!(
            "CREATE FUNCTION {name} ({})",
            language.as_deref().unwrap_or("language given as a string")
        ),
        HazardKind::CallsProcedure { procedure } => named("CALL", procedure),
        HazardKind::RunsServerProgram => "COPY … PROGRAM (a shell command on the server)".into(),
        HazardKind::AccessesServerFile => "COPY … 'file' (a file on the server)".into(),
        HazardKind::AssumesRole => "SET ROLE".into(),
        HazardKind::ChangesSessionUser => "SET SESSION AUTHORIZATION".into(),
        HazardKind::RedirectsNames => "SET search_path".into(),
        HazardKind::ChangesProtectedSetting { name } => {
            format!("SET {name} (a setting that switches off a protection)")
        }
        HazardKind::RunsExplainedStatement => "EXPLAIN ANALYZE (runs the statement)".into(),
        HazardKind::DefinesPrepared { name } => named("PREPARE", name),
        HazardKind::RunsPrepared { name } => named("EXECUTE", name),
        HazardKind::Subscribes { channel } => named("LISTEN", channel),
        HazardKind::Publishes { channel } => named("NOTIFY", channel),
        HazardKind::ChangesServerConfiguration => "ALTER SYSTEM".into(),
        HazardKind::LoadsLibrary => "LOAD".into(),
        HazardKind::InstallsExtension { name } => named("CREATE EXTENSION", name),
        HazardKind::CallsRiskyFunction { name, risk } => format!(
            "function {name} ({})",
            serde_json::to_value(risk)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
