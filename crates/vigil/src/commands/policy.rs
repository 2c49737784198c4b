//! `vigil policy test|check|replay`: see what a policy allows before it goes live. Nothing
//! here runs a client's statement: `test` and `replay` analyse and decide exactly as the
//! gateway does (same analyser, same `decide`), against the database's catalog read once.

use crate::config::{locate_policy_field, toml_error_position, Config};
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::Timestamp;
use vigil_pg::DatabaseCatalog;
use vigil_policy::{AssumeBuiltins, Decision, FunctionCatalog, Grant, Severity};
use vigil_sql::{Access, Analyzer, Catalog, Hazard, LexOptions, StatementAccess, StaticCatalog};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Decide one SQL text for an identity on a connection, without running it. Exits 0 if
    /// allowed, 1 if refused, 2 if it cannot be decided (or on error).
    Test {
        /// The identity, as clients give it as `user`.
        #[arg(long)]
        identity: String,
        /// The connection, as clients give it as `dbname`.
        #[arg(long)]
        connection: String,
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Where the relations and columns come from: `upstream` (the connection's own
        /// database, logged in with its vaulted credentials, as a session would), a
        /// `postgres://user:password@host:port/db` URL (a copy with the same schema), or
        /// `none` (no catalog: names cannot be resolved, so most statements stay undecided).
        #[arg(long, default_value = "upstream")]
        catalog_from: String,
        /// Decide as at this time (RFC 3339), for time windows; default now.
        #[arg(long)]
        at: Option<String>,
        /// Print the decision and the analysis as JSON.
        #[arg(long)]
        json: bool,
        /// The SQL text, as the client would send it (several statements allowed).
        sql: String,
    },
    /// Validate the policies of a config file: syntax, unknown keys, references to
    /// identities, groups and connections, windows, patterns. Every problem is listed with
    /// its line and field. Exits 0 if valid (warnings allowed), 1 if not, 2 if unreadable.
    Check {
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Print the problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a draft config's policies against the statements recorded in the audit
    /// trail and list what would newly be refused or allowed. Exits 0 if nothing changes,
    /// 1 if something does, 2 on error.
    Replay {
        /// The draft config (its identities, groups, connections and policies are used).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Statements recorded at or after this time (RFC 3339).
        #[arg(long)]
        since: String,
        /// Statements recorded before this time (RFC 3339); default now.
        #[arg(long)]
        until: Option<String>,
        /// The store holding the audit trail (sqlite://PATH); default: the draft config's.
        #[arg(long, env = "VIGIL_STORE")]
        store: Option<String>,
        /// As for `policy test`; `upstream` reads each recorded connection's database.
        #[arg(long, default_value = "upstream")]
        catalog_from: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(cmd: PolicyCommand) -> Result<i32> {
    match cmd {
        PolicyCommand::Test {
            identity,
            connection,
            config,
            catalog_from,
            at,
            json,
            sql,
        } => test(
            &config,
            &identity,
            &connection,
            &catalog_from,
            at,
            json,
            &sql,
        ),
        PolicyCommand::Check { config, json } => check(&config, json),
        PolicyCommand::Replay {
            config,
            since,
            until,
            store,
            catalog_from,
            format,
        } => replay(&config, &since, until, store, &catalog_from, format),
    }
}

fn time(name: &str, v: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(v)
        .with_context(|| format!("--{name} {v:?}: use RFC 3339, e.g. 2026-11-28T09:00:00Z"))
}

// ---------------------------------------------------------------------------------------------
// The catalog decisions are made against.

/// Where `--catalog-from` says the catalog comes from.
enum CatalogChoice {
    Upstream,
    Url(String),
    None,
}

impl CatalogChoice {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "upstream" => CatalogChoice::Upstream,
            "none" => CatalogChoice::None,
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                CatalogChoice::Url(url.to_string())
            }
            other => bail!("--catalog-from {other:?}: give upstream, none, or a postgres:// URL"),
        })
    }
}

