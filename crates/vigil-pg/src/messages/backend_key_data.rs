//! BackendKeyData (`'K'`, backend): the process id and secret a client needs to cancel.

use crate::codec::{put_message, DecodeError, Reader};
use crate::messages::tag::backend;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendKeyData {
    pub process_id: i32,
    pub secret_key: i32,
}

impl BackendKeyData {
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "BackendKeyData");
        let process_id = r.i32("process id")?;
        let secret_key = r.i32("secret key")?;
        r.finish()?;
        Ok(BackendKeyData {
            process_id,
            secret_key,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_message(out, backend::BACKEND_KEY_DATA, |b| {
            b.extend_from_slice(&self.process_id.to_be_bytes());
            b.extend_from_slice(&self.secret_key.to_be_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = BackendKeyData {
            process_id: 4242,
            secret_key: -7,
        };
        let mut out = Vec::new();
        k.encode(&mut out);
        assert_eq!(BackendKeyData::decode(&out[5..]).unwrap(), k);
        assert!(BackendKeyData::decode(&out[5..12]).is_err());
    }
}
