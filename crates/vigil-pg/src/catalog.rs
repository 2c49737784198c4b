//! The database catalog the access analysis resolves names against, cached per connection
//! (target) and shared by its sessions, with each session's own search path.
//!
//! It is read on a session's own upstream connection: at login (before the client is let in)
//! and again after the session runs DDL or changes its search path (an internal query the
//! proxy slips in between the client's statements). A refresh by one session replaces the
//! connection's shared relations, so every session sees a new table at its next statement.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use vigil_policy::FunctionCatalog;
use vigil_sql::{CatalogRow, FunctionRisk, QualifiedName, StaticCatalog};

/// The query whose result sets [`Catalog::load`] reads: the search path, the relations and
/// their columns, the definitions of the database's views, which of the built-in names the
/// access analysis trusts the database also defines elsewhere, and (first load only) the names
/// of built-in functions.
pub(crate) fn refresh_query(with_builtins: bool) -> String {
    let mut sql = String::from(
        "SELECT s::text FROM unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS t(s, i) ORDER BY i;",
    );
    sql.push_str(vigil_sql::catalog::CATALOG_QUERY);
    sql.push(';');
    sql.push_str(VIEWS_QUERY);
    sql.push_str(&vigil_sql::access::outputs::shadowing_query());
    sql.push(';');
    if with_builtins {
        sql.push_str(
            "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p \
             WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace);",
        );
    }
    sql
}

/// [`refresh_query`] unbounded by the session's statement_timeout, for a session in no
/// transaction (at login, and between transactions with nothing in flight). The timeout is the
/// client's (a startup setting: node-postgres's `statement_timeout` option, 10 ms in its tests)
/// or a policy's bound, for the client's statements, not Vigil's read. SET LOCAL lasts until the
/// end of the text's implicit transaction, and each statement of a text is timed on its own, so
/// the statements after it run unbounded and the client's value is back when the read ends. In
/// a transaction the lift would outlast the read. Its command adds one result set before those
/// [`CatalogCache::load`] reads: [`UNBOUNDED_EXTRA_SETS`].
pub(crate) fn unbounded_refresh_query(with_builtins: bool) -> String {
    let mut sql = String::from("SET LOCAL statement_timeout = 0;");
    sql.push_str(&refresh_query(with_builtins));
    sql
}

/// The result sets [`unbounded_refresh_query`] gives before those of [`refresh_query`].
pub(crate) const UNBOUNDED_EXTRA_SETS: usize = 1;

/// The database's own views and materialized views, with their definitions as PostgreSQL
/// prints them for this session's search path: what each reads decides whether it is a way
/// into the catalog's side channels ([`view_exposures`]).
const VIEWS_QUERY: &str = "SELECT c.oid::int8, pg_catalog.pg_get_viewdef(c.oid) \
    FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm') \
    AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) \
    ORDER BY 1;";

/// Result sets of an internal query: rows of text values (`None` = NULL).
pub(crate) type ResultSets = Vec<Vec<Vec<Option<String>>>>;

#[derive(Default)]
struct Shared {
    /// Relations as last read, with the search path of the session that read them.
    relations: Option<Arc<StaticCatalog>>,
    /// What the database's views expose, as of the same read.
    views: Arc<ViewExposures>,
    generation: u64,
    builtins: Option<Arc<HashSet<String>>>,
}

/// Views of the database (by OID) over catalog relations or functions on the deny-by-default
/// list, and what they expose.
pub(crate) type ViewExposures = HashMap<u32, FunctionRisk>;

/// One connection's catalog, shared by its sessions.
#[derive(Default)]
pub struct CatalogCache {
    shared: Mutex<Shared>,
}

/// A catalog problem: the session cannot be checked, so it is refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the database catalog: {0}")]
pub struct CatalogError(pub String);

impl CatalogCache {
    /// Whether the built-in function names are still to be read.
    pub(crate) fn needs_builtins(&self) -> bool {
        self.shared.lock().builtins.is_none()
    }

