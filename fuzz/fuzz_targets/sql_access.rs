//! The access analysis of arbitrary UTF-8 against a small catalog, under both settings of
//! standard_conforming_strings. Beyond "no panic, no crash": the access analysis agrees with the
//! shape (one entry per statement, same commands and classes), a failure has no statements, and
//! every relation is either resolved or listed as unresolved (or created by the statement).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_sql::{Analyzer, CatalogRow, LexOptions, StaticCatalog, Unresolved};

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
        let rows = tables.iter().flat_map(|&(oid, schema, name, cols)| {
            cols.iter().zip(1..).map(move |(c, n)| {
                CatalogRow::new(oid, schema, name, 'r', Some(((*c).to_owned(), n)))
            })
        });
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
            for r in &s.relations {
                let listed = s
                    .unresolved
                    .iter()
                    .any(|u| matches!(u, Unresolved::Relation(_)));
                assert!(r.oid.is_some() || listed || r.ddl, "{r:?}");
            }
        }
    }
});
