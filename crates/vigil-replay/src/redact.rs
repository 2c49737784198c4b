//! What a capture keeps of each message: client literals and values are withheld before
//! anything reaches the file, and every message is re-encoded with its new length, so that
//! `vigil replay` and the pcapng export read a redacted capture like any other.
//!
//! Client → gateway:
//! - Query and Parse: the statement text as the audit trail stores it, each literal replaced by
//!   a placeholder (`$1`, `$2`…; comments dropped, whitespace collapsed). A text whose literals
//!   cannot be placed for certain without knowing the session's settings (a backslash that
//!   `standard_conforming_strings` or the client encoding reads differently) is withheld whole.
//! - Bind and FunctionCall: names, format codes and the number of values are kept; every value
//!   (NULL or not) becomes an empty one.
//! - CopyData, CopyFail's message and any message of a kind not listed here: the body is
//!   withheld (CopyData becomes empty; other kinds keep only their type byte).
//! - Describe, Execute, Close, Sync, Flush, CopyDone, Terminate: as sent (names and counts).
//!
//! Gateway → client (what the client received, after masking): kept, except
//! - ErrorResponse and NoticeResponse: severity, SQLSTATE, position and the schema, table,
//!   column, type and constraint name fields are kept; the message is kept with each quoted
//!   excerpt that is not a name the session's own (redacted) statements used replaced by
//!   `[redacted]` (PostgreSQL quotes values there: `invalid input syntax for type integer:
//!   "123-45-6789"`); detail, hint, context and internal query are withheld (they quote key
//!   values and rows: `Key (ssn)=(…) already exists`).
//! - NotificationResponse: the payload is withheld (a value the client's NOTIFY carried).
//! - BackendKeyData: the cancel key's secret is zeroed.

use std::collections::HashSet;
use vigil_sql::{normalize, LexOptions};

/// The statement text recorded when its literals cannot be placed for certain.
pub const WITHHELD_TEXT: &str =
    "-- [statement text withheld from the capture: its literals could not be placed for certain]";
/// What replaces a withheld excerpt of a server message, or CopyFail's message.
const REDACTED: &str = "[redacted]";
/// Longest message reassembled for redaction; a longer one (the frontend refuses it anyway)
/// is recorded as its type byte alone.
const MAX_REASSEMBLED: usize = 64 << 20;
/// Names remembered from the session's statements, to keep them in server messages.
const MAX_KNOWN_NAMES: usize = 20_000;

/// Message boundaries of one direction across frames.
#[derive(Default)]
struct Reassembly {
    /// The start of a message not complete yet (its header at least).
    partial: Vec<u8>,
    /// Bytes of the current message still to come that are withheld without being kept.
    skipping: usize,
}

/// The redaction state of one session's capture.
#[derive(Default)]
pub struct Redactor {
    client: Reassembly,
    server: Reassembly,
    known_names: HashSet<String>,
}

fn push_message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

impl Redactor {
    /// The bytes the capture keeps of `bytes` (one read or write of the session), appended to
    /// `out`. Partial messages wait for their end.
    pub fn redact(&mut self, from_client: bool, bytes: &[u8], out: &mut Vec<u8>) {
        let mut rest = bytes;
        loop {
            let state = if from_client {
                &mut self.client
            } else {
                &mut self.server
            };
            if state.skipping > 0 {
                let n = state.skipping.min(rest.len());
                state.skipping -= n;
                rest = &rest[n..];
            }
            if rest.is_empty() {
                return;
            }
            // Whole messages straight from `rest` when nothing is pending (the usual case).
            if state.partial.is_empty() && rest.len() >= 5 {
                let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                if len >= 4 && rest.len() > len {
                    let (tag, body) = (rest[0], &rest[5..1 + len]);
                    self.message(from_client, tag, body, out);
                    rest = &rest[1 + len..];
                    continue;
                }
            }
            // Otherwise accumulate the header, then the body.
            let need_header = 5usize.saturating_sub(state.partial.len());
            if need_header > 0 {
                let n = need_header.min(rest.len());
                state.partial.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if state.partial.len() < 5 {
                    return;
                }
            }
            let p = &state.partial;
            let tag = p[0];
            let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
            if len < 4 {
                // Not a message (the frontend ends such a session): keep nothing more.
                state.partial.clear();
                state.skipping = usize::MAX;
                continue;
            }
            let body_len = len - 4;
            let have = state.partial.len() - 5;
            if have == 0 && (withheld_whole(from_client, tag) || body_len > MAX_REASSEMBLED) {
                // Not kept: its body is skipped as it comes, never buffered.
                state.partial.clear();
                state.skipping = body_len;
                self.message(from_client, tag, &[], out);
                continue;
            }
            let n = (body_len - have).min(rest.len());
            state.partial.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if state.partial.len() - 5 < body_len {
                return;
            }
            let message = std::mem::take(&mut state.partial);
            self.message(from_client, tag, &message[5..], out);
        }
    }

