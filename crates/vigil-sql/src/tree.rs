//! What a parse tree says: each statement's command tag and class, and the relations it names.
//!
//! Command tags follow PostgreSQL's `CreateCommandTag` (src/backend/tcop/utility.c). Classes are
//! Vigil's, for least-privilege policy; where PostgreSQL's `GetCommandLogLevel` looks through a
//! statement (EXPLAIN ANALYZE, PREPARE), so do they. They must depend only on what the normalized
//! text keeps (keywords, identifiers, structure), never on a literal's value, because one analysis
//! serves every text of the same shape: that is why any `ANALYZE` option, whatever its value,
//! makes an EXPLAIN count as running its statement.

use pg_query::protobuf::{self, ObjectType};
use pg_query::NodeEnum;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
pub(crate) use vigil_access::name::push_name_part;
use vigil_access::CommandClass;

const READ: CommandClass = CommandClass::Read;
const WRITE: CommandClass = CommandClass::Write;
const DDL: CommandClass = CommandClass::Ddl;
const COPY_IN: CommandClass = CommandClass::CopyIn;
const COPY_OUT: CommandClass = CommandClass::CopyOut;
const TRANSACTION: CommandClass = CommandClass::Transaction;
const SESSION: CommandClass = CommandClass::Session;
const FUNCTION: CommandClass = CommandClass::Function;
const UTILITY: CommandClass = CommandClass::Utility;
const OTHER: CommandClass = CommandClass::Other;

/// One statement of a parsed text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StatementInfo {
    pub command: String,
    pub class: CommandClass,
}

/// Describes one top-level statement and adds the relations it names to `objects`.
pub(crate) fn describe(
    stmt: &NodeEnum,
    objects: &mut BTreeSet<String>,
) -> Result<StatementInfo, serde_json::Error> {
    // The typed tree is walked generically through its serde form: every node type is covered,
    // including those added by future PostgreSQL versions, without a hand-written visitor.
    let value = serde_json::to_value(stmt)?;
    let mut walk = Walk {
        objects,
        scope: Vec::new(),
        dml: 0,
        locking: false,
        scan: Scan::default(),
    };
    walk.value(&value);
    let (dml, locking) = (walk.dml, walk.locking);
    let command = command_tag(stmt);
    let class = class(stmt, &command, dml > 0 || locking, dml > 0);
    Ok(StatementInfo { command, class })
}

/// Relation names and function calls anywhere in a statement, for the statements that the
/// access analysis does not walk node by node (DDL and utility statements).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Name parts as written (catalog, schema, relation; empty parts left out) and location
    /// (-1 when unknown) of each relation named, CTE references excluded.
    pub relations: Vec<(Vec<String>, i64)>,
    /// Name parts of each function called.
    pub functions: Vec<Vec<String>>,
}

pub(crate) fn scan(stmt: &NodeEnum) -> Result<Scan, serde_json::Error> {
    let value = serde_json::to_value(stmt)?;
    let mut objects = BTreeSet::new();
    let mut walk = Walk {
        objects: &mut objects,
        scope: Vec::new(),
        dml: 0,
        locking: false,
        scan: Scan::default(),
    };
    walk.value(&value);
    Ok(walk.scan)
}

