//! `vigil policy replay`: a draft config against the statements the audit trail recorded.

use super::catalog::{CatalogChoice, LoadedCatalog};
use super::decide::{grants_at, session_verdict, with_prepared, Verdict};
use super::Format;
use crate::config::Config;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use vigil_core::Timestamp;
use vigil_sql::{Access, Analyzer, Catalog, HazardKind, LexOptions, StatementAccess};

/// The recorded text made parseable again: `$n` placeholders (where literals were) become a
/// literal. Strings fit almost everywhere a literal was (`DATE $1`, `COPY … TO $1`, `DO $1`);
/// integers where the grammar wants one (`varchar($1)`, `FETCH $1`).
fn fill_placeholders(text: &str, literal: &str) -> String {
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
            &fill_placeholders(text, literal),
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

pub(super) fn run(
    config_path: &Path,
    since: &str,
    until: Option<String>,
    store_url: Option<String>,
    catalog_from: &str,
    format: Format,
) -> Result<i32> {
    let config = Config::load(config_path).context("the draft config")?;
    let since = super::time("since", since)?;
    let until = match until {
        Some(t) => super::time("until", &t)?,
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
    store.audit.scan_audit(0, &mut |row| {
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
                // What an approval would allow counts as allowed: that is how it ran, if it did.
                Ok(grants) => match session_verdict(&grants, &access, catalog, at) {
                    Verdict::NeedsApproval(n) => Verdict::Allowed {
                        policy: Some(n.policy),
                    },
                    other => other,
                },
                Err(refusal) => refusal,
            }
        };
        if was_allowed {
            // What ran is what later EXECUTEs of the session run (as the gateway keeps it).
            forget_deallocated(&access, session_prepared);
            for s in &access.statements {
                for h in &s.hazards {
                    if let HazardKind::DefinesPrepared { name } = &h.kind {
                        let mut inner = s.clone();
                        inner
                            .hazards
                            .retain(|h| !matches!(h.kind, HazardKind::DefinesPrepared { .. }));
                        session_prepared.insert(name.clone(), inner);
                    }
                }
            }
        }
        match (&verdict, was_allowed) {
            (Verdict::Allowed { .. } | Verdict::NeedsApproval(_), true) => {
                totals.unchanged_allowed += 1
            }
            (Verdict::Allowed { .. } | Verdict::NeedsApproval(_), false) => {
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
    use vigil_sql::StaticCatalog;
    #[test]
    fn recorded_texts_parse_again() {
        assert_eq!(
            fill_placeholders(
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
}
