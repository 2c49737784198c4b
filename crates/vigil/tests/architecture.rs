//! docs/ARCHITECTURE.md's dependency rules, checked against the crates' manifests: each crate may
//! depend only on the workspace crates listed for it here (dependencies point inward; the
//! protocol adapter never reaches stores, identity, masking rules or the audit writer). A new
//! edge is a design decision: change the table here and in ARCHITECTURE.md together.

use std::collections::BTreeSet;
use std::path::Path;

/// (crate, the workspace crates it may depend on).
const ALLOWED: &[(&str, &[&str])] = &[
    ("vigil-core", &[]),
    ("vigil-sql", &["vigil-core"]),
    ("vigil-policy", &["vigil-core", "vigil-sql"]),
    ("vigil-mask", &["vigil-core"]),
    ("vigil-store", &["vigil-core"]),
    ("vigil-replay", &["vigil-core", "vigil-sql"]),
    ("vigil-identity", &["vigil-core", "vigil-store"]),
    (
        "vigil-approval",
        &["vigil-core", "vigil-policy", "vigil-sql"],
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
    ("vigil-pg", &["vigil-core", "vigil-sql", "vigil-policy"]),
    (
        "vigil",
        &[
            "vigil-core",
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
