//! docs/ARCHITECTURE.md's dependency rules, checked against the crates' manifests: each crate may
//! depend only on the workspace crates listed for it here (dependencies point inward; the
//! protocol adapter never reaches stores, identity, masking rules or the audit writer). A new
//! edge is a design decision: change the table here and in ARCHITECTURE.md together.
//!
//! Decisions are made over the dialect-neutral access model (`vigil-access`): policy and
//! approvals never depend on a dialect's grammar (`vigil-sql`, which links libpg_query), not
//! even through another crate; `cargo metadata` checks the whole graph for that.

use std::collections::BTreeSet;
use std::path::Path;

/// (crate, the workspace crates it may depend on).
const ALLOWED: &[(&str, &[&str])] = &[
    ("vigil-core", &[]),
    ("vigil-access", &["vigil-core"]),
    ("vigil-sql", &["vigil-core", "vigil-access"]),
    ("vigil-policy", &["vigil-core", "vigil-access"]),
    ("vigil-mask", &["vigil-core"]),
    ("vigil-store", &["vigil-core"]),
    ("vigil-replay", &["vigil-core", "vigil-sql"]),
    ("vigil-identity", &["vigil-core", "vigil-store"]),
    (
        "vigil-approval",
        &["vigil-core", "vigil-access", "vigil-policy"],
    ),
    (
        "vigil-audit",
        &["vigil-core", "vigil-store", "vigil-replay"],
    ),
    (
        "vigil-api",
        &[
            "vigil-core",
            "vigil-store",
            "vigil-audit",
            "vigil-replay",
            "vigil-approval",
        ],
    ),
    (
        "vigil-pg",
        &["vigil-core", "vigil-access", "vigil-sql", "vigil-policy"],
    ),
    (
        "vigil",
        &[
            "vigil-core",
            "vigil-access",
            "vigil-store",
            "vigil-audit",
            "vigil-identity",
            "vigil-sql",
            "vigil-pg",
            "vigil-api",
            "vigil-policy",
            "vigil-replay",
            "vigil-approval",
            "vigil-mask",
        ],
    ),
];

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let allowed = ALLOWED
            .iter()
            .find(|(c, _)| *c == name)
            .unwrap_or_else(|| panic!("crate {name} is not in the architecture's table"))
            .1;
        // Normal dependencies only: tests may reach further.
        if let Some(deps) = doc.get("dependencies").and_then(|d| d.as_table()) {
            for dep in deps.keys().filter(|d| d.starts_with("vigil")) {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{name} depends on {dep}, which docs/ARCHITECTURE.md does not allow"
                );
            }
        }
        seen.insert(name);
    }
    for (c, _) in ALLOWED {
        assert!(seen.contains(*c), "crate {c} of the table was not found");
    }
}

/// Crates that decide (policy, approvals) over the neutral access model, whatever the dialect.
const GRAMMAR_FREE: &[&str] = &["vigil-access", "vigil-policy", "vigil-approval"];

/// What those crates must not reach, directly or through any other crate: PostgreSQL's grammar.
const GRAMMAR: &[&str] = &["vigil-sql", "pg_query"];

/// The resolved graph (`cargo tree`, for this platform): no path of normal or build
/// dependencies leads from a grammar-free crate to a grammar, whatever crate is in between.
#[test]
fn policy_and_approvals_never_link_a_grammar() {
    for root in GRAMMAR_FREE {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-p", root, "-e", "normal,build"])
            .args(["--prefix", "depth", "--format", "{p}"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {root}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Lines are `<depth><name> v<version> …`; the path to each is kept for the message.
        let mut path: Vec<String> = Vec::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            let Ok(depth) = line[..digits].parse::<usize>() else {
                continue;
            };
            let name = line[digits..].split(' ').next().unwrap_or("").to_string();
            path.truncate(depth);
            path.push(name.clone());
            assert!(
                !GRAMMAR.contains(&name.as_str()),
                "{root} links a SQL grammar: {}",
                path.join(" → ")
            );
        }
        assert_eq!(
            path.first().map(String::as_str),
            Some(*root),
            "{root}: no tree"
        );
    }
}
