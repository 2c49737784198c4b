//! `vigil policy check`: every problem of a config's policies, with its line and field.

use crate::config::{locate_policy_field, toml_error_position, Config};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use vigil_policy::Severity;

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

/// Where an approval-required policy applies: to an identity that holds standing grants on the
/// connection (a statement they refuse and this scope allows asks for an elevation), or to one
/// that holds none (connecting asks).
#[derive(Serialize)]
struct Elevation {
    policy: String,
    identity: String,
    connection: String,
    /// The standing policies binding the identity there (empty: access is asked at connect
    /// time).
    standing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

fn elevations(text: &str, config: &Config) -> Vec<Elevation> {
    let mut out = Vec::new();
    for p in config.policies.iter().filter(|p| p.approval.is_some()) {
        for i in &config.identities {
            for c in &p.connections {
                if !p.binds(&i.name, &i.groups, c) {
                    continue;
                }
                let standing = config
                    .policies
                    .iter()
                    .filter(|s| s.approval.is_none() && s.binds(&i.name, &i.groups, c))
                    .map(|s| s.name.clone())
                    .collect();
                out.push(Elevation {
                    policy: p.name.clone(),
                    identity: i.name.clone(),
                    connection: c.clone(),
                    standing,
                    line: locate_policy_field(text, &p.name, Some("approval")),
                });
            }
        }
    }
    out
}

pub(super) fn run(path: &Path, json: bool) -> Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut findings = Vec::new();
    let mut approvals = Vec::new();
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
            approvals = elevations(&text, &config);
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
                "approvals": approvals,
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
        for e in &approvals {
            let mut at = path.display().to_string();
            if let Some(l) = e.line {
                at.push_str(&format!(":{l}"));
            }
            if e.standing.is_empty() {
                println!(
                    "{at}: note: policy {:?}: identity {:?} holds no standing grant on {:?}: connecting raises an access request for this policy",
                    e.policy, e.identity, e.connection
                );
            } else {
                println!(
                    "{at}: note: policy {:?}: elevation: identity {:?} on {:?} holds standing grants ({}); a statement they refuse and this scope allows raises an access request for this policy",
                    e.policy,
                    e.identity,
                    e.connection,
                    e.standing
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
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
