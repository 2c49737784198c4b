//! Which columns of a statement's result carry nothing stored: values computed only from the
//! statement's own constants, its bind parameters, and functions, operators and casts that
//! read no stored data (the clock, arithmetic, string functions). Masking has nothing to
//! protect in them, so the gateway sends them as the server computed them, unscanned: `SELECT
//! now()`, `'2020-01-01'::date` and `SELECT 90 AS age` are not withheld as dates or ages that
//! they are not.
//!
//! The analysis answers [`OutputOrigin::NoStoredData`] only when it is certain; anything it
//! does not know stays [`OutputOrigin::MayBeStored`] and is masked as before:
//!
//! - **Expressions**: literals (`A_Const`), bind parameters (`$1`), the SQL value functions
//!   (`current_date`, `current_timestamp`, `localtime`, `current_user`…), casts to a reviewed
//!   built-in type, reviewed operators and functions ([`FUNCTIONS`], [`OPERATORS`], [`TYPES`])
//!   applied to such expressions, `CASE`, `COALESCE`, `GREATEST`/`LEAST`, `NULLIF`, `AND`/`OR`/
//!   `NOT`, `IS [NOT] NULL`, `IS [NOT] TRUE…`, `IN (…)`, `BETWEEN`, `LIKE`, `COLLATE`,
//!   `ARRAY[…]`. Anything else is `MayBeStored`: a column reference (also a whole-row one, or
//!   `t.f` read as `f(t)`), a subquery, an aggregate or window function, `FILTER`,
//!   `VARIADIC`, a function, operator or type not on the lists, and whatever the parse tree
//!   nests deeper than [`MAX_DEPTH`].
//! - **Names**. A reviewed name counts when written `pg_catalog.name` (the grammar writes
//!   `EXTRACT`, `SUBSTRING`, `TRIM`, `AT TIME ZONE`, `integer`… so), or unqualified when the
//!   [`Catalog`] says the database defines no function, operator or type of that name outside
//!   `pg_catalog` ([`Catalog::shadows_builtin`]): an overload in another schema
//!   (`public.upper(integer)` reading a table) could otherwise be what PostgreSQL calls. A
//!   catalog that does not know says every name may be shadowed.
//! - **Statements**: the columns of a top-level `SELECT` or `VALUES` (each row, each branch of
//!   a set operation: a column is `NoStoredData` when it is in all of them). A `*` makes the
//!   columns unknown (`None`), as do every other statement (`EXECUTE`, `FETCH`, DML with
//!   `RETURNING`, `SELECT … INTO`, `EXPLAIN`, `SHOW`…): their results are masked as before.
//!
//! **Bind parameters** are values the client sent (in Bind): they hold nothing the server
//! stored, and a client may be shown what it sent. SQL `EXECUTE name(args)` is different: the
//! server evaluates its arguments, which may call functions that read tables, so the result of
//! an `EXECUTE` is never `NoStoredData` (it is not a `SELECT`).
//!
//! Nothing here depends on the value of a literal: one analysis serves every text of a shape.

use crate::catalog::Catalog;
use pg_query::protobuf::{self as pb, Node};
use pg_query::NodeEnum as N;
pub use vigil_access::{BuiltinKind, OutputOrigin};

/// Deeper expressions are `MayBeStored` (and the walk stays shallow).
pub const MAX_DEPTH: usize = 64;

/// Functions of `pg_catalog` that read no stored data, whatever their arguments: the clock and
/// calendar, strings, numbers. Aggregates, set-returning functions and anything that takes a
/// name to look up (`current_setting`, `to_regclass`, `nextval`…) are not here.
pub const FUNCTIONS: &[&str] = &[
    // Clock and calendar.
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "date_trunc",
    "date_part",
    "extract",
    "date_bin",
    "date_add",
    "date_subtract",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "age",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "timezone",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    // Strings.
    "upper",
    "lower",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "left",
    "right",
    "lpad",
    "rpad",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "translate",
    "reverse",
    "repeat",
    "concat",
    "concat_ws",
    "strpos",
    "position",
    "split_part",
    "starts_with",
    "overlay",
    "format",
    "quote_literal",
    "quote_ident",
    "quote_nullable",
    "md5",
    "ascii",
    "chr",
    "to_hex",
    "similar_to_escape",
    // Numbers.
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "sign",
    "sqrt",
    "cbrt",
    "power",
    "pow",
    "exp",
    "ln",
    "log",
    "log10",
    "mod",
    "div",
    "pi",
    "degrees",
    "radians",
    "gcd",
    "lcm",
    "random",
    // Other.
    "gen_random_uuid",
    "num_nulls",
    "num_nonnulls",
];

