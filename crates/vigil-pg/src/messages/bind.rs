//! Bind (`'B'`): bind parameters to a prepared statement, creating a portal.

use crate::codec::{DecodeError, Reader};

#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// Parameter format codes (0 text, 1 binary): none, one for all, or one per parameter.
    pub param_formats: &'a [u8],
    /// The raw parameter section (count excluded), walked by [`Bind::params`].
    params_raw: &'a [u8],
    pub param_count: usize,
    pub result_formats: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr("portal name")?;
        let statement = r.cstr("statement name")?;
        let nfmt = r.count16("parameter format count")?;
        let param_formats = r.bytes(nfmt * 2, "parameter formats")?;
        let param_count = r.count16("parameter count")?;
        if nfmt > 1 && nfmt != param_count {
            return Err(r.invalid(format!(
                "{nfmt} parameter formats for {param_count} parameters"
            )));
        }
        let start = r.rest();
        for _ in 0..param_count {
            let len = r.i32("parameter length")?;
            if len < -1 {
                return Err(r.invalid(format!("invalid parameter length {len}")));
            }
            if len > 0 {
                r.bytes(len as usize, "parameter value")?;
            }
        }
        let params_raw = &start[..start.len() - r.remaining()];
        let nres = r.count16("result format count")?;
        let result_formats = r.bytes(nres * 2, "result formats")?;
        r.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params_raw,
            param_count,
            result_formats,
        })
    }

    /// Parameter values in order; `None` is SQL NULL. Only valid on a decoded (checked) Bind.
    pub fn params(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut rest = self.params_raw;
        (0..self.param_count).map(move |_| {
            let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            rest = &rest[4..];
            if len < 0 {
                None
            } else {
                let (v, tail) = rest.split_at(len as usize);
                rest = tail;
                Some(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(params: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = b"p1\0s1\0\0\0".to_vec();
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend_from_slice(&[0, 1, 0, 1]);
        b
    }

    #[test]
    fn walks_parameters() {
        let b = body(&[Some(b"42"), None, Some(b"")]);
        let bind = Bind::decode(&b).unwrap();
        assert_eq!(bind.param_count, 3);
        let got: Vec<_> = bind.params().collect();
        assert_eq!(got, vec![Some(&b"42"[..]), None, Some(&b""[..])]);
        assert_eq!(bind.result_formats, &[0, 1]);
    }

    #[test]
    fn refuses_lies_about_lengths() {
        let mut b = body(&[Some(b"42")]);
        b[11] = 0x7f; // parameter length far beyond the body
        assert!(Bind::decode(&b).is_err());
        let mut b = body(&[Some(b"42")]);
        b[8..12].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(Bind::decode(&b).is_err());
        let b = body(&[]);
        assert!(Bind::decode(&b[..b.len() - 1]).is_err());
    }
}
