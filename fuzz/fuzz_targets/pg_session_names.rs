//! The session's names (prepared statements, portals, cursors) an arbitrary SQL text uses,
//! defines or drops, looked up as the proxy looks them up against a session that holds a few:
//! no panic, nothing that runs by name left undecided, changes only to names the text or the
//! session has, and no literal in the texts recorded for defined names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        vigil_pg::fuzz_session_names(sql);
    }
});