/// Operators of `pg_catalog` over numbers, strings, dates and booleans (comparison, arithmetic,
/// concatenation, pattern matching). `BETWEEN` compares with `>=` and `<=`.
pub const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "||", "=", "<>", "<", ">", "<=", ">=", "~~", "!~~", "~~*",
    "!~~*", "~", "~*", "!~", "!~*",
];

/// Built-in types whose input reads no stored data (a cast of a literal to one of these is the
/// literal, typed).
pub const TYPES: &[&str] = &[
    "bool",
    "int2",
    "int4",
    "int8",
    "numeric",
    "float4",
    "float8",
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "bytea",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "bit",
    "varbit",
];

/// The query that lists which reviewed names ([`FUNCTIONS`], [`OPERATORS`], [`TYPES`]) the
/// database also defines outside `pg_catalog`: one row per (kind, name), kind `f`, `o` or `t`.
/// Its rows make the set [`StaticCatalog::with_shadowing`](crate::StaticCatalog::with_shadowing)
/// takes.
pub fn shadowing_query() -> String {
    let list = |names: &[&str]| {
        let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        format!("ARRAY[{}]::pg_catalog.name[]", quoted.join(","))
    };
    format!(
        "SELECT 'f'::text, p.proname::text FROM pg_catalog.pg_proc p \
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace AND p.proname = ANY ({}) \
         UNION SELECT 'o', o.oprname::text FROM pg_catalog.pg_operator o \
         WHERE o.oprnamespace <> 'pg_catalog'::regnamespace AND o.oprname = ANY ({}) \
         UNION SELECT 't', t.typname::text FROM pg_catalog.pg_type t \
         WHERE t.typnamespace <> 'pg_catalog'::regnamespace AND t.typname = ANY ({}) \
         ORDER BY 1, 2",
        list(FUNCTIONS),
        list(OPERATORS),
        list(TYPES)
    )
}

/// The origin of each column of `stmt`'s result, when the analysis knows its columns.
pub(crate) fn of(stmt: &N, catalog: &dyn Catalog) -> Option<Vec<OutputOrigin>> {
    match stmt {
        N::SelectStmt(s) if s.into_clause.is_none() => Outputs { catalog }.select(s, 0),
        _ => None,
    }
}

struct Outputs<'a> {
    catalog: &'a dyn Catalog,
}