/// A catalog read once, or none (then names cannot be resolved).
struct LoadedCatalog {
    database: Option<DatabaseCatalog>,
    empty: StaticCatalog,
    /// Where it came from, for the report.
    source: String,
}

impl LoadedCatalog {
    fn relations(&self) -> &dyn Catalog {
        match &self.database {
            Some(d) => &*d.relations,
            None => &self.empty,
        }
    }

    fn functions(&self) -> Box<dyn FunctionCatalog + '_> {
        match &self.database {
            Some(d) => Box::new(d.functions()),
            None => Box::new(AssumeBuiltins),
        }
    }

    fn offline(&self) -> bool {
        self.database.is_none()
    }

    fn load(choice: &CatalogChoice, config: &Config, connection: &str) -> Result<LoadedCatalog> {
        let empty = StaticCatalog::new([], vec!["pg_catalog".into(), "public".into()]);
        let (target, source) = match choice {
            CatalogChoice::None => {
                return Ok(LoadedCatalog {
                    database: None,
                    empty,
                    source: "none (names are not resolved)".into(),
                })
            }
            CatalogChoice::Upstream => {
                let c = config
                    .connections
                    .iter()
                    .find(|c| c.name == connection)
                    .with_context(|| format!("connection {connection:?} is not declared"))?;
                (
                    crate::wiring::target(c)?,
                    format!(
                        "the database of connection {connection:?} ({}:{}/{})",
                        c.host, c.port, c.database
                    ),
                )
            }
            CatalogChoice::Url(url) => (
                target_from_url(url, connection)?,
                "the database at --catalog-from".into(),
            ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let database = runtime
            .block_on(DatabaseCatalog::read(&target, Duration::from_secs(15)))
            .with_context(|| {
                format!("cannot read the catalog from {source} (use --catalog-from URL or none)")
            })?;
        Ok(LoadedCatalog {
            database: Some(database),
            empty,
            source,
        })
    }

    fn relation_count(&self) -> usize {
        self.database
            .as_ref()
            .map(|d| d.relations.relations().count())
            .unwrap_or(0)
    }
}

/// A target from a `postgres://` URL (password in the URL or `PGPASSWORD`).
fn target_from_url(url: &str, connection: &str) -> Result<vigil_pg::Target> {
    let parsed: tokio_postgres::Config = url
        .parse()
        .context("--catalog-from: not a PostgreSQL URL")?;
    let host = match parsed.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let password = parsed
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .or_else(|| std::env::var("PGPASSWORD").ok())
        .map(vigil_core::SecretString::new);
    let tls = match parsed.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => vigil_pg::UpstreamTlsMode::Disable,
        tokio_postgres::config::SslMode::Require => vigil_pg::UpstreamTlsMode::Require,
        _ => vigil_pg::UpstreamTlsMode::Prefer,
    };
    Ok(vigil_pg::Target {
        name: connection.into(),
        host,
        port: parsed.get_ports().first().copied().unwrap_or(5432),
        database: parsed
            .get_dbname()
            .context("--catalog-from: the URL names no database")?
            .to_string(),
        user: parsed
            .get_user()
            .context("--catalog-from: the URL names no user")?
            .to_string(),
        password,
        tls,
        ca_file: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Deciding one text as the gateway would.

/// What the gateway would do with a text.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "decision", rename_all = "snake_case")]
enum Verdict {
    Allowed {
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    Refused {
        rule: String,
        reason: String,
        sqlstate: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// Without a catalog the names cannot be resolved, and nothing else refuses it.
    Undecided { reason: String },
}

impl Verdict {
    fn refused(rule: &str, reason: String) -> Verdict {
        Verdict::Refused {
            rule: rule.into(),
            reason,
            sqlstate: "42501".into(),
            policy: None,
        }
    }
}

/// Rules whose refusals do not depend on what names resolve to: trusted even without a
/// catalog.
const CATALOG_FREE_RULES: &[&str] = &[
    "command_class",
    "read_only",
    "construct_denied",
    "function_denied",
    "execute_unknown",
    "unparseable",
    "no_grant",
    "grant_not_live",
];

/// The grants a session of `identity` on `connection` would hold at `at`, from `config`'s
/// policies (ids are `policy:NAME`), with notes on policies that grant nothing then; or the
/// refusal of the login itself.
fn grants_at(
    config: &Config,
    identity: &str,
    connection: &str,
    at: Timestamp,
) -> Result<(Vec<Arc<Grant>>, Vec<String>), Verdict> {
    let Some(declared) = config.identities.iter().find(|i| i.name == identity) else {
        return Err(Verdict::refused(
            "connection_not_allowed",
            format!("identity \"{identity}\" is not declared, so it cannot log in"),
        ));
    };
    if !declared.may_use(connection) {
        return Err(Verdict::refused(
            "connection_not_allowed",
            format!("identity \"{identity}\" may not use connection \"{connection}\" (its `connections` lack it)"),
        ));
    }
    let mut grants = Vec::new();
    let mut notes = Vec::new();
    for p in config
        .policies
        .iter()
        .filter(|p| p.binds(identity, &declared.groups, connection))
    {
        match Grant::from_policy(p, identity, connection, at, format!("policy:{}", p.name)) {
            Some(g) => grants.push(Arc::new(g)),
            None => notes.push(format!(
                "policy {:?} grants nothing at {at}: its time window is closed",
                p.name
            )),
        }
    }
    Ok((grants, notes))
}

/// Decides `access` as the gateway's `decide` would, and without a catalog says what cannot
/// be known rather than guessing.
fn verdict(
    grants: &[Arc<Grant>],
    access: &Access,
    catalog: &LoadedCatalog,
    at: Timestamp,
) -> Verdict {
    let policy_of = |id: Option<&str>| id.map(|i| i.trim_start_matches("policy:").to_string());
    let decided =
        |access: &Access| match vigil_policy::decide(grants, access, &*catalog.functions(), at) {
            Decision::Allow(g) => Verdict::Allowed {
                policy: g.policy.clone(),
            },
            Decision::Deny { denial, grant_id } => Verdict::Refused {
                rule: denial.rule.into(),
                reason: denial.reason,
                sqlstate: denial.sqlstate.into(),
                policy: policy_of(grant_id.as_deref()),
            },
        };
    if !catalog.offline() || access.parse_error.is_some() || access.is_complete() {
        return decided(access);
    }
    // Without a catalog, a refusal is certain only if every grant refuses for a reason that
    // does not depend on what the names resolve to; anything else is not guessed.
    let mut without_names = access.clone();
    for s in &mut without_names.statements {
        s.unresolved.clear();
    }
    let certain = |v: &Verdict| matches!(v, Verdict::Refused { rule, .. } if CATALOG_FREE_RULES.contains(&rule.as_str()));
    let overall = decided(&without_names);
    let every_grant_refuses = grants.iter().all(|g| {
        let one = std::slice::from_ref(g);
        match vigil_policy::decide(one, &without_names, &*catalog.functions(), at) {
            Decision::Allow(_) => false,
            Decision::Deny { denial, .. } => CATALOG_FREE_RULES.contains(&denial.rule),
        }
    });
    if certain(&overall) && every_grant_refuses {
        return overall;
    }
    let names: Vec<String> = access
        .statements
        .iter()
        .flat_map(|s| s.unresolved.iter().map(|u| u.to_string()))
        .collect();
    Verdict::Undecided {
        reason: format!(
            "without a catalog Vigil cannot resolve {} (which schema a relation is in, which relation a column belongs to, what * stands for); pass --catalog-from upstream or a URL",
            names.join(", ")
        ),
    }
}

/// `EXECUTE name` decided on what `PREPARE name` prepared earlier (as the gateway does).
fn with_prepared(access: &Arc<Access>, prepared: &HashMap<String, StatementAccess>) -> Arc<Access> {
    let executes = |s: &StatementAccess| {
        s.hazards.iter().find_map(|h| match h {
            Hazard::Execute { name } => Some(name.clone()),
            _ => None,
        })
    };
    if !access.statements.iter().any(|s| executes(s).is_some()) {
        return access.clone();
    }
    let mut copy = (**access).clone();
    for s in &mut copy.statements {
        if let Some(p) = executes(s).and_then(|n| prepared.get(&n)) {
            *s = p.clone();
        }
    }
    Arc::new(copy)
}

// ---------------------------------------------------------------------------------------------
// policy test

fn test(
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
        Some(t) => time("at", &t)?,
        None => Timestamp::now(),
    };
    let catalog = LoadedCatalog::load(&CatalogChoice::parse(catalog_from)?, &config, connection)?;
    let analyzer = Analyzer::new(64);
    let access = analyzer.access(sql, LexOptions::default(), catalog.relations());
    let (verdict, notes) = match grants_at(&config, identity, connection, at) {
        Ok((grants, notes)) => (verdict(&grants, &access, &catalog, at), notes),
        Err(refusal) => (refusal, Vec::new()),
    };
    let code = match verdict {
        Verdict::Allowed { .. } => 0,
        Verdict::Refused { .. } => 1,
        Verdict::Undecided { .. } => 2,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "verdict": verdict,
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
}

/// A construct as an operator reads it.
fn describe_hazard(h: &Hazard) -> String {
    let named = |what: &str, name: &dyn std::fmt::Display| format!("{what} {name}");
    match h {
        Hazard::DoBlock { language } => format!(
            "DO block ({})",
            language.as_deref().unwrap_or("language given as a string")
        ),
        Hazard::CreateFunction { name, language } => format!(
            "CREATE FUNCTION {name} ({})",
            language.as_deref().unwrap_or("language given as a string")
        ),
        Hazard::Call { procedure } => named("CALL", procedure),
        Hazard::CopyProgram => "COPY … PROGRAM (a shell command on the server)".into(),
        Hazard::CopyFile => "COPY … 'file' (a file on the server)".into(),
        Hazard::SetRole => "SET ROLE".into(),
        Hazard::SetSessionAuthorization => "SET SESSION AUTHORIZATION".into(),
        Hazard::SetSearchPath => "SET search_path".into(),
        Hazard::ExplainAnalyze => "EXPLAIN ANALYZE (runs the statement)".into(),
        Hazard::Prepare { name } => named("PREPARE", name),
        Hazard::Execute { name } => named("EXECUTE", name),
        Hazard::Listen { channel } => named("LISTEN", channel),
        Hazard::Notify { channel } => named("NOTIFY", channel),
        Hazard::AlterSystem => "ALTER SYSTEM".into(),
        Hazard::Load => "LOAD".into(),
        Hazard::CreateExtension { name } => named("CREATE EXTENSION", name),
        Hazard::Function { name, risk } => format!(
            "function {name} ({})",
            serde_json::to_value(risk)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// policy check

#[derive(Serialize)]
struct Finding {
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

fn check(path: &Path, json: bool) -> Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut findings = Vec::new();
    match Config::parse_unchecked(&text) {
        Err(e) => {
            let pos = toml_error_position(&text, &e);
            findings.push(Finding {
                severity: Severity::Error,
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                policy: None,
                field: None,
                // toml's message, never the quoted line (it may hold a pasted secret).
                message: e.message().to_string(),
            });
        }
        Ok(config) => {
            if let Err(e) = config.validate_sections() {
                findings.push(Finding {
                    severity: Severity::Error,
                    line: None,
                    column: None,
                    policy: None,
                    field: None,
                    message: format!("{e:#}"),
                });
            }
            let identities: Vec<vigil_policy::DeclaredIdentity<'_>> = config
                .identities
                .iter()
                .map(|i| vigil_policy::DeclaredIdentity {
                    name: &i.name,
                    groups: &i.groups,
                    connections: &i.connections,
                })
                .collect();
            let connections: Vec<&str> =
                config.connections.iter().map(|c| c.name.as_str()).collect();
            for p in vigil_policy::check(&config.policies, &identities, &connections) {
                findings.push(Finding {
                    severity: p.severity,
                    line: locate_policy_field(&text, &p.policy, p.field.as_deref()),
                    column: None,
                    policy: Some(p.policy),
                    field: p.field,
                    message: p.message,
                });
            }
            if config.policies.is_empty() {
                findings.push(Finding {
                    severity: Severity::Warning,
                    line: None,
                    column: None,
                    policy: None,
                    field: None,
                    message: "no [[policies]]: every session will be refused (no grant)".into(),
                });
            }
        }
    }
    // In file order (problems without a line, about the file as a whole, last).
    findings.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": path.display().to_string(),
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "problems": findings,
            }))?
        );
    } else {
        for f in &findings {
            let mut at = path.display().to_string();
            if let Some(l) = f.line {
                at.push_str(&format!(":{l}"));
                if let Some(c) = f.column {
                    at.push_str(&format!(":{c}"));
                }
            }
            let severity = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut whom = String::new();
            if let Some(p) = &f.policy {
                whom.push_str(&format!("policy {p:?}: "));
            }
            if let Some(field) = &f.field {
                whom.push_str(&format!("{field}: "));
            }
            println!("{at}: {severity}: {whom}{}", f.message);
        }
        println!(
            "{}: {} ({errors} errors, {warnings} warnings)",
            path.display(),
            if errors == 0 { "valid" } else { "invalid" }
        );
    }
    Ok(if errors == 0 { 0 } else { 1 })
}

// ---------------------------------------------------------------------------------------------
// policy replay

/// The recorded text made parseable again: `$n` placeholders (where literals were) become a
/// literal. Strings fit almost everywhere a literal was (`DATE $1`, `COPY … TO $1`, `DO $1`);
/// integers where the grammar wants one (`varchar($1)`, `FETCH $1`).
fn relitteralize(text: &str, literal: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            // A quoted identifier is kept whole (it may contain `$1`).
            let start = i;
            i += 1;
            while i < bytes.len() {
                if bytes[i] == b'"' {
                    if bytes.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(bytes.len());
            out.push_str(&text[start..i]);
            continue;
        }
        let after_word = i > 0
            && (bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$');
        if c == b'$' && !after_word && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push_str(literal);
            continue;
        }
        let len = text[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    out
}

/// The access analysis of a recorded (literal-free) text, or `None` if no literal makes it
/// parse.
fn recorded_access(analyzer: &Analyzer, text: &str, catalog: &dyn Catalog) -> Option<Arc<Access>> {
    ["'0'", "0"].into_iter().find_map(|literal| {
        let a = analyzer.access(
            &relitteralize(text, literal),
            LexOptions::default(),
            catalog,
        );
        a.parse_error.is_none().then_some(a)
    })
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
enum Change {
    NewlyRefused,
    NewlyAllowed,
    NotReplayable,
}

#[derive(Serialize)]
struct ChangeGroup {
    identity: String,
    connection: String,
    change: Change,
    fingerprint: String,
    /// The recorded text: literals are already placeholders.
    text: String,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The rule that refused it when it was recorded (newly allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_rule: Option<String>,
    first_at: Timestamp,
    last_at: Timestamp,
}

#[derive(Default, Serialize)]
struct Totals {
    statements: u64,
    unchanged_allowed: u64,
    unchanged_refused: u64,
    newly_refused: u64,
    newly_allowed: u64,
    not_replayable: u64,
}

fn replay(
    config_path: &Path,
    since: &str,
    until: Option<String>,
    store_url: Option<String>,
    catalog_from: &str,
    format: Format,
) -> Result<i32> {
    let config = Config::load(config_path).context("the draft config")?;
    let since = time("since", since)?;
    let until = match until {
        Some(t) => time("until", &t)?,
        None => Timestamp::now(),
    };
    let choice = CatalogChoice::parse(catalog_from)?;
    let store = crate::wiring::open_store(Some(&config), store_url.as_deref())?;
    let analyzer = Analyzer::new(10_000);
    let mut catalogs: HashMap<String, LoadedCatalog> = HashMap::new();
    // PREPAREd statements per session, for EXECUTE.
    let mut prepared: HashMap<String, HashMap<String, StatementAccess>> = HashMap::new();
    let mut groups: BTreeMap<(String, String, Change, String), ChangeGroup> = BTreeMap::new();
    let mut totals = Totals::default();
    let mut failure: Option<anyhow::Error> = None;
    store.scan_audit(0, &mut |row| {
        if row.kind != "StatementStarted" && row.kind != "PolicyDenied" {
            return true;
        }
        let at = Timestamp::from_micros(row.at_us);
        if at < since || at >= until {
            return true;
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&row.body) else {
            return true;
        };
        let str_of = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let identity = body["identity"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let connection = str_of("connection");
        let text = str_of("text");
        let fingerprint = str_of("fingerprint");
        let session = row.session_id.clone().unwrap_or_default();
        let was_allowed = row.kind == "StatementStarted";
        totals.statements += 1;
        if !catalogs.contains_key(&connection) {
            let loaded = if config.connections.iter().any(|c| c.name == connection) {
                LoadedCatalog::load(&choice, &config, &connection)
            } else {
                LoadedCatalog::load(&CatalogChoice::None, &config, &connection)
            };
            match loaded {
                Ok(c) => {
                    catalogs.insert(connection.clone(), c);
                }
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            }
        }
        let catalog = &catalogs[&connection];
        // A text PostgreSQL's grammar refused is refused under any policy. (Its recorded,
        // literal-free form may well parse: `SELECT 'unterminated` is kept as `SELECT $1`.)
        if !was_allowed && str_of("rule") == "unparseable" {
            totals.unchanged_refused += 1;
            return true;
        }
        if was_allowed && body["parse_error"].is_string() {
            totals.newly_refused += 1;
            add(
                &mut groups,
                &identity,
                &connection,
                Change::NewlyRefused,
                &fingerprint,
                &text,
                at,
                Some("unparseable".into()),
                Some("the statement could not be parsed".into()),
                None,
            );
            return true;
        }
        let Some(access) = recorded_access(&analyzer, &text, catalog.relations()) else {
            totals.not_replayable += 1;
            add(
                &mut groups,
                &identity,
                &connection,
                Change::NotReplayable,
                &fingerprint,
                &text,
                at,
                None,
                None,
                None,
            );
            return true;
        };
        let session_prepared = prepared.entry(session).or_default();
        let access = with_prepared(&access, session_prepared);
        let verdict = if !config.connections.iter().any(|c| c.name == connection) {
            Verdict::refused(
                "connection_not_allowed",
                format!("connection \"{connection}\" is not declared in the draft"),
            )
        } else {
            match grants_at(&config, &identity, &connection, at) {
                Ok((grants, _)) => verdict(&grants, &access, catalog, at),
                Err(refusal) => refusal,
            }
        };
        if was_allowed {
            // What ran is what later EXECUTEs of the session run (as the gateway keeps it).
            forget_deallocated(&access, session_prepared);
            for s in &access.statements {
                for h in &s.hazards {
                    if let Hazard::Prepare { name } = h {
                        let mut inner = s.clone();
                        inner
                            .hazards
                            .retain(|h| !matches!(h, Hazard::Prepare { .. }));
                        session_prepared.insert(name.clone(), inner);
                    }
                }
            }
        }
        match (&verdict, was_allowed) {
            (Verdict::Allowed { .. }, true) => totals.unchanged_allowed += 1,
            (Verdict::Allowed { .. }, false) => {
                totals.newly_allowed += 1;
                let previous = str_of("rule");
                add(
                    &mut groups,
                    &identity,
                    &connection,
                    Change::NewlyAllowed,
                    &fingerprint,
                    &text,
                    at,
                    None,
                    None,
                    Some(previous),
                );
            }
            (Verdict::Refused { rule, reason, .. }, true) => {
                totals.newly_refused += 1;
                add(
                    &mut groups,
                    &identity,
                    &connection,
                    Change::NewlyRefused,
                    &fingerprint,
                    &text,
                    at,
                    Some(rule.clone()),
                    Some(reason.clone()),
                    None,
                );
            }
            (Verdict::Refused { .. }, false) => totals.unchanged_refused += 1,
            (Verdict::Undecided { reason }, _) => {
                totals.not_replayable += 1;
                add(
                    &mut groups,
                    &identity,
                    &connection,
                    Change::NotReplayable,
                    &fingerprint,
                    &text,
                    at,
                    None,
                    Some(reason.clone()),
                    None,
                );
            }
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let changes: Vec<ChangeGroup> = groups.into_values().collect();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "draft": config_path.display().to_string(),
                "since": since,
                "until": until,
                "totals": totals,
                "changes": changes,
            }))?
        ),
        Format::Text => print_replay(config_path, since, until, &totals, &changes),
    }
    Ok(if totals.newly_allowed + totals.newly_refused > 0 {
        1
    } else {
        0
    })
}

/// `DEALLOCATE name`, `DEALLOCATE ALL`, `DISCARD ALL` forget prepared statements.
fn forget_deallocated(access: &Access, prepared: &mut HashMap<String, StatementAccess>) {
    for s in &access.statements {
        match s.command.as_str() {
            "DISCARD ALL" | "DISCARD" | "DEALLOCATE ALL" => prepared.clear(),
            "DEALLOCATE" => {
                // The name is an identifier, kept in the literal-free text.
                let text = access.shape.text.trim_end_matches(';').trim();
                if let Some(name) = text.split_whitespace().last() {
                    prepared.remove(name.trim_matches('"'));
                }
            }
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn add(
    groups: &mut BTreeMap<(String, String, Change, String), ChangeGroup>,
    identity: &str,
    connection: &str,
    change: Change,
    fingerprint: &str,
    text: &str,
    at: Timestamp,
    rule: Option<String>,
    reason: Option<String>,
    previous_rule: Option<String>,
) {
    let g = groups
        .entry((
            identity.into(),
            connection.into(),
            change,
            fingerprint.into(),
        ))
        .or_insert_with(|| ChangeGroup {
            identity: identity.into(),
            connection: connection.into(),
            change,
            fingerprint: fingerprint.into(),
            text: text.into(),
            count: 0,
            rule,
            reason,
            previous_rule,
            first_at: at,
            last_at: at,
        });
    g.count += 1;
    g.last_at = at;
}

fn print_replay(
    path: &Path,
    since: Timestamp,
    until: Timestamp,
    t: &Totals,
    changes: &[ChangeGroup],
) {
    println!(
        "{}: {} statements recorded from {since} to {until}",
        path.display(),
        t.statements
    );
    println!(
        "  unchanged: {} allowed, {} refused; newly refused: {}; newly allowed: {}; not replayable: {}",
        t.unchanged_allowed, t.unchanged_refused, t.newly_refused, t.newly_allowed, t.not_replayable
    );
    let mut current: Option<(&str, &str)> = None;
    for c in changes {
        if current != Some((&c.identity, &c.connection)) {
            println!("\n{} on {}", c.identity, c.connection);
            current = Some((&c.identity, &c.connection));
        }
        let what = match c.change {
            Change::NewlyRefused => "NEWLY REFUSED",
            Change::NewlyAllowed => "NEWLY ALLOWED",
            Change::NotReplayable => "NOT REPLAYABLE",
        };
        let why = match (&c.rule, &c.reason, &c.previous_rule) {
            (Some(rule), Some(reason), _) => format!("{rule}: {reason}"),
            (None, Some(reason), _) => reason.clone(),
            (_, _, Some(previous)) => format!("was refused by rule {previous}"),
            _ => String::new(),
        };
        println!("  {what:<14} {:>6}×  {}  {why}", c.count, c.fingerprint);
        println!("  {:<23}{}", "", c.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_texts_parse_again() {
        assert_eq!(
            relitteralize(
                r#"SELECT "a$1", x$1 FROM t WHERE d < DATE $1 LIMIT $23"#,
                "'0'"
            ),
            r#"SELECT "a$1", x$1 FROM t WHERE d < DATE '0' LIMIT '0'"#
        );
        let analyzer = Analyzer::new(16);
        let catalog = StaticCatalog::new([], vec!["public".into()]);
        for text in [
            "SELECT id FROM t WHERE d < DATE $1 AND n = $2",
            "COPY t TO $1",
            "DO $1",
            "SET application_name = $1",
            "SELECT $1::varchar($2)",
            "CREATE TABLE x (c varchar($1))",
            "EXECUTE q($1, $2)",
        ] {
            assert!(
                recorded_access(&analyzer, text, &catalog).is_some(),
                "{text}"
            );
        }
    }

    fn grant(scope: &str) -> Arc<Grant> {
        let policy: vigil_policy::PolicyConfig = toml::from_str(&format!(
            "name = \"p\"\nidentities = [\"i\"]\nconnections = [\"c\"]\n[scope]\n{scope}"
        ))
        .unwrap();
        Arc::new(Grant::from_policy(&policy, "i", "c", Timestamp::now(), "g".into()).unwrap())
    }

    #[test]
    fn without_a_catalog_only_certain_refusals_are_reported() {
        let offline = LoadedCatalog {
            database: None,
            empty: StaticCatalog::new([], vec!["public".into()]),
            source: String::new(),
        };
        let reader = grant(
            "commands = [\"read\"]\nrelations = [\"*\"]\ndeny_columns = { \"t\" = [\"secret\"] }",
        );
        let writer = grant("commands = [\"write\"]\nrelations = [\"public.t\"]");
        let analyzer = Analyzer::new(16);
        let decide = |grants: &[Arc<Grant>], sql: &str| {
            let access = analyzer.access(sql, LexOptions::default(), offline.relations());
            verdict(grants, &access, &offline, Timestamp::now())
        };
        let both = [reader.clone(), writer];
        assert!(
            matches!(decide(&both, "DROP TABLE t"), Verdict::Refused { rule, .. } if rule == "command_class")
        );
        assert!(matches!(
            decide(&both, "SET ROLE admin"),
            Verdict::Refused { .. }
        ));
        // The reader refuses a DELETE for certain, but the writer might allow it: undecided.
        assert!(matches!(
            decide(&both, "DELETE FROM t"),
            Verdict::Undecided { .. }
        ));
        // `*` over a relation with denied columns cannot be judged without the catalog.
        let star = decide(&[reader], "SELECT * FROM t");
        assert!(
            matches!(&star, Verdict::Undecided { reason } if reason.contains("relation t")),
            "{star:?}"
        );
        assert!(
            matches!(decide(&[], "SELECT 1"), Verdict::Refused { rule, .. } if rule == "no_grant")
        );
    }

    #[test]
    fn problems_point_at_their_line() {
        let text = "[[identities]]\nname = \"a\"\n\n[[policies]]\nname = \"p\"\nidentities = [\"a\"]\n[policies.scope]\nrow_cap = 0\n[policies.scope.window]\ntimezone = \"X\"\n\n[[policies]]\nname = \"q\"\nconnections = []\n";
        assert_eq!(locate_policy_field(text, "p", None), Some(5));
        assert_eq!(
            locate_policy_field(text, "p", Some("scope.row_cap")),
            Some(8)
        );
        assert_eq!(
            locate_policy_field(text, "p", Some("scope.window.timezone")),
            Some(10)
        );
        // Not written: the policy's name line.
        assert_eq!(locate_policy_field(text, "p", Some("connections")), Some(5));
        assert_eq!(
            locate_policy_field(text, "q", Some("connections")),
            Some(14)
        );
        // An identity's name is not a policy's.
        assert_eq!(locate_policy_field(text, "a", None), None);
    }
}