    /// Whether `bytes` from the server are whole messages that the capture keeps as they are
    /// (rows, command tags…): then they are recorded without a copy.
    pub fn passes_unchanged(&self, from_client: bool, bytes: &[u8]) -> bool {
        if from_client || !self.server.partial.is_empty() || self.server.skipping > 0 {
            return false;
        }
        let mut at = 0;
        while at < bytes.len() {
            let Some(header) = bytes.get(at..at + 5) else {
                return false;
            };
            if matches!(header[0], b'E' | b'N' | b'A' | b'K') {
                return false;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len < 4 {
                return false;
            }
            at += 1 + len;
        }
        at == bytes.len()
    }

    fn message(&mut self, from_client: bool, tag: u8, body: &[u8], out: &mut Vec<u8>) {
        if from_client {
            self.client_message(tag, body, out);
        } else {
            self.server_message(tag, body, out);
        }
    }

    fn client_message(&mut self, tag: u8, body: &[u8], out: &mut Vec<u8>) {
        match tag {
            b'Q' => {
                let text = cstr(body).map_or(body, |(t, _)| t);
                let redacted = self.statement_text(text);
                let start = out.len();
                out.push(b'Q');
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(redacted.as_bytes());
                out.push(0);
                patch_len(out, start);
            }
            b'P' => {
                let Some((name, rest)) = cstr(body) else {
                    return push_message(out, tag, &[]);
                };
                let Some((text, types)) = cstr(rest) else {
                    return push_message(out, tag, &[]);
                };
                let redacted = self.statement_text(text);
                let start = out.len();
                out.push(b'P');
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(name);
                out.push(0);
                out.extend_from_slice(redacted.as_bytes());
                out.push(0);
                out.extend_from_slice(types);
                patch_len(out, start);
            }
            b'B' => {
                let start = out.len();
                out.push(b'B');
                out.extend_from_slice(&[0; 4]);
                if !bind_without_values(body, out) {
                    out.truncate(start);
                    return push_message(out, tag, &[]);
                }
                patch_len(out, start);
            }
            b'F' => {
                let start = out.len();
                out.push(b'F');
                out.extend_from_slice(&[0; 4]);
                // The function's OID, then the same layout as Bind's values, then one format.
                let ok = body.len() >= 4 && {
                    out.extend_from_slice(&body[..4]);
                    call_without_values(&body[4..], out)
                };
                if !ok {
                    out.truncate(start);
                    return push_message(out, tag, &[]);
                }
                patch_len(out, start);
            }
            b'f' => {
                let mut b = REDACTED.as_bytes().to_vec();
                b.push(0);
                push_message(out, tag, &b);
            }
            // Names and counts only.
            b'D' | b'E' | b'C' | b'S' | b'H' | b'c' | b'X' => push_message(out, tag, body),
            _ => push_message(out, tag, &[]),
        }
    }

    /// A statement text with its literals replaced, or withheld whole.
    fn statement_text(&mut self, text: &[u8]) -> String {
        // A backslash right after a non-ASCII byte may be a character's second byte in the
        // client's encoding or an escape: the literals cannot be placed without knowing which.
        if text.windows(2).any(|w| w[0] >= 0x80 && w[1] == b'\\') {
            return WITHHELD_TEXT.to_string();
        }
        let decoded = String::from_utf8_lossy(text);
        let on = LexOptions {
            standard_conforming_strings: true,
        };
        let normalized = normalize(&decoded, on).text;
        if text.contains(&b'\\') {
            let off = LexOptions {
                standard_conforming_strings: false,
            };
            if normalize(&decoded, off).text != normalized {
                return WITHHELD_TEXT.to_string();
            }
        }
        self.learn_names(&normalized);
        normalized
    }

    /// Remembers the words of a literal-free text: excerpts of server messages that are among
    /// them are names the capture shows anyway.
    fn learn_names(&mut self, normalized: &str) {
        if self.known_names.len() >= MAX_KNOWN_NAMES {
            return;
        }
        for word in normalized
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter(|w| !w.is_empty())
        {
            if self.known_names.len() >= MAX_KNOWN_NAMES {
                return;
            }
            if !self.known_names.contains(word) {
                self.known_names.insert(word.to_lowercase());
                self.known_names.insert(word.to_string());
            }
        }
    }

    fn server_message(&mut self, tag: u8, body: &[u8], out: &mut Vec<u8>) {
        match tag {
            b'E' | b'N' => {
                let start = out.len();
                out.push(tag);
                out.extend_from_slice(&[0; 4]);
                let mut rest = body;
                while let Some((&code, tail)) = rest.split_first() {
                    if code == 0 {
                        break;
                    }
                    let Some((value, r)) = cstr(tail) else { break };
                    rest = r;
                    match code {
                        // Severity (both forms), SQLSTATE, positions, and names of objects.
                        b'S' | b'V' | b'C' | b'P' | b'p' | b's' | b't' | b'c' | b'd' | b'n' => {
                            out.push(code);
                            out.extend_from_slice(value);
                            out.push(0);
                        }
                        b'M' => {
                            out.push(code);
                            self.redact_excerpts(value, out);
                            out.push(0);
                        }
                        _ => {}
                    }
                }
                out.push(0);
                patch_len(out, start);
            }
            b'A' => {
                // Process id and channel kept; the payload withheld.
                let kept = body.get(4..).and_then(cstr).map(|(channel, _)| channel);
                match kept {
                    Some(channel) => {
                        let start = out.len();
                        out.push(tag);
                        out.extend_from_slice(&[0; 4]);
                        out.extend_from_slice(&body[..4]);
                        out.extend_from_slice(channel);
                        out.push(0);
                        out.push(0);
                        patch_len(out, start);
                    }
                    None => push_message(out, tag, &[]),
                }
            }
            b'K' if body.len() >= 8 => {
                let start = out.len();
                out.push(tag);
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&body[..4]);
                out.extend(std::iter::repeat_n(0, body.len() - 4));
                patch_len(out, start);
            }
            _ => push_message(out, tag, body),
        }
    }