fn names(parts: &[Node]) -> Option<Vec<&str>> {
    parts
        .iter()
        .map(|p| match &p.node {
            Some(N::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect()
}

impl Outputs<'_> {
    fn select(&self, s: &pb::SelectStmt, depth: usize) -> Option<Vec<OutputOrigin>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let op = pb::SetOperation::try_from(s.op).unwrap_or(pb::SetOperation::Undefined);
        match op {
            pb::SetOperation::SetopUnion
            | pb::SetOperation::SetopIntersect
            | pb::SetOperation::SetopExcept => {
                let left = self.select(s.larg.as_deref()?, depth + 1)?;
                let right = self.select(s.rarg.as_deref()?, depth + 1)?;
                if left.len() != right.len() {
                    return None;
                }
                Some(left.iter().zip(&right).map(|(l, r)| both(*l, *r)).collect())
            }
            pb::SetOperation::SetopNone if !s.values_lists.is_empty() => {
                let mut out: Option<Vec<OutputOrigin>> = None;
                for row in &s.values_lists {
                    let Some(N::List(l)) = &row.node else {
                        return None;
                    };
                    let row: Vec<OutputOrigin> =
                        l.items.iter().map(|e| self.origin(e, depth + 1)).collect();
                    out = match out {
                        None => Some(row),
                        Some(prev) if prev.len() == row.len() => {
                            Some(prev.iter().zip(&row).map(|(a, b)| both(*a, *b)).collect())
                        }
                        Some(_) => return None,
                    };
                }
                out
            }
            pb::SetOperation::SetopNone => s
                .target_list
                .iter()
                .map(|t| match &t.node {
                    Some(N::ResTarget(t)) if !has_star(t.val.as_deref()) => Some(
                        t.val
                            .as_deref()
                            .map_or(OutputOrigin::MayBeStored, |v| self.origin(v, depth + 1)),
                    ),
                    // `*` or `t.*`: as many columns as the server finds.
                    _ => None,
                })
                .collect(),
            pb::SetOperation::Undefined => None,
        }
    }

    fn origin(&self, n: &Node, depth: usize) -> OutputOrigin {
        if self.unstored(n, depth) {
            OutputOrigin::NoStoredData
        } else {
            OutputOrigin::MayBeStored
        }
    }

    fn all(&self, ns: &[Node], depth: usize) -> bool {
        ns.iter().all(|n| self.unstored(n, depth))
    }

    fn opt(&self, n: &Option<Box<Node>>, depth: usize) -> bool {
        n.as_deref().is_none_or(|n| self.unstored(n, depth))
    }

    /// Whether `n` certainly reads no stored data.
    fn unstored(&self, n: &Node, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let depth = depth + 1;
        let Some(e) = &n.node else {
            return false;
        };
        match e {
            N::AConst(_) | N::ParamRef(_) | N::SqlvalueFunction(_) => true,
            N::TypeCast(c) => {
                c.type_name.as_ref().is_some_and(|t| self.known_type(t)) && self.opt(&c.arg, depth)
            }
            N::AExpr(a) => {
                self.known_operator(a) && self.opt(&a.lexpr, depth) && self.opt(&a.rexpr, depth)
            }
            N::List(l) => self.all(&l.items, depth),
            N::BoolExpr(b) => self.all(&b.args, depth),
            N::NullTest(t) => self.opt(&t.arg, depth),
            N::BooleanTest(t) => self.opt(&t.arg, depth),
            N::CaseExpr(c) => {
                self.opt(&c.arg, depth)
                    && self.opt(&c.defresult, depth)
                    && c.args.iter().all(|w| match &w.node {
                        Some(N::CaseWhen(w)) => {
                            self.opt(&w.expr, depth) && self.opt(&w.result, depth)
                        }
                        _ => false,
                    })
            }
            N::CoalesceExpr(c) => self.all(&c.args, depth),
            N::MinMaxExpr(m) => self.all(&m.args, depth),
            N::CollateClause(c) => self.opt(&c.arg, depth),
            N::AArrayExpr(a) => self.all(&a.elements, depth),
            N::NamedArgExpr(a) => self.opt(&a.arg, depth),
            N::FuncCall(f) => {
                f.agg_order.is_empty()
                    && f.agg_filter.is_none()
                    && f.over.is_none()
                    && !f.agg_within_group
                    && !f.agg_star
                    && !f.agg_distinct
                    && !f.func_variadic
                    && self.builtin(BuiltinKind::Function, &f.funcname, FUNCTIONS)
                    && self.all(&f.args, depth)
            }
            // Column references, subqueries, row constructors, indirection, XML, JSON…
            _ => false,
        }
    }

    /// Whether `parts` names a reviewed `pg_catalog` object for certain.
    fn builtin(&self, kind: BuiltinKind, parts: &[Node], reviewed: &[&str]) -> bool {
        match names(parts).as_deref() {
            Some(["pg_catalog", name]) => reviewed.contains(name),
            Some([name]) => reviewed.contains(name) && !self.catalog.shadows_builtin(kind, name),
            _ => false,
        }
    }

    fn known_type(&self, t: &pb::TypeName) -> bool {
        !t.setof
            && !t.pct_type
            && self.builtin(BuiltinKind::Type, &t.names, TYPES)
            && t.typmods
                .iter()
                .all(|m| matches!(m.node, Some(N::AConst(_))))
    }

    fn known_operator(&self, a: &pb::AExpr) -> bool {
        use pb::AExprKind as K;
        let kind = K::try_from(a.kind).unwrap_or(K::Undefined);
        match kind {
            K::AexprOp
            | K::AexprOpAny
            | K::AexprOpAll
            | K::AexprDistinct
            | K::AexprNotDistinct
            | K::AexprNullif
            | K::AexprIn
            | K::AexprLike
            | K::AexprIlike
            | K::AexprSimilar => self.builtin(BuiltinKind::Operator, &a.name, OPERATORS),
            K::AexprBetween | K::AexprNotBetween | K::AexprBetweenSym | K::AexprNotBetweenSym => {
                [">=", "<="]
                    .iter()
                    .all(|op| !self.catalog.shadows_builtin(BuiltinKind::Operator, op))
            }
            K::Undefined => false,
        }
    }
}

fn both(a: OutputOrigin, b: OutputOrigin) -> OutputOrigin {
    if a == OutputOrigin::NoStoredData && b == OutputOrigin::NoStoredData {
        OutputOrigin::NoStoredData
    } else {
        OutputOrigin::MayBeStored
    }
}

/// Whether a select-list entry is `*` or `t.*`.
fn has_star(val: Option<&Node>) -> bool {
    match val.and_then(|v| v.node.as_ref()) {
        Some(N::ColumnRef(c)) => c.fields.iter().any(|f| matches!(f.node, Some(N::AStar(_)))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogRow, StaticCatalog};
    use std::collections::BTreeSet;

    fn origins(sql: &str, catalog: &dyn Catalog) -> Option<Vec<OutputOrigin>> {
        // On a stack of its own, as the analyzer parses (deep trees recurse in pg_query).
        stacker::grow(64 << 20, || {
            let parsed = pg_query::parse(sql).unwrap();
            let stmt = parsed.protobuf.stmts[0]
                .stmt
                .as_ref()
                .and_then(|s| s.node.as_ref())
                .unwrap();
            of(stmt, catalog)
        })
    }

    fn catalog(shadowed: &[(BuiltinKind, &str)]) -> StaticCatalog {
        let rows = ["id", "ssn", "dob", "notes"].iter().zip(1..).map(|(c, n)| {
            CatalogRow::new(16400, "public", "patients", 'r', Some((c.to_string(), n)))
        });
        StaticCatalog::from_rows(rows, vec!["public".into()]).with_shadowing(
            shadowed
                .iter()
                .map(|(k, n)| (*k, n.to_string()))
                .collect::<BTreeSet<_>>(),
        )
    }

    const FREE: OutputOrigin = OutputOrigin::NoStoredData;
    const STORED: OutputOrigin = OutputOrigin::MayBeStored;

    #[test]
    fn constants_clock_parameters_and_reviewed_functions_carry_nothing_stored() {
        let c = catalog(&[]);
        for sql in [
            "SELECT now()",
            "SELECT current_date",
            "SELECT current_timestamp(2), localtime, current_user",
            "SELECT '2020-01-01'::date",
            "SELECT DATE '2020-01-01'",
            "SELECT 90 AS age",
            "SELECT now()::text",
            "SELECT -1, 1.5, NULL, true",
            "SELECT $1::date",
            "SELECT $1",
            "SELECT extract(year FROM now())",
            "SELECT now() AT TIME ZONE 'UTC'",
            "SELECT substring('abc' FROM 1 FOR 2), trim(' a '), position('a' IN 'abc')",
            "SELECT 1 + 2 * 3, 'a' || 'b', 'a' LIKE 'b', 1 BETWEEN 0 AND 2, 1 IN (1, 2)",
            "SELECT CASE WHEN 1 > 0 THEN 'x' ELSE 'y' END, coalesce(NULL, 1), greatest(1, 2)",
            "SELECT nullif(1, 2), 1 IS NULL, (1 = 1) IS TRUE, NOT true AND false",
            "SELECT ARRAY[1, 2], interval '1 day', now() - interval '1 day'",
            "SELECT to_char(now(), 'YYYY-MM-DD'), date_trunc('day', now())",
            "SELECT 'a' COLLATE \"C\", 1::pg_catalog.int4, 1 OPERATOR(pg_catalog.+) 2",
            "SELECT pg_catalog.upper('x'), 'x'::varchar(10), '1'::numeric(5, 2)",
            "SELECT format('%s-%s', 1, 2), lpad('7', 3, '0'), gen_random_uuid()",
            "VALUES (1, now()), (2, now())",
            "SELECT now() UNION ALL SELECT now()",
            "SELECT now() FROM patients",
            "WITH x AS (SELECT ssn FROM patients) SELECT now()",
        ] {
            let got = origins(sql, &c).unwrap_or_else(|| panic!("{sql}: columns unknown"));
            assert!(got.iter().all(|o| *o == FREE), "{sql}: {got:?}");
        }
    }

    #[test]
    fn anything_that_may_read_stored_data_is_stored() {
        let c = catalog(&[]);
        for (sql, expected) in [
            ("SELECT ssn FROM patients", vec![STORED]),
            ("SELECT upper(ssn) FROM patients", vec![STORED]),
            ("SELECT now(), dob FROM patients", vec![FREE, STORED]),
            ("SELECT now() - dob FROM patients", vec![STORED]),
            // A scalar subquery, even over constants.
            ("SELECT (SELECT ssn FROM patients LIMIT 1)", vec![STORED]),
            ("SELECT (SELECT 1)", vec![STORED]),
            (
                "SELECT (SELECT dob FROM patients LIMIT 1)::text",
                vec![STORED],
            ),
            ("SELECT EXISTS (SELECT FROM patients)", vec![STORED]),
            // A function over a row; a function read as `f(t)`.
            ("SELECT upper(p::text) FROM patients p", vec![STORED]),
            ("SELECT length(p) FROM patients p", vec![STORED]),
            ("SELECT p.upper FROM patients p", vec![STORED]),
            // A CTE's column is a column.
            (
                "WITH c AS (SELECT '1'::date AS d) SELECT d FROM c",
                vec![STORED],
            ),
            (
                "WITH c AS (SELECT ssn FROM patients) SELECT (SELECT ssn FROM c)",
                vec![STORED],
            ),
            // Functions not reviewed, aggregates, windows, VARIADIC, FILTER.
            ("SELECT my_func()", vec![STORED]),
            ("SELECT current_setting('search_path')", vec![STORED]),
            ("SELECT nextval('s')", vec![STORED]),
            ("SELECT count(*) FROM patients", vec![STORED]),
            ("SELECT max(1) FROM patients", vec![STORED]),
            ("SELECT row_number() OVER () FROM patients", vec![STORED]),
            ("SELECT concat(VARIADIC ARRAY['a'])", vec![STORED]),
            ("SELECT public.upper('x')", vec![STORED]),
            ("SELECT 'x'::regclass", vec![STORED]),
            ("SELECT 'x'::public.date", vec![STORED]),
            ("SELECT '(1)'::patients", vec![STORED]),
            ("SELECT 1 OPERATOR(public.+) 2", vec![STORED]),
            ("SELECT 1 @@ 2", vec![STORED]),
            ("SELECT ROW(1, 2)", vec![STORED]),
            ("SELECT (ARRAY[1])[1]", vec![STORED]),
            // Each branch and row counts.
            ("SELECT now() UNION SELECT dob FROM patients", vec![STORED]),
            ("SELECT 'x' EXCEPT SELECT ssn FROM patients", vec![STORED]),
            ("VALUES (1), ((SELECT 1))", vec![STORED]),
        ] {
            assert_eq!(origins(sql, &c), Some(expected), "{sql}");
        }
        // Columns not known one by one.
        for sql in [
            "SELECT * FROM patients",
            "SELECT now(), p.* FROM patients p",
            "TABLE patients",
            "SELECT now() INTO t",
            "EXPLAIN SELECT now()",
            "EXECUTE p(1)",
            "FETCH c",
            "INSERT INTO patients (id) VALUES (1) RETURNING now()",
            "SHOW search_path",
        ] {
            assert_eq!(origins(sql, &c), None, "{sql}");
        }
    }

    /// A reviewed name the database also defines elsewhere may resolve there (an overload in
    /// `public`, a search path that puts `pg_catalog` later, a type in the temporary schema).
    #[test]
    fn a_shadowed_name_is_stored_unless_qualified() {
        let c = catalog(&[
            (BuiltinKind::Function, "upper"),
            (BuiltinKind::Operator, "+"),
            (BuiltinKind::Operator, ">="),
            (BuiltinKind::Type, "date"),
        ]);
        for (sql, expected) in [
            ("SELECT upper('x')", STORED),
            ("SELECT pg_catalog.upper('x')", FREE),
            ("SELECT lower('x')", FREE),
            ("SELECT 1 + 1", STORED),
            ("SELECT 1 OPERATOR(pg_catalog.+) 1", FREE),
            ("SELECT 1 - 1", FREE),
            ("SELECT 1 BETWEEN 0 AND 2", STORED),
            ("SELECT '2020-01-01'::date", STORED),
            ("SELECT '2020-01-01'::pg_catalog.date", FREE),
            ("SELECT interval '1 day'", FREE),
        ] {
            assert_eq!(origins(sql, &c), Some(vec![expected]), "{sql}");
        }
        // A catalog that does not know what the database defines trusts no unqualified name.
        let unknown = StaticCatalog::from_rows(Vec::new(), vec!["public".into()]);
        assert_eq!(origins("SELECT now()", &unknown), Some(vec![STORED]));
        assert_eq!(
            origins("SELECT 1, $1, current_date", &unknown),
            Some(vec![FREE; 3])
        );
    }

    /// A table created after the search path may have changed (SET, set_config(), a DO block or
    /// a procedure) is not taken in: where it lands is not known for certain.
    #[test]
    fn a_table_created_after_a_path_change_stays_unresolved() {
        let c = catalog(&[]);
        let analyzer = crate::Analyzer::new(64);
        let unresolved = |sql: &str| {
            let a = analyzer.access(sql, crate::LexOptions::default(), &c);
            !a.statements.last().unwrap().unresolved.is_empty()
        };
        assert!(!unresolved(
            "CREATE TABLE t (a int); INSERT INTO t VALUES (1)"
        ));
        for sql in [
            "SET search_path = other; CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            "SELECT set_config('search_path', 'other', false); CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            "SELECT pg_catalog.set_config('search_path', 'other', true); CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            "DO $$ BEGIN PERFORM 1; END $$; CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            "CALL p(); CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
        ] {
            assert!(unresolved(sql), "{sql}");
        }
    }

    /// A function, operator or type an earlier statement of the same text defines is not in the
    /// catalog the text is analysed against: after DDL in a text, no built-in name is trusted.
    #[test]
    fn a_name_defined_earlier_in_the_text_is_not_trusted() {
        let c = catalog(&[]);
        let analyzer = crate::Analyzer::new(64);
        let opts = crate::LexOptions::default();
        let outputs = |sql: &str| {
            let a = analyzer.access(sql, opts, &c);
            a.statements
                .last()
                .unwrap()
                .outputs
                .as_deref()
                .map(<[_]>::to_vec)
        };
        assert_eq!(outputs("SELECT upper('x')"), Some(vec![FREE]));
        for sql in [
            "CREATE FUNCTION upper(int) RETURNS text LANGUAGE sql AS $$ SELECT ssn FROM patients LIMIT 1 $$; SELECT upper(1)",
            "CREATE TABLE date (x int); SELECT '2020-01-01'::date",
            "CREATE OPERATOR + (LEFTARG = int, RIGHTARG = int, FUNCTION = f); SELECT 1 + 1",
        ] {
            assert_eq!(outputs(sql), Some(vec![STORED]), "{sql}");
        }
    }

    #[test]
    fn deep_expressions_are_stored() {
        let c = catalog(&[]);
        let deep = format!("SELECT {}1{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(origins(&deep, &c), Some(vec![FREE]));
        let sum = format!("SELECT {}", vec!["1"; MAX_DEPTH + 10].join(" + "));
        assert_eq!(origins(&sum, &c), Some(vec![STORED]));
        let short = format!("SELECT {}", ["1"; 10].join(" + "));
        assert_eq!(origins(&short, &c), Some(vec![FREE]));
    }

    #[test]
    fn the_shadowing_query_lists_reviewed_names_only() {
        let q = shadowing_query();
        assert!(q.contains("'now'") && q.contains("'||'") && q.contains("'date'"));
        assert!(!q.contains("'current_setting'"));
        for name in FUNCTIONS.iter().chain(OPERATORS).chain(TYPES) {
            assert!(!name.contains('\''), "{name}");
        }
    }
}