    /// Takes the result sets of [`refresh_query`] into the cache; returns the session's view.
    pub(crate) fn load(&self, sets: ResultSets) -> Result<SessionCatalog, CatalogError> {
        let mut sets = sets.into_iter();
        let path: Vec<String> = sets
            .next()
            .ok_or_else(|| CatalogError("no search path".into()))?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        let rows = sets
            .next()
            .ok_or_else(|| CatalogError("no relations".into()))?
            .into_iter()
            .map(parse_row)
            .collect::<Result<Vec<_>, _>>()?;
        let views = sets
            .next()
            .ok_or_else(|| CatalogError("no views".into()))?
            .into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let oid = it.next().flatten().and_then(|o| o.parse::<u32>().ok());
                match (oid, it.next().flatten()) {
                    (Some(oid), definition) => Ok((oid, definition.unwrap_or_default())),
                    _ => Err(CatalogError("unexpected view row".into())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Built-in names (functions, operators, types) the database also defines outside
        // pg_catalog: unqualified, they may not be PostgreSQL's own.
        let shadowed = sets
            .next()
            .ok_or_else(|| CatalogError("no shadowed names".into()))?
            .into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let kind = it
                    .next()
                    .flatten()
                    .and_then(|k| vigil_sql::access::outputs::BuiltinKind::from_letter(&k));
                match (kind, it.next().flatten()) {
                    (Some(kind), Some(name)) => Ok((kind, name)),
                    _ => Err(CatalogError("unexpected shadowed name row".into())),
                }
            })
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        let builtins = sets.next().map(|rows| {
            Arc::new(
                rows.into_iter()
                    .filter_map(|row| row.into_iter().next().flatten())
                    .collect::<HashSet<_>>(),
            )
        });
        let catalog =
            Arc::new(StaticCatalog::from_rows(rows, path.clone()).with_shadowing(shadowed));
        let views = Arc::new(view_exposures(&views, &catalog));
        let mut shared = self.shared.lock();
        shared.relations = Some(catalog.clone());
        shared.views = views.clone();
        shared.generation += 1;
        if let Some(b) = builtins {
            shared.builtins = Some(b);
        }
        let builtins = shared
            .builtins
            .clone()
            .ok_or_else(|| CatalogError("no built-in function names".into()))?;
        Ok(SessionCatalog {
            catalog,
            views,
            search_path: path,
            generation: shared.generation,
            builtins,
        })
    }

    /// Every relation as last read.
    pub(crate) fn relations(&self) -> Vec<Arc<vigil_sql::RelationInfo>> {
        self.shared
            .lock()
            .relations
            .as_ref()
            .map(|c| c.relations().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest relations under `path`, if the cache moved past `generation`.
    fn newer(&self, generation: u64) -> Option<(Arc<StaticCatalog>, Arc<ViewExposures>, u64)> {
        let shared = self.shared.lock();
        (shared.generation > generation)
            .then(|| {
                shared
                    .relations
                    .clone()
                    .map(|c| (c, shared.views.clone(), shared.generation))
            })
            .flatten()
    }
}

/// Which of the database's views read, directly or through other views, a catalog relation or
/// function on the deny-by-default list (`vigil_sql::access::exposure`), from their
/// definitions analysed as any statement is. A definition that cannot be analysed counts as
/// exposing ([`FunctionRisk::Unreviewed`]): the view then needs naming exactly.
pub(crate) fn view_exposures(views: &[(u32, String)], catalog: &StaticCatalog) -> ViewExposures {
    let analyzer = vigil_sql::Analyzer::new(views.len().max(1));
    let options = vigil_sql::LexOptions {
        standard_conforming_strings: true,
    };
    let mut exposed = ViewExposures::new();
    let mut reads: Vec<(u32, u32)> = Vec::new();
    for (oid, definition) in views {
        let access = analyzer.access(definition, options, catalog);
        if !access.is_complete() || access.statements.is_empty() {
            exposed.insert(*oid, FunctionRisk::Unreviewed);
            continue;
        }
        for s in &access.statements {
            for r in &s.relations {
                let schema = r.relation.schema.as_deref().unwrap_or("");
                if let Some(risk) = vigil_sql::access::relation_risk(schema, &r.relation.name) {
                    exposed.entry(*oid).or_insert(risk);
                }
                // Reading pg_settings is harmless, but a view over it takes its update rule:
                // an UPDATE of the view is set_config() of any setting.
                if schema == "pg_catalog" && r.relation.name == "pg_settings" {
                    exposed.entry(*oid).or_insert(FunctionRisk::Configuration);
                }
                if let Some(read) = r.oid.filter(|read| read != oid) {
                    reads.push((*oid, read));
                }
            }
            for f in &s.functions {
                if let Some(risk) = vigil_sql::access::function_risk(&f.name) {
                    exposed.entry(*oid).or_insert(risk);
                }
            }
        }
    }
    // A view over an exposing view exposes too.
    loop {
        let mut changed = false;
        for (view, read) in &reads {
            if !exposed.contains_key(view) {
                if let Some(risk) = exposed.get(read).copied() {
                    exposed.insert(*view, risk);
                    changed = true;
                }
            }
        }
        if !changed {
            return exposed;
        }
    }
}

fn parse_row(row: Vec<Option<String>>) -> Result<CatalogRow, CatalogError> {
    let bad = || CatalogError("unexpected catalog row".into());
    let mut it = row.into_iter();
    let oid: i64 = it
        .next()
        .flatten()
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let schema = it.next().flatten().ok_or_else(bad)?;
    let name = it.next().flatten().ok_or_else(bad)?;
    let kind = it
        .next()
        .flatten()
        .and_then(|k| k.chars().next())
        .ok_or_else(bad)?;
    let column = match (it.next().flatten(), it.next().flatten()) {
        (Some(c), Some(n)) => Some((c, n.parse().map_err(|_| bad())?)),
        _ => None,
    };
    // The constraint column: a row without it is from another query than ours, whose
    // constraints are unknown (fail: the session is refused rather than checked without them).
    let constraint = match it.next().ok_or_else(bad)? {
        Some(json) => Some(
            vigil_sql::Constraint::from_catalog_json(&json)
                .map_err(|e| CatalogError(e.to_string()))?,
        ),
        None => None,
    };
    let row = match constraint {
        Some(c) => CatalogRow::with_constraint(oid as u32, schema, name, kind, c),
        None => CatalogRow::new(oid as u32, schema, name, kind, column),
    };
    Ok(row)
}

/// A session's view of its connection's catalog.
pub(crate) struct SessionCatalog {
    catalog: Arc<StaticCatalog>,
    views: Arc<ViewExposures>,
    search_path: Vec<String>,
    generation: u64,
    builtins: Arc<HashSet<String>>,
}

impl SessionCatalog {
    /// The catalog to analyse with now: the connection's latest relations under this
    /// session's search path.
    pub(crate) fn current(&mut self, cache: &CatalogCache) -> Arc<StaticCatalog> {
        if let Some((newer, views, generation)) = cache.newer(self.generation) {
            self.generation = generation;
            self.views = views;
            self.catalog = if newer.search_path() == self.search_path.as_slice() {
                newer
            } else {
                Arc::new(newer.with_search_path(self.search_path.clone()))
            };
        }
        self.catalog.clone()
    }

    pub(crate) fn functions(&self) -> BuiltinFunctions<'_> {
        BuiltinFunctions {
            names: &self.builtins,
            views: &self.views,
        }
    }
}

/// PostgreSQL's own functions, by name, and the database's views over the catalog's side
/// channels.
pub(crate) struct BuiltinFunctions<'a> {
    names: &'a HashSet<String>,
    views: &'a ViewExposures,
}

