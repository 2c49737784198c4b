//! The walk over PostgreSQL's parse tree that fills a [`StatementAccess`]: query levels and
//! their namespaces, column resolution, CTE scopes, and the statement kinds (see the rules in
//! [`crate::access`]).
//!
//! Long on purpose: one `Walker` over pg_query's node kinds, whose query-level state
//! (namespaces, CTE scopes, outputs) every statement kind shares; split by kind, each part
//! would reach into the others' state.

use super::{
    function_risk, relation_risk, ColumnSet, CommandClass, Comparison, Hazard, HazardKind,
    QualifiedName, RelationAccess, StatementAccess, Unresolved,
};
use crate::catalog::{Catalog, ConstraintKind, RelationInfo};
use crate::lex::{LexOptions, Lexer, Tok};
use crate::tree;
use pg_query::protobuf::{self as pb, Node};
use pg_query::NodeEnum as N;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Analyses one top-level statement. `text` is the text PostgreSQL's parser was given (its
/// locations index it).
pub(crate) fn statement_access(
    stmt: &N,
    command: String,
    class: CommandClass,
    text: &str,
    catalog: &dyn Catalog,
) -> StatementAccess {
    let mut w = Walker {
        catalog,
        text,
        class,
        rels: Vec::new(),
        functions: BTreeSet::new(),
        hazards: BTreeSet::new(),
        unresolved: BTreeSet::new(),
        plan_only: false,
        levels: Vec::new(),
        ctes: Vec::new(),
        attributable: true,
        bare: Bare::No,
        derived_any: false,
        by_position: false,
        settings: Vec::new(),
    };
    w.statement(stmt);
    let outputs = super::outputs::of(stmt, catalog).map(Arc::from);
    let compared = w.comparisons();
    let derived_any = w.derived_any;
    let mut relations: Vec<RelationAccess> =
        w.rels.into_iter().map(|r| r.finish(derived_any)).collect();
    relations.sort_by(|a, b| a.relation.cmp(&b.relation).then(a.oid.cmp(&b.oid)));
    StatementAccess {
        command,
        class,
        plan_only: w.plan_only,
        relations,
        functions: w.functions.into_iter().collect(),
        hazards: w.hazards.into_iter().collect(),
        unresolved: w.unresolved.into_iter().collect(),
        names: Vec::new(),
        compared,
        by_position: w.by_position,
        settings: w.settings,
        outputs,
    }
}

/// Columns collected for one relation.
#[derive(Default)]
struct Cols {
    all: bool,
    names: BTreeSet<String>,
}

impl Cols {
    fn add(&mut self, name: &str) {
        if !self.all && !self.names.contains(name) {
            self.names.insert(name.to_owned());
        }
    }

    fn set_all(&mut self) {
        self.all = true;
        self.names.clear();
    }

    fn finish(self) -> ColumnSet {
        if self.all {
            ColumnSet::All
        } else {
            ColumnSet::Columns(self.names.into_iter().collect())
        }
    }
}

/// One relation's accumulated access.
struct Rel {
    name: QualifiedName,
    info: Option<Arc<RelationInfo>>,
    read: bool,
    write: bool,
    ddl: bool,
    reads: Cols,
    writes: Cols,
    /// Columns read other than as a bare output column of the client's result.
    derived: Cols,
    /// How rows of the relation are written (for the constraints that compare them).
    ops: RowOps,
    /// Columns an UPDATE sets (`writes` also has those inserted).
    updated: Cols,
}

/// What a statement does to a relation's rows.
#[derive(Clone, Copy, Default)]
struct RowOps {
    /// INSERT, COPY FROM, MERGE … INSERT.
    insert: bool,
    /// UPDATE, ON CONFLICT DO UPDATE, MERGE … UPDATE.
    update: bool,
    /// DELETE, MERGE … DELETE.
    delete: bool,
}

impl Rel {
    /// `derived_any`: a derived use of a subquery's or CTE's output was seen, which may stand
    /// for any column read inside: every read counts as derived.
    fn finish(mut self, derived_any: bool) -> RelationAccess {
        if derived_any {
            if self.reads.all {
                self.derived.set_all();
            } else {
                for n in std::mem::take(&mut self.reads.names) {
                    self.derived.add(&n);
                    self.reads.names.insert(n);
                }
            }
        }
        // Unqualified (not resolved): as a policy reads it, in `public`.
        let exposure = relation_risk(
            self.name.schema.as_deref().unwrap_or("public"),
            &self.name.name,
        );
        RelationAccess {
            relation: self.name,
            oid: self.info.as_ref().map(|i| i.oid),
            kind: self.info.as_ref().map(|i| i.kind),
            read: self.read,
            write: self.write,
            ddl: self.ddl,
            read_columns: self.reads.finish(),
            write_columns: self.writes.finish(),
            derived_columns: self.derived.finish(),
            exposure,
        }
    }
}

/// What column references to a FROM item mean.
#[derive(Clone)]
enum Target {
    /// A relation (index into `Walker::rels`): references are reads of its columns.
    Rel(usize),
    /// A subquery, CTE reference or function: its body's accesses were counted where it is
    /// written. The relations its FROM clauses read (for `FOR UPDATE`).
    Derived(Vec<usize>),
    /// A join's alias: references go to the join's inputs, sources `from..to` of the level.
    Join(usize, usize),
    /// A name with nothing behind it (EXCLUDED, function parameters, set operation outputs).
    Opaque,
}

/// One item of a query level's namespace.
struct Source {
    /// The alias, or the relation's (CTE's) name when it has none; `None` for an unaliased
    /// subquery.
    refname: Option<String>,
    /// The schema a `schema.relation.column` reference must name (unaliased relations only).
    schema: Option<String>,
    /// Visible column names and the column each stands for; `None`: unknown.
    cols: Option<Vec<(String, String)>>,
    target: Target,
    /// Whether unqualified names and `*` see it (not a join's alias: its inputs answer).
    unqualified: bool,
}

impl Source {
    fn column(&self, name: &str) -> Option<&str> {
        self.cols
            .as_ref()?
            .iter()
            .find(|(visible, _)| visible == name)
            .map(|(_, real)| real.as_str())
    }
}

/// One query level: what its expressions can name.
struct Level {
    sources: Vec<Source>,
    /// Sources `lo..hi` are visible to unqualified names (a JOIN's ON clause sees only the
    /// join's inputs; a subquery in FROM sees none of its siblings, or the preceding ones when
    /// LATERAL).
    lo: usize,
    hi: usize,
    /// The select list, entry by entry as PostgreSQL numbers it (a `*` counts one entry per
    /// column), for ORDER BY, DISTINCT and GROUP BY by name or position.
    outputs: Vec<Output>,
    /// A join with USING or NATURAL merges its columns, so `*` does not expand to the
    /// inputs' columns in order.
    merged_join: bool,
    /// Relations read by this level's FROM items (for `FOR UPDATE` without `OF`).
    from_rels: Vec<usize>,
}

/// One entry of a select list.
struct Output {
    /// Its name (alias, column name, or `FigureColname`); `None` for an unknown expansion.
    name: Option<String>,
    origin: Origin,
}

/// What an output column is, for uses of it by name or position.
enum Origin {
    /// A bare column reference (its fields): sorting, grouping or comparing by it is a derived
    /// use of the column, resolved again.
    Column(Vec<Node>),
    /// Column `column` (as visible) of source `source` of level `level`, from a `*`.
    Star {
        level: usize,
        source: usize,
        column: String,
    },
    /// A `*` (or `t.*`) over source `source` of level `level` whose columns, or their
    /// positions, are not known: it may stand for any number of entries, any of its columns.
    UnknownStar { level: usize, source: usize },
    /// An expression: whatever it reads is derived already.
    Expr,
}

impl Level {
    fn new() -> Self {
        Level {
            sources: Vec::new(),
            lo: 0,
            hi: usize::MAX,
            outputs: Vec::new(),
            merged_join: false,
            from_rels: Vec::new(),
        }
    }

    fn visible(&self) -> std::ops::Range<usize> {
        self.lo.min(self.sources.len())..self.hi.min(self.sources.len())
    }
}

/// A CTE in scope.
struct Cte {
    name: String,
    cols: Option<Vec<String>>,
    rels: Vec<usize>,
}

/// What a query (SELECT, VALUES, DML with RETURNING) yields to its user.
struct QueryOut {
    /// Output column names; `None`: unknown.
    cols: Option<Vec<String>>,
    /// Relations its FROM clauses read.
    rels: Vec<usize>,
}

impl QueryOut {
    fn none() -> Self {
        QueryOut {
            cols: Some(Vec::new()),
            rels: Vec::new(),
        }
    }
}

struct Walker<'a> {
    catalog: &'a dyn Catalog,
    text: &'a str,
    class: CommandClass,
    rels: Vec<Rel>,
    functions: BTreeSet<QualifiedName>,
    hazards: BTreeSet<Hazard>,
    unresolved: BTreeSet<Unresolved>,
    plan_only: bool,
    levels: Vec<Level>,
    ctes: Vec<Cte>,
    /// The query being walked sends its rows to the client, where PostgreSQL's RowDescription
    /// names the table column behind each bare column output (so masking rules find them):
    /// the top-level SELECT, its FROM subqueries and CTEs. Not a subquery in an expression, a
    /// set operation's branch, RETURNING, or a query whose rows go into a table or view.
    attributable: bool,
    /// Walking a bare column reference that is an output of an attributable query.
    bare: Bare,
    /// A subquery's, CTE's or function's output was used other than bare.
    derived_any: bool,
    /// An output column was named by position (see [`StatementAccess::by_position`]).
    by_position: bool,
    settings: Vec<super::settings::SettingChange>,
}

fn node(n: &Option<Box<Node>>) -> Option<&N> {
    n.as_deref().and_then(|n| n.node.as_ref())
}

fn string(n: &Node) -> Option<&str> {
    match &n.node {
        Some(N::String(s)) => Some(&s.sval),
        _ => None,
    }
}

fn strings(ns: &[Node]) -> Vec<String> {
    ns.iter().filter_map(string).map(str::to_owned).collect()
}

