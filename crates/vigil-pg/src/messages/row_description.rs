//! RowDescription (`'T'`, backend): the columns of a result, with the table and column each one
//! comes from (when it comes straight from a table column).

use crate::codec::{DecodeError, Reader};

/// Where a result column comes from: `(table OID, column number)`, or `None` for computed
/// columns.
pub fn sources(body: &[u8]) -> Result<Vec<Option<(u32, i16)>>, DecodeError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.count16("field count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        r.cstr("field name")?;
        let table = r.i32("table oid")? as u32;
        let column = r.i16("column number")?;
        r.bytes(4 + 2 + 4 + 2, "type, size, modifier, format")?;
        out.push((table != 0 && column > 0).then_some((table, column)));
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sources() {
        let mut b = 2i16.to_be_bytes().to_vec();
        for (name, table, col) in [("ssn", 16001u32, 6i16), ("n", 0, 0)] {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&table.to_be_bytes());
            b.extend_from_slice(&col.to_be_bytes());
            b.extend_from_slice(&[0; 12]);
        }
        assert_eq!(sources(&b).unwrap(), vec![Some((16001, 6)), None]);
        assert!(sources(&b[..b.len() - 1]).is_err());
    }
}
