//! The session's names: what `EXECUTE name` and `FETCH name` run, and what a text's `PREPARE`,
//! `DECLARE`, `DEALLOCATE`, `CLOSE` and `DISCARD ALL` do to the names.
//!
//! PostgreSQL keeps one namespace of prepared statements per session, shared by SQL and the
//! extended protocol, and one of portals, shared by cursors and the protocol. Vigil follows
//! both in [`Shared::statements`] and [`Shared::portals`], whichever way a name was made, so
//! that a statement is always decided on what the server will run: a name made by `PREPARE`
//! can be bound by the protocol, a name made by Parse can be run by `EXECUTE`, and a `PREPARE`
//! of a name that exists fails on the server as it would without Vigil, leaving the old
//! statement in place (and in Vigil's picture: changes are settled by the server's answer).
//! A name Vigil does not know is refused, never guessed at.

use super::{MutationEntry, Namespace, Portal, Prepared, Shared, Slot};
use crate::encoding::TextEncoding;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::event::{ExecutedText, NamedKind, StatementShape};
use vigil_policy::Denial;
use vigil_sql::{Access, CommandClass, HazardKind, RelationAccess, SessionName, StatementAccess};

/// A text with the names it uses looked up.
pub(super) struct Named {
    /// What to decide: each `EXECUTE name` and `FETCH name` merged with what the name holds.
    pub checked: Arc<Access>,
    /// What those names hold, for the statement's record.
    pub executed: Vec<ExecutedText>,
    /// What the text does to the names if it runs, in order.
    pub changes: Vec<NameChange>,
    /// A name it uses that holds nothing, or that Vigil cannot follow: the refusal.
    pub refused: Option<Denial>,
}

impl Named {
    fn plain(access: &Arc<Access>) -> Named {
        Named {
            checked: access.clone(),
            executed: Vec::new(),
            changes: Vec::new(),
            refused: None,
        }
    }
}

/// A name a text's statement defines (`entry`) or drops (`None`).
pub(super) struct NameChange {
    /// Which statement of the text (it takes effect only if that statement completes).
    pub statement: usize,
    pub namespace: Namespace,
    pub name: Arc<[u8]>,
    pub entry: Option<MutationEntry>,
}

/// Where the scan is, for deciding whether a provisional name can be relied on.
#[derive(Clone, Copy)]
pub(super) struct Position {
    /// Every item up to this id is answered.
    pub popped_through: u64,
    /// The Sync-delimited segment of the message being looked at.
    pub segment: u64,
}

/// What `map` holds for `key` now, or `Err(id)`: it was changed by item `id` of an earlier
/// segment, not answered yet, so whether the change took effect is unknown (a message in the
/// same segment may rely on it: the server skips it if the change failed).
pub(super) fn lookup<T: Clone>(
    map: &HashMap<Arc<[u8]>, Slot<T>>,
    key: &[u8],
    at: Position,
) -> Result<Option<T>, u64> {
    match map.get(key) {
        Some(slot) if slot.by > at.popped_through && slot.segment < at.segment => Err(slot.by),
        Some(slot) => Ok(slot.entry.clone()),
        None => Ok(None),
    }
}

/// The key of a name sent in a protocol message (Parse, Bind, Execute, Describe, Close), as
/// the server reads it: in the client's encoding, like the names in SQL text, which Vigil
/// reads as text. `None` for a name Vigil cannot read for certain in this encoding.
pub(super) fn protocol_key(name: &[u8], encoding: TextEncoding) -> Option<Arc<[u8]>> {
    if name.is_ascii() {
        return Some(name.into());
    }
    let text = encoding.decode(name);
    (!text.contains('\u{fffd}')).then(|| Arc::from(text.as_bytes()))
}

/// The refusal of a protocol message naming what Vigil cannot read.
pub(super) fn unreadable_name() -> Denial {
    Denial {
        rule: "unreadable_name",
        reason: "the name of a prepared statement or portal holds characters Vigil cannot read \
                 for certain in this client encoding; use a name in ASCII"
            .into(),
        sqlstate: crate::sqlstate::INVALID_NAME,
    }
}

