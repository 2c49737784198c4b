//! Execute (`'E'`, frontend): run a bound portal.

use crate::codec::{put_cstr, put_message, DecodeError, Reader};
use crate::messages::tag::frontend;

#[derive(Debug, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a [u8],
    /// 0 = no limit; otherwise the server stops with PortalSuspended after this many rows.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "Execute");
        let portal = r.cstr("portal name")?;
        let max_rows = r.i32("row limit")?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_message(out, frontend::EXECUTE, |b| {
            put_cstr(b, self.portal);
            b.extend_from_slice(&self.max_rows.to_be_bytes());
        });
    }
}

/// Appends a Sync message.
pub fn encode_sync(out: &mut Vec<u8>) {
    put_message(out, frontend::SYNC, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        Execute {
            portal: b"p",
            max_rows: 10,
        }
        .encode(&mut out);
        assert_eq!(
            Execute::decode(&out[5..]).unwrap(),
            Execute {
                portal: b"p",
                max_rows: 10
            }
        );
        assert!(Execute::decode(b"p\0\0\0").is_err());
    }
}