/// The class of a statement. `writes`: the statement modifies rows somewhere inside (a
/// data-modifying CTE, `FOR UPDATE`, which needs UPDATE privilege); `modifies`: the same without
/// row locks.
fn class(stmt: &NodeEnum, tag: &str, writes: bool, modifies: bool) -> CommandClass {
    use NodeEnum as N;
    let inner = |q: &Option<Box<pg_query::Node>>| match q.as_deref().and_then(|n| n.node.as_ref()) {
        Some(n) => class(n, &command_tag(n), writes, modifies),
        None => OTHER,
    };
    match stmt {
        N::SelectStmt(s) if s.into_clause.is_some() => DDL,
        N::SelectStmt(_) if writes => WRITE,
        N::SelectStmt(_) => READ,
        N::InsertStmt(_) | N::UpdateStmt(_) | N::DeleteStmt(_) | N::MergeStmt(_) => WRITE,
        N::TruncateStmt(_) => WRITE,
        N::CopyStmt(c) if c.is_from => COPY_IN,
        // `COPY (DELETE … RETURNING *) TO STDOUT` deletes: it needs what DELETE needs.
        N::CopyStmt(_) if modifies => WRITE,
        N::CopyStmt(_) => COPY_OUT,
        N::ExplainStmt(e) if has_analyze(&e.options) => inner(&e.query),
        N::ExplainStmt(_) => READ,
        N::PrepareStmt(p) => inner(&p.query),
        N::DeclareCursorStmt(d) => inner(&d.query),
        N::FetchStmt(_) => READ,
        // EXECUTE runs whatever the session prepared earlier, which this text does not show.
        N::ExecuteStmt(_) => OTHER,
        N::TransactionStmt(_) | N::ConstraintsSetStmt(_) => TRANSACTION,
        N::VariableSetStmt(_)
        | N::VariableShowStmt(_)
        | N::DiscardStmt(_)
        | N::DeallocateStmt(_)
        | N::ClosePortalStmt(_) => SESSION,
        N::DoStmt(_) | N::CallStmt(_) => FUNCTION,
        N::ListenStmt(_)
        | N::NotifyStmt(_)
        | N::UnlistenStmt(_)
        | N::VacuumStmt(_)
        | N::CheckPointStmt(_)
        | N::ReindexStmt(_)
        | N::LockStmt(_)
        | N::LoadStmt(_) => UTILITY,
        _ if tag == "???" => OTHER,
        _ => DDL,
    }
}

/// Whether EXPLAIN's options include ANALYZE (with any value: see the module doc).
pub(crate) fn has_analyze(options: &[pg_query::Node]) -> bool {
    options.iter().any(|o| {
        matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze"))
    })
}

fn object_type(v: i32) -> ObjectType {
    ObjectType::try_from(v).unwrap_or(ObjectType::Undefined)
}

/// The noun PostgreSQL uses in `CREATE`/`ALTER`/`DROP` command tags for an object type.
fn object_noun(t: ObjectType) -> Option<&'static str> {
    use ObjectType as O;
    Some(match t {
        O::ObjectAccessMethod => "ACCESS METHOD",
        O::ObjectAggregate => "AGGREGATE",
        O::ObjectCast => "CAST",
        O::ObjectCollation => "COLLATION",
        O::ObjectConversion => "CONVERSION",
        O::ObjectDatabase => "DATABASE",
        O::ObjectDomain | O::ObjectDomconstraint => "DOMAIN",
        O::ObjectEventTrigger => "EVENT TRIGGER",
        O::ObjectExtension => "EXTENSION",
        O::ObjectFdw => "FOREIGN DATA WRAPPER",
        O::ObjectForeignServer => "SERVER",
        O::ObjectForeignTable => "FOREIGN TABLE",
        O::ObjectFunction => "FUNCTION",
        O::ObjectIndex => "INDEX",
        O::ObjectLanguage => "LANGUAGE",
        O::ObjectLargeobject => "LARGE OBJECT",
        O::ObjectMatview => "MATERIALIZED VIEW",
        O::ObjectOpclass => "OPERATOR CLASS",
        O::ObjectOperator => "OPERATOR",
        O::ObjectOpfamily => "OPERATOR FAMILY",
        O::ObjectPolicy => "POLICY",
        O::ObjectProcedure => "PROCEDURE",
        O::ObjectPublication => "PUBLICATION",
        O::ObjectRole => "ROLE",
        O::ObjectRoutine => "ROUTINE",
        O::ObjectRule => "RULE",
        O::ObjectSchema => "SCHEMA",
        O::ObjectSequence => "SEQUENCE",
        O::ObjectSubscription => "SUBSCRIPTION",
        O::ObjectStatisticExt => "STATISTICS",
        O::ObjectTable | O::ObjectColumn | O::ObjectTabconstraint => "TABLE",
        O::ObjectTablespace => "TABLESPACE",
        O::ObjectTransform => "TRANSFORM",
        O::ObjectTrigger => "TRIGGER",
        O::ObjectTsconfiguration => "TEXT SEARCH CONFIGURATION",
        O::ObjectTsdictionary => "TEXT SEARCH DICTIONARY",
        O::ObjectTsparser => "TEXT SEARCH PARSER",
        O::ObjectTstemplate => "TEXT SEARCH TEMPLATE",
        O::ObjectType | O::ObjectAttribute => "TYPE",
        O::ObjectView => "VIEW",
        _ => return None,
    })
}