/// Looks up the names `access` uses, against the session's names and what the text itself
/// does to them before each use.
pub(super) fn resolve(
    access: &Arc<Access>,
    shared: &Shared,
    at: Position,
    limits: &crate::config::Limits,
) -> Result<Named, u64> {
    if access.statements.iter().all(|s| s.names.is_empty()) {
        return Ok(Named::plain(access));
    }
    let mut text = Overlay {
        shared,
        at,
        statements: HashMap::new(),
        portals: HashMap::new(),
        all_statements_gone: false,
        all_portals_gone: false,
    };
    let mut named = Named {
        checked: access.clone(),
        executed: Vec::new(),
        changes: Vec::new(),
        refused: None,
    };
    let mut checked = Vec::with_capacity(access.statements.len());
    for (index, statement) in access.statements.iter().enumerate() {
        let mut current = Cow::Borrowed(statement);
        for op in &statement.names {
            let refusal = match op {
                SessionName::Prepare { name, shape } => {
                    let key = sql_key(name);
                    let entry = MutationEntry::Statement(Prepared {
                        shape: shape.clone(),
                        access: own_access(statement, shape),
                    });
                    text.define(Namespace::Statement, key, Some(entry), index, &mut named)
                }
                SessionName::Declare { name, hold, shape } => {
                    let key = sql_key(name);
                    let entry = MutationEntry::Portal(Portal {
                        shape: shape.clone(),
                        access: own_access(statement, shape),
                        statement_name: Arc::from(&b""[..]),
                        parameters: None,
                        result_formats: Arc::from(&[][..]),
                        hold: *hold,
                        kept: false,
                        delivered: Default::default(),
                    });
                    text.define(Namespace::Portal, key, Some(entry), index, &mut named)
                }
                SessionName::Deallocate { name: Some(name) } => {
                    let key = sql_key(name);
                    text.define(Namespace::Statement, key, None, index, &mut named)
                }
                SessionName::Close { name: Some(name) } => {
                    let key = sql_key(name);
                    text.define(Namespace::Portal, key, None, index, &mut named)
                }
                SessionName::Deallocate { name: None } => {
                    text.drop_all(Namespace::Statement, index, &mut named);
                    Ok(())
                }
                SessionName::Close { name: None } => {
                    text.drop_all(Namespace::Portal, index, &mut named);
                    Ok(())
                }
                SessionName::DiscardAll => {
                    text.drop_all(Namespace::Statement, index, &mut named);
                    text.drop_all(Namespace::Portal, index, &mut named);
                    Ok(())
                }
                SessionName::Execute { name } => {
                    let key = sql_key(name);
                    match text.statement(&key)? {
                        Some(p) => {
                            merge_named(&mut current, &p.access, &p.shape, index, name, &mut named)
                        }
                        None => Err(unknown(Namespace::Statement, name)),
                    }
                }
                SessionName::Fetch { name } => {
                    let key = sql_key(name);
                    match text.portal(&key)? {
                        Some(p) => {
                            merge_named(&mut current, &p.access, &p.shape, index, name, &mut named)
                        }
                        None => Err(unknown(Namespace::Portal, name)),
                    }
                }
            };
            if let Err(denial) = refusal {
                named.refused.get_or_insert(denial);
            }
        }
        checked.push(current.into_owned());
    }
    if named.refused.is_none() {
        named.refused = over_limit(shared, &named.changes, limits);
    }
    named.checked = Arc::new(Access {
        shape: access.shape.clone(),
        statements: checked,
        parse_error: access.parse_error.clone(),
    });
    Ok(named)
}

/// The key of a name written in SQL (already read as text). U+FFFD stands for bytes Vigil
/// could not read in the client's encoding: such a name is refused where it is defined or
/// used ([`unreadable_name`]).
fn sql_key(name: &str) -> Arc<[u8]> {
    Arc::from(name.as_bytes())
}

