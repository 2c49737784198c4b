//! Normalizes and analyses arbitrary UTF-8 under both settings of standard_conforming_strings.
//! Checks, beyond "no panic, no crash": the analyzer's text is the normalizer's, and a
//! normalized text (when complete) normalizes to itself with nothing left to replace.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_sql::{normalize, Analyzer, LexOptions};

/// Shared across runs and small, so that cache hits and evictions are exercised too.
fn analyzer() -> &'static Analyzer {
    static ANALYZER: OnceLock<Analyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| Analyzer::new(64))
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for standard_conforming_strings in [true, false] {
        let opts = LexOptions {
            standard_conforming_strings,
        };
        let n = normalize(sql, opts);
        if !n.unterminated {
            let again = normalize(&n.text, opts);
            assert_eq!(again.text, n.text, "normalization is not idempotent");
            assert_eq!(again.literal_count + again.comment_count, 0);
        }
        let shape = analyzer().analyze(sql, opts);
        assert_eq!(shape.text, n.text);
        assert_eq!(shape.command_classes.len(), shape.commands.len());
    }
});