/// Functions that DDL binds to run later without being named again: an operator's function
/// and estimators, an aggregate's transition functions, a type's I/O functions, a cast's
/// function, trigger and event trigger functions, operator class support functions,
/// transforms, conversions, language, FDW and access method handlers. `SELECT ### 1` calls
/// the function behind `###`: the statement that bound it is where the name is seen.
fn bound_functions(e: &N) -> Vec<&[Node]> {
    /// DefElem options of CREATE OPERATOR/AGGREGATE/TYPE (base and range)/TEXT SEARCH
    /// PARSER|TEMPLATE and ALTER OPERATOR/TYPE whose value is a function.
    const FUNCTION_OPTIONS: &[&str] = &[
        "function",
        "procedure",
        "restrict",
        "join",
        "sfunc",
        "finalfunc",
        "combinefunc",
        "serialfunc",
        "deserialfunc",
        "msfunc",
        "minvfunc",
        "mfinalfunc",
        "input",
        "output",
        "receive",
        "send",
        "typmod_in",
        "typmod_out",
        "analyze",
        "subscript",
        "start",
        "gettoken",
        "end",
        "headline",
        "lextypes",
        "init",
        "lexize",
        "handler",
        "validator",
        "canonical",
        "subtype_diff",
    ];
    fn options<'a>(defs: &'a [Node], out: &mut Vec<&'a [Node]>) {
        for d in defs {
            let Some(N::DefElem(d)) = &d.node else {
                continue;
            };
            if !FUNCTION_OPTIONS.contains(&d.defname.to_ascii_lowercase().as_str()) {
                continue;
            }
            match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
                Some(N::TypeName(t)) => out.push(&t.names),
                Some(N::List(l)) => out.push(&l.items),
                Some(N::String(_)) => out.push(std::slice::from_ref(d.arg.as_deref().unwrap())),
                _ => {}
            }
        }
    }
    fn op_class_items<'a>(items: &'a [Node], out: &mut Vec<&'a [Node]>) {
        for i in items {
            // Item type 2: a support function (1 is an operator, 3 a storage type).
            if let Some(N::CreateOpClassItem(i)) = &i.node {
                if i.itemtype == 2 {
                    if let Some(f) = &i.name {
                        out.push(&f.objname);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    match e {
        N::DefineStmt(d) => options(&d.definition, &mut out),
        N::AlterOperatorStmt(a) => options(&a.options, &mut out),
        N::AlterTypeStmt(a) => options(&a.options, &mut out),
        N::CreateRangeStmt(r) => options(&r.params, &mut out),
        N::CreateFdwStmt(f) => options(&f.func_options, &mut out),
        N::AlterFdwStmt(f) => options(&f.func_options, &mut out),
        N::CreateCastStmt(c) => out.extend(c.func.as_ref().map(|f| &f.objname[..])),
        N::CreateTransformStmt(t) => {
            out.extend(t.fromsql.as_ref().map(|f| &f.objname[..]));
            out.extend(t.tosql.as_ref().map(|f| &f.objname[..]));
        }
        N::CreateTrigStmt(t) => out.push(&t.funcname),
        N::CreateEventTrigStmt(t) => out.push(&t.funcname),
        N::CreateConversionStmt(c) => out.push(&c.func_name),
        N::CreatePlangStmt(l) => out.extend([&l.plhandler[..], &l.plinline, &l.plvalidator]),
        N::CreateAmStmt(a) => out.push(&a.handler_name),
        N::CreateOpClassStmt(c) => op_class_items(&c.items, &mut out),
        N::AlterOpFamilyStmt(a) => op_class_items(&a.items, &mut out),
        _ => {}
    }
    out.retain(|parts| !parts.is_empty());
    out
}

/// A function's name as written, without the `pg_catalog.` prefix.
fn func_name(parts: &[Node]) -> QualifiedName {
    let parts: Vec<&str> = parts.iter().filter_map(string).collect();
    let (schema, name) = match parts.as_slice() {
        [] => (None, ""),
        [name] => (None, *name),
        [.., schema, name] => (Some(*schema), *name),
    };
    QualifiedName::new(schema.filter(|s| *s != "pg_catalog"), name)
}

fn display_parts(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        if !out.is_empty() {
            out.push('.');
        }
        tree::push_name_part(&mut out, p);
    }
    out
}

impl<'a> Walker<'a> {
    // --- bookkeeping ---------------------------------------------------------------------

    fn unsupported(&mut self, e: &N) {
        let kind = serde_json::to_value(e)
            .ok()
            .and_then(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
            .unwrap_or_else(|| "unknown".to_owned());
        self.unresolved.insert(Unresolved::Construct(kind));
    }

    fn hazard(&mut self, kind: HazardKind) {
        self.hazards.insert(super::hazards::postgres(kind));
    }

    fn function(&mut self, name: QualifiedName) {
        if let Some(risk) = function_risk(&name.name) {
            self.hazard(HazardKind::CallsRiskyFunction {
                name: name.clone(),
                risk,
            });
        }
        self.functions.insert(name);
    }

    /// The index of relation `info` (or of the unknown relation `written`) in `rels`.
    fn rel_index(&mut self, info: Option<Arc<RelationInfo>>, written: QualifiedName) -> usize {
        let (name, key_oid) = match &info {
            Some(i) => (QualifiedName::new(Some(&i.schema), &i.name), Some(i.oid)),
            None => (written, None),
        };
        if let Some(i) = self.rels.iter().position(|r| match (key_oid, &r.info) {
            (Some(oid), Some(info)) => info.oid == oid,
            (None, None) => r.name == name,
            _ => false,
        }) {
            return i;
        }
        self.rels.push(Rel {
            name,
            info,
            read: false,
            write: false,
            ddl: false,
            reads: Cols::default(),
            writes: Cols::default(),
            derived: Cols::default(),
            ops: RowOps::default(),
            updated: Cols::default(),
        });
        self.rels.len() - 1
    }

    /// Resolves a relation name that must exist; unknown names are `unresolved`.
    fn relation_parts(&mut self, schema: Option<&str>, name: &str) -> usize {
        let info = self.catalog.relation(schema, name);
        if info.is_none() {
            let shown = match schema {
                Some(s) => display_parts(&[s, name]),
                None => display_parts(&[name]),
            };
            self.unresolved.insert(Unresolved::Relation(shown));
        }
        self.rel_index(info, QualifiedName::new(schema, name))
    }

    fn relation(&mut self, rv: &pb::RangeVar) -> usize {
        let schema = (!rv.schemaname.is_empty()).then_some(rv.schemaname.as_str());
        self.relation_parts(schema, &rv.relname)
    }

    /// A relation the statement creates: it need not exist.
    fn created(&mut self, rv: &pb::RangeVar) -> usize {
        let schema = (!rv.schemaname.is_empty()).then_some(rv.schemaname.as_str());
        let info = self.catalog.relation(schema, &rv.relname);
        let r = self.rel_index(info, QualifiedName::new(schema, &rv.relname));
        self.rels[r].ddl = true;
        r
    }

    fn read_col(&mut self, r: usize, col: &str) {
        self.rels[r].read = true;
        self.rels[r].reads.add(col);
        if self.bare == Bare::No {
            self.rels[r].derived.add(col);
        }
    }

    fn read_all(&mut self, r: usize) {
        self.rels[r].read = true;
        self.rels[r].reads.set_all();
        // `*` expands to bare columns; a whole row as one value (`SELECT p`) is a composite
        // that names no table column.
        if self.bare != Bare::Star {
            self.rels[r].derived.set_all();
        }
    }

    /// A column written to relation `r`; unknown columns of known relations are unresolved.
    fn write_col(&mut self, r: usize, col: &str) {
        self.check_column(r, col);
        self.rels[r].write = true;
        self.rels[r].writes.add(col);
    }

    fn check_column(&mut self, r: usize, col: &str) {
        if let Some(info) = &self.rels[r].info {
            if !crate::catalog::has_column(info, col) {
                let shown = display_parts(&[&info.name, col]);
                self.unresolved.insert(Unresolved::Column(shown));
            }
        }
    }

    fn push_level(&mut self) {
        self.levels.push(Level::new());
    }

    fn pop_level(&mut self) -> Level {
        self.levels.pop().expect("balanced levels")
    }

    fn level(&mut self) -> &mut Level {
        self.levels.last_mut().expect("inside a level")
    }

    fn add_source(&mut self, s: Source) -> usize {
        let level = self.level();
        level.sources.push(s);
        level.sources.len() - 1
    }

    /// A source for relation `r` named by `rv` (its alias, or its name), with the alias's
    /// column names over the relation's.
    fn relation_source(&mut self, r: usize, rv: &pb::RangeVar) -> Source {
        let alias = rv.alias.as_ref();
        let info = self.rels[r].info.clone();
        let cols = info.as_ref().map(|info| {
            let renamed = alias.map(|a| strings(&a.colnames)).unwrap_or_default();
            info.columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let visible = renamed.get(i).cloned().unwrap_or_else(|| c.name.clone());
                    (visible, c.name.clone())
                })
                .collect()
        });
        let schema = match (alias, &info) {
            (Some(_), _) => None,
            (None, Some(info)) => Some(info.schema.clone()),
            (None, None) => (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
        };
        Source {
            refname: Some(alias.map_or_else(|| rv.relname.clone(), |a| a.aliasname.clone())),
            schema,
            cols,
            target: Target::Rel(r),
            unqualified: true,
        }
    }

    // --- statements --------------------------------------------------------------------

    fn statement_node(&mut self, n: &Option<Box<Node>>) {
        if let Some(e) = node(n) {
            self.statement(e);
        }
    }

    fn statement(&mut self, e: &N) {
        let attributable = std::mem::replace(&mut self.attributable, false);
        self.statement_in(e, attributable);
        self.attributable = false;
    }

    fn statement_in(&mut self, e: &N, attributable: bool) {
        match e {
            N::SelectStmt(s) => {
                self.attributable = attributable && s.into_clause.is_none();
                self.select(s);
            }
            N::InsertStmt(s) => {
                self.insert(s);
            }
            N::UpdateStmt(s) => {
                self.update(s);
            }
            N::DeleteStmt(s) => {
                self.delete(s);
            }
            N::MergeStmt(s) => {
                self.merge(s);
            }
            N::CopyStmt(c) => self.copy(c),
            N::ExplainStmt(x) => {
                if tree::has_analyze(&x.options) {
                    self.hazard(HazardKind::RunsExplainedStatement);
                } else {
                    self.plan_only = true;
                }
                self.attributable = attributable;
                self.statement_node(&x.query);
            }
            N::PrepareStmt(p) => {
                self.hazard(HazardKind::DefinesPrepared {
                    name: p.name.clone(),
                });
                self.attributable = attributable;
                self.statement_node(&p.query);
            }
            N::ExecuteStmt(x) => {
                self.hazard(HazardKind::RunsPrepared {
                    name: x.name.clone(),
                });
                self.push_level();
                self.exprs(&x.params);
                self.pop_level();
            }
            N::DeclareCursorStmt(d) => {
                self.attributable = attributable;
                self.statement_node(&d.query)
            }
            N::CreateTableAsStmt(c) => {
                if let Some(rel) = c.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    let r = self.created(rel);
                    self.rels[r].write = true;
                    self.rels[r].writes.set_all();
                }
                self.statement_node(&c.query);
            }
            N::ViewStmt(v) => {
                if let Some(rel) = &v.view {
                    self.created(rel);
                }
                self.statement_node(&v.query);
            }
            N::RuleStmt(r) => self.rule(r),
            N::CreateFunctionStmt(f) => self.create_function(f),
            N::DoStmt(d) => {
                let language = self.language(&d.args).unwrap_or(Some("plpgsql".to_owned()));
                self.hazard(HazardKind::RunsInlineCode { language });
            }
            N::CallStmt(c) => {
                if let Some(f) = &c.funccall {
                    let name = func_name(&f.funcname);
                    self.hazard(HazardKind::CallsProcedure {
                        procedure: name.clone(),
                    });
                    self.push_level();
                    self.func_call(f);
                    self.pop_level();
                }
            }
            N::VariableSetStmt(v) => {
                let change = super::settings::change_of(v);
                // RESET ALL (no name): every setting back to its login value, the protected
                // ones too, which is where the login left them: no hazard.
                if let Some(h) = change.name.as_deref().and_then(setting_hazard) {
                    self.hazard(h);
                }
                self.settings.push(change);
            }
            N::AlterSystemStmt(_) => self.hazard(HazardKind::ChangesServerConfiguration),
            N::LoadStmt(_) => self.hazard(HazardKind::LoadsLibrary),
            N::CreateExtensionStmt(x) => {
                self.hazard(HazardKind::InstallsExtension {
                    name: x.extname.clone(),
                });
                self.utility(e);
            }
            N::ListenStmt(l) => self.hazard(HazardKind::Subscribes {
                channel: l.conditionname.clone(),
            }),
            N::NotifyStmt(n) => self.hazard(HazardKind::Publishes {
                channel: n.conditionname.clone(),
            }),
            N::TruncateStmt(t) => {
                for rel in &t.relations {
                    if let Some(N::RangeVar(rv)) = &rel.node {
                        let r = self.relation(rv);
                        self.rels[r].write = true;
                    }
                }
            }
            // Statements that touch no relation and call nothing.
            N::TransactionStmt(_)
            | N::VariableShowStmt(_)
            | N::DiscardStmt(_)
            | N::DeallocateStmt(_)
            | N::ClosePortalStmt(_)
            | N::FetchStmt(_)
            | N::CheckPointStmt(_)
            | N::UnlistenStmt(_)
            | N::ConstraintsSetStmt(_) => {}
            _ => self.utility(e),
        }
    }

    /// DDL and utility statements: the relations and functions they name, anywhere.
    fn utility(&mut self, e: &N) {
        let stored: Vec<&pb::VariableSetStmt> = match e {
            N::AlterRoleSetStmt(a) => a.setstmt.iter().collect(),
            N::AlterDatabaseSetStmt(a) => a.setstmt.iter().collect(),
            N::AlterFunctionStmt(a) => set_options(&a.actions),
            _ => Vec::new(),
        };
        self.stored_settings(stored);
        let created = match e {
            N::CreateStmt(c) => c.relation.as_ref(),
            N::CreateForeignTableStmt(f) => f.base_stmt.as_ref().and_then(|b| b.relation.as_ref()),
            N::CreateSeqStmt(s) => s.sequence.as_ref(),
            N::CompositeTypeStmt(c) => c.typevar.as_ref(),
            _ => None,
        };
        let created_at = created.map(|rv| {
            self.created(rv);
            i64::from(rv.location)
        });
        let scan = match tree::scan(e) {
            Ok(scan) => scan,
            Err(_) => {
                self.unsupported(e);
                return;
            }
        };
        for (parts, location) in scan.relations {
            if Some(location) == created_at && location >= 0 {
                continue;
            }
            let (schema, name) = match parts.as_slice() {
                [name] => (None, name.as_str()),
                [.., schema, name] => (Some(schema.as_str()), name.as_str()),
                [] => continue,
            };
            let r = self.relation_parts(schema, name);
            match self.class {
                CommandClass::Ddl => self.rels[r].ddl = true,
                CommandClass::Write => self.rels[r].write = true,
                _ => {}
            }
        }
        for parts in scan.functions {
            let parts: Vec<Node> = parts
                .into_iter()
                .map(|sval| Node {
                    node: Some(N::String(pb::String { sval })),
                })
                .collect();
            self.function(func_name(&parts));
        }
        for parts in bound_functions(e) {
            self.function(func_name(parts));
        }
    }

    /// The LANGUAGE option of DO or CREATE FUNCTION: `None` when absent, `Some(None)` when
    /// written as a string literal (whose value must not show in a shared analysis).
    fn language(&self, options: &[Node]) -> Option<Option<String>> {
        options.iter().find_map(|o| match &o.node {
            Some(N::DefElem(d)) if d.defname == "language" => {
                let value = node(&d.arg).and_then(|a| match a {
                    N::String(s) => Some(s.sval.clone()),
                    _ => None,
                });
                Some(value.filter(|_| !self.is_literal_after_keyword(d.location)))
            }
            _ => None,
        })
    }

    /// Whether the token after the keyword at `location` of the parsed text is a literal.
    fn is_literal_after_keyword(&self, location: i32) -> bool {
        let Some(rest) = usize::try_from(location)
            .ok()
            .and_then(|l| self.text.get(l..))
        else {
            return true;
        };
        let opts = LexOptions {
            standard_conforming_strings: true,
        };
        Lexer::new(rest, opts)
            .filter(|t| !matches!(t.tok, Tok::Space | Tok::Comment))
            .nth(1)
            .is_none_or(|t| matches!(t.tok, Tok::Literal { .. }))
    }

    /// Settings a definition stores for later sessions or calls (`ALTER ROLE … SET`, a
    /// function's `SET` clause): a protected one switches its protection off there.
    fn stored_settings(&mut self, stored: Vec<&pb::VariableSetStmt>) {
        for v in stored {
            let name = v.name.to_ascii_lowercase();
            if super::settings::protected_setting(&name) {
                self.hazard(HazardKind::ChangesProtectedSetting { name });
            }
        }
    }

    fn create_function(&mut self, f: &pb::CreateFunctionStmt) {
        let name = func_name(&f.funcname);
        let language = match self.language(&f.options) {
            Some(l) => l,
            // Without LANGUAGE, only a SQL-standard body is accepted.
            None => Some("sql".to_owned()),
        };
        self.hazard(HazardKind::DefinesCode {
            name: name.clone(),
            language,
        });
        self.stored_settings(set_options(&f.options));
        // Parameter defaults and the SQL-standard body (`RETURN …`, `BEGIN ATOMIC … END`),
        // which names parameters as columns of the function (`f.p`) or alone (`p`).
        let mut params = Vec::new();
        self.push_level();
        for p in &f.parameters {
            if let Some(N::FunctionParameter(p)) = &p.node {
                self.expr_opt(&p.defexpr);
                if !p.name.is_empty() {
                    params.push((p.name.clone(), p.name.clone()));
                }
            }
        }
        self.add_source(Source {
            refname: Some(name.name.clone()),
            schema: None,
            cols: Some(params),
            target: Target::Opaque,
            unqualified: true,
        });
        // The body's own queries must not see the parameters' level as a FROM clause, but
        // as an outer level: they push their own.
        if let Some(body) = node(&f.sql_body) {
            self.function_body(body);
        }
        self.pop_level();
    }

    fn function_body(&mut self, e: &N) {
        match e {
            N::List(l) => {
                for item in &l.items {
                    if let Some(e) = &item.node {
                        self.function_body(e);
                    }
                }
            }
            N::ReturnStmt(r) => self.expr_opt(&r.returnval),
            other => self.statement(other),
        }
    }

    fn rule(&mut self, rule: &pb::RuleStmt) {
        let Some(rv) = &rule.relation else { return };
        let r = self.relation(rv);
        self.rels[r].ddl = true;
        // NEW and OLD stand for rows of the relation.
        self.push_level();
        for name in ["new", "old"] {
            let mut s = self.relation_source(r, rv);
            s.refname = Some(name.to_owned());
            s.schema = None;
            s.unqualified = false;
            self.add_source(s);
        }
        self.expr_opt(&rule.where_clause);
        for a in &rule.actions {
            if let Some(e) = &a.node {
                self.statement(e);
            }
        }
        self.pop_level();
    }

    // --- queries -------------------------------------------------------------------------

    /// A query in a position that yields rows (subquery, CTE body, COPY query…).
    fn query(&mut self, n: &Option<Box<Node>>) -> QueryOut {
        match node(n) {
            Some(N::SelectStmt(s)) => self.select(s),
            Some(N::InsertStmt(s)) => self.insert(s),
            Some(N::UpdateStmt(s)) => self.update(s),
            Some(N::DeleteStmt(s)) => self.delete(s),
            Some(N::MergeStmt(s)) => self.merge(s),
            Some(other) => {
                self.statement(other);
                QueryOut {
                    cols: None,
                    rels: Vec::new(),
                }
            }
            None => QueryOut::none(),
        }
    }

    /// Puts a WITH clause's CTEs in scope (until `self.ctes` is truncated back), analysing
    /// their bodies.
    fn with_clause(&mut self, w: &Option<pb::WithClause>) {
        let Some(w) = w else { return };
        let ctes: Vec<&pb::CommonTableExpr> = w
            .ctes
            .iter()
            .filter_map(|c| match &c.node {
                Some(N::CommonTableExpr(c)) => Some(c.as_ref()),
                _ => None,
            })
            .collect();
        let mark = self.ctes.len();
        if w.recursive {
            // Each CTE sees all of them, itself included; a self-reference's columns are
            // unknown until its body is analysed.
            for c in &ctes {
                let cols = (!c.aliascolnames.is_empty()).then(|| strings(&c.aliascolnames));
                self.ctes.push(Cte {
                    name: c.ctename.clone(),
                    cols,
                    rels: Vec::new(),
                });
            }
        }
        for (i, c) in ctes.iter().enumerate() {
            let out = self.query(&c.ctequery);
            let mut cols = if c.aliascolnames.is_empty() {
                out.cols
            } else {
                Some(strings(&c.aliascolnames))
            };
            if let Some(cols) = cols.as_mut() {
                if let Some(search) = &c.search_clause {
                    cols.push(search.search_seq_column.clone());
                }
                if let Some(cycle) = &c.cycle_clause {
                    cols.push(cycle.cycle_mark_column.clone());
                    cols.push(cycle.cycle_path_column.clone());
                }
            }
            let cte = Cte {
                name: c.ctename.clone(),
                cols,
                rels: out.rels,
            };
            if w.recursive {
                self.ctes[mark + i] = cte;
            } else {
                self.ctes.push(cte);
            }
        }
    }

    fn cte(&self, name: &str) -> Option<&Cte> {
        self.ctes.iter().rev().find(|c| c.name == name)
    }

    fn select(&mut self, s: &pb::SelectStmt) -> QueryOut {
        let cte_mark = self.ctes.len();
        self.with_clause(&s.with_clause);
        let op = pb::SetOperation::try_from(s.op).unwrap_or(pb::SetOperation::Undefined);
        let out = if !matches!(
            op,
            pb::SetOperation::SetopNone | pb::SetOperation::Undefined
        ) {
            // PostgreSQL names no table column behind a set operation's outputs.
            let attributable = std::mem::replace(&mut self.attributable, false);
            let left = match &s.larg {
                Some(l) => self.select(l),
                None => QueryOut::none(),
            };
            let right = match &s.rarg {
                Some(r) => self.select(r),
                None => QueryOut::none(),
            };
            self.attributable = attributable;
            // ORDER BY and LIMIT of a set operation see its output columns only.
            self.push_level();
            let cols = left.cols.clone().unwrap_or_default();
            self.level().outputs = expr_outputs(&cols);
            self.add_source(Source {
                refname: None,
                schema: None,
                cols: left
                    .cols
                    .as_ref()
                    .map(|c| c.iter().map(|n| (n.clone(), n.clone())).collect()),
                target: Target::Opaque,
                unqualified: true,
            });
            self.sort_clause(&s.sort_clause);
            self.expr_opt(&s.limit_offset);
            self.expr_opt(&s.limit_count);
            self.pop_level();
            let mut rels = left.rels;
            rels.extend(right.rels);
            QueryOut {
                cols: left.cols,
                rels,
            }
        } else if !s.values_lists.is_empty() {
            self.push_level();
            let mut width = 0;
            for row in &s.values_lists {
                match &row.node {
                    Some(N::List(l)) => {
                        width = width.max(l.items.len());
                        self.exprs(&l.items);
                    }
                    _ => self.expr(row),
                }
            }
            let cols: Vec<String> = (1..=width).map(|i| format!("column{i}")).collect();
            self.level().outputs = expr_outputs(&cols);
            self.add_source(Source {
                refname: None,
                schema: None,
                cols: Some(cols.iter().map(|n| (n.clone(), n.clone())).collect()),
                target: Target::Opaque,
                unqualified: true,
            });
            self.sort_clause(&s.sort_clause);
            self.expr_opt(&s.limit_offset);
            self.expr_opt(&s.limit_count);
            self.pop_level();
            QueryOut {
                cols: Some(cols),
                rels: Vec::new(),
            }
        } else {
            self.push_level();
            for item in &s.from_clause {
                self.table_ref(item);
            }
            let cols = self.targets(&s.target_list);
            self.expr_opt(&s.where_clause);
            for g in &s.group_clause {
                self.group_item(g);
            }
            self.expr_opt(&s.having_clause);
            for w in &s.window_clause {
                if let Some(N::WindowDef(w)) = &w.node {
                    self.window(w);
                }
            }
            if s.distinct_clause.iter().all(|d| d.node.is_none()) {
                // Plain DISTINCT (a list of one empty item) compares every output column.
                if !s.distinct_clause.is_empty() {
                    self.all_outputs_used();
                }
            } else {
                // DISTINCT ON follows ORDER BY's rules (parse_clause.c).
                for d in &s.distinct_clause {
                    self.output_or_expr(d);
                }
            }
            self.sort_clause(&s.sort_clause);
            self.expr_opt(&s.limit_offset);
            self.expr_opt(&s.limit_count);
            self.locking(&s.locking_clause);
            let level = self.pop_level();
            QueryOut {
                cols,
                rels: level.from_rels,
            }
        };
        if let Some(rel) = s.into_clause.as_ref().and_then(|i| i.rel.as_ref()) {
            let r = self.created(rel);
            self.rels[r].write = true;
            self.rels[r].writes.set_all();
        }
        self.ctes.truncate(cte_mark);
        out
    }

    fn locking(&mut self, clauses: &[Node]) {
        for c in clauses {
            let Some(N::LockingClause(c)) = &c.node else {
                continue;
            };
            let mut rels = Vec::new();
            if c.locked_rels.is_empty() {
                rels.extend(self.level().from_rels.iter().copied());
            } else {
                for rv in &c.locked_rels {
                    let Some(N::RangeVar(rv)) = &rv.node else {
                        continue;
                    };
                    let level = self.level();
                    for s in &level.sources {
                        if s.refname.as_deref() == Some(rv.relname.as_str()) {
                            match &s.target {
                                Target::Rel(r) => rels.push(*r),
                                Target::Derived(d) => rels.extend(d.iter().copied()),
                                _ => {}
                            }
                        }
                    }
                }
            }
            for r in rels {
                self.rels[r].write = true;
            }
        }
    }

    /// A FROM item: adds its sources to the current level.
    fn table_ref(&mut self, n: &Node) {
        let Some(e) = &n.node else { return };
        match e {
            N::RangeVar(rv) => self.range_var(rv),
            N::JoinExpr(j) => self.join(j),
            N::RangeSubselect(s) => {
                let out = self.beside_siblings(s.lateral, |w| w.query(&s.subquery));
                let alias = s.alias.as_ref();
                self.level().from_rels.extend(out.rels.iter().copied());
                let cols = renamed(out.cols, alias);
                self.add_source(Source {
                    refname: alias.map(|a| a.aliasname.clone()),
                    schema: None,
                    cols,
                    target: Target::Derived(out.rels),
                    unqualified: true,
                });
            }
            N::RangeFunction(f) => {
                // Functions in FROM may refer to the items before them (LATERAL or not).
                self.beside_siblings(true, |w| {
                    for item in &f.functions {
                        // Each item is a list of the call and its column definitions.
                        match &item.node {
                            Some(N::List(l)) => {
                                if let Some(call) = l.items.first() {
                                    w.expr(call);
                                }
                            }
                            _ => w.expr(item),
                        }
                    }
                });
                // Columns are known only from a column definition list (`AS r(a int, b text)`);
                // without one they depend on the function's return type, which the catalog
                // does not describe.
                let alias = f.alias.as_ref();
                let cols = (!f.coldeflist.is_empty()).then(|| {
                    let mut cols: Vec<String> = f
                        .coldeflist
                        .iter()
                        .filter_map(|c| match &c.node {
                            Some(N::ColumnDef(c)) => Some(c.colname.clone()),
                            _ => None,
                        })
                        .collect();
                    if f.ordinality {
                        cols.push("ordinality".to_owned());
                    }
                    cols
                });
                let cols = renamed(cols, alias);
                self.add_source(Source {
                    refname: alias.map(|a| a.aliasname.clone()).or_else(|| {
                        // Unaliased, a single function's item is called after it.
                        match f.functions.first().map(|i| &i.node) {
                            Some(Some(N::List(l))) if f.functions.len() == 1 => {
                                match l.items.first().and_then(|c| c.node.as_ref()) {
                                    Some(N::FuncCall(c)) => Some(func_name(&c.funcname).name),
                                    _ => None,
                                }
                            }
                            _ => None,
                        }
                    }),
                    schema: None,
                    cols,
                    target: Target::Opaque,
                    unqualified: true,
                });
            }
            N::RangeTableSample(t) => {
                if let Some(rel) = t.relation.as_deref() {
                    self.table_ref(rel);
                }
                self.exprs(&t.args);
                self.expr_opt(&t.repeatable);
            }
            N::RangeTableFunc(t) => {
                self.beside_siblings(true, |w| {
                    w.expr_opt(&t.docexpr);
                    w.expr_opt(&t.rowexpr);
                    for ns in &t.namespaces {
                        w.expr(ns);
                    }
                    for c in &t.columns {
                        if let Some(N::RangeTableFuncCol(c)) = &c.node {
                            w.expr_opt(&c.colexpr);
                            w.expr_opt(&c.coldefexpr);
                        }
                    }
                });
                let cols = t
                    .columns
                    .iter()
                    .filter_map(|c| match &c.node {
                        Some(N::RangeTableFuncCol(c)) => Some(c.colname.clone()),
                        _ => None,
                    })
                    .collect();
                let alias = t.alias.as_ref();
                self.add_source(Source {
                    refname: alias.map(|a| a.aliasname.clone()),
                    schema: None,
                    cols: renamed(Some(cols), alias),
                    target: Target::Opaque,
                    unqualified: true,
                });
            }
            N::JsonTable(t) => {
                self.beside_siblings(true, |w| {
                    if let Some(ctx) = &t.context_item {
                        w.json_value(ctx);
                    }
                    w.exprs(&t.passing);
                    w.json_table_columns(&t.columns);
                    if let Some(b) = &t.on_error {
                        w.expr_opt(&b.expr);
                    }
                });
                let mut cols = Vec::new();
                json_table_names(&t.columns, &mut cols);
                let alias = t.alias.as_ref();
                self.add_source(Source {
                    refname: alias.map(|a| a.aliasname.clone()),
                    schema: None,
                    cols: renamed(Some(cols), alias),
                    target: Target::Opaque,
                    unqualified: true,
                });
            }
            other => self.unsupported(other),
        }
    }

    fn json_table_columns(&mut self, columns: &[Node]) {
        for c in columns {
            if let Some(N::JsonTableColumn(c)) = &c.node {
                for b in [&c.on_empty, &c.on_error].into_iter().flatten() {
                    self.expr_opt(&b.expr);
                }
                self.json_table_columns(&c.columns);
            }
        }
    }

    /// Runs `f` (which analyses something in FROM) with the current level's items hidden, or
    /// only those before it visible when `lateral`; `f`'s own queries push their own levels.
    fn beside_siblings<T>(&mut self, lateral: bool, f: impl FnOnce(&mut Self) -> T) -> T {
        let level = self.level();
        let (lo, hi) = (level.lo, level.hi);
        let len = level.sources.len();
        level.hi = if lateral { len.min(hi) } else { lo };
        let out = f(self);
        let level = self.level();
        level.lo = lo;
        level.hi = hi;
        out
    }

    fn range_var(&mut self, rv: &pb::RangeVar) {
        let alias = rv.alias.as_ref();
        if rv.schemaname.is_empty() && rv.catalogname.is_empty() {
            if let Some(cte) = self.cte(&rv.relname) {
                let cols = renamed(cte.cols.clone(), alias);
                let rels = cte.rels.clone();
                self.level().from_rels.extend(rels.iter().copied());
                self.add_source(Source {
                    refname: Some(
                        alias.map_or_else(|| rv.relname.clone(), |a| a.aliasname.clone()),
                    ),
                    schema: None,
                    cols,
                    target: Target::Derived(rels),
                    unqualified: true,
                });
                return;
            }
        }
        let r = self.relation(rv);
        self.rels[r].read = true;
        self.level().from_rels.push(r);
        let source = self.relation_source(r, rv);
        self.add_source(source);
    }

    fn join(&mut self, j: &pb::JoinExpr) {
        let start = self.level().sources.len();
        if let Some(l) = j.larg.as_deref() {
            self.table_ref(l);
        }
        let mid = self.level().sources.len();
        if let Some(r) = j.rarg.as_deref() {
            // The right side of a join may refer to the left side if LATERAL: `table_ref`
            // handles visibility per item kind.
            self.table_ref(r);
        }
        let end = self.level().sources.len();
        // USING and NATURAL read the join columns on both sides.
        let mut using = strings(&j.using_clause);
        if j.is_natural || !using.is_empty() {
            self.level().merged_join = true;
        }
        if j.is_natural {
            let names = |w: &Self, range: std::ops::Range<usize>| -> Option<Vec<String>> {
                let level = w.levels.last()?;
                let mut names = Vec::new();
                for s in &level.sources[range] {
                    if s.unqualified {
                        names.extend(s.cols.as_ref()?.iter().map(|(v, _)| v.clone()));
                    }
                }
                Some(names)
            };
            match (names(self, start..mid), names(self, mid..end)) {
                (Some(l), Some(r)) => using.extend(l.into_iter().filter(|n| r.contains(n))),
                // Unknown columns on a side: any column may be a join column.
                _ => {
                    for s in start..end {
                        self.whole_row(self.levels.len() - 1, s);
                    }
                }
            }
        }
        let li = self.levels.len() - 1;
        // A USING column must exist on both sides.
        for name in strings(&j.using_clause) {
            let level = &self.levels[li];
            let has = |range: std::ops::Range<usize>| {
                level.sources[range]
                    .iter()
                    .any(|s| s.unqualified && (s.cols.is_none() || s.column(&name).is_some()))
            };
            if !has(start..mid) || !has(mid..end) {
                self.unresolved
                    .insert(Unresolved::Column(display_parts(&[&name])));
            }
        }
        for name in &using {
            for s in start..end {
                let src = &self.levels[li].sources[s];
                if src.unqualified && (src.cols.is_none() || src.column(name).is_some()) {
                    self.column_of(li, s, name);
                }
            }
        }
        // ON sees the join's inputs only.
        let level = self.level();
        let (lo, hi) = (level.lo, level.hi);
        level.lo = start;
        level.hi = end;
        self.expr_opt(&j.quals);
        let level = self.level();
        level.lo = lo;
        level.hi = hi;
        if let Some(alias) = &j.join_using_alias {
            self.add_source(Source {
                refname: Some(alias.aliasname.clone()),
                schema: None,
                cols: Some(using.iter().map(|n| (n.clone(), n.clone())).collect()),
                target: Target::Join(start, end),
                unqualified: false,
            });
        }
        if let Some(alias) = &j.alias {
            let level = self.level();
            let mut cols = Some(Vec::new());
            for s in &level.sources[start..end] {
                if !s.unqualified {
                    continue;
                }
                match (&mut cols, &s.cols) {
                    (Some(all), Some(c)) => {
                        all.extend(c.iter().map(|(v, _)| (v.clone(), v.clone())))
                    }
                    _ => cols = None,
                }
            }
            // Renamed join columns: references to them count as whole rows of the inputs.
            if !alias.colnames.is_empty() {
                cols = None;
            }
            self.add_source(Source {
                refname: Some(alias.aliasname.clone()),
                schema: None,
                cols,
                target: Target::Join(start, end),
                unqualified: false,
            });
        }
    }

    /// A select list: analyses each entry, adds it to the level's outputs, and returns the
    /// output column names (`None` if a `*` expands to columns that are not known).
    fn targets(&mut self, list: &[Node]) -> Option<Vec<String>> {
        let mut names = Some(Vec::new());
        for t in list {
            let Some(N::ResTarget(rt)) = &t.node else {
                self.expr(t);
                names = None;
                continue;
            };
            let Some(val) = rt.val.as_deref() else {
                continue;
            };
            if let Some(N::ColumnRef(c)) = &val.node {
                // A bare column output: PostgreSQL names its table column to the client.
                let star = matches!(
                    c.fields.last().and_then(|f| f.node.as_ref()),
                    Some(N::AStar(_))
                );
                self.bare = match (self.attributable, star) {
                    (false, _) => Bare::No,
                    (true, false) => Bare::Column,
                    (true, true) => Bare::Star,
                };
                if star {
                    let expanded = self.star_names(&c.fields);
                    let outputs = self.star_outputs(&c.fields);
                    self.column_ref(&c.fields);
                    self.bare = Bare::No;
                    self.level().outputs.extend(outputs);
                    match (&mut names, expanded) {
                        (Some(n), Some(e)) => n.extend(e),
                        _ => names = None,
                    }
                    continue;
                }
                self.column_ref(&c.fields);
                self.bare = Bare::No;
                let name = if rt.name.is_empty() {
                    figure_colname(val)
                } else {
                    rt.name.clone()
                };
                self.level().outputs.push(Output {
                    name: Some(name.clone()),
                    origin: Origin::Column(c.fields.clone()),
                });
                if let Some(n) = &mut names {
                    n.push(name);
                }
                continue;
            }
            self.expr(val);
            let name = if rt.name.is_empty() {
                figure_colname(val)
            } else {
                rt.name.clone()
            };
            self.level().outputs.push(Output {
                name: Some(name.clone()),
                origin: Origin::Expr,
            });
            if let Some(n) = &mut names {
                n.push(name);
            }
        }
        names
    }

    /// The sources `*` or `t.*` expands, as (level, source).
    fn star_sources(&self, fields: &[Node]) -> Vec<(usize, usize)> {
        let Some(level) = self.levels.last() else {
            return Vec::new();
        };
        if fields.len() == 1 {
            let l = self.levels.len() - 1;
            return level
                .visible()
                .filter(|&s| level.sources[s].unqualified)
                .map(|s| (l, s))
                .collect();
        }
        let parts: Vec<&str> = fields.iter().filter_map(string).collect();
        let (schema, rel) = match parts.as_slice() {
            [rel] => (None, *rel),
            [.., schema, rel] => (Some(*schema), *rel),
            [] => return Vec::new(),
        };
        self.find_source(schema, rel)
    }

    /// The select-list entries `*` or `t.*` expands to, in PostgreSQL's order: each column of
    /// each source, when known. A join's USING or NATURAL columns come first in `*` (and in a
    /// join alias's `j.*`), once: their positions are then not known.
    fn star_outputs(&self, fields: &[Node]) -> Vec<Output> {
        let mut out = Vec::new();
        for (l, s) in self.star_sources(fields) {
            let src = &self.levels[l].sources[s];
            let merged = (fields.len() == 1 && self.levels[l].merged_join)
                || matches!(src.target, Target::Join(..));
            match &src.cols {
                Some(cols) if !merged => out.extend(cols.iter().map(|(visible, _)| Output {
                    name: Some(visible.clone()),
                    origin: Origin::Star {
                        level: l,
                        source: s,
                        column: visible.clone(),
                    },
                })),
                _ => out.push(Output {
                    name: None,
                    origin: Origin::UnknownStar {
                        level: l,
                        source: s,
                    },
                }),
            }
        }
        out
    }

    /// The column names `*` or `t.*` expands to, if known.
    fn star_names(&self, fields: &[Node]) -> Option<Vec<String>> {
        let level = self.levels.last()?;
        let names_of = |s: &Source| -> Option<Vec<String>> {
            Some(s.cols.as_ref()?.iter().map(|(v, _)| v.clone()).collect())
        };
        if fields.len() == 1 {
            let mut out = Vec::new();
            for s in &level.sources[level.visible()] {
                if s.unqualified {
                    out.extend(names_of(s)?);
                }
            }
            return Some(out);
        }
        let parts: Vec<&str> = fields.iter().filter_map(string).collect();
        let (schema, rel) = match parts.as_slice() {
            [rel] => (None, *rel),
            [.., schema, rel] => (Some(*schema), *rel),
            [] => return None,
        };
        let (l, s) = self.find_source(schema, rel).into_iter().next()?;
        names_of(&self.levels[l].sources[s])
    }

    fn sort_clause(&mut self, items: &[Node]) {
        for item in items {
            match &item.node {
                Some(N::SortBy(s)) => {
                    if let Some(n) = s.node.as_deref() {
                        self.output_or_expr(n);
                    }
                }
                _ => self.expr(item),
            }
        }
    }

    /// An ORDER BY or DISTINCT ON item, by PostgreSQL's rules (`findTargetlistEntrySQL92`): a
    /// bare name that names output columns is those columns; an integer constant is the output
    /// column at that position; anything else is an expression over the input (where a
    /// constant sorts nothing). Each output column so used is a derived use of what it stands
    /// for: the order or the distinctness of the result depends on its values.
    fn output_or_expr(&mut self, n: &Node) {
        if let Some(name) = bare_name(n) {
            if self.outputs_named(name) {
                return;
            }
        }
        if let Some(position) = position(n) {
            self.output_at(position);
            return;
        }
        self.expr(n);
    }

    /// Uses the current level's output columns called `name`, if any (and whatever an
    /// expansion of unknown columns may hold). Whether there were any.
    fn outputs_named(&mut self, name: &str) -> bool {
        let level = self.level();
        let found: Vec<usize> = (0..level.outputs.len())
            .filter(|&i| level.outputs[i].name.as_deref() == Some(name))
            .collect();
        if found.is_empty() {
            return false;
        }
        // PostgreSQL takes the first, and errors if another differs: count them all, and any
        // `*` whose columns are unknown (it may hold one of that name).
        let unknown: Vec<usize> = (0..level.outputs.len())
            .filter(|&i| matches!(level.outputs[i].origin, Origin::UnknownStar { .. }))
            .collect();
        for i in found.into_iter().chain(unknown) {
            self.output_used(i);
        }
        true
    }

    /// Uses the output column at 1-based `position`. When a `*` of unknown width comes before
    /// it, any output may be the one: all count (fail closed). Out of range, PostgreSQL refuses
    /// the statement: nothing to count.
    fn output_at(&mut self, position: i64) {
        self.by_position = true;
        let mut found = None;
        for (i, o) in self.level().outputs.iter().enumerate() {
            if matches!(o.origin, Origin::UnknownStar { .. }) {
                found = Some(None);
                break;
            }
            if i64::try_from(i + 1) == Ok(position) {
                found = Some(Some(i));
                break;
            }
        }
        match found {
            // A `*` of unknown width comes first: any output may be the one.
            Some(None) => self.all_outputs_used(),
            Some(Some(i)) => self.output_used(i),
            None => {}
        }
    }

    fn all_outputs_used(&mut self) {
        for i in 0..self.level().outputs.len() {
            self.output_used(i);
        }
    }

    /// Output column `i` of the current level was sorted, grouped or compared by: a derived use
    /// of what it stands for.
    fn output_used(&mut self, i: usize) {
        let origin = match &self.level().outputs[i].origin {
            Origin::Column(fields) => Origin::Column(fields.clone()),
            Origin::Star {
                level,
                source,
                column,
            } => Origin::Star {
                level: *level,
                source: *source,
                column: column.clone(),
            },
            Origin::UnknownStar { level, source } => Origin::UnknownStar {
                level: *level,
                source: *source,
            },
            Origin::Expr => return,
        };
        let bare = std::mem::replace(&mut self.bare, Bare::No);
        match origin {
            Origin::Column(fields) => self.column_ref(&fields),
            Origin::Star {
                level,
                source,
                column,
            } => self.column_of(level, source, &column),
            Origin::UnknownStar { level, source } => self.whole_row(level, source),
            Origin::Expr => {}
        }
        self.bare = bare;
    }

    /// A GROUP BY item, by PostgreSQL's rules: a bare name is a column of this level's FROM
    /// items if one has it, else the output columns of that name, else a column of an outer
    /// level (or a whole row); an integer constant is the output column at that position;
    /// grouping sets, ROLLUP and CUBE hold such items.
    fn group_item(&mut self, n: &Node) {
        match &n.node {
            Some(N::GroupingSet(g)) => {
                for c in &g.content {
                    self.group_item(c);
                }
            }
            Some(N::List(l)) => {
                for c in &l.items {
                    self.group_item(c);
                }
            }
            // `GROUP BY (1, 2)` and `GROUPING SETS ((1, 2))`: PostgreSQL flattens an implicit
            // row into its items (`flatten_grouping_sets`), positions included.
            Some(N::RowExpr(r)) if r.row_format == pb::CoercionForm::CoerceImplicitCast as i32 => {
                for c in &r.args {
                    self.group_item(c);
                }
            }
            _ => {
                if let Some(name) = bare_name(n) {
                    match self.local_column(name) {
                        Local::Yes => self.expr(n),
                        Local::Maybe => {
                            self.expr(n);
                            self.outputs_named(name);
                        }
                        Local::No => {
                            if !self.outputs_named(name) {
                                self.expr(n);
                            }
                        }
                    }
                } else if let Some(position) = position(n) {
                    self.output_at(position);
                } else {
                    self.expr(n);
                }
            }
        }
    }

    /// Whether a FROM item of the current level has a column `name` (`Maybe`: one whose
    /// columns are not known).
    fn local_column(&self, name: &str) -> Local {
        let Some(level) = self.levels.last() else {
            return Local::No;
        };
        let mut found = Local::No;
        for s in level.visible() {
            let src = &level.sources[s];
            if !src.unqualified {
                continue;
            }
            let system =
                matches!(src.target, Target::Rel(_)) && crate::catalog::is_system_column(name);
            match &src.cols {
                None => found = Local::Maybe,
                Some(_) if src.column(name).is_some() || system => return Local::Yes,
                Some(_) => {}
            }
        }
        found
    }

    fn window(&mut self, w: &pb::WindowDef) {
        self.exprs(&w.partition_clause);
        for o in &w.order_clause {
            match &o.node {
                Some(N::SortBy(s)) => self.expr_opt(&s.node),
                _ => self.expr(o),
            }
        }
        self.expr_opt(&w.start_offset);
        self.expr_opt(&w.end_offset);
    }

    // --- DML -----------------------------------------------------------------------------

    /// The target of INSERT/UPDATE/DELETE/MERGE (always a relation, never a CTE), as a source
    /// of the current level.
    fn dml_target(&mut self, rv: &pb::RangeVar) -> usize {
        let r = self.relation(rv);
        self.rels[r].write = true;
        let source = self.relation_source(r, rv);
        self.add_source(source);
        r
    }

    /// SET targets of UPDATE, ON CONFLICT DO UPDATE and MERGE … UPDATE.
    fn set_list(&mut self, r: usize, list: &[Node]) {
        for t in list {
            let Some(N::ResTarget(rt)) = &t.node else {
                self.expr(t);
                continue;
            };
            self.write_col(r, &rt.name);
            self.rels[r].updated.add(&rt.name);
            // `SET a[i] = …`, `SET c.f = …`: subscripts are expressions.
            for ind in &rt.indirection {
                self.expr(ind);
            }
            match rt.val.as_deref().and_then(|v| v.node.as_ref()) {
                // `SET (a, b) = (SELECT …)` repeats the source in each target.
                Some(N::MultiAssignRef(m)) if m.colno == 1 => self.expr_opt(&m.source),
                Some(N::MultiAssignRef(_)) => {}
                Some(v) => self.expr_enum(v),
                None => {}
            }
        }
    }

    fn returning(&mut self, list: &[Node]) -> Option<Vec<String>> {
        self.targets(list)
    }

    fn insert(&mut self, s: &pb::InsertStmt) -> QueryOut {
        let cte_mark = self.ctes.len();
        self.with_clause(&s.with_clause);
        let Some(rv) = &s.relation else {
            self.ctes.truncate(cte_mark);
            return QueryOut::none();
        };
        // The source does not see the target.
        if let Some(src) = node(&s.select_stmt) {
            match src {
                N::SelectStmt(sel) => {
                    self.select(sel);
                }
                other => self.statement(other),
            }
        }
        self.push_level();
        let r = self.dml_target(rv);
        self.rels[r].ops.insert = true;
        if s.cols.is_empty() {
            self.rels[r].writes.set_all();
        }
        for c in &s.cols {
            if let Some(N::ResTarget(rt)) = &c.node {
                self.write_col(r, &rt.name);
                for ind in &rt.indirection {
                    self.expr(ind);
                }
            }
        }
        if let Some(oc) = &s.on_conflict_clause {
            if let Some(infer) = &oc.infer {
                for e in &infer.index_elems {
                    match &e.node {
                        Some(N::IndexElem(ie)) => {
                            if ie.name.is_empty() {
                                self.expr_opt(&ie.expr);
                            } else {
                                self.check_column(r, &ie.name);
                                self.read_col(r, &ie.name);
                            }
                        }
                        _ => self.expr(e),
                    }
                }
                self.expr_opt(&infer.where_clause);
                if !infer.conname.is_empty() {
                    self.arbiter_constraint(r, &infer.conname);
                }
            }
            if pb::OnConflictAction::try_from(oc.action)
                == Ok(pb::OnConflictAction::OnconflictUpdate)
            {
                self.rels[r].ops.update = true;
            }
            // EXCLUDED: the row proposed for insertion, not stored data.
            let mut excluded = self.relation_source(r, rv);
            excluded.refname = Some("excluded".to_owned());
            excluded.schema = None;
            excluded.target = Target::Opaque;
            self.add_source(excluded);
            self.set_list(r, &oc.target_list);
            self.expr_opt(&oc.where_clause);
            // RETURNING does not see EXCLUDED.
            self.level().sources.pop();
        }
        let cols = self.returning(&s.returning_list);
        self.pop_level();
        self.ctes.truncate(cte_mark);
        QueryOut {
            cols,
            rels: Vec::new(),
        }
    }

    fn update(&mut self, s: &pb::UpdateStmt) -> QueryOut {
        let cte_mark = self.ctes.len();
        self.with_clause(&s.with_clause);
        let Some(rv) = &s.relation else {
            self.ctes.truncate(cte_mark);
            return QueryOut::none();
        };
        self.push_level();
        let r = self.dml_target(rv);
        self.rels[r].ops.update = true;
        for item in &s.from_clause {
            self.table_ref(item);
        }
        self.set_list(r, &s.target_list);
        self.expr_opt(&s.where_clause);
        let cols = self.returning(&s.returning_list);
        self.pop_level();
        self.ctes.truncate(cte_mark);
        QueryOut {
            cols,
            rels: Vec::new(),
        }
    }

    fn delete(&mut self, s: &pb::DeleteStmt) -> QueryOut {
        let cte_mark = self.ctes.len();
        self.with_clause(&s.with_clause);
        let Some(rv) = &s.relation else {
            self.ctes.truncate(cte_mark);
            return QueryOut::none();
        };
        self.push_level();
        let r = self.dml_target(rv);
        self.rels[r].ops.delete = true;
        for item in &s.using_clause {
            self.table_ref(item);
        }
        self.expr_opt(&s.where_clause);
        let cols = self.returning(&s.returning_list);
        self.pop_level();
        self.ctes.truncate(cte_mark);
        QueryOut {
            cols,
            rels: Vec::new(),
        }
    }

    fn merge(&mut self, s: &pb::MergeStmt) -> QueryOut {
        let cte_mark = self.ctes.len();
        self.with_clause(&s.with_clause);
        let Some(rv) = &s.relation else {
            self.ctes.truncate(cte_mark);
            return QueryOut::none();
        };
        self.push_level();
        let r = self.dml_target(rv);
        if let Some(src) = s.source_relation.as_deref() {
            self.table_ref(src);
        }
        self.expr_opt(&s.join_condition);
        for wc in &s.merge_when_clauses {
            let Some(N::MergeWhenClause(wc)) = &wc.node else {
                continue;
            };
            self.expr_opt(&wc.condition);
            match pb::CmdType::try_from(wc.command_type).unwrap_or(pb::CmdType::Undefined) {
                pb::CmdType::CmdUpdate => {
                    self.rels[r].ops.update = true;
                    self.set_list(r, &wc.target_list)
                }
                pb::CmdType::CmdDelete => self.rels[r].ops.delete = true,
                pb::CmdType::CmdInsert => {
                    self.rels[r].ops.insert = true;
                    if wc.target_list.is_empty() {
                        self.rels[r].writes.set_all();
                    }
                    for t in &wc.target_list {
                        if let Some(N::ResTarget(rt)) = &t.node {
                            self.write_col(r, &rt.name);
                        }
                    }
                    self.exprs(&wc.values);
                }
                _ => {}
            }
        }
        let cols = self.returning(&s.returning_list);
        self.pop_level();
        self.ctes.truncate(cte_mark);
        QueryOut {
            cols,
            rels: Vec::new(),
        }
    }

    fn copy(&mut self, c: &pb::CopyStmt) {
        if c.is_program {
            self.hazard(HazardKind::RunsServerProgram);
        } else if !c.filename.is_empty() {
            self.hazard(HazardKind::AccessesServerFile);
        }
        if let Some(rv) = &c.relation {
            let r = self.relation(rv);
            let cols = strings(&c.attlist);
            for col in &cols {
                self.check_column(r, col);
            }
            let acc = if c.is_from {
                self.rels[r].write = true;
                self.rels[r].ops.insert = true;
                &mut self.rels[r].writes
            } else {
                self.rels[r].read = true;
                &mut self.rels[r].reads
            };
            if cols.is_empty() {
                acc.set_all();
            }
            for col in &cols {
                acc.add(col);
            }
            if c.where_clause.is_some() {
                self.push_level();
                let source = self.relation_source(r, rv);
                self.add_source(source);
                self.expr_opt(&c.where_clause);
                self.pop_level();
            }
        }
        if c.query.is_some() {
            self.query(&c.query);
        }
    }

    /// `ON CONFLICT ON CONSTRAINT name`: the constraint's columns are read to find the
    /// conflicting row, as `ON CONFLICT (columns)` reads them.
    fn arbiter_constraint(&mut self, r: usize, name: &str) {
        let Some(info) = self.rels[r].info.clone() else {
            return; // the relation is unresolved already
        };
        let Some(constraints) = &info.constraints else {
            // Unknown constraints: any column may be the arbiter's.
            for c in &info.columns {
                self.read_col(r, &c.name);
            }
            return;
        };
        let found = constraints.iter().find(|c| {
            c.name == name
                && c.owner.is_none()
                && matches!(c.kind, ConstraintKind::Unique | ConstraintKind::Exclusion)
        });
        match found {
            Some(c) => {
                for col in &c.columns {
                    self.read_col(r, col);
                }
            }
            None => {
                self.unresolved
                    .insert(Unresolved::Constraint(display_parts(&[&info.name, name])));
            }
        }
    }

    /// The stored columns the statement's writes are compared with (see
    /// [`StatementAccess::compared`]): for each relation written, the constraints of it and of
    /// its partitions and children that the write triggers. A constraint compares when the
    /// write sets one of its columns (all of them, for an INSERT without column list): unique
    /// indexes, exclusion and check constraints compare all their columns; a foreign key
    /// compares the referenced columns; a foreign key referencing the relation compares its
    /// columns and the referencing ones when a row is deleted or those columns are updated; a
    /// check constraint not validated may fail on any update. Without the relation's
    /// constraints in the catalog, every column of it counts.
    fn comparisons(&mut self) -> Vec<Comparison> {
        let mut out: BTreeSet<Comparison> = BTreeSet::new();
        let mut wanted: Vec<(QualifiedName, Vec<String>, Option<String>)> = Vec::new();
        for rel in &self.rels {
            let ops = rel.ops;
            if !(ops.insert || ops.update || ops.delete) {
                continue;
            }
            let Some(info) = &rel.info else { continue };
            let this = QualifiedName::new(Some(&info.schema), &info.name);
            let Some(constraints) = &info.constraints else {
                let all = info.columns.iter().map(|c| c.name.clone()).collect();
                wanted.push((this, all, None));
                continue;
            };
            let sets_any = |cols: &[String]| {
                (ops.insert || ops.update)
                    && (rel.writes.all || cols.iter().any(|c| rel.writes.names.contains(c)))
            };
            for c in constraints {
                let owner = c.owner.clone().unwrap_or_else(|| this.clone());
                let name = Some(c.name.clone());
                let mut own = false;
                match &c.kind {
                    ConstraintKind::Unique
                    | ConstraintKind::UniqueIndex
                    | ConstraintKind::Exclusion => own = sets_any(&c.columns),
                    ConstraintKind::Check { validated } => {
                        own = sets_any(&c.columns) || (!validated && ops.update)
                    }
                    ConstraintKind::ForeignKey {
                        references,
                        references_columns,
                    } => {
                        if sets_any(&c.columns) {
                            wanted.push((
                                references.clone(),
                                references_columns.clone(),
                                name.clone(),
                            ));
                        }
                    }
                    ConstraintKind::ReferencedBy {
                        referencing,
                        referencing_columns,
                    } => {
                        let updated = c.columns.iter().any(|col| rel.updated.names.contains(col));
                        if ops.delete || updated {
                            own = true;
                            wanted.push((
                                referencing.clone(),
                                referencing_columns.clone(),
                                name.clone(),
                            ));
                        }
                    }
                }
                if own {
                    if owner != this {
                        // A partition's or child's constraint compares its rows, which the
                        // written relation also shows under its own name.
                        let mine = c
                            .columns
                            .iter()
                            .filter(|col| info.column(col).is_some())
                            .cloned()
                            .collect();
                        wanted.push((this.clone(), mine, name.clone()));
                    }
                    wanted.push((owner, c.columns.clone(), name));
                }
            }
        }
        for (relation, columns, constraint) in wanted {
            let info = self
                .catalog
                .relation(relation.schema.as_deref(), &relation.name);
            if info.is_none() {
                // The catalog names a relation it does not have: refuse rather than guess.
                self.unresolved
                    .insert(Unresolved::Relation(relation.to_string()));
            }
            for column in columns {
                out.insert(Comparison {
                    relation: relation.clone(),
                    oid: info.as_ref().map(|i| i.oid),
                    column,
                    constraint: constraint.clone(),
                });
            }
        }
        out.into_iter().collect()
    }

    // --- expressions ---------------------------------------------------------------------

    fn expr_opt(&mut self, n: &Option<Box<Node>>) {
        if let Some(e) = node(n) {
            self.expr_enum(e);
        }
    }

    fn expr(&mut self, n: &Node) {
        if let Some(e) = &n.node {
            self.expr_enum(e);
        }
    }

    /// An expression: whatever it reads is derived, and a subquery in it sends nothing to the
    /// client directly.
    fn expr_enum(&mut self, e: &N) {
        let attributable = std::mem::replace(&mut self.attributable, false);
        let bare = std::mem::replace(&mut self.bare, Bare::No);
        self.expr_enum_inner(e);
        self.attributable = attributable;
        self.bare = bare;
    }

    fn exprs(&mut self, ns: &[Node]) {
        for n in ns {
            self.expr(n);
        }
    }

    fn json_value(&mut self, v: &pb::JsonValueExpr) {
        self.expr_opt(&v.raw_expr);
        self.expr_opt(&v.formatted_expr);
    }

    fn json_value_opt(&mut self, v: &Option<Box<pb::JsonValueExpr>>) {
        if let Some(v) = v {
            self.json_value(v);
        }
    }

    fn json_agg(&mut self, c: &Option<Box<pb::JsonAggConstructor>>) {
        if let Some(c) = c {
            self.expr_opt(&c.agg_filter);
            self.sort_items(&c.agg_order);
            if let Some(w) = &c.over {
                self.window(w);
            }
        }
    }

    /// ORDER BY inside an aggregate: expressions over the input.
    fn sort_items(&mut self, items: &[Node]) {
        for o in items {
            match &o.node {
                Some(N::SortBy(s)) => self.expr_opt(&s.node),
                _ => self.expr(o),
            }
        }
    }

    fn func_call(&mut self, f: &pb::FuncCall) {
        self.function(func_name(&f.funcname));
        self.exprs(&f.args);
        self.sort_items(&f.agg_order);
        self.expr_opt(&f.agg_filter);
        if let Some(w) = &f.over {
            self.window(w);
        }
    }

    fn expr_enum_inner(&mut self, e: &N) {
        match e {
            N::ColumnRef(c) => self.column_ref(&c.fields),
            N::ParamRef(_)
            | N::AConst(_)
            | N::Integer(_)
            | N::Float(_)
            | N::Boolean(_)
            | N::String(_)
            | N::BitString(_)
            | N::SetToDefault(_)
            | N::SqlvalueFunction(_)
            | N::CurrentOfExpr(_)
            | N::MergeSupportFunc(_)
            | N::AStar(_)
            | N::TypeName(_) => {}
            N::AExpr(a) => {
                self.expr_opt(&a.lexpr);
                self.expr_opt(&a.rexpr);
            }
            N::BoolExpr(b) => self.exprs(&b.args),
            N::FuncCall(f) => self.func_call(f),
            N::AIndirection(i) => self.indirection(i),
            N::AIndices(i) => {
                self.expr_opt(&i.lidx);
                self.expr_opt(&i.uidx);
            }
            N::AArrayExpr(a) => self.exprs(&a.elements),
            N::TypeCast(t) => self.expr_opt(&t.arg),
            N::CollateClause(c) => self.expr_opt(&c.arg),
            N::SubLink(s) => {
                self.expr_opt(&s.testexpr);
                self.query(&s.subselect);
            }
            N::CaseExpr(c) => {
                self.expr_opt(&c.arg);
                self.exprs(&c.args);
                self.expr_opt(&c.defresult);
            }
            N::CaseWhen(w) => {
                self.expr_opt(&w.expr);
                self.expr_opt(&w.result);
            }
            N::RowExpr(r) => self.exprs(&r.args),
            N::CoalesceExpr(c) => self.exprs(&c.args),
            N::MinMaxExpr(m) => self.exprs(&m.args),
            N::NullTest(t) => self.expr_opt(&t.arg),
            N::BooleanTest(t) => self.expr_opt(&t.arg),
            N::XmlExpr(x) => {
                self.exprs(&x.named_args);
                self.exprs(&x.args);
            }
            N::XmlSerialize(x) => self.expr_opt(&x.expr),
            N::GroupingFunc(g) => self.exprs(&g.args),
            N::NamedArgExpr(a) => self.expr_opt(&a.arg),
            N::List(l) => self.exprs(&l.items),
            N::ResTarget(r) => {
                self.exprs(&r.indirection);
                self.expr_opt(&r.val);
            }
            N::SortBy(s) => self.expr_opt(&s.node),
            N::GroupingSet(g) => self.exprs(&g.content),
            N::WindowDef(w) => self.window(w),
            N::SelectStmt(s) => {
                self.select(s);
            }
            N::JsonValueExpr(v) => self.json_value(v),
            N::JsonObjectConstructor(c) => self.exprs(&c.exprs),
            N::JsonArrayConstructor(c) => self.exprs(&c.exprs),
            N::JsonArrayQueryConstructor(c) => {
                self.query(&c.query);
            }
            N::JsonObjectAgg(a) => {
                self.json_agg(&a.constructor);
                if let Some(kv) = &a.arg {
                    self.expr_opt(&kv.key);
                    self.json_value_opt(&kv.value);
                }
            }
            N::JsonArrayAgg(a) => {
                self.json_agg(&a.constructor);
                self.json_value_opt(&a.arg);
            }
            N::JsonKeyValue(kv) => {
                self.expr_opt(&kv.key);
                self.json_value_opt(&kv.value);
            }
            N::JsonIsPredicate(p) => self.expr_opt(&p.expr),
            N::JsonParseExpr(p) => self.json_value_opt(&p.expr),
            N::JsonScalarExpr(p) => self.expr_opt(&p.expr),
            N::JsonSerializeExpr(p) => self.json_value_opt(&p.expr),
            N::JsonFuncExpr(f) => {
                self.json_value_opt(&f.context_item);
                self.expr_opt(&f.pathspec);
                self.exprs(&f.passing);
                for b in [&f.on_empty, &f.on_error].into_iter().flatten() {
                    self.expr_opt(&b.expr);
                }
            }
            N::JsonArgument(a) => self.json_value_opt(&a.val),
            N::JsonBehavior(b) => self.expr_opt(&b.expr),
            other => self.unsupported(other),
        }
    }

    /// `(x).f`, `(x)[i]`, `(f(x)).*`…
    fn indirection(&mut self, i: &pb::AIndirection) {
        // `(p).ssn` where `p` is a FROM item (not a column): the column `ssn` of `p`.
        if let (Some(N::ColumnRef(c)), Some(first)) = (node(&i.arg), i.indirection.first()) {
            if let ([x], Some(field)) = (c.fields.as_slice(), string(first)) {
                if let Some(x) = string(x) {
                    if self.unqualified_matches(x).is_empty() {
                        let found = self.find_source(None, x);
                        if !found.is_empty() {
                            for (l, s) in found {
                                self.qualified_column(l, s, field);
                            }
                            self.exprs(&i.indirection[1..]);
                            return;
                        }
                    }
                }
            }
        }
        self.expr_opt(&i.arg);
        self.exprs(&i.indirection);
    }

    // --- column references ---------------------------------------------------------------

    fn column_ref(&mut self, fields: &[Node]) {
        enum Part<'n> {
            Name(&'n str),
            Star,
        }
        let parts: Vec<Part> = fields
            .iter()
            .map(|f| match &f.node {
                Some(N::String(s)) => Part::Name(&s.sval),
                _ => Part::Star,
            })
            .collect();
        let written = || {
            let v: Vec<&str> = parts
                .iter()
                .map(|p| match p {
                    Part::Name(n) => *n,
                    Part::Star => "*",
                })
                .collect();
            v.join(".")
        };
        match parts.as_slice() {
            [Part::Star] => {
                let li = self.levels.len().saturating_sub(1);
                if let Some(level) = self.levels.last() {
                    let sources: Vec<usize> = level
                        .visible()
                        .filter(|&s| level.sources[s].unqualified)
                        .collect();
                    for s in sources {
                        self.whole_row(li, s);
                    }
                }
            }
            [Part::Name(c)] => self.unqualified(c),
            [.., Part::Name(schema), Part::Name(rel), last] => {
                let found = self.find_source(Some(schema), rel);
                self.qualified(found, last_name(last), &written());
            }
            [Part::Name(rel), last] => {
                let found = self.find_source(None, rel);
                self.qualified(found, last_name(last), &written());
            }
            _ => {
                self.unresolved.insert(Unresolved::Column(written()));
            }
        }

        fn last_name<'n>(p: &Part<'n>) -> Option<&'n str> {
            match p {
                Part::Name(n) => Some(n),
                Part::Star => None,
            }
        }
    }

    /// `rel.col` (or `rel.*` when `col` is `None`) against the sources found for `rel`.
    fn qualified(&mut self, found: Vec<(usize, usize)>, col: Option<&str>, written: &str) {
        if found.is_empty() {
            self.unresolved
                .insert(Unresolved::Column(written.to_owned()));
            return;
        }
        for (l, s) in found {
            match col {
                Some(col) => self.qualified_column(l, s, col),
                None => self.whole_row(l, s),
            }
        }
    }

    /// Column `col` of source `s` at level `l`: the column if it has one; else PostgreSQL
    /// reads `s.col` as the function call `col(s)` on the whole row.
    fn qualified_column(&mut self, l: usize, s: usize, col: &str) {
        let src = &self.levels[l].sources[s];
        let known = src.cols.is_some();
        let has = src.column(col).is_some();
        let is_rel = matches!(src.target, Target::Rel(_));
        let system = is_rel && crate::catalog::is_system_column(col);
        if has || !known || system {
            self.column_of(l, s, col);
        } else {
            self.whole_row(l, s);
            self.function(QualifiedName::new(None, col));
        }
    }

    /// The sources a qualified reference's relation part names, innermost level first (only
    /// the innermost level that has one).
    fn find_source(&self, schema: Option<&str>, rel: &str) -> Vec<(usize, usize)> {
        for (l, level) in self.levels.iter().enumerate().rev() {
            let found: Vec<(usize, usize)> = level
                .sources
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.refname.as_deref() == Some(rel)
                        && (schema.is_none() || s.schema.as_deref() == schema)
                })
                .map(|(i, _)| (l, i))
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// The sources an unqualified column name resolves to: those visible at the innermost
    /// level where any has the column; plus, at levels before it, sources of unknown columns
    /// (which may have it too).
    fn unqualified_matches(&self, name: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (l, level) in self.levels.iter().enumerate().rev() {
            let mut unknown = Vec::new();
            let mut known = Vec::new();
            for s in level.visible() {
                let src = &level.sources[s];
                if !src.unqualified {
                    continue;
                }
                let system =
                    matches!(src.target, Target::Rel(_)) && crate::catalog::is_system_column(name);
                match &src.cols {
                    None => unknown.push((l, s)),
                    Some(_) if src.column(name).is_some() || system => known.push((l, s)),
                    Some(_) => {}
                }
            }
            out.extend(unknown);
            if !known.is_empty() {
                out.extend(known);
                return out;
            }
        }
        out
    }

    fn unqualified(&mut self, name: &str) {
        let matches = self.unqualified_matches(name);
        if !matches.is_empty() {
            for (l, s) in matches {
                self.column_of(l, s, name);
            }
            return;
        }
        // No column of that name: a FROM item of that name is a whole-row reference.
        let found = self.find_source(None, name);
        if !found.is_empty() {
            for (l, s) in found {
                self.whole_row(l, s);
            }
            return;
        }
        self.unresolved
            .insert(Unresolved::Column(display_parts(&[name])));
    }

    /// Records a read of column `name` (as visible) of source `s` at level `l`.
    fn column_of(&mut self, l: usize, s: usize, name: &str) {
        let src = &self.levels[l].sources[s];
        match src.target.clone() {
            Target::Rel(r) => {
                let real = src.column(name).unwrap_or(name).to_owned();
                self.read_col(r, &real);
            }
            Target::Join(from, to) => {
                let inputs: Vec<usize> = (from..to)
                    .filter(|&i| {
                        let c = &self.levels[l].sources[i];
                        c.unqualified && (c.cols.is_none() || c.column(name).is_some())
                    })
                    .collect();
                for i in inputs {
                    self.column_of(l, i, name);
                }
            }
            Target::Derived(_) | Target::Opaque => self.derived_any |= self.bare == Bare::No,
        }
    }

    /// Records a whole-row read of source `s` at level `l`.
    fn whole_row(&mut self, l: usize, s: usize) {
        match self.levels[l].sources[s].target.clone() {
            Target::Rel(r) => self.read_all(r),
            Target::Join(from, to) => {
                for i in from..to {
                    if self.levels[l].sources[i].unqualified {
                        self.whole_row(l, i);
                    }
                }
            }
            Target::Derived(_) | Target::Opaque => {
                self.derived_any |= self.bare != Bare::Star;
            }
        }
    }
}

