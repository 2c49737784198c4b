//! The server's own account of what it ran, held against Vigil's audit trail: the invariant
//! that covers every adversarial case at once. A cluster started with [`LOG_SETTINGS`] logs
//! each statement it executes with the application name and backend pid; Vigil's
//! `SessionStarted` records carry the upstream pid, so each logged execution is matched to the
//! session that ran it and must have a `StatementStarted` record there whose text (literals
//! aside) is the text the server ran — for `EXECUTE`, the prepared text too.

use serde_json::Value;
use std::collections::HashMap;

/// Settings for [`PgCluster::start_with`](super::PgCluster::start_with).
pub const LOG_SETTINGS: &[&str] = &["log_statement=all", "log_line_prefix=%a:%p:"];

/// How the server ran a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// A simple query.
    Statement,
    /// An extended-protocol Execute of a prepared statement (`<unnamed>` or its name).
    Execute(String),
}

/// One execution the server logged.
#[derive(Debug, Clone)]
pub struct Execution {
    pub application: String,
    pub pid: u32,
    pub how: How,
    pub text: String,
    /// `DETAIL: prepare: …`: the prepared text an `EXECUTE` ran.
    pub prepare: Option<String>,
}

/// The executions in a server log written with [`LOG_SETTINGS`].
pub fn executions(log: &str) -> Vec<Execution> {
    let mut out: Vec<Execution> = Vec::new();
    // Which field a continuation line (starting with a tab) extends.
    let mut extending_prepare = false;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let Some(last) = out.last_mut() {
                let target = if extending_prepare {
                    last.prepare.get_or_insert_with(String::new)
                } else {
                    &mut last.text
                };
                target.push('\n');
                target.push_str(rest);
            }
            continue;
        }
        extending_prepare = false;
        let mut parts = line.splitn(3, ':');
        let (Some(app), Some(pid), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if let Some(text) = rest.strip_prefix("LOG:  statement: ") {
            out.push(Execution {
                application: app.to_string(),
                pid,
                how: How::Statement,
                text: text.to_string(),
                prepare: None,
            });
        } else if let Some(rest) = rest.strip_prefix("LOG:  execute ") {
            let Some((name, text)) = rest.split_once(": ") else {
                continue;
            };
            out.push(Execution {
                application: app.to_string(),
                pid,
                how: How::Execute(name.to_string()),
                text: text.to_string(),
                prepare: None,
            });
        } else if let Some(text) = rest.strip_prefix("DETAIL:  prepare: ") {
            if let Some(last) = out.last_mut() {
                if last.pid == pid {
                    last.prepare = Some(text.to_string());
                    extending_prepare = true;
                }
            }
        }
    }
    out
}

/// The literal-free form Vigil records.
pub fn normalized(text: &str) -> String {
    vigil_sql::normalize(
        text,
        vigil_sql::LexOptions {
            standard_conforming_strings: true,
        },
    )
    .text
}

/// The server's log without the statements of Vigil's own catalog reads (those outside a
/// transaction lift statement_timeout for themselves: not a client's change).
pub fn without_vigils_own(log: &str) -> String {
    log.lines()
        .filter(|l| {
            !l.split_once("statement: ")
                .is_some_and(|(_, text)| is_vigils_own(text))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Vigil's own catalog reads, which it runs on a session's connection and does not record: a
/// read's first query, the rows it has seen when something was dropped, the relations that
/// changed (each may first lift the session's statement_timeout for itself).
pub fn is_vigils_own(text: &str) -> bool {
    let text = text
        .strip_prefix("SET LOCAL statement_timeout = 0;")
        .unwrap_or(text);
    [
        "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text, ",
        "SELECT 'c', c.oid::int8, coalesce(i.indrelid, 0)::int8, 0::int8 FROM pg_catalog.pg_class c ",
        "WITH RECURSIVE rels(rel) AS (SELECT pg_catalog.unnest(",
    ]
    .iter()
    .any(|own| text.starts_with(own))
}

/// Checks that every execution the server logged for an application name starting with
/// `application_prefix` has its start record, with the text the server ran; returns how many
/// executions were checked. Panics naming the first that has none.
pub fn assert_every_execution_recorded(
    log: &str,
    records: &[Value],
    application_prefix: &str,
) -> usize {
    // Session by upstream pid (a pid can be reused: the latest session before the execution
    // wins, which is right for sequential sessions and conservative otherwise).
    let mut sessions_by_pid: HashMap<u64, Vec<String>> = HashMap::new();
    let mut started: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records {
        let session = r["session_id"].as_str().unwrap_or_default().to_string();
        match r["type"].as_str() {
            Some("SessionStarted") => {
                if let Some(pid) = r["upstream_pid"].as_u64() {
                    sessions_by_pid.entry(pid).or_default().push(session);
                }
            }
            Some("StatementStarted") => started.entry(session).or_default().push(r),
            _ => {}
        }
    }
    let mut checked = 0;
    for e in executions(log) {
        if !e.application.starts_with(application_prefix) || is_vigils_own(&e.text) {
            continue;
        }
        checked += 1;
        let ran = normalized(&e.text);
        let candidates: Vec<&Value> = sessions_by_pid
            .get(&u64::from(e.pid))
            .into_iter()
            .flatten()
            .flat_map(|s| started.get(s).into_iter().flatten().copied())
            .collect();
        let recorded = candidates.iter().any(|r| {
            let text = r["text"].as_str().unwrap_or_default();
            let same = match e.how {
                How::Statement => text == ran,
                // A statement prepared by SQL `PREPARE` runs with the PREPARE's text.
                How::Execute(_) => text == ran || ran.contains(text),
            };
            let prepared_ok = match &e.prepare {
                None => true,
                Some(prepare) => {
                    let prepare = normalized(prepare);
                    // PostgreSQL reports the `PREPARE …` text, or for one in a longer text
                    // only the query it prepared; Vigil records the `PREPARE …` statement.
                    // The server logs the detail before the text runs: when the text itself
                    // prepares the name first, the detail shows what the name held before
                    // (and the EXECUTE runs the text's own PREPARE, or nothing if it failed).
                    r["executed"].as_array().is_some_and(|list| {
                        list.iter().any(|x| {
                            let recorded = x["text"].as_str().unwrap_or("\u{0}");
                            prepare.contains(recorded)
                                || recorded.contains(prepare.as_str())
                                || ran.contains(recorded)
                        })
                    })
                }
            };
            same && prepared_ok
        });
        assert!(
            recorded,
            "the server ran {e:?} (normalized: {ran:?}) with no start record of that text; \
             the session's records: {:#?}",
            candidates
                .iter()
                .map(|r| (&r["text"], &r["executed"]))
                .collect::<Vec<_>>()
        );
    }
    checked
}
