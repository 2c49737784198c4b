//! The access analysis of arbitrary UTF-8 against a small catalog, under both settings of
//! standard_conforming_strings. Beyond "no panic, no crash": the access analysis agrees with the
//! shape (one entry per statement, same commands and classes), a failure has no statements, and
//! every relation is either resolved or listed as unresolved (or created by the statement);
//! derived columns are read columns; stored columns compared with a write are compared because
//! the statement writes, and their relations resolve; a text analysed again gets the same
//! analysis (positional texts are not shared by shape, others are).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_sql::{
    Analyzer, CatalogRow, ColumnSet, Constraint, ConstraintKind, LexOptions, QualifiedName,
    StaticCatalog, Unresolved,
};

fn analyzer() -> &'static Analyzer {
    static ANALYZER: OnceLock<Analyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| Analyzer::new(64))
}

fn catalog() -> &'static StaticCatalog {
    static CATALOG: OnceLock<StaticCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let tables: &[(u32, &str, &str, &[&str])] = &[
            (1, "public", "t", &["a", "b", "c"]),
            (2, "public", "u", &["a", "d"]),
            (3, "s", "t", &["x", "y"]),
            (4, "public", "v", &["a", "e"]),
        ];
        let mut rows: Vec<CatalogRow> = tables
            .iter()
            .flat_map(|&(oid, schema, name, cols)| {
                cols.iter().zip(1..).map(move |(c, n)| {
                    CatalogRow::new(oid, schema, name, 'r', Some(((*c).to_owned(), n)))
                })
            })
            .collect();
        // Constraints of every kind: t.a unique, u.a references t.a, a check on t (b, c), an
        // exclusion on u.d, a child's unique index seen from s.t.
        let t = || QualifiedName::new(Some("public"), "t");
        let u = || QualifiedName::new(Some("public"), "u");
        let constraint = |kind, name: &str, owner: Option<QualifiedName>, columns: &[&str]| {
            Constraint {
                kind,
                name: name.to_owned(),
                owner,
                columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            }
        };
        for (oid, name, c) in [
            (1, "t", constraint(ConstraintKind::Unique, "t_a_key", None, &["a"])),
            (
                1,
                "t",
                constraint(ConstraintKind::Check { validated: false }, "t_bc", None, &["b", "c"]),
            ),
            (
                1,
                "t",
                constraint(
                    ConstraintKind::ReferencedBy {
                        referencing: u(),
                        referencing_columns: vec!["a".into()],
                    },
                    "u_a_fkey",
                    None,
                    &["a"],
                ),
            ),
            (
                2,
                "u",
                constraint(
                    ConstraintKind::ForeignKey {
                        references: t(),
                        references_columns: vec!["a".into()],
                    },
                    "u_a_fkey",
                    None,
                    &["a"],
                ),
            ),
            (2, "u", constraint(ConstraintKind::Exclusion, "u_d_excl", None, &["d"])),
        ] {
            rows.push(CatalogRow::with_constraint(oid, "public", name, 'r', c));
        }
        rows.push(CatalogRow::with_constraint(
            3,
            "s",
            "t",
            'r',
            constraint(ConstraintKind::UniqueIndex, "v_e", Some(QualifiedName::new(Some("public"), "v")), &["e"]),
        ));
        StaticCatalog::from_rows(rows, vec!["public".to_owned()])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for standard_conforming_strings in [true, false] {
        let opts = LexOptions {
            standard_conforming_strings,
        };
        let access = analyzer().access(sql, opts, catalog());
        assert_eq!(access.parse_error, access.shape.parse_error);
        assert_eq!(access.statements.len(), access.shape.commands.len());
        if access.parse_error.is_some() {
            assert!(access.statements.is_empty());
        }
        for (s, (command, class)) in access
            .statements
            .iter()
            .zip(access.shape.commands.iter().zip(&access.shape.command_classes))
        {
            assert_eq!(&s.command, command);
            assert_eq!(s.class.as_str(), class);
            let listed = s
                .unresolved
                .iter()
                .any(|u| matches!(u, Unresolved::Relation(_)));
            for r in &s.relations {
                assert!(r.oid.is_some() || listed || r.ddl, "{r:?}");
                match (&r.read_columns, &r.derived_columns) {
                    (ColumnSet::All, _) => {}
                    (_, ColumnSet::All) => panic!("derived * but not read *: {r:?}"),
                    (read, ColumnSet::Columns(d)) => {
                        assert!(d.iter().all(|c| read.contains(c)), "{r:?}")
                    }
                }
            }
            if !s.compared.is_empty() {
                assert!(s.relations.iter().any(|r| r.write), "{s:?}");
            }
            for c in &s.compared {
                assert!(c.oid.is_some() || listed, "{c:?}");
            }
        }
        // Again, from the caches: the same analysis.
        let again = analyzer().access(sql, opts, catalog());
        assert_eq!(access.statements, again.statements);
    }
});
