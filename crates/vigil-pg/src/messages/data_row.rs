//! DataRow (`'D'`, backend): one row of values. Forwarded as the original bytes unless a value
//! must be withheld, when only the affected fields are rewritten.

use crate::codec::{put_message, DecodeError, Reader};
use crate::messages::tag::backend;

/// The values of a DataRow body: `None` is SQL NULL. Bounds-checked.
pub fn fields(body: &[u8]) -> Result<Vec<Option<&[u8]>>, DecodeError> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.count16("column count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i32("value length")?;
        if len < -1 {
            return Err(r.invalid(format!("invalid value length {len}")));
        }
        out.push(if len == -1 {
            None
        } else {
            Some(r.bytes(len as usize, "value")?)
        });
    }
    r.finish()?;
    Ok(out)
}

/// The row's values as text (for Vigil's own queries, which use the text format).
pub fn text_fields(body: &[u8]) -> Result<Vec<Option<String>>, DecodeError> {
    Ok(fields(body)?
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
        .collect())
}

/// Appends a copy of the DataRow with the values at `withheld` positions replaced by NULL.
pub fn encode_with_nulls(
    body: &[u8],
    withheld: &[bool],
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let values = fields(body)?;
    put_message(out, backend::DATA_ROW, |b| {
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) if !withheld.get(i).copied().unwrap_or(false) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                _ => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn reads_and_withholds() {
        let body = row(&[Some(b"1"), None, Some(b"912-34-5678")]);
        assert_eq!(
            fields(&body).unwrap(),
            vec![Some(&b"1"[..]), None, Some(&b"912-34-5678"[..])]
        );
        let mut out = Vec::new();
        encode_with_nulls(&body, &[false, false, true], &mut out).unwrap();
        assert_eq!(
            fields(&out[5..]).unwrap(),
            vec![Some(&b"1"[..]), None, None]
        );
        assert!(fields(&body[..body.len() - 1]).is_err());
    }
}
