//! The first packet of a connection (StartupMessage, SSLRequest, GSSENCRequest,
//! CancelRequest), before any authentication: the most exposed decoder of all.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_pg::messages::startup::{body_len, StartupRequest};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let Ok(n) = body_len([data[0], data[1], data[2], data[3]]) else {
        return;
    };
    let body = &data[4..];
    if body.len() < n {
        return;
    }
    if let Ok(StartupRequest::Startup(packet)) = StartupRequest::decode(&body[..n]) {
        let _ = packet.param("user");
        let _ = packet.param("database");
    }
});
