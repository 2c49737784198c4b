//! ErrorResponse (`'E'`) and NoticeResponse (`'N'`), backend: a list of typed fields.
//!
//! Vigil reads upstream errors (for the SQLSTATE it records) and writes its own refusals. Its own
//! messages must tell the client what to do; they never carry secrets or statement values.

use crate::codec::{put_cstr, put_message, DecodeError, Reader};
use crate::messages::tag::backend;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
    Warning,
}

impl Severity {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Severity::Error => b"ERROR",
            Severity::Fatal => b"FATAL",
            Severity::Notice => b"NOTICE",
            Severity::Warning => b"WARNING",
        }
    }
}

/// Fields of an error or notice Vigil writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: Severity,
    /// Five-character SQLSTATE.
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the statement text (`P`), as PostgreSQL gives for an
    /// unknown relation or column.
    pub position: Option<u32>,
}

impl ErrorFields {
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        ErrorFields {
            severity,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends the message as an ErrorResponse (or NoticeResponse for notice/warning).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = match self.severity {
            Severity::Error | Severity::Fatal => backend::ERROR_RESPONSE,
            Severity::Notice | Severity::Warning => backend::NOTICE_RESPONSE,
        };
        put_message(out, tag, |b| {
            for field in [b'S', b'V'] {
                b.push(field);
                put_cstr(b, self.severity.as_bytes());
            }
            b.push(b'C');
            put_cstr(b, self.code.as_bytes());
            b.push(b'M');
            put_cstr(b, self.message.as_bytes());
            if let Some(d) = &self.detail {
                b.push(b'D');
                put_cstr(b, d.as_bytes());
            }
            if let Some(h) = &self.hint {
                b.push(b'H');
                put_cstr(b, h.as_bytes());
            }
            if let Some(p) = self.position {
                b.push(b'P');
                put_cstr(b, p.to_string().as_bytes());
            }
            b.push(0);
        });
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Reads the SQLSTATE (`C` field) of an ErrorResponse/NoticeResponse body.
pub fn sqlstate(body: &[u8]) -> Result<Option<[u8; 5]>, DecodeError> {
    Ok(field(body, b'C')?.and_then(|c| <[u8; 5]>::try_from(c).ok()))
}

/// Reads one field of an ErrorResponse/NoticeResponse body.
pub fn field(body: &[u8], wanted: u8) -> Result<Option<&[u8]>, DecodeError> {
    let mut r = Reader::new(body, "ErrorResponse");
    loop {
        let kind = r.u8("field type")?;
        if kind == 0 {
            return Ok(None);
        }
        let value = r.cstr("field value")?;
        if kind == wanted {
            return Ok(Some(value));
        }
    }
}

/// Whether the error is FATAL or PANIC (the server closes the connection after it).
pub fn is_fatal(body: &[u8]) -> bool {
    matches!(field(body, b'V'), Ok(Some(b"FATAL" | b"PANIC")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_it_reads() {
        let bytes = ErrorFields::fatal("28P01", "bad token")
            .with_hint("request a new token")
            .to_bytes();
        assert_eq!(bytes[0], b'E');
        let body = &bytes[5..];
        assert_eq!(sqlstate(body).unwrap(), Some(*b"28P01"));
        assert_eq!(field(body, b'M').unwrap(), Some(&b"bad token"[..]));
        assert_eq!(
            field(body, b'H').unwrap(),
            Some(&b"request a new token"[..])
        );
        assert_eq!(field(body, b'D').unwrap(), None);
        assert!(is_fatal(body));
        assert!(sqlstate(b"Cabc").is_err());
    }
}