fn verb(verb: &str, t: i32) -> String {
    match object_noun(object_type(t)) {
        Some(noun) => format!("{verb} {noun}"),
        None => "???".to_owned(),
    }
}

/// PostgreSQL's command tag for a raw statement (`CreateCommandTag`); `???` when unknown.
fn command_tag(stmt: &NodeEnum) -> String {
    use protobuf::{DiscardMode, TransactionStmtKind as T, VariableSetKind as V};
    use NodeEnum as N;
    let tag: &str = match stmt {
        N::InsertStmt(_) => "INSERT",
        N::DeleteStmt(_) => "DELETE",
        N::UpdateStmt(_) => "UPDATE",
        N::MergeStmt(_) => "MERGE",
        N::SelectStmt(s) if s.into_clause.is_some() => "SELECT INTO",
        N::SelectStmt(_) | N::PlassignStmt(_) => "SELECT",
        N::TransactionStmt(t) => match T::try_from(t.kind).unwrap_or(T::Undefined) {
            T::TransStmtBegin => "BEGIN",
            T::TransStmtStart => "START TRANSACTION",
            T::TransStmtCommit => "COMMIT",
            T::TransStmtRollback | T::TransStmtRollbackTo => "ROLLBACK",
            T::TransStmtSavepoint => "SAVEPOINT",
            T::TransStmtRelease => "RELEASE",
            T::TransStmtPrepare => "PREPARE TRANSACTION",
            T::TransStmtCommitPrepared => "COMMIT PREPARED",
            T::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
            T::Undefined => "???",
        },
        N::DeclareCursorStmt(_) => "DECLARE CURSOR",
        N::ClosePortalStmt(c) if c.portalname.is_empty() => "CLOSE CURSOR ALL",
        N::ClosePortalStmt(_) => "CLOSE CURSOR",
        N::FetchStmt(f) if f.ismove => "MOVE",
        N::FetchStmt(_) => "FETCH",
        N::CreateDomainStmt(_) => "CREATE DOMAIN",
        N::CreateSchemaStmt(_) => "CREATE SCHEMA",
        N::CreateStmt(_) => "CREATE TABLE",
        N::CreateTableSpaceStmt(_) => "CREATE TABLESPACE",
        N::DropTableSpaceStmt(_) => "DROP TABLESPACE",
        N::AlterTableSpaceOptionsStmt(_) => "ALTER TABLESPACE",
        N::CreateExtensionStmt(_) => "CREATE EXTENSION",
        N::AlterExtensionStmt(_) | N::AlterExtensionContentsStmt(_) => "ALTER EXTENSION",
        N::CreateFdwStmt(_) => "CREATE FOREIGN DATA WRAPPER",
        N::AlterFdwStmt(_) => "ALTER FOREIGN DATA WRAPPER",
        N::CreateForeignServerStmt(_) => "CREATE SERVER",
        N::AlterForeignServerStmt(_) => "ALTER SERVER",
        N::CreateUserMappingStmt(_) => "CREATE USER MAPPING",
        N::AlterUserMappingStmt(_) => "ALTER USER MAPPING",
        N::DropUserMappingStmt(_) => "DROP USER MAPPING",
        N::CreateForeignTableStmt(_) => "CREATE FOREIGN TABLE",
        N::ImportForeignSchemaStmt(_) => "IMPORT FOREIGN SCHEMA",
        N::DropStmt(d) => return verb("DROP", d.remove_type),
        N::TruncateStmt(_) => "TRUNCATE TABLE",
        N::CommentStmt(_) => "COMMENT",
        N::SecLabelStmt(_) => "SECURITY LABEL",
        N::CopyStmt(_) => "COPY",
        N::RenameStmt(r) => {
            let t = if object_type(r.rename_type) == ObjectType::ObjectColumn {
                r.relation_type
            } else {
                r.rename_type
            };
            return verb("ALTER", t);
        }
        N::AlterObjectDependsStmt(s) => return verb("ALTER", s.object_type),
        N::AlterObjectSchemaStmt(s) => return verb("ALTER", s.object_type),
        N::AlterOwnerStmt(s) => return verb("ALTER", s.object_type),
        N::AlterTableMoveAllStmt(s) => return verb("ALTER", s.objtype),
        N::AlterTableStmt(s) => return verb("ALTER", s.objtype),
        N::AlterDomainStmt(_) => "ALTER DOMAIN",
        N::AlterFunctionStmt(s) => return verb("ALTER", s.objtype),
        N::GrantStmt(g) if g.is_grant => "GRANT",
        N::GrantStmt(_) => "REVOKE",
        N::GrantRoleStmt(g) if g.is_grant => "GRANT ROLE",
        N::GrantRoleStmt(_) => "REVOKE ROLE",
        N::AlterDefaultPrivilegesStmt(_) => "ALTER DEFAULT PRIVILEGES",
        N::DefineStmt(d) => return verb("CREATE", d.kind),
        N::CompositeTypeStmt(_) | N::CreateEnumStmt(_) | N::CreateRangeStmt(_) => "CREATE TYPE",
        N::AlterEnumStmt(_) | N::AlterTypeStmt(_) => "ALTER TYPE",
        N::ViewStmt(_) => "CREATE VIEW",
        N::CreateFunctionStmt(f) if f.is_procedure => "CREATE PROCEDURE",
        N::CreateFunctionStmt(_) => "CREATE FUNCTION",
        N::IndexStmt(_) => "CREATE INDEX",
        N::RuleStmt(_) => "CREATE RULE",
        N::CreateSeqStmt(_) => "CREATE SEQUENCE",
        N::AlterSeqStmt(_) => "ALTER SEQUENCE",
        N::DoStmt(_) => "DO",
        N::CreatedbStmt(_) => "CREATE DATABASE",
        N::AlterDatabaseStmt(_)
        | N::AlterDatabaseRefreshCollStmt(_)
        | N::AlterDatabaseSetStmt(_) => "ALTER DATABASE",
        N::DropdbStmt(_) => "DROP DATABASE",
        N::NotifyStmt(_) => "NOTIFY",
        N::ListenStmt(_) => "LISTEN",
        N::UnlistenStmt(_) => "UNLISTEN",
        N::LoadStmt(_) => "LOAD",
        N::CallStmt(_) => "CALL",
        N::ClusterStmt(_) => "CLUSTER",
        N::VacuumStmt(v) if v.is_vacuumcmd => "VACUUM",
        N::VacuumStmt(_) => "ANALYZE",
        N::ExplainStmt(_) => "EXPLAIN",
        N::CreateTableAsStmt(c) => match object_type(c.objtype) {
            ObjectType::ObjectTable if c.is_select_into => "SELECT INTO",
            ObjectType::ObjectTable => "CREATE TABLE AS",
            ObjectType::ObjectMatview => "CREATE MATERIALIZED VIEW",
            _ => "???",
        },
        N::RefreshMatViewStmt(_) => "REFRESH MATERIALIZED VIEW",
        N::AlterSystemStmt(_) => "ALTER SYSTEM",
        N::VariableSetStmt(s) => match V::try_from(s.kind).unwrap_or(V::Undefined) {
            V::VarSetValue | V::VarSetCurrent | V::VarSetDefault | V::VarSetMulti => "SET",
            V::VarReset | V::VarResetAll => "RESET",
            V::Undefined => "???",
        },
        N::VariableShowStmt(_) => "SHOW",
        N::DiscardStmt(d) => {
            match DiscardMode::try_from(d.target).unwrap_or(DiscardMode::Undefined) {
                DiscardMode::DiscardAll => "DISCARD ALL",
                DiscardMode::DiscardPlans => "DISCARD PLANS",
                DiscardMode::DiscardTemp => "DISCARD TEMP",
                DiscardMode::DiscardSequences => "DISCARD SEQUENCES",
                DiscardMode::Undefined => "???",
            }
        }
        N::CreateTransformStmt(_) => "CREATE TRANSFORM",
        N::CreateTrigStmt(_) => "CREATE TRIGGER",
        N::CreateEventTrigStmt(_) => "CREATE EVENT TRIGGER",
        N::AlterEventTrigStmt(_) => "ALTER EVENT TRIGGER",
        N::CreatePlangStmt(_) => "CREATE LANGUAGE",
        N::CreateRoleStmt(_) => "CREATE ROLE",
        N::AlterRoleStmt(_) | N::AlterRoleSetStmt(_) => "ALTER ROLE",
        N::DropRoleStmt(_) => "DROP ROLE",
        N::DropOwnedStmt(_) => "DROP OWNED",
        N::ReassignOwnedStmt(_) => "REASSIGN OWNED",
        N::LockStmt(_) => "LOCK TABLE",
        N::ConstraintsSetStmt(_) => "SET CONSTRAINTS",
        N::CheckPointStmt(_) => "CHECKPOINT",
        N::ReindexStmt(_) => "REINDEX",
        N::CreateConversionStmt(_) => "CREATE CONVERSION",
        N::CreateCastStmt(_) => "CREATE CAST",
        N::CreateOpClassStmt(_) => "CREATE OPERATOR CLASS",
        N::CreateOpFamilyStmt(_) => "CREATE OPERATOR FAMILY",
        N::AlterOpFamilyStmt(_) => "ALTER OPERATOR FAMILY",
        N::AlterOperatorStmt(_) => "ALTER OPERATOR",
        N::AlterTsdictionaryStmt(_) => "ALTER TEXT SEARCH DICTIONARY",
        N::AlterTsconfigurationStmt(_) => "ALTER TEXT SEARCH CONFIGURATION",
        N::CreatePolicyStmt(_) => "CREATE POLICY",
        N::AlterPolicyStmt(_) => "ALTER POLICY",
        N::CreateAmStmt(_) => "CREATE ACCESS METHOD",
        N::CreatePublicationStmt(_) => "CREATE PUBLICATION",
        N::AlterPublicationStmt(_) => "ALTER PUBLICATION",
        N::CreateSubscriptionStmt(_) => "CREATE SUBSCRIPTION",
        N::AlterSubscriptionStmt(_) => "ALTER SUBSCRIPTION",
        N::DropSubscriptionStmt(_) => "DROP SUBSCRIPTION",
        N::AlterCollationStmt(_) => "ALTER COLLATION",
        N::PrepareStmt(_) => "PREPARE",
        N::ExecuteStmt(_) => "EXECUTE",
        N::CreateStatsStmt(_) => "CREATE STATISTICS",
        N::AlterStatsStmt(_) => "ALTER STATISTICS",
        N::DeallocateStmt(d) if d.isall => "DEALLOCATE ALL",
        N::DeallocateStmt(_) => "DEALLOCATE",
        _ => "???",
    };
    tag.to_owned()
}

