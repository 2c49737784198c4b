//! FunctionCall (`'F'`): the legacy fast-path call of a function by OID.

use crate::codec::{DecodeError, Reader};

#[derive(Debug, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
    pub arg_count: usize,
}

impl FunctionCall {
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "FunctionCall");
        let function_oid = r.i32("function oid")? as u32;
        let nfmt = r.count16("argument format count")?;
        r.bytes(nfmt * 2, "argument formats")?;
        let arg_count = r.count16("argument count")?;
        for _ in 0..arg_count {
            let len = r.i32("argument length")?;
            if len < -1 {
                return Err(r.invalid(format!("invalid argument length {len}")));
            }
            if len > 0 {
                r.bytes(len as usize, "argument value")?;
            }
        }
        r.i16("result format")?;
        r.finish()?;
        Ok(FunctionCall {
            function_oid,
            arg_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let body = [0, 0, 3, 0xe8, 0, 0, 0, 1, 0, 0, 0, 1, b'x', 0, 0];
        let f = FunctionCall::decode(&body).unwrap();
        assert_eq!((f.function_oid, f.arg_count), (1000, 1));
        assert!(FunctionCall::decode(&body[..body.len() - 1]).is_err());
    }
}
