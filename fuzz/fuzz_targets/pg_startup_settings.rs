//! Startup parameters and `options` (as a client sends them) read into the settings Vigil
//! checks: no panic, names valid and lowercased, and what Vigil would send upstream reads back
//! as exactly the settings that were checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_pg::startup_settings::fuzz_parse(data);
});