/// Object types whose names in DROP/COMMENT/SECURITY LABEL are relations.
fn names_relation(t: ObjectType) -> bool {
    use ObjectType as O;
    matches!(
        t,
        O::ObjectTable
            | O::ObjectView
            | O::ObjectMatview
            | O::ObjectForeignTable
            | O::ObjectSequence
            | O::ObjectIndex
    )
}

fn qualified<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        push_name_part(&mut out, part);
    }
    out
}

/// Collects relation names over the serde form of a tree, resolving CTE names by scope.
struct Walk<'v, 'o> {
    objects: &'o mut BTreeSet<String>,
    /// CTE names visible at this point (innermost last).
    scope: Vec<&'v str>,
    /// INSERT/UPDATE/DELETE/MERGE statements seen.
    dml: usize,
    /// A SELECT with FOR UPDATE/SHARE seen.
    locking: bool,
    /// What [`scan`] returns.
    scan: Scan,
}

impl<'v> Walk<'v, '_> {
    fn value(&mut self, v: &'v Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| self.value(x)),
            Value::Object(m) => self.object(m),
            _ => {}
        }
    }

    fn object(&mut self, m: &'v Map<String, Value>) {
        // A node of the `Node` oneof serializes as `{"TypeName": {…fields…}}`; struct fields are
        // snake_case, so a single capitalized key marks a node.
        if m.len() == 1 {
            if let Some((kind, inner)) = m.iter().next() {
                if kind.starts_with(|c: char| c.is_ascii_uppercase()) {
                    return self.node(kind, inner);
                }
            }
        }
        // A field typed `RangeVar` (not `Node`) has no wrapper; only RangeVar has relpersistence.
        if m.contains_key("relpersistence") && m.contains_key("relname") {
            return self.range_var(m, true);
        }
        m.values().for_each(|x| self.value(x));
    }

    fn node(&mut self, kind: &str, inner: &'v Value) {
        let Value::Object(m) = inner else { return };
        match kind {
            "RangeVar" => self.range_var(m, true),
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.query(kind, m)
            }
            "FuncCall" => {
                if let Some(Value::Array(parts)) = m.get("funcname") {
                    let parts = parts
                        .iter()
                        .filter_map(|p| p.pointer("/node/String/sval").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect();
                    self.scan.functions.push(parts);
                }
                self.object(m)
            }
            "DropStmt" => {
                if names_relation(object_type(int(m, "remove_type"))) {
                    if let Some(Value::Array(objects)) = m.get("objects") {
                        objects.iter().for_each(|o| self.name_list(o, false));
                    }
                }
            }
            "CommentStmt" | "SecLabelStmt" => {
                let t = object_type(int(m, "objtype"));
                if let Some(o) = m.get("object") {
                    if t == ObjectType::ObjectColumn {
                        self.name_list(o, true);
                    } else if names_relation(t) {
                        self.name_list(o, false);
                    }
                }
            }
            _ => self.object(m),
        }
    }

    /// A `{"List": {"items": [String…]}}` name; `drop_last` for a column's table.
    fn name_list(&mut self, v: &Value, drop_last: bool) {
        let Some(Value::Array(items)) = v.pointer("/node/List/items") else {
            return;
        };
        let parts: Vec<&str> = items
            .iter()
            .filter_map(|i| i.pointer("/node/String/sval").and_then(Value::as_str))
            .collect();
        let keep = parts.len().saturating_sub(usize::from(drop_last));
        if keep > 0 {
            self.objects
                .insert(qualified(parts[..keep].iter().copied()));
            let parts = parts[..keep].iter().map(|p| (*p).to_owned()).collect();
            self.scan.relations.push((parts, -1));
        }
    }

    fn range_var(&mut self, m: &Map<String, Value>, may_be_cte: bool) {
        let [catalog, schema, rel] = ["catalogname", "schemaname", "relname"]
            .map(|k| m.get(k).and_then(Value::as_str).unwrap_or(""));
        if rel.is_empty() {
            return;
        }
        if may_be_cte && catalog.is_empty() && schema.is_empty() && self.scope.contains(&rel) {
            return;
        }
        self.objects.insert(qualified([catalog, schema, rel]));
        let parts = [catalog, schema, rel]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| (*p).to_owned())
            .collect();
        let location = m.get("location").and_then(Value::as_i64).unwrap_or(-1);
        self.scan.relations.push((parts, location));
    }

    /// A query or DML statement, with its WITH clause's scope.
    fn query(&mut self, kind: &str, m: &'v Map<String, Value>) {
        if kind == "SelectStmt" {
            self.locking |= m
                .get("locking_clause")
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty());
        } else {
            self.dml += 1;
        }
        let mark = self.scope.len();
        if let Some(Value::Object(with)) = m.get("with_clause") {
            let recursive = with
                .get("recursive")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let ctes: Vec<(&'v str, Option<&'v Value>)> = with
                .get("ctes")
                .and_then(Value::as_array)
                .map(|ctes| {
                    ctes.iter()
                        .filter_map(|c| c.pointer("/node/CommonTableExpr"))
                        .map(|c| (c["ctename"].as_str().unwrap_or(""), c.get("ctequery")))
                        .collect()
                })
                .unwrap_or_default();
            // WITH RECURSIVE: every CTE sees all of them; otherwise each sees those before it
            // (so `WITH t AS (SELECT * FROM t)` reads the table t).
            if recursive {
                self.scope.extend(ctes.iter().map(|c| c.0));
            }
            for (name, body) in ctes {
                if let Some(body) = body {
                    self.value(body);
                }
                if !recursive {
                    self.scope.push(name);
                }
            }
        }
        for (field, v) in m {
            match field.as_str() {
                "with_clause" => {}
                // The target of INSERT/UPDATE/DELETE/MERGE is always a table, never a CTE.
                "relation" => match v {
                    Value::Object(r) => self.range_var(r, false),
                    _ => self.value(v),
                },
                _ => self.value(v),
            }
        }
        self.scope.truncate(mark);
    }
}

fn int(m: &Map<String, Value>, key: &str) -> i32 {
    m.get(key)
        .and_then(Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(0)
}