    /// A server message text with each double-quoted excerpt kept only if it is made of names
    /// the session's statements used.
    fn redact_excerpts(&self, text: &[u8], out: &mut Vec<u8>) {
        let mut rest = text;
        while let Some(open) = rest.iter().position(|&c| c == b'"') {
            out.extend_from_slice(&rest[..=open]);
            let after = &rest[open + 1..];
            let Some(len) = after.iter().position(|&c| c == b'"') else {
                out.extend_from_slice(REDACTED.as_bytes());
                return;
            };
            let excerpt = &after[..len];
            if self.is_known_name(excerpt) {
                out.extend_from_slice(excerpt);
            } else {
                out.extend_from_slice(REDACTED.as_bytes());
            }
            out.push(b'"');
            rest = &after[len + 1..];
        }
        out.extend_from_slice(rest);
    }

    fn is_known_name(&self, excerpt: &[u8]) -> bool {
        let Ok(s) = std::str::from_utf8(excerpt) else {
            return false;
        };
        !s.is_empty()
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                    && self.known_names.contains(part)
            })
    }
}

/// Messages whose whole body is withheld, without reassembling them.
fn withheld_whole(from_client: bool, tag: u8) -> bool {
    from_client
        && !matches!(
            tag,
            b'Q' | b'P' | b'B' | b'F' | b'f' | b'D' | b'E' | b'C' | b'S' | b'H' | b'c' | b'X'
        )
}