impl FunctionCatalog for BuiltinFunctions<'_> {
    fn is_builtin(&self, name: &QualifiedName) -> bool {
        match name.schema.as_deref() {
            None => self.names.contains(&name.name),
            Some("pg_catalog") | Some("information_schema") => true,
            Some(_) => false,
        }
    }

    fn view_exposure(&self, relation_oid: u32) -> Option<FunctionRisk> {
        self.views.get(&relation_oid).copied()
    }
}

/// A database's catalog read once, outside any session: what `vigil policy test` and
/// `vigil policy replay` analyse against. Read through the same upstream login (vaulted
/// credentials, TLS mode) as a session, so it sees what the gateway's sessions see.
pub struct DatabaseCatalog {
    pub relations: Arc<StaticCatalog>,
    views: Arc<ViewExposures>,
    builtins: Arc<HashSet<String>>,
}

impl DatabaseCatalog {
    /// PostgreSQL's own functions and the views over the catalog's side channels, for
    /// [`vigil_policy::decide`].
    pub fn functions(&self) -> impl FunctionCatalog + '_ {
        BuiltinFunctions {
            names: &self.builtins,
            views: &self.views,
        }
    }

    /// Logs in to `target` and reads its relations, columns, search path and built-in
    /// function names.
    pub async fn read(
        target: &crate::Target,
        timeout: std::time::Duration,
    ) -> Result<DatabaseCatalog, CatalogError> {
        let tls = crate::tls::upstream_client_config(target.tls, target.ca_file.as_deref())
            .map_err(|e| CatalogError(e.to_string()))?;
        let read = async {
            let mut upstream =
                crate::upstream::connect(target, tls.as_ref(), &[("application_name", "vigil")])
                    .await
                    .map_err(|e| CatalogError(e.to_string()))?;
            let sets = crate::upstream::simple_query(&mut upstream.stream, &refresh_query(true))
                .await
                .map_err(|e| CatalogError(e.to_string()))?;
            use tokio::io::AsyncWriteExt;
            let mut terminate = Vec::with_capacity(5);
            crate::codec::put_message(
                &mut terminate,
                crate::messages::tag::frontend::TERMINATE,
                |_| {},
            );
            let _ = upstream.stream.write_all(&terminate).await;
            let session = CatalogCache::default().load(sets)?;
            Ok(DatabaseCatalog {
                relations: session.catalog,
                views: session.views,
                builtins: session.builtins,
            })
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| CatalogError("timed out".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sql::Catalog;

    fn sets() -> ResultSets {
        let s = |v: &str| Some(v.to_string());
        vec![
            vec![vec![s("pg_catalog")], vec![s("public")]],
            vec![
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    s("id"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    s("ssn"),
                    s("2"),
                    None,
                ],
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    None,
                    None,
                    s(
                        r#"{"kind" : "unique_index", "name" : "patients_ssn_key", "validated" : true, "owner" : null, "columns" : ["ssn"], "other" : null, "other_columns" : []}"#,
                    ),
                ],
                vec![
                    s("16002"),
                    s("public"),
                    s("empty"),
                    s("r"),
                    None,
                    None,
                    None,
                ],
                vec![
                    s("12222"),
                    s("pg_catalog"),
                    s("pg_stat_activity"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16010"),
                    s("public"),
                    s("activity"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16011"),
                    s("public"),
                    s("activity2"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16012"),
                    s("public"),
                    s("ids"),
                    s("v"),
                    s("id"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16013"),
                    s("public"),
                    s("backends"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
            ],
            vec![
                vec![s("16010"), s("SELECT query FROM pg_stat_activity;")],
                vec![s("16011"), s("SELECT activity.query FROM activity;")],
                vec![s("16012"), s("SELECT patients.id FROM patients;")],
                vec![
                    s("16013"),
                    s("SELECT pg_stat_get_backend_activity(1) AS query;"),
                ],
            ],
            vec![vec![s("f"), s("upper")], vec![s("o"), s("||")]],
            vec![vec![s("count")], vec![s("upper")]],
        ]
    }

    #[test]
    fn loads_relations_path_and_builtins() {
        let cache = CatalogCache::default();
        assert!(cache.needs_builtins());
        let mut session = cache.load(sets()).unwrap();
        assert!(!cache.needs_builtins());
        let c = session.current(&cache);
        let p = c.relation(None, "patients").unwrap();
        assert_eq!((p.oid, p.columns.len()), (16001, 2));
        let constraints = p.constraints.as_ref().unwrap();
        assert_eq!(constraints.len(), 1);
        assert_eq!(constraints[0].name, "patients_ssn_key");
        assert_eq!(constraints[0].columns, ["ssn"]);
        let empty = c.relation(None, "empty").unwrap();
        assert!(empty.columns.is_empty() && empty.constraints == Some(vec![]));
        let f = session.functions();
        assert!(f.is_builtin(&QualifiedName::new(None, "upper")));
        assert!(!f.is_builtin(&QualifiedName::new(None, "my_fn")));
        assert!(!f.is_builtin(&QualifiedName::new(Some("public"), "upper")));
        // Which reviewed built-in names the database also defines elsewhere.
        use vigil_sql::access::outputs::BuiltinKind;
        assert!(c.shadows_builtin(BuiltinKind::Function, "upper"));
        assert!(c.shadows_builtin(BuiltinKind::Operator, "||"));
        assert!(!c.shadows_builtin(BuiltinKind::Function, "now"));
        assert!(!c.shadows_builtin(BuiltinKind::Type, "date"));
        // Views over the catalog's side channels, directly, through a view or a function.
        assert_eq!(f.view_exposure(16010), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16011), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16013), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16012), None);
        assert_eq!(f.view_exposure(16001), None);
    }

    #[test]
    fn a_view_vigil_cannot_analyse_needs_naming() {
        let catalog = StaticCatalog::from_rows([], vec!["public".into()]);
        let views = view_exposures(&[(1, "SELEC nonsense".into())], &catalog);
        assert_eq!(views.get(&1), Some(&FunctionRisk::Unreviewed));
    }

    #[test]
    fn a_refresh_by_another_session_is_seen() {
        let cache = CatalogCache::default();
        let mut a = cache.load(sets()).unwrap();
        let before = a.current(&cache).version();
        let mut more = sets();
        more[1].push(vec![
            Some("16003".into()),
            Some("public".into()),
            Some("new_table".into()),
            Some("r".into()),
            Some("x".into()),
            Some("1".into()),
            None,
        ]);
        more.truncate(4);
        let _b = cache.load(more).unwrap();
        let after = a.current(&cache);
        assert_ne!(after.version(), before);
        assert!(after.relation(None, "new_table").is_some());
    }

    #[test]
    fn garbage_rows_are_an_error() {
        let cache = CatalogCache::default();
        let mut bad = sets();
        bad[1].push(vec![Some("x".into())]);
        assert!(cache.load(bad).is_err());
        // Rows without the constraint column (an older query), or with one we cannot read.
        let mut old = sets();
        old[1].iter_mut().for_each(|r| {
            r.pop();
        });
        assert!(cache.load(old).is_err());
        let mut unreadable = sets();
        unreadable[1][2][6] = Some(r#"{"kind" : "primary"}"#.into());
        assert!(cache.load(unreadable).is_err());
    }
}
