//! ReadyForQuery (`'Z'`, backend): the server is idle, with its transaction status.

use crate::codec::{put_message, DecodeError, Reader};
use crate::messages::tag::backend;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InTransaction,
    Failed,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ReadyForQuery {
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "ReadyForQuery");
        let status = match r.u8("transaction status")? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            other => return Err(r.invalid(format!("unknown transaction status 0x{other:02x}"))),
        };
        r.finish()?;
        Ok(ReadyForQuery { status })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let s = match self.status {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        };
        put_message(out, backend::READY_FOR_QUERY, |b| b.push(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        ReadyForQuery {
            status: TransactionStatus::Failed,
        }
        .encode(&mut out);
        assert_eq!(out, b"Z\0\0\0\x05E");
        assert_eq!(
            ReadyForQuery::decode(b"T").unwrap().status,
            TransactionStatus::InTransaction
        );
        assert!(ReadyForQuery::decode(b"Q").is_err());
    }
}