/// Fills in the length of the message that starts at `start`.
fn patch_len(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]) as usize)
}

/// A Bind body with every parameter value made empty. `false`: not a well-formed Bind.
fn bind_without_values(body: &[u8], out: &mut Vec<u8>) -> bool {
    let Some((portal, rest)) = cstr(body) else {
        return false;
    };
    let Some((statement, rest)) = cstr(rest) else {
        return false;
    };
    out.extend_from_slice(portal);
    out.push(0);
    out.extend_from_slice(statement);
    out.push(0);
    let Some(after_values) = copy_formats_and_empty_values(rest, out) else {
        return false;
    };
    // Result format codes.
    let Some(n) = u16_at(after_values, 0) else {
        return false;
    };
    let Some(formats) = after_values.get(..2 + n * 2) else {
        return false;
    };
    out.extend_from_slice(formats);
    true
}

/// A FunctionCall body after its OID, with every argument made empty.
fn call_without_values(body: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(after_values) = copy_formats_and_empty_values(body, out) else {
        return false;
    };
    let Some(format) = after_values.get(..2) else {
        return false;
    };
    out.extend_from_slice(format);
    true
}

/// Copies format codes and the value count, writes each value as empty; returns what follows
/// the values.
fn copy_formats_and_empty_values<'a>(body: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    let nfmt = u16_at(body, 0)?;
    let formats = body.get(..2 + nfmt * 2)?;
    out.extend_from_slice(formats);
    let mut at = 2 + nfmt * 2;
    let nvalues = u16_at(body, at)?;
    out.extend_from_slice(&body[at..at + 2]);
    at += 2;
    for _ in 0..nvalues {
        let len = body.get(at..at + 4)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4 + usize::try_from(len.max(0)).ok()?;
        if at > body.len() {
            return None;
        }
        out.extend_from_slice(&0i32.to_be_bytes());
    }
    body.get(at..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_message(&mut out, tag, body);
        out
    }

    fn redact_all(from_client: bool, chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Redactor::default();
        let mut out = Vec::new();
        for c in chunks {
            r.redact(from_client, c, &mut out);
        }
        out
    }

    fn messages(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
            out.push((bytes[at], bytes[at + 5..at + 1 + len].to_vec()));
            at += 1 + len;
        }
        assert_eq!(at, bytes.len(), "lengths add up");
        out
    }

    #[test]
    fn query_literals_are_replaced_and_lengths_follow() {
        let q = msg(
            b'Q',
            b"SELECT name FROM patients WHERE ssn = '123-45-6789' AND id > 7\0",
        );
        // Split in every place: the same result.
        let whole = redact_all(true, &[&q]);
        for cut in 1..q.len() {
            assert_eq!(
                redact_all(true, &[&q[..cut], &q[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let m = messages(&whole);
        assert_eq!(
            m,
            vec![(
                b'Q',
                b"SELECT name FROM patients WHERE ssn = $1 AND id > $2\0".to_vec()
            )]
        );
    }

    #[test]
    fn texts_read_differently_by_settings_or_encodings_are_withheld() {
        // With standard_conforming_strings off, `'\'` does not end the literal.
        let q = msg(b'Q', b"SELECT '\\' , 'secret-value' , '\0");
        let out = String::from_utf8_lossy(&redact_all(true, &[&q])).into_owned();
        assert!(out.contains("withheld"), "{out}");
        assert!(!out.contains("secret"), "{out}");
        // 0x83 0x5C is one Shift-JIS character; read as bytes, the backslash escapes.
        let q = msg(b'Q', b"SELECT E'\x83\\', 'secret-value', '\0");
        let out = String::from_utf8_lossy(&redact_all(true, &[&q])).into_owned();
        assert!(!out.contains("secret"), "{out}");
        // A backslash that both readings agree on is fine.
        let q = msg(b'Q', b"SELECT E'a\\nb' AS x\0");
        assert_eq!(
            messages(&redact_all(true, &[&q]))[0].1,
            b"SELECT $1 AS x\0".to_vec()
        );
    }

    #[test]
    fn parse_bind_and_copy_keep_structure_not_values() {
        let mut parse = b"s1\0SELECT * FROM t WHERE a = $1 AND b = 'x'\0".to_vec();
        parse.extend_from_slice(&[0, 1, 0, 0, 0, 25]);
        let mut bind = b"p1\0s1\0".to_vec();
        bind.extend_from_slice(&[0, 1, 0, 0, 0, 2]);
        bind.extend_from_slice(&11i32.to_be_bytes());
        bind.extend_from_slice(b"123-45-6789");
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&[0, 1, 0, 1]);
        let copy = msg(b'd', b"1\t123-45-6789\n");
        let mut all = msg(b'P', &parse);
        all.extend(msg(b'B', &bind));
        all.extend(msg(b'E', b"p1\0\0\0\0\0"));
        all.extend(&copy);
        all.extend(msg(b'S', b""));
        // One byte at a time.
        let chunks: Vec<&[u8]> = all.chunks(1).collect();
        let out = redact_all(true, &chunks);
        assert_eq!(out, redact_all(true, &[&all]));
        assert!(!out.windows(4).any(|w| w == b"6789"));
        let m = messages(&out);
        assert_eq!(m[0].0, b'P');
        let mut want = b"s1\0SELECT * FROM t WHERE a = $1 AND b = $2\0".to_vec();
        want.extend_from_slice(&[0, 1, 0, 0, 0, 25]);
        assert_eq!(m[0].1, want);
        let mut want = b"p1\0s1\0".to_vec();
        want.extend_from_slice(&[0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(m[1], (b'B', want));
        assert_eq!(m[2].0, b'E');
        assert_eq!(m[3], (b'd', Vec::new()));
        assert_eq!(m[4], (b'S', Vec::new()));
    }

    #[test]
    fn whole_server_messages_without_values_to_withhold_pass_without_a_copy() {
        let r = Redactor::default();
        let mut rows = msg(b'D', b"\0\x01\0\0\0\x03abc");
        rows.extend(msg(b'C', b"SELECT 1\0"));
        assert!(r.passes_unchanged(false, &rows));
        assert!(
            !r.passes_unchanged(true, &rows),
            "client messages are always rewritten"
        );
        assert!(
            !r.passes_unchanged(false, &rows[..rows.len() - 1]),
            "a partial message"
        );
        let mut with_error = rows.clone();
        with_error.extend(msg(b'E', b"SERROR\0\0"));
        assert!(!r.passes_unchanged(false, &with_error));
    }

    #[test]
    fn server_messages_keep_names_the_session_used_and_withhold_values() {
        let mut r = Redactor::default();
        let mut sink = Vec::new();
        r.redact(
            true,
            &msg(b'Q', b"SELECT id FROM patients WHERE id = '123-45-6789'\0"),
            &mut sink,
        );
        let mut error = Vec::new();
        for (code, v) in [
            (b'S', &b"ERROR"[..]),
            (b'C', b"22P02"),
            (
                b'M',
                b"invalid input syntax for type integer: \"123-45-6789\" in \"patients\"",
            ),
            (b'D', b"Key (ssn)=(123-45-6789) already exists."),
            (b'W', b"SQL function \"f\" statement 1"),
        ] {
            error.push(code);
            error.extend_from_slice(v);
            error.push(0);
        }
        error.push(0);
        let mut notify = 7i32.to_be_bytes().to_vec();
        notify.extend_from_slice(b"events\0patient 123-45-6789\0");
        let mut all = msg(b'E', &error);
        all.extend(msg(b'A', &notify));
        all.extend(msg(b'D', b"\0\x01\0\0\0\x03abc"));
        let mut out = Vec::new();
        r.redact(false, &all, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("6789"), "{text}");
        assert!(text.contains("\"[redacted]\" in \"patients\""), "{text}");
        assert!(text.contains("22P02"), "{text}");
        let m = messages(&out);
        assert_eq!(m[1].1, b"\0\0\0\x07events\0\0".to_vec());
        assert_eq!(
            m[2].1,
            b"\0\x01\0\0\0\x03abc".to_vec(),
            "rows as the client saw them"
        );
    }
}
