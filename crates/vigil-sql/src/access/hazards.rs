//! PostgreSQL's construct behind each [`HazardKind`], under the name records carry
//! (`{"hazard":"do_block",…}`): the one place that names them. The names are a record format
//! (audit trail, `vigil policy test`), fixed before hazards had neutral kinds: keep them.

use vigil_access::{Construct, Hazard, HazardKind};

/// The hazard of `kind`, as PostgreSQL's construct for it.
pub fn postgres(kind: HazardKind) -> Hazard {
    let construct = construct(&kind);
    Hazard::new(kind, construct)
}

/// PostgreSQL's construct for `kind`: PostgreSQL has one per kind.
pub fn construct(kind: &HazardKind) -> Construct {
    use HazardKind as K;
    Construct::new(match kind {
        K::RunsInlineCode { .. } => "do_block",
        K::DefinesCode { .. } => "create_function",
        K::CallsProcedure { .. } => "call",
        K::RunsServerProgram => "copy_program",
        K::AccessesServerFile => "copy_file",
        K::AssumesRole => "set_role",
        K::ChangesSessionUser => "set_session_authorization",
        K::RedirectsNames => "set_search_path",
        K::ChangesProtectedSetting { .. } => "set_protected_setting",
        K::RunsExplainedStatement => "explain_analyze",
        K::DefinesPrepared { .. } => "prepare",
        K::RunsPrepared { .. } => "execute",
        K::Subscribes { .. } => "listen",
        K::Publishes { .. } => "notify",
        K::ChangesServerConfiguration => "alter_system",
        K::LoadsLibrary => "load",
        K::InstallsExtension { .. } => "create_extension",
        K::CallsRiskyFunction { .. } => "function",
    })
}