/// What kind of bare output is being walked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bare {
    No,
    /// `col`, `t.col`.
    Column,
    /// `*`, `t.*`.
    Star,
}

/// Output names with an alias's column names over the first ones.
fn renamed(cols: Option<Vec<String>>, alias: Option<&pb::Alias>) -> Option<Vec<(String, String)>> {
    let renames = alias.map(|a| strings(&a.colnames)).unwrap_or_default();
    let cols = cols?;
    Some(
        cols.into_iter()
            .enumerate()
            .map(|(i, c)| {
                let visible = renames.get(i).cloned().unwrap_or_else(|| c.clone());
                (visible, c)
            })
            .collect(),
    )
}

/// Whether a name is a column of the current level's FROM items.
enum Local {
    Yes,
    No,
    Maybe,
}

/// Outputs that are expressions (a set operation's or VALUES' columns), by name.
fn expr_outputs(names: &[String]) -> Vec<Output> {
    names
        .iter()
        .map(|n| Output {
            name: Some(n.clone()),
            origin: Origin::Expr,
        })
        .collect()
}

/// The name of a bare, unqualified column reference (`ssn`, not `p.ssn`).
fn bare_name(n: &Node) -> Option<&str> {
    match &n.node {
        Some(N::ColumnRef(c)) => match c.fields.as_slice() {
            [f] => string(f),
            _ => None,
        },
        _ => None,
    }
}

