//! CommandComplete (`'C'`, backend): the command tag, e.g. `SELECT 3`, `INSERT 0 1`.

use crate::codec::{DecodeError, Reader};

#[derive(Debug, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    pub tag: &'a [u8],
}

impl<'a> CommandComplete<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "CommandComplete");
        let tag = r.cstr("command tag")?;
        Ok(CommandComplete { tag })
    }

    /// The row count that ends the tag (`SELECT 3` → 3, `INSERT 0 5` → 5), if any.
    pub fn rows(&self) -> Option<u64> {
        let last = self.tag.rsplit(|&b| b == b' ').next()?;
        if last.is_empty() || !last.iter().all(u8::is_ascii_digit) || last.len() == self.tag.len() {
            return None;
        }
        std::str::from_utf8(last).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_counts() {
        let rows = |t: &[u8]| CommandComplete { tag: t }.rows();
        assert_eq!(rows(b"SELECT 3"), Some(3));
        assert_eq!(rows(b"INSERT 0 5"), Some(5));
        assert_eq!(rows(b"COPY 1000000"), Some(1_000_000));
        assert_eq!(rows(b"CREATE TABLE"), None);
        assert_eq!(rows(b"BEGIN"), None);
    }
}
