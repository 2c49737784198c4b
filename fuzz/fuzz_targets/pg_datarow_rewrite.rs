//! The gateway's DataRow rewriter (masking and withheld columns) over arbitrary
//! RowDescriptions, rows and result formats: no panic, and a rewritten row is a well-formed
//! DataRow with as many values as the original.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [description length: u16][description][formats length: u8][formats][row]
    if data.len() < 3 {
        return;
    }
    let dlen = u16::from_be_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    if rest.len() < dlen + 1 {
        return;
    }
    let (description, rest) = rest.split_at(dlen);
    let flen = rest[0] as usize;
    let rest = &rest[1..];
    if rest.len() < flen {
        return;
    }
    let (formats, row) = rest.split_at(flen);
    vigil_pg::masking::fuzz_rewrite(description, row, formats);
});
