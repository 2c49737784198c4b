//! The protocol's vocabulary: one module per message (or per family of messages sharing a
//! layout), each a small typed view that borrows the frame it was decoded from, and builders for
//! the messages Vigil writes itself.
//!
//! Decoders take bodies from untrusted peers: every field is bounds-checked and counts are
//! checked against what the body can hold before anything is allocated.

pub mod authentication;
pub mod backend_key_data;
pub mod bind;
pub mod command_complete;
pub mod data_row;
pub mod describe;
pub mod error_response;
pub mod execute;
pub mod function_call;
pub mod parameter_status;
pub mod parse;
pub mod query;
pub mod ready_for_query;
pub mod row_description;
pub mod startup;
pub mod tag;

pub use authentication::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use command_complete::CommandComplete;
pub use describe::{Close, Describe, Target};
pub use error_response::{ErrorFields, Severity};
pub use execute::Execute;
pub use function_call::FunctionCall;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use startup::{StartupPacket, StartupRequest};

use crate::codec::DecodeError;

/// Decodes a client message of any type the gateway reads, fully (Bind parameters included),
/// and discards the result. For fuzzing and property tests: every decoder of untrusted input
/// behind one entry point. Types the gateway forwards without reading are accepted as is.
pub fn decode_frontend(tag: u8, body: &[u8]) -> Result<(), DecodeError> {
    use tag::frontend as t;
    match tag {
        t::QUERY => Query::decode(body).map(drop),
        t::PARSE => Parse::decode(body).map(drop),
        t::BIND => Bind::decode(body).map(|b| b.params().for_each(drop)),
        t::EXECUTE => Execute::decode(body).map(drop),
        t::DESCRIBE => Describe::decode(body).map(drop),
        t::CLOSE => Close::decode(body).map(drop),
        t::FUNCTION_CALL => FunctionCall::decode(body).map(drop),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::next_frame;

    /// A cheap, deterministic stand-in for the fuzzer in every test run: random and mutated
    /// messages never panic the decoders.
    #[test]
    fn decoders_survive_random_input() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let tags = b"QPBEDCFdcfHSXp";
        let mut valid_bind = b"p\0s\0\0\x01\0\0\0\x01\0\0\0\x02hi\0\x01\0\x01".to_vec();
        for _ in 0..200_000 {
            let tag = tags[(next() % tags.len() as u64) as usize];
            let len = (next() % 64) as usize;
            let body: Vec<u8> = if next() % 2 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                let i = (next() as usize) % valid_bind.len();
                valid_bind[i] = next() as u8;
                valid_bind.clone()
            };
            let _ = decode_frontend(tag, &body);
            let mut framed = vec![tag];
            framed.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            framed.extend_from_slice(&body);
            let frame = next_frame(&framed, 1 << 20).unwrap().unwrap();
            assert_eq!(frame.body, &body[..]);
            let _ = startup::StartupRequest::decode(&body);
            if body.len() >= 4 {
                let _ = startup::body_len([body[0], body[1], body[2], body[3]]);
            }
        }
        valid_bind.clear();
    }
}
