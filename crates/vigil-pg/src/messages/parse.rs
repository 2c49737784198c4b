//! Parse (`'P'`): prepare a statement, named or unnamed.

use crate::codec::{DecodeError, Reader};

#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Empty for the unnamed statement.
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Declared parameter types (0 = unspecified).
    pub param_types: usize,
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr("statement name")?;
        let query = r.cstr("query string")?;
        let n = r.count16("parameter type count")?;
        r.bytes(n * 4, "parameter types")?;
        r.finish()?;
        Ok(Parse {
            name,
            query,
            param_types: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_checks_counts() {
        let body = b"s1\0select $1\0\0\x01\0\0\0\x17";
        let p = Parse::decode(body).unwrap();
        assert_eq!(
            (p.name, p.query, p.param_types),
            (&b"s1"[..], &b"select $1"[..], 1)
        );
        assert!(Parse::decode(b"s1\0select $1\0\0\x02\0\0\0\x17").is_err());
        assert!(Parse::decode(b"s1\0select\0\xff\xff").is_err());
    }
}
