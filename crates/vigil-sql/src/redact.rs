//! Keeps literals out of PostgreSQL's parse error messages, which quote the text near the error
//! (`syntax error at or near "'123-45-6789'"`).

use crate::lex::{LexOptions, Lexer, Tok};
use crate::normalize::normalize;
use memchr::memmem;

const REDACTED: &str = "[redacted]";

/// Shortest run of letters and digits of a literal that the last check looks for.
const MIN_LEAK_RUN: usize = 4;

/// `msg` with every double-quoted excerpt that holds (part of) a literal or comment replaced by
/// `[redacted]`. If any run of 4 or more letters or digits from a literal in `sql` still shows,
/// the whole message is withheld.
pub(crate) fn redact_message(msg: &str, sql: &str, opts: LexOptions) -> String {
    let mut out = String::with_capacity(msg.len());
    // PostgreSQL quotes the token near an error as `at or near "%s"` without escaping it, so that
    // excerpt runs to the message's last quote; other excerpts are balanced pairs.
    let (head, near) = match msg.find(" at or near \"") {
        Some(i) => (&msg[..i + 12], Some(&msg[i + 12..])),
        None => (msg, None),
    };
    let mut rest = head;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..open]);
        match rest[open + 1..].find('"') {
            Some(len) => {
                push_excerpt(&mut out, &rest[open + 1..open + 1 + len], opts);
                rest = &rest[open + 2 + len..];
            }
            None => {
                out.push_str(REDACTED);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if let Some(near) = near {
        let inner = near
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(near);
        push_excerpt(&mut out, inner, opts);
    }

    if leaks_literal(&out, sql, opts) {
        return "syntax error (PostgreSQL's message withheld: it quoted a literal of the statement)"
            .to_owned();
    }
    out
}

fn push_excerpt(out: &mut String, excerpt: &str, opts: LexOptions) {
    let n = normalize(excerpt, opts);
    if n.literal_count == 0 && n.comment_count == 0 && !excerpt.contains('\\') {
        out.push('"');
        out.push_str(excerpt);
        out.push('"');
    } else {
        out.push_str(REDACTED);
    }
}

/// Whether `msg` contains a run of at least [`MIN_LEAK_RUN`] letters or digits from one of the
/// literals or comments of `sql`.
fn leaks_literal(msg: &str, sql: &str, opts: LexOptions) -> bool {
    let msg = msg.as_bytes();
    Lexer::new(sql, opts)
        .filter(|t| matches!(t.tok, Tok::Literal { .. } | Tok::Comment))
        .any(|t| {
            sql.as_bytes()[t.start..t.end]
                .split(|&c| !(c.is_ascii_alphanumeric() || c >= 0x80))
                .filter(|run| run.len() >= MIN_LEAK_RUN)
                .any(|run| memmem::find(msg, run).is_some())
        })
}
