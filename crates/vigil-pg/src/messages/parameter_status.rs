//! ParameterStatus (`'S'`, backend): the server reports a run-time parameter's value.

use crate::codec::{put_cstr, put_message, DecodeError, Reader};
use crate::messages::tag::backend;

#[derive(Debug, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> ParameterStatus<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "ParameterStatus");
        let name = r.cstr("name")?;
        let value = r.cstr("value")?;
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_message(out, backend::PARAMETER_STATUS, |b| {
            put_cstr(b, self.name);
            put_cstr(b, self.value);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        ParameterStatus {
            name: b"TimeZone",
            value: b"UTC",
        }
        .encode(&mut out);
        let p = ParameterStatus::decode(&out[5..]).unwrap();
        assert_eq!((p.name, p.value), (&b"TimeZone"[..], &b"UTC"[..]));
    }
}
