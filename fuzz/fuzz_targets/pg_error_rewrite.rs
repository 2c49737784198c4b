//! The rewriter of a protected session's errors and notices over arbitrary message bodies: no
//! panic, a well-formed message with the same fields in order, severity, code, positions and
//! source location untouched, and no value of a protected table's failing row.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [notice: low bit][ErrorResponse/NoticeResponse body]
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    vigil_pg::masking::fuzz_error_rewrite(first & 1 == 1, body);
});
