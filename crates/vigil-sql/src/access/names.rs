//! The session names (prepared statements, portals) a statement defines, runs or drops.

use super::SessionName;
use crate::lex::LexOptions;
use crate::normalize::{fingerprint, normalize};
use pg_query::protobuf::{node::Node as N, DiscardMode, Node};
use std::collections::BTreeSet;
use std::sync::Arc;
use vigil_core::event::StatementShape;

/// `CURSOR_OPT_HOLD` of PostgreSQL's parsenodes.h: `DECLARE … WITH HOLD`.
const CURSOR_OPT_HOLD: i32 = 0x0020;

/// The names `stmt` touches. `own_text` is the statement's own text as the parser read it
/// (standard-conforming strings, comments blanked), `command`/`class` its tag and class.
pub(crate) fn session_names(
    stmt: &N,
    own_text: &str,
    command: &str,
    class: &str,
) -> Vec<SessionName> {
    let mut names = Vec::new();
    let shape = || own_shape(stmt, own_text, command, class);
    collect(stmt, &mut names, &shape);
    names
}

fn collect(stmt: &N, names: &mut Vec<SessionName>, shape: &dyn Fn() -> Arc<StatementShape>) {
    let name_or_all = |name: &str| (!name.is_empty()).then(|| name.to_owned());
    match stmt {
        N::PrepareStmt(p) => names.push(SessionName::Prepare {
            name: p.name.clone(),
            shape: shape(),
        }),
        N::ExecuteStmt(x) => names.push(SessionName::Execute {
            name: x.name.clone(),
        }),
        N::DeallocateStmt(d) => names.push(SessionName::Deallocate {
            name: if d.isall { None } else { name_or_all(&d.name) },
        }),
        N::DeclareCursorStmt(d) => names.push(SessionName::Declare {
            name: d.portalname.clone(),
            hold: d.options & CURSOR_OPT_HOLD != 0,
            shape: shape(),
        }),
        N::FetchStmt(f) => names.push(SessionName::Fetch {
            name: f.portalname.clone(),
        }),
        N::ClosePortalStmt(c) => names.push(SessionName::Close {
            name: name_or_all(&c.portalname),
        }),
        N::DiscardStmt(d) if d.target == DiscardMode::DiscardAll as i32 => {
            names.push(SessionName::DiscardAll)
        }
        // The statements that can hold an EXECUTE.
        N::ExplainStmt(x) => inner(&x.query, names, shape),
        N::CreateTableAsStmt(c) => inner(&c.query, names, shape),
        _ => {}
    }
}

fn inner(
    node: &Option<Box<Node>>,
    names: &mut Vec<SessionName>,
    shape: &dyn Fn() -> Arc<StatementShape>,
) {
    if let Some(n) = node.as_deref().and_then(|n| n.node.as_ref()) {
        collect(n, names, shape);
    }
}

/// The shape of one statement of a text, alone: its literal-free text and fingerprint.
fn own_shape(stmt: &N, own_text: &str, command: &str, class: &str) -> Arc<StatementShape> {
    let text = normalize(
        own_text.trim(),
        LexOptions {
            standard_conforming_strings: true,
        },
    )
    .text;
    let mut objects = BTreeSet::new();
    // The statement was described once already: this cannot fail differently now.
    let _ = crate::tree::describe(stmt, &mut objects);
    Arc::new(StatementShape {
        fingerprint: fingerprint(&text),
        text,
        commands: vec![command.to_owned()],
        command_classes: vec![class.to_owned()],
        objects: objects.into_iter().collect(),
        parse_error: None,
    })
}