fn unknown(namespace: Namespace, name: &str) -> Denial {
    if name.contains('\u{fffd}') {
        return unreadable_name();
    }
    match namespace {
        Namespace::Statement => Denial {
            rule: "unknown_name",
            reason: format!("prepared statement \"{name}\" does not exist"),
            sqlstate: crate::sqlstate::INVALID_SQL_STATEMENT_NAME,
        },
        Namespace::Portal => Denial {
            rule: "unknown_name",
            reason: format!("cursor \"{name}\" does not exist"),
            sqlstate: crate::sqlstate::INVALID_CURSOR_NAME,
        },
    }
}

/// A statement of a text, alone, as what a name made by it runs.
fn own_access(statement: &StatementAccess, shape: &Arc<StatementShape>) -> Arc<Access> {
    let mut own = statement.clone();
    own.names.clear();
    own.hazards
        .retain(|h| !matches!(h.kind, HazardKind::DefinesPrepared { .. }));
    Arc::new(Access {
        shape: shape.clone(),
        statements: vec![own],
        parse_error: None,
    })
}

/// `current` (an `EXECUTE name`, `FETCH name`, or a statement holding one) merged with what
/// the name runs; recorded in `named.executed`.
fn merge_named(
    current: &mut Cow<'_, StatementAccess>,
    inner: &Access,
    shape: &StatementShape,
    index: usize,
    name: &str,
    named: &mut Named,
) -> Result<(), Denial> {
    let kind = if current
        .names
        .iter()
        .any(|n| matches!(n, SessionName::Fetch { .. }))
    {
        NamedKind::Portal
    } else {
        NamedKind::PreparedStatement
    };
    named.executed.push(ExecutedText {
        statement: index,
        kind,
        name: name.to_owned(),
        text: shape.text.clone(),
        fingerprint: shape.fingerprint.clone(),
    });
    if inner.parse_error.is_some() || inner.statements.iter().any(|s| !s.names.is_empty()) {
        // What it runs names a statement or cursor in turn (a Parse of `EXECUTE other`):
        // that would be looked up only when it runs, so it cannot be decided now.
        return Err(Denial {
            rule: "unknown_name",
            reason: format!(
                "\"{name}\" runs another prepared statement or cursor by name, which Vigil does \
                 not follow; run that one directly"
            ),
            sqlstate: crate::sqlstate::INSUFFICIENT_PRIVILEGE,
        });
    }
    *current = Cow::Owned(merge(current, inner));
    Ok(())
}

/// A statement that runs `inner` by name, as one statement: what it does itself (parameters
/// of `EXECUTE`, the table `CREATE TABLE … AS EXECUTE` writes) and what `inner` does.
fn merge(wrapper: &StatementAccess, inner: &Access) -> StatementAccess {
    let runs = matches!(wrapper.command.as_str(), "EXECUTE" | "FETCH" | "MOVE");
    let explain = wrapper.command == "EXPLAIN";
    let mut out = wrapper.clone();
    out.names.clear();
    out.hazards
        .retain(|h| !matches!(h.kind, HazardKind::RunsPrepared { .. }));
    for s in &inner.statements {
        if runs {
            // It runs as what it is.
            out.class = stronger(out.class, s.class);
        } else if explain {
            if !wrapper.plan_only {
                out.class = stronger(out.class, s.class);
            }
        } else {
            // `CREATE TABLE … AS EXECUTE`: its result goes into a table.
            out.class = stronger(out.class, s.class);
        }
        for r in &s.relations {
            let mut r = r.clone();
            if !runs && !explain && r.read {
                // Its output is not the client's result: every column it outputs is used.
                r.derived_columns = r.derived_columns.union(&r.read_columns);
            }
            add_relation(&mut out.relations, r);
        }
        union_into(&mut out.functions, &s.functions);
        union_into(&mut out.hazards, &s.hazards);
        union_into(&mut out.unresolved, &s.unresolved);
        out.plan_only &= s.plan_only || explain;
    }
    if runs {
        out.plan_only = inner.statements.iter().all(|s| s.plan_only);
    }
    out
}

