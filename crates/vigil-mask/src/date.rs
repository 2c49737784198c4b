//! Dates in the formats people and databases write them: `1984-03-07`, `1984/03/07`,
//! `03/07/1984`, `3-7-84`, `March 7, 1984`, `7 Mar 1984`, `Mar 7 1984`. A parsed date keeps
//! where its year, month and day sit in the text so that operators can rewrite them in place.

use crate::dict::month_number;
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub year_at: Range<usize>,
    /// `None` when the month is written as a word.
    pub month_at: Option<Range<usize>>,
    pub day_at: Range<usize>,
}

fn digits_at(s: &[u8], at: usize, min: usize, max: usize) -> Option<(u32, usize)> {
    let mut n = 0;
    let mut v = 0u32;
    while at + n < s.len() && n < max && s[at + n].is_ascii_digit() {
        v = v * 10 + (s[at + n] - b'0') as u32;
        n += 1;
    }
    (n >= min && !(at + n < s.len() && s[at + n].is_ascii_digit())).then_some((v, at + n))
}

fn valid(year: u32, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day) && (1800..=2199).contains(&year)
}

fn two_digit_year(y: u32) -> u32 {
    if y < 50 {
        2000 + y
    } else {
        1900 + y
    }
}

/// A date written as the whole of `s` (surrounding spaces allowed; a time may follow an ISO
/// date, as in a timestamp).
pub(crate) fn parse_whole(s: &[u8]) -> Option<ParsedDate> {
    let start = s.iter().position(|b| !b.is_ascii_whitespace())?;
    let d = parse_at(s, start)?;
    let end = [
        d.year_at.end,
        d.day_at.end,
        d.month_at.clone().map_or(0, |m| m.end),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let rest = &s[end..];
    let rest_ok = rest.iter().all(u8::is_ascii_whitespace)
        || (matches!(rest.first(), Some(b' ' | b'T'))
            && rest.get(1).is_some_and(u8::is_ascii_digit));
    rest_ok.then_some(d)
}

/// A date starting exactly at `at` (numeric forms).
pub(crate) fn parse_at(s: &[u8], at: usize) -> Option<ParsedDate> {
    let (a, a_end) = digits_at(s, at, 1, 4)?;
    let sep = *s.get(a_end)?;
    if !matches!(sep, b'-' | b'/' | b'.') {
        return None;
    }
    let (b, b_end) = digits_at(s, a_end + 1, 1, 2)?;
    if s.get(b_end) != Some(&sep) {
        return None;
    }
    let (c, c_end) = digits_at(s, b_end + 1, 2, 4)?;
    if a_end - at == 4 {
        // Y-M-D
        if c_end - b_end - 1 > 2 || !valid(a, b, c) {
            return None;
        }
        return Some(ParsedDate {
            year: a as u16,
            month: b as u8,
            day: c as u8,
            year_at: at..a_end,
            month_at: Some(a_end + 1..b_end),
            day_at: b_end + 1..c_end,
        });
    }
    if a_end - at > 2 || c_end - b_end - 1 == 3 {
        return None;
    }
    let year = if c_end - b_end - 1 == 2 {
        two_digit_year(c)
    } else {
        c
    };
    // M/D/Y (US), or D/M/Y when the first number cannot be a month.
    let (month, day, month_at, day_at) = if a <= 12 {
        (a, b, at..a_end, a_end + 1..b_end)
    } else {
        (b, a, a_end + 1..b_end, at..a_end)
    };
    valid(year, month, day).then_some(ParsedDate {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        year_at: b_end + 1..c_end,
        month_at: Some(month_at),
        day_at,
    })
}

fn word_end(s: &[u8], at: usize) -> usize {
    let mut i = at;
    while i < s.len() && s[i].is_ascii_alphabetic() {
        i += 1;
    }
    i
}

fn skip_spaces(s: &[u8], mut i: usize, commas: bool) -> usize {
    while i < s.len() && (s[i] == b' ' || (commas && s[i] == b',') || s[i] == b'.') {
        i += 1;
    }
    i
}

fn ordinal_end(s: &[u8], at: usize) -> usize {
    for suf in [&b"st"[..], b"nd", b"rd", b"th"] {
        if s[at..].len() >= 2 && s[at..at + 2].eq_ignore_ascii_case(suf) {
            return at + 2;
        }
    }
    at
}

/// `March 7, 1984` / `Mar 7th 1984` starting at the month word at `at`; returns the date and
/// its end.
pub(crate) fn parse_month_first(s: &[u8], at: usize) -> Option<(ParsedDate, usize)> {
    let m_end = word_end(s, at);
    let month = month_number(&s[at..m_end])?;
    let d_at = skip_spaces(s, m_end, false);
    if d_at == m_end {
        return None;
    }
    let (day, d_end) = digits_at(s, d_at, 1, 2)?;
    let y_at = skip_spaces(s, ordinal_end(s, d_end), true);
    let (year, y_end) = digits_at(s, y_at, 4, 4)?;
    valid(year, month as u32, day).then_some((
        ParsedDate {
            year: year as u16,
            month,
            day: day as u8,
            year_at: y_at..y_end,
            month_at: None,
            day_at: d_at..d_end,
        },
        y_end,
    ))
}

/// `7 March 1984` / `7th Mar, 1984` starting at the day digits at `at`.
pub(crate) fn parse_day_first(s: &[u8], at: usize) -> Option<(ParsedDate, usize)> {
    let (day, d_end) = digits_at(s, at, 1, 2)?;
    let m_at = skip_spaces(s, ordinal_end(s, d_end), false);
    if m_at == d_end {
        return None;
    }
    let m_end = word_end(s, m_at);
    let month = month_number(&s[m_at..m_end])?;
    let y_at = skip_spaces(s, m_end, true);
    let (year, y_end) = digits_at(s, y_at, 4, 4)?;
    valid(year, month as u32, day).then_some((
        ParsedDate {
            year: year as u16,
            month,
            day: day as u8,
            year_at: y_at..y_end,
            month_at: None,
            day_at: at..d_end,
        },
        y_end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_forms() {
        let d = parse_whole(b"1984-03-07").unwrap();
        assert_eq!((d.year, d.month, d.day), (1984, 3, 7));
        let d = parse_whole(b"03/07/1984").unwrap();
        assert_eq!((d.year, d.month, d.day), (1984, 3, 7));
        let d = parse_whole(b"25.12.1990").unwrap();
        assert_eq!((d.year, d.month, d.day), (1990, 12, 25));
        let d = parse_whole(b"3-7-84").unwrap();
        assert_eq!(d.year, 1984);
        assert!(parse_whole(b"2024-01-02 10:11:12+00").is_some());
        assert!(parse_whole(b"1984-13-07").is_none());
        assert!(parse_whole(b"1984-03-07x").is_none());
        assert!(parse_whole(b"1.2.3").is_none());
        assert!(parse_whole(b"12/34/2000").is_none());
    }

    #[test]
    fn word_forms() {
        let (d, end) = parse_month_first(b"March 7, 1984 x", 0).unwrap();
        assert_eq!((d.year, d.month, d.day, end), (1984, 3, 7, 13));
        let (d, _) = parse_day_first(b"7th Mar 1984", 0).unwrap();
        assert_eq!((d.year, d.month, d.day), (1984, 3, 7));
        assert!(parse_month_first(b"May be 12", 0).is_none());
    }
}
