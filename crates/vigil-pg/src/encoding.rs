//! Reading statement text the way the server does, whatever the session's client encoding.
//!
//! PostgreSQL converts a statement from the client encoding to the server encoding before its
//! lexer sees it. In most encodings every byte of a multibyte character has the high bit set, so
//! an ASCII byte is the same character before and after conversion, and the text's quotes and
//! backslashes can be found byte by byte. In SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC and GB18030
//! the second byte of a character may be an ASCII byte: `\x83\x5c` is one SJIS character (`ソ`),
//! not something followed by a backslash. Read byte by byte, `E'ソ', 'secret'` has its first
//! string end at the second quote, and the analyser would keep `secret` in the audit trail as
//! if it were SQL. So statement text is decoded here first, in the session's encoding, one
//! character at a time exactly as PostgreSQL delimits them (its `mblen` and verifier rules).
//!
//! Only the lexical structure has to be right, so characters outside ASCII that Vigil does not
//! map are shown as U+FFFD; the server rejects a text that is not valid in its encoding, so
//! invalid sequences (never run) are read byte by byte.

use std::borrow::Cow;

/// How to read statement bytes as text, from the session's `client_encoding` and
/// `server_encoding` (both reported by the server in ParameterStatus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF8; also whenever the server does no conversion (SQL_ASCII on either side), when it
    /// lexes the bytes as they come, which reading them as UTF-8 (lossily) preserves.
    #[default]
    Utf8,
    /// LATIN1: each byte is the code point.
    Latin1,
    /// Any other encoding whose multibyte characters have the high bit set in every byte
    /// (the other LATINn, WINnnnn, ISO_8859_n, KOI8, EUC_*, MULE_INTERNAL, JOHAB).
    AsciiSafe,
    /// SJIS and SHIFT_JIS_2004: trail bytes 0x40–0x7E and 0x80–0xFC.
    ShiftJis,
    /// BIG5, GBK and UHC: a high byte starts a two-byte character.
    DoubleByte,
    /// GB18030: two- or four-byte characters (the second byte of a four-byte one is a digit).
    Gb18030,
}