/// The position an integer constant names in ORDER BY, DISTINCT ON or GROUP BY (`ORDER BY 2`,
/// `(2)`; the grammar folds `-2` into a constant, which PostgreSQL refuses).
fn position(n: &Node) -> Option<i64> {
    match &n.node {
        Some(N::AConst(c)) => match &c.val {
            Some(pb::a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
            _ => None,
        },
        _ => None,
    }
}

fn json_table_names(columns: &[Node], out: &mut Vec<String>) {
    for c in columns {
        if let Some(N::JsonTableColumn(c)) = &c.node {
            if !c.name.is_empty() {
                out.push(c.name.clone());
            }
            json_table_names(&c.columns, out);
        }
    }
}

/// The `SET` clauses among a function definition's options.
fn set_options(options: &[Node]) -> Vec<&pb::VariableSetStmt> {
    options
        .iter()
        .filter_map(|o| match &o.node {
            Some(N::DefElem(d)) if d.defname == "set" => match d.arg.as_deref()?.node.as_ref()? {
                N::VariableSetStmt(v) => Some(v),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The hazard of `SET`/`RESET` of a setting (its name lowercased).
fn setting_hazard(name: &str) -> Option<HazardKind> {
    match name {
        "role" => Some(HazardKind::AssumesRole),
        "session_authorization" => Some(HazardKind::ChangesSessionUser),
        "search_path" => Some(HazardKind::RedirectsNames),
        n if super::settings::protected_setting(n) => {
            Some(HazardKind::ChangesProtectedSetting { name: n.to_owned() })
        }
        _ => None,
    }
}

/// The name PostgreSQL gives an output column without alias (`FigureColname`, parse_target.c).
fn figure_colname(n: &Node) -> String {
    figure(n).1.unwrap_or_else(|| "?column?".to_owned())
}

/// `FigureColnameInternal`: the strength of the name found (0 none, 1 a type's, 2 strong) and
/// the name.
fn figure(n: &Node) -> (u8, Option<String>) {
    let strong = |s: &str| (2, Some(s.to_owned()));
    let Some(e) = &n.node else {
        return (0, None);
    };
    match e {
        N::ColumnRef(c) => match c.fields.iter().rev().find_map(string) {
            Some(s) => strong(s),
            None => (0, None),
        },
        N::AIndirection(i) => match i.indirection.iter().rev().find_map(string) {
            Some(s) => strong(s),
            None => i.arg.as_deref().map_or((0, None), figure),
        },
        N::FuncCall(f) => match f.funcname.last().and_then(string) {
            Some(s) => strong(s),
            None => (0, None),
        },
        N::AExpr(a) if a.kind == pb::AExprKind::AexprNullif as i32 => strong("nullif"),
        N::TypeCast(t) => {
            let inner = t.arg.as_deref().map_or((0, None), figure);
            if inner.0 <= 1 {
                if let Some(s) = t
                    .type_name
                    .as_ref()
                    .and_then(|t| t.names.last())
                    .and_then(string)
                {
                    return (1, Some(s.to_owned()));
                }
            }
            inner
        }
        N::CollateClause(c) => c.arg.as_deref().map_or((0, None), figure),
        N::GroupingFunc(_) => strong("grouping"),
        N::MergeSupportFunc(_) => strong("merge_action"),
        N::SubLink(s) => match pb::SubLinkType::try_from(s.sub_link_type) {
            Ok(pb::SubLinkType::ExistsSublink) => strong("exists"),
            Ok(pb::SubLinkType::ArraySublink) => strong("array"),
            Ok(pb::SubLinkType::ExprSublink | pb::SubLinkType::MultiexprSublink) => {
                match first_target(s.subselect.as_deref()) {
                    Some(rt) if !rt.name.is_empty() => strong(&rt.name),
                    Some(rt) => (
                        2,
                        Some(
                            rt.val
                                .as_deref()
                                .map_or_else(|| "?column?".to_owned(), figure_colname),
                        ),
                    ),
                    None => (0, None),
                }
            }
            _ => (0, None),
        },
        N::CaseExpr(c) => {
            let inner = c.defresult.as_deref().map_or((0, None), figure);
            if inner.0 <= 1 {
                return (1, Some("case".to_owned()));
            }
            inner
        }
        N::AArrayExpr(_) => strong("array"),
        N::RowExpr(_) => strong("row"),
        N::CoalesceExpr(_) => strong("coalesce"),
        N::MinMaxExpr(m) => match pb::MinMaxOp::try_from(m.op) {
            Ok(pb::MinMaxOp::IsGreatest) => strong("greatest"),
            Ok(pb::MinMaxOp::IsLeast) => strong("least"),
            _ => (0, None),
        },
        N::SqlvalueFunction(f) => {
            use pb::SqlValueFunctionOp as O;
            let s = match O::try_from(f.op) {
                Ok(O::SvfopCurrentDate) => "current_date",
                Ok(O::SvfopCurrentTime | O::SvfopCurrentTimeN) => "current_time",
                Ok(O::SvfopCurrentTimestamp | O::SvfopCurrentTimestampN) => "current_timestamp",
                Ok(O::SvfopLocaltime | O::SvfopLocaltimeN) => "localtime",
                Ok(O::SvfopLocaltimestamp | O::SvfopLocaltimestampN) => "localtimestamp",
                Ok(O::SvfopCurrentRole) => "current_role",
                Ok(O::SvfopCurrentUser) => "current_user",
                Ok(O::SvfopUser) => "user",
                Ok(O::SvfopSessionUser) => "session_user",
                Ok(O::SvfopCurrentCatalog) => "current_catalog",
                Ok(O::SvfopCurrentSchema) => "current_schema",
                _ => return (0, None),
            };
            strong(s)
        }
        N::XmlExpr(x) => {
            use pb::XmlExprOp as O;
            let s = match O::try_from(x.op) {
                Ok(O::IsXmlconcat) => "xmlconcat",
                Ok(O::IsXmlelement) => "xmlelement",
                Ok(O::IsXmlforest) => "xmlforest",
                Ok(O::IsXmlparse) => "xmlparse",
                Ok(O::IsXmlpi) => "xmlpi",
                Ok(O::IsXmlroot) => "xmlroot",
                Ok(O::IsXmlserialize) => "xmlserialize",
                _ => return (0, None),
            };
            strong(s)
        }
        N::XmlSerialize(_) => strong("xmlserialize"),
        N::JsonParseExpr(_) => strong("json"),
        N::JsonScalarExpr(_) => strong("json_scalar"),
        N::JsonSerializeExpr(_) => strong("json_serialize"),
        N::JsonObjectConstructor(_) => strong("json_object"),
        N::JsonArrayConstructor(_) | N::JsonArrayQueryConstructor(_) => strong("json_array"),
        N::JsonObjectAgg(_) => strong("json_objectagg"),
        N::JsonArrayAgg(_) => strong("json_arrayagg"),
        N::JsonFuncExpr(f) => match pb::JsonExprOp::try_from(f.op) {
            Ok(pb::JsonExprOp::JsonExistsOp) => strong("json_exists"),
            Ok(pb::JsonExprOp::JsonQueryOp) => strong("json_query"),
            Ok(pb::JsonExprOp::JsonValueOp) => strong("json_value"),
            _ => (0, None),
        },
        _ => (0, None),
    }
}

/// The first select-list entry of a (leftmost) SELECT.
fn first_target(n: Option<&Node>) -> Option<&pb::ResTarget> {
    let mut s = match n?.node.as_ref()? {
        N::SelectStmt(s) => s.as_ref(),
        _ => return None,
    };
    while let Some(l) = s.larg.as_deref() {
        s = l;
    }
    match s.target_list.first()?.node.as_ref()? {
        N::ResTarget(rt) => Some(rt),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_target_name(sql: &str) -> String {
        let parsed = pg_query::parse(sql).unwrap();
        let stmt = parsed.protobuf.stmts[0].stmt.as_ref().unwrap();
        let Some(N::SelectStmt(s)) = &stmt.node else {
            panic!("{sql}")
        };
        let Some(N::ResTarget(rt)) = &s.target_list[0].node else {
            panic!("{sql}")
        };
        figure_colname(rt.val.as_deref().unwrap())
    }

    /// Output names as PostgreSQL gives them (checked with `SELECT … ` in psql).
    #[test]
    fn figure_colname_follows_postgresql() {
        for (sql, name) in [
            ("SELECT p.ssn FROM patients p", "ssn"),
            ("SELECT lower(email)", "lower"),
            ("SELECT ssn::int", "ssn"),
            ("SELECT 1::int", "int4"),
            ("SELECT '1'::text", "text"),
            ("SELECT (p).zip", "zip"),
            ("SELECT codes[1]", "codes"),
            ("SELECT CASE WHEN x THEN y ELSE last_name END", "last_name"),
            ("SELECT CASE WHEN x THEN y END", "case"),
            ("SELECT CASE WHEN x THEN y ELSE 'z'::varchar END", "case"),
            ("SELECT EXISTS (SELECT 1)", "exists"),
            ("SELECT ARRAY(SELECT 1)", "array"),
            ("SELECT (SELECT ssn FROM patients)", "ssn"),
            ("SELECT (SELECT 1 AS n)", "n"),
            ("SELECT (SELECT 1)", "?column?"),
            ("SELECT ARRAY[1]", "array"),
            ("SELECT ROW(1, 2)", "row"),
            ("SELECT coalesce(a, b)", "coalesce"),
            ("SELECT greatest(a, b)", "greatest"),
            ("SELECT nullif(a, b)", "nullif"),
            ("SELECT current_date", "current_date"),
            ("SELECT current_user", "current_user"),
            ("SELECT a + b", "?column?"),
            ("SELECT 1", "?column?"),
            ("SELECT x COLLATE \"C\"", "x"),
            ("SELECT xmlelement(name a)", "xmlelement"),
            ("SELECT JSON_OBJECT('a': 1)", "json_object"),
            ("SELECT count(*) FILTER (WHERE true)", "count"),
        ] {
            assert_eq!(first_target_name(sql), name, "{sql}");
        }
    }
}