/// The class that needs more privilege (as the analysis orders them for a statement needing
/// two).
fn stronger(a: CommandClass, b: CommandClass) -> CommandClass {
    let rank = |c: CommandClass| match c {
        CommandClass::Other => 0,
        CommandClass::Session | CommandClass::Transaction | CommandClass::Utility => 1,
        CommandClass::Read => 2,
        CommandClass::CopyOut => 3,
        CommandClass::Function => 4,
        CommandClass::Write | CommandClass::CopyIn => 5,
        CommandClass::Ddl => 6,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn union_into<T: Ord + Clone>(into: &mut Vec<T>, from: &[T]) {
    into.extend(from.iter().cloned());
    into.sort();
    into.dedup();
}

fn add_relation(into: &mut Vec<RelationAccess>, r: RelationAccess) {
    match into
        .iter_mut()
        .find(|x| x.relation == r.relation && x.oid == r.oid)
    {
        Some(x) => {
            x.read |= r.read;
            x.write |= r.write;
            x.ddl |= r.ddl;
            x.read_columns = x.read_columns.union(&r.read_columns);
            x.write_columns = x.write_columns.union(&r.write_columns);
            x.derived_columns = x.derived_columns.union(&r.derived_columns);
        }
        None => {
            into.push(r);
            into.sort_by(|a, b| a.relation.cmp(&b.relation).then(a.oid.cmp(&b.oid)));
        }
    }
}

/// The session's limits on names, for the names a text adds.
fn over_limit(
    shared: &Shared,
    changes: &[NameChange],
    limits: &crate::config::Limits,
) -> Option<Denial> {
    let added = |ns: Namespace| {
        changes
            .iter()
            .filter(|c| {
                c.namespace == ns
                    && c.entry.is_some()
                    && match ns {
                        Namespace::Statement => !shared.statements.contains_key(&c.name),
                        Namespace::Portal => !shared.portals.contains_key(&c.name),
                    }
            })
            .count()
    };
    let statements = shared.statements.len() + added(Namespace::Statement);
    let portals = shared.portals.len() + added(Namespace::Portal);
    let denial = |what: String| Denial {
        rule: "session_limit",
        reason: what,
        sqlstate: crate::sqlstate::PROGRAM_LIMIT_EXCEEDED,
    };
    if statements > limits.max_prepared_statements {
        return Some(denial(format!(
            "this session would hold more than {} prepared statements, the most Vigil allows",
            limits.max_prepared_statements
        )));
    }
    if portals > limits.max_portals {
        return Some(denial(format!(
            "this session would hold more than {} open portals and cursors, the most Vigil allows",
            limits.max_portals
        )));
    }
    None
}

/// The session's names as a text sees them at one of its statements: the session's, with
/// what the text's earlier statements did to them.
struct Overlay<'a> {
    shared: &'a Shared,
    at: Position,
    statements: HashMap<Arc<[u8]>, Option<Prepared>>,
    portals: HashMap<Arc<[u8]>, Option<Portal>>,
    all_statements_gone: bool,
    all_portals_gone: bool,
}

impl Overlay<'_> {
    fn statement(&self, key: &Arc<[u8]>) -> Result<Option<Prepared>, u64> {
        if let Some(entry) = self.statements.get(key) {
            return Ok(entry.clone());
        }
        if self.all_statements_gone {
            return Ok(None);
        }
        lookup(&self.shared.statements, key, self.at)
    }

    fn portal(&self, key: &Arc<[u8]>) -> Result<Option<Portal>, u64> {
        if let Some(entry) = self.portals.get(key) {
            return Ok(entry.clone());
        }
        if self.all_portals_gone {
            return Ok(None);
        }
        lookup(&self.shared.portals, key, self.at)
    }

    /// `key` holds `entry` after statement `index` of the text.
    fn define(
        &mut self,
        namespace: Namespace,
        key: Arc<[u8]>,
        entry: Option<MutationEntry>,
        index: usize,
        named: &mut Named,
    ) -> Result<(), Denial> {
        if std::str::from_utf8(&key).map_or(true, |k| k.contains('\u{fffd}')) {
            return Err(unreadable_name());
        }
        match (&entry, namespace) {
            (Some(MutationEntry::Statement(p)), _) => {
                self.statements.insert(key.clone(), Some(p.clone()));
            }
            (Some(MutationEntry::Portal(p)), _) => {
                self.portals.insert(key.clone(), Some(p.clone()));
            }
            (None, Namespace::Statement) => {
                self.statements.insert(key.clone(), None);
            }
            (None, Namespace::Portal) => {
                self.portals.insert(key.clone(), None);
            }
        }
        named.changes.push(NameChange {
            statement: index,
            namespace,
            name: key,
            entry,
        });
        Ok(())
    }

    /// Every name of `namespace` is gone after statement `index`.
    fn drop_all(&mut self, namespace: Namespace, index: usize, named: &mut Named) {
        let keys: Vec<Arc<[u8]>> = match namespace {
            Namespace::Statement => {
                self.all_statements_gone = true;
                let keys = self.shared.statements.keys().chain(self.statements.keys());
                let keys: Vec<_> = keys.cloned().collect();
                self.statements.clear();
                keys
            }
            Namespace::Portal => {
                self.all_portals_gone = true;
                let keys = self.shared.portals.keys().chain(self.portals.keys());
                let keys: Vec<_> = keys.cloned().collect();
                self.portals.clear();
                keys
            }
        };
        let mut keys = keys;
        keys.sort();
        keys.dedup();
        for name in keys {
            named.changes.push(NameChange {
                statement: index,
                namespace,
                name,
                entry: None,
            });
        }
    }
}