/// PostgreSQL's `clean_encoding_name`: lower case, alphanumerics only.
fn clean(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl TextEncoding {
    /// The reading for a session whose server reports these encodings (canonical names such as
    /// `UTF8`, `SJIS`; PostgreSQL's aliases are accepted too).
    pub fn from_settings(client_encoding: &str, server_encoding: &str) -> TextEncoding {
        let client = clean(client_encoding);
        if client == "sqlascii" || clean(server_encoding) == "sqlascii" {
            return TextEncoding::Utf8;
        }
        match client.as_str() {
            "utf8" | "unicode" => TextEncoding::Utf8,
            "latin1" | "iso88591" => TextEncoding::Latin1,
            "sjis" | "shiftjis" | "mskanji" | "win932" | "windows932" | "shiftjis2004" => {
                TextEncoding::ShiftJis
            }
            "big5" | "win950" | "windows950" | "gbk" | "win936" | "windows936" | "uhc"
            | "win949" | "windows949" => TextEncoding::DoubleByte,
            "gb18030" => TextEncoding::Gb18030,
            _ => TextEncoding::AsciiSafe,
        }
    }

    /// `bytes` as text with the same lexical structure the server sees.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        if bytes.is_ascii() {
            // Every encoding PostgreSQL accepts from a client agrees on ASCII-only text.
            return Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII is UTF-8"));
        }
        match self {
            TextEncoding::Utf8 => String::from_utf8_lossy(bytes),
            TextEncoding::Latin1 => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            _ => {
                let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
                let mut i = 0;
                while i < bytes.len() {
                    let b = bytes[i];
                    if b.is_ascii() {
                        out.push(char::from(b));
                        i += 1;
                        continue;
                    }
                    let len = self.char_len(&bytes[i..]).unwrap_or(1);
                    out.push(match (self, b) {
                        // Half-width katakana, one byte in SJIS.
                        (TextEncoding::ShiftJis, 0xa1..=0xdf) => {
                            char::from_u32(0xff61 + u32::from(b - 0xa1)).unwrap_or('\u{fffd}')
                        }
                        _ => '\u{fffd}',
                    });
                    i += len;
                }
                Cow::Owned(out)
            }
        }
    }

    /// Length of the valid character at the start of `s` (whose first byte is not ASCII), as
    /// PostgreSQL's verifier for the encoding finds it; `None` if it is not a valid character.
    fn char_len(self, s: &[u8]) -> Option<usize> {
        let at = |i: usize| s.get(i).copied();
        match self {
            TextEncoding::ShiftJis => {
                let lead = s[0];
                if (0xa1..=0xdf).contains(&lead) {
                    return Some(1);
                }
                let head = matches!(lead, 0x81..=0x9f | 0xe0..=0xfc);
                let tail = matches!(at(1), Some(0x40..=0x7e | 0x80..=0xfc));
                (head && tail).then_some(2)
            }
            TextEncoding::DoubleByte => matches!(at(1), Some(t) if t != 0).then_some(2),
            TextEncoding::Gb18030 => {
                let lead = matches!(s[0], 0x81..=0xfe);
                match (at(1), at(2), at(3)) {
                    (Some(0x30..=0x39), Some(0x81..=0xfe), Some(0x30..=0x39)) if lead => Some(4),
                    (Some(0x30..=0x39), _, _) => None,
                    (Some(0x40..=0x7e | 0x80..=0xfe), _, _) if lead => Some(2),
                    _ => None,
                }
            }
            // Multibyte characters of these are high-bit bytes only: each byte on its own
            // already has the right structure.
            TextEncoding::Utf8 | TextEncoding::Latin1 | TextEncoding::AsciiSafe => Some(1),
        }
    }

    /// Whether `bytes` could have a different lexical structure in some other client encoding
    /// than this one: a backslash right after a non-ASCII byte is one character's second byte
    /// in some encodings and an escape in others. (No other ASCII byte that matters to the
    /// lexer, quotes and `$` included, can be a trail byte in any encoding PostgreSQL accepts.)
    pub fn ambiguous_across_encodings(bytes: &[u8]) -> bool {
        bytes.windows(2).any(|w| w[0] >= 0x80 && w[1] == b'\\')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_read_as_the_server_names_them() {
        use TextEncoding::*;
        assert_eq!(TextEncoding::from_settings("UTF8", "UTF8"), Utf8);
        assert_eq!(TextEncoding::from_settings("SJIS", "UTF8"), ShiftJis);
        assert_eq!(
            TextEncoding::from_settings("Shift_JIS_2004", "UTF8"),
            ShiftJis
        );
        assert_eq!(TextEncoding::from_settings("BIG5", "UTF8"), DoubleByte);
        assert_eq!(TextEncoding::from_settings("GBK", "UTF8"), DoubleByte);
        assert_eq!(TextEncoding::from_settings("UHC", "UTF8"), DoubleByte);
        assert_eq!(TextEncoding::from_settings("GB18030", "UTF8"), Gb18030);
        assert_eq!(TextEncoding::from_settings("LATIN1", "UTF8"), Latin1);
        assert_eq!(TextEncoding::from_settings("EUC_JP", "UTF8"), AsciiSafe);
        assert_eq!(TextEncoding::from_settings("JOHAB", "UTF8"), AsciiSafe);
        assert_eq!(TextEncoding::from_settings("WIN1252", "UTF8"), AsciiSafe);
        // No conversion: the server lexes the client's bytes as they are.
        assert_eq!(TextEncoding::from_settings("SJIS", "SQL_ASCII"), Utf8);
        assert_eq!(TextEncoding::from_settings("SQL_ASCII", "UTF8"), Utf8);
    }

    #[test]
    fn a_trail_byte_is_not_a_backslash() {
        // E'ソ', 'secret' in SJIS: ソ is 0x83 0x5c.
        let sjis = b"SELECT E'\x83\\', 'secret'";
        assert_eq!(
            TextEncoding::ShiftJis.decode(sjis),
            "SELECT E'\u{fffd}', 'secret'"
        );
        // Read as UTF-8 the backslash escapes the quote.
        assert!(TextEncoding::Utf8.decode(sjis).contains("\\'"));
        // BIG5 / GBK / UHC: 0xa5 0x5c is one character.
        assert_eq!(
            TextEncoding::DoubleByte.decode(b"E'\xa5\\', 'x'"),
            "E'\u{fffd}', 'x'"
        );
        // GB18030: two-byte with a backslash trail, and four-byte characters.
        assert_eq!(
            TextEncoding::Gb18030.decode(b"E'\x81\\\x81\x30\x81\x30', 'x'"),
            "E'\u{fffd}\u{fffd}', 'x'"
        );
        // Half-width katakana are single bytes in SJIS: the backslash after one is real.
        assert_eq!(
            TextEncoding::ShiftJis.decode(b"E'\xb1\\''"),
            "E'\u{ff71}\\''"
        );
    }

    #[test]
    fn invalid_sequences_are_read_byte_by_byte() {
        // 0x83 followed by a quote is no SJIS character (the server rejects the text): the
        // quote stays a quote.
        assert_eq!(TextEncoding::ShiftJis.decode(b"'\x83'"), "'\u{fffd}'");
        assert_eq!(TextEncoding::Gb18030.decode(b"'\x81\x30'"), "'\u{fffd}0'");
        assert_eq!(TextEncoding::DoubleByte.decode(b"'\xa5"), "'\u{fffd}");
    }

    #[test]
    fn single_byte_and_ascii_safe_encodings_keep_every_ascii_byte() {
        assert_eq!(TextEncoding::Latin1.decode(b"'caf\xe9\\'"), "'caf\u{e9}\\'");
        assert_eq!(
            TextEncoding::AsciiSafe.decode(b"'\xa4\xa2\\'"),
            "'\u{fffd}\u{fffd}\\'"
        );
        assert_eq!(TextEncoding::Utf8.decode("'é\\'".as_bytes()), "'é\\'");
        assert!(matches!(
            TextEncoding::ShiftJis.decode(b"SELECT 1"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn ambiguity_is_a_backslash_after_a_high_byte() {
        assert!(TextEncoding::ambiguous_across_encodings(b"E'\x83\\'"));
        assert!(!TextEncoding::ambiguous_across_encodings(b"E'a\\'"));
        assert!(!TextEncoding::ambiguous_across_encodings("é'".as_bytes()));
    }
}
