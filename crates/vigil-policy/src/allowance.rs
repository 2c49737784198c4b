//! Constructs a scope allows by name (`allow = ["do", "set_role"]`), and the one mapping from
//! the access model's neutral hazard kinds to those names.
//!
//! The names are what users write in policy files (docs/POLICY.md) and what session records
//! snapshot: they stay as they are. They were chosen after PostgreSQL's constructs; the
//! analysis now reports hazards by what they do ([`HazardKind`]), and [`Allowance::required_by`]
//! says which name allows each.

use serde::{Deserialize, Serialize};
use vigil_access::HazardKind;

/// Constructs a scope must allow by name (`allow = [...]`), beyond its command classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allowance {
    /// `DO` blocks: their bodies are code the analysis cannot see.
    Do,
    /// `CREATE FUNCTION` / `CREATE PROCEDURE`: bodies run later, unseen.
    CreateFunction,
    /// `COPY … PROGRAM`: a shell command on the database server.
    CopyProgram,
    /// `COPY … 'file'`: a file on the database server.
    CopyFile,
    /// `SET ROLE` / `RESET ROLE`.
    SetRole,
    /// `SET SESSION AUTHORIZATION`.
    SetSessionAuthorization,
    /// `SET search_path`: redirects unqualified names.
    SetSearchPath,
    /// `ALTER SYSTEM`.
    AlterSystem,
    /// `LOAD`.
    Load,
    /// `CREATE EXTENSION`.
    CreateExtension,
    /// FunctionCall protocol messages (fast-path calls by OID, used by large-object APIs):
    /// the function is named by number, so the analysis cannot check it.
    FunctionCall,
    /// `SET` of a setting that switches off a protection (`session_replication_role`,
    /// `row_security`, `log_*`, `track_*`…: the dialect's list, PostgreSQL's in
    /// `vigil_sql::access::settings`).
    SetProtectedSetting,
}

impl Allowance {
    pub fn as_str(self) -> &'static str {
        match self {
            Allowance::Do => "do",
            Allowance::CreateFunction => "create_function",
            Allowance::CopyProgram => "copy_program",
            Allowance::CopyFile => "copy_file",
            Allowance::SetRole => "set_role",
            Allowance::SetSessionAuthorization => "set_session_authorization",
            Allowance::SetSearchPath => "set_search_path",
            Allowance::AlterSystem => "alter_system",
            Allowance::Load => "load",
            Allowance::CreateExtension => "create_extension",
            Allowance::FunctionCall => "function_call",
            Allowance::SetProtectedSetting => "set_protected_setting",
        }
    }

    /// The allowance a hazard of `kind` needs, if it needs one. `None`: decided elsewhere
    /// (risky functions through `functions`, procedures and `EXPLAIN ANALYZE` through the
    /// command class and the statement run, named statements by the gateway, channels by the
    /// class) — not allowed for free. Every kind is listed, so that a new kind is a decision.
    pub fn required_by(kind: &HazardKind) -> Option<Allowance> {
        use HazardKind as K;
        match kind {
            K::RunsInlineCode { .. } => Some(Allowance::Do),
            K::DefinesCode { .. } => Some(Allowance::CreateFunction),
            K::RunsServerProgram => Some(Allowance::CopyProgram),
            K::AccessesServerFile => Some(Allowance::CopyFile),
            K::AssumesRole => Some(Allowance::SetRole),
            K::ChangesSessionUser => Some(Allowance::SetSessionAuthorization),
            K::RedirectsNames => Some(Allowance::SetSearchPath),
            K::ChangesProtectedSetting { .. } => Some(Allowance::SetProtectedSetting),
            K::ChangesServerConfiguration => Some(Allowance::AlterSystem),
            K::LoadsLibrary => Some(Allowance::Load),
            K::InstallsExtension { .. } => Some(Allowance::CreateExtension),
            K::CallsProcedure { .. }
            | K::RunsExplainedStatement
            | K::DefinesPrepared { .. }
            | K::RunsPrepared { .. }
            | K::Subscribes { .. }
            | K::Publishes { .. }
            | K::CallsRiskyFunction { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_access::{FunctionRisk, QualifiedName};

    /// The names users write in `allow`, for each hazard kind: the mapping between the neutral
    /// kinds and the policy file's names, pinned.
    #[test]
    fn each_hazard_kind_is_allowed_by_its_policy_name() {
        let name = || QualifiedName::new(None, "x");
        let cases: [(HazardKind, Option<&str>); 18] = [
            (HazardKind::RunsInlineCode { language: None }, Some("do")),
            (
                HazardKind::DefinesCode {
                    name: name(),
                    language: None,
                },
                Some("create_function"),
            ),
            (HazardKind::RunsServerProgram, Some("copy_program")),
            (HazardKind::AccessesServerFile, Some("copy_file")),
            (HazardKind::AssumesRole, Some("set_role")),
            (
                HazardKind::ChangesSessionUser,
                Some("set_session_authorization"),
            ),
            (HazardKind::RedirectsNames, Some("set_search_path")),
            (
                HazardKind::ChangesProtectedSetting { name: "x".into() },
                Some("set_protected_setting"),
            ),
            (HazardKind::ChangesServerConfiguration, Some("alter_system")),
            (HazardKind::LoadsLibrary, Some("load")),
            (
                HazardKind::InstallsExtension { name: "x".into() },
                Some("create_extension"),
            ),
            (HazardKind::CallsProcedure { procedure: name() }, None),
            (HazardKind::RunsExplainedStatement, None),
            (HazardKind::DefinesPrepared { name: "q".into() }, None),
            (HazardKind::RunsPrepared { name: "q".into() }, None),
            (
                HazardKind::Subscribes {
                    channel: "c".into(),
                },
                None,
            ),
            (
                HazardKind::Publishes {
                    channel: "c".into(),
                },
                None,
            ),
            (
                HazardKind::CallsRiskyFunction {
                    name: name(),
                    risk: FunctionRisk::FileSystem,
                },
                None,
            ),
        ];
        for (kind, expected) in cases {
            let allowance = Allowance::required_by(&kind);
            assert_eq!(allowance.map(Allowance::as_str), expected, "{kind:?}");
            if let (Some(a), Some(written)) = (allowance, expected) {
                // What a policy file says is what the check looks for.
                let read: Allowance = serde_json::from_value(written.into()).unwrap();
                assert_eq!(read, a);
                assert_eq!(serde_json::to_value(a).unwrap(), written);
            }
        }
    }

    /// Every name a policy file may write in `allow` reads back as itself.
    #[test]
    fn policy_names_are_stable() {
        for name in [
            "do",
            "create_function",
            "copy_program",
            "copy_file",
            "set_role",
            "set_session_authorization",
            "set_search_path",
            "alter_system",
            "load",
            "create_extension",
            "function_call",
            "set_protected_setting",
        ] {
            let a: Allowance = serde_json::from_value(name.into()).unwrap();
            assert_eq!(a.as_str(), name);
        }
        assert!(serde_json::from_value::<Allowance>("do_block".into()).is_err());
    }
}
