//! Query (`'Q'`): a simple-protocol query string, possibly holding several statements.

use crate::codec::{put_cstr, put_message, DecodeError, Reader};
use crate::messages::tag::frontend;

#[derive(Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// The query text, in the client's encoding (not necessarily UTF-8).
    pub text: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "Query");
        let text = r.cstr("query string")?;
        r.finish()?;
        Ok(Query { text })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_message(out, frontend::QUERY, |b| put_cstr(b, self.text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        Query { text: b"select 1" }.encode(&mut out);
        assert_eq!(Query::decode(&out[5..]).unwrap().text, b"select 1");
        assert!(Query::decode(b"select 1").is_err());
        assert!(Query::decode(b"a\0b").is_err());
    }
}
