//! Framing of the PostgreSQL v3 protocol: finding whole messages in a byte buffer without
//! copying them, and reading their fields.
//!
//! Every message after startup is `tag: u8, length: i32 (counting itself), body`. The proxy reads
//! into one reusable buffer per direction and walks it with [`next_frame`]; a frame borrows the
//! buffer, so forwarding an untouched message costs nothing but the final write.

use std::fmt;

/// A whole message inside a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    /// The body: what follows the length word.
    pub body: &'a [u8],
    /// Bytes the whole message takes in the buffer (tag + length + body).
    pub len: usize,
}

/// The peer sent something that is not a well-formed message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {length} for message type {tag}")]
    BadLength { tag: TagName, length: i32 },
    #[error("message type {tag} of {length} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        tag: TagName,
        length: usize,
        limit: usize,
    },
}

/// A message tag shown as a character when printable (for error messages).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TagName(pub u8);

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

impl fmt::Debug for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The next whole message at the start of `buf`, `Ok(None)` if more bytes are needed.
///
/// `max_len` bounds the body length: a peer cannot make us buffer more than that for one
/// message.
pub fn next_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let length = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if length < 4 {
        return Err(FrameError::BadLength {
            tag: TagName(tag),
            length,
        });
    }
    let body_len = length as usize - 4;
    if body_len > max_len {
        return Err(FrameError::TooLong {
            tag: TagName(tag),
            length: body_len,
            limit: max_len,
        });
    }
    let total = 1 + length as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        tag,
        body: &buf[5..total],
        len: total,
    }))
}

/// How many bytes the message starting at `buf` needs in total, once its header is there.
/// Lets a reader reserve room for a large message in one step.
pub fn pending_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 {
        return None;
    }
    let length = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    (length >= 4).then_some(1 + length as usize)
}

/// A field of a message body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message {message} is truncated (expected {field})")]
    Truncated {
        message: &'static str,
        field: &'static str,
    },
    #[error("message {message}: {problem}")]
    Invalid {
        message: &'static str,
        problem: String,
    },
}

/// A cursor over a message body. Every read is bounds-checked: bodies come from untrusted peers.
pub struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            message: self.message,
            field,
        }
    }

    pub fn invalid(&self, problem: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            message: self.message,
            problem: problem.into(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.truncated(field))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let b = self.bytes(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let b = self.bytes(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count (i16 on the wire) that must not be negative.
    pub fn count16(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        if n < 0 {
            return Err(self.invalid(format!("negative {field} {n}")));
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.truncated(field));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A NUL-terminated string, without its terminator.
    pub fn cstr(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = memchr::memchr(0, self.buf).ok_or_else(|| self.truncated(field))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string that must be UTF-8.
    pub fn cstr_utf8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let raw = self.cstr(field)?;
        std::str::from_utf8(raw).map_err(|_| self.invalid(format!("{field} is not valid UTF-8")))
    }

    /// Fails if bytes are left over: trailing garbage is a malformed message.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.invalid(format!("{} unexpected trailing bytes", self.buf.len())))
        }
    }
}

/// Appends a message (tag, length, body written by `body`) to `out`.
pub fn put_message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - len_at) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_whole_messages_and_waits_for_partial_ones() {
        let mut buf = Vec::new();
        put_message(&mut buf, b'Q', |b| put_cstr(b, b"select 1"));
        put_message(&mut buf, b'S', |_| {});
        let f = next_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!((f.tag, f.body), (b'Q', &b"select 1\0"[..]));
        let g = next_frame(&buf[f.len..], 1024).unwrap().unwrap();
        assert_eq!((g.tag, g.body.len(), g.len), (b'S', 0, 5));
        assert_eq!(next_frame(&buf[..f.len - 1], 1024).unwrap(), None);
        assert_eq!(next_frame(&buf[..3], 1024).unwrap(), None);
    }

    #[test]
    fn refuses_bad_and_oversized_lengths() {
        let bad = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            next_frame(&bad, 10),
            Err(FrameError::BadLength { .. })
        ));
        let neg = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            next_frame(&neg, 10),
            Err(FrameError::BadLength { .. })
        ));
        let big = [b'Q', 0, 0, 1, 0];
        let err = next_frame(&big, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message type 'Q' of 252 bytes exceeds the limit of 100 bytes"
        );
    }

    #[test]
    fn reader_is_bounds_checked() {
        let mut r = Reader::new(&[0, 5, b'a', 0, 1], "Test");
        assert_eq!(r.i16("n").unwrap(), 5);
        assert_eq!(r.cstr("s").unwrap(), b"a");
        assert!(r.i32("x").is_err());
        let mut r = Reader::new(b"abc", "Test");
        assert!(r.cstr("s").is_err());
        let mut r = Reader::new(&[0xff, 0xff], "Test");
        assert!(r.count16("n").is_err());
    }
}