/// The fuzz target `pg_session_names` (and a test): the names of an arbitrary text looked up
/// against a session holding a few, then applied as the proxy applies them. Panics when an
/// invariant breaks: a text that is not refused has no `EXECUTE` or `FETCH` left undecided (each
/// was merged with what its name holds), its name changes touch only names the text or the
/// session has, and the texts recorded for defined names hold no literal.
pub fn fuzz_resolve(sql: &str) {
    use vigil_sql::{Analyzer, CatalogRow, LexOptions, StaticCatalog};
    static ANALYZER: std::sync::OnceLock<Analyzer> = std::sync::OnceLock::new();
    static CATALOG: std::sync::OnceLock<StaticCatalog> = std::sync::OnceLock::new();
    let analyzer = ANALYZER.get_or_init(|| Analyzer::new(64));
    let catalog = CATALOG.get_or_init(|| {
        let rows = ["a", "b", "ssn"]
            .iter()
            .zip(1..)
            .map(|(c, n)| CatalogRow::new(1, "public", "t", 'r', Some(((*c).to_owned(), n))));
        StaticCatalog::from_rows(rows, vec!["public".to_owned()])
    });
    let opts = LexOptions {
        standard_conforming_strings: true,
    };
    let mut shared = Shared::new(super::ReportedSettings::default());
    let known = analyzer.access("SELECT a FROM t", opts, catalog);
    for (i, name) in ["a", "b", ""].iter().enumerate() {
        shared.statements.insert(
            Arc::from(name.as_bytes()),
            Slot {
                entry: Some(Prepared {
                    shape: known.shape.clone(),
                    access: known.clone(),
                }),
                by: i as u64,
                segment: 0,
            },
        );
    }
    for (i, name) in ["c", "p"].iter().enumerate() {
        shared.portals.insert(
            Arc::from(name.as_bytes()),
            Slot {
                entry: Some(Portal {
                    shape: known.shape.clone(),
                    access: known.clone(),
                    statement_name: Arc::from(&b"a"[..]),
                    parameters: None,
                    result_formats: Arc::from(&[][..]),
                    hold: i == 0,
                    kept: false,
                    delivered: Default::default(),
                }),
                by: 3 + i as u64,
                segment: 0,
            },
        );
    }
    let access = analyzer.access(sql, opts, catalog);
    let at = Position {
        popped_through: 10,
        segment: 1,
    };
    let limits = crate::config::Limits::default();
    let named = match resolve(&access, &shared, at, &limits) {
        Ok(named) => named,
        Err(_) => unreachable!("every slot is settled"),
    };
    assert_eq!(named.checked.statements.len(), access.statements.len());
    let text_names: Vec<&str> = access
        .statements
        .iter()
        .flat_map(|s| &s.names)
        .filter_map(|n| match n {
            SessionName::Prepare { name, .. }
            | SessionName::Declare { name, .. }
            | SessionName::Execute { name }
            | SessionName::Fetch { name }
            | SessionName::Deallocate { name: Some(name) }
            | SessionName::Close { name: Some(name) } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for change in &named.changes {
        let known_name = match change.namespace {
            Namespace::Statement => shared.statements.contains_key(&change.name),
            Namespace::Portal => shared.portals.contains_key(&change.name),
        };
        assert!(
            known_name || text_names.iter().any(|n| n.as_bytes() == &*change.name),
            "a change to a name the text does not touch"
        );
        assert!(change.statement < access.statements.len());
    }
    for s in &access.statements {
        for n in &s.names {
            if let SessionName::Prepare { shape, .. } | SessionName::Declare { shape, .. } = n {
                let again = crate::proxy::names::normalized(&shape.text);
                assert_eq!(
                    again, shape.text,
                    "a recorded text that still holds a literal"
                );
            }
        }
    }
    if named.refused.is_none() {
        for (s, checked) in access.statements.iter().zip(&named.checked.statements) {
            let runs_named = s
                .names
                .iter()
                .any(|n| matches!(n, SessionName::Execute { .. } | SessionName::Fetch { .. }));
            if runs_named {
                assert!(checked.names.is_empty(), "a named run left undecided");
                assert!(
                    !checked
                        .hazards
                        .iter()
                        .any(|h| matches!(h.kind, HazardKind::RunsPrepared { .. })),
                    "an EXECUTE left undecided"
                );
            }
        }
    }
}

/// `text` normalized as the analysis does (for the fuzz target's literal check).
fn normalized(text: &str) -> String {
    vigil_sql::normalize(
        text,
        vigil_sql::LexOptions {
            standard_conforming_strings: true,
        },
    )
    .text
}

#[cfg(test)]
mod tests {
    use super::fuzz_resolve;

    /// The fuzz target's checks over texts that reach every branch.
    #[test]
    fn names_resolve_and_keep_their_invariants() {
        for sql in [
            "EXECUTE a",
            "EXECUTE nosuch",
            "PREPARE x AS SELECT a FROM t WHERE b = 'lit'; EXECUTE x",
            "PREPARE a AS SELECT 1",
            "DEALLOCATE a; EXECUTE a",
            "DEALLOCATE ALL; EXECUTE b",
            "DISCARD ALL",
            "DECLARE d CURSOR WITH HOLD FOR SELECT ssn FROM t WHERE a = 42; FETCH 2 FROM d",
            "FETCH ALL FROM c",
            "MOVE 3 IN p",
            "CLOSE c; FETCH c",
            "CLOSE ALL",
            "CREATE TABLE x AS EXECUTE a",
            "EXPLAIN ANALYZE EXECUTE b",
            "EXECUTE a((SELECT ssn FROM t LIMIT 1))",
            "PREPARE \"\u{fffd}\" AS SELECT 1",
            "SELECT 1",
            "",
        ] {
            fuzz_resolve(sql);
        }
    }
}
