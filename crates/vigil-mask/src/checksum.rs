//! Check digits and validity rules of identifiers. Each function takes the identifier's
//! characters (separators already removed where said) and never panics on any input.

/// Luhn (mod 10) over ASCII digits; non-digits make it false.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = (b - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// The Luhn check digit that completes `digits` (all ASCII digits).
pub fn luhn_check_digit(digits: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        let mut d = (b.wrapping_sub(b'0') % 10) as u32;
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// NPI: 10 digits starting with 1 or 2, Luhn-valid with the `80840` prefix (card issuer
/// identifier of US health applications).
pub fn npi(d: &[u8]) -> bool {
    if d.len() != 10 || !(d[0] == b'1' || d[0] == b'2') {
        return false;
    }
    let mut buf = [0u8; 15];
    buf[..5].copy_from_slice(b"80840");
    buf[5..].copy_from_slice(d);
    luhn(&buf)
}

/// The NPI check digit for the first 9 digits.
pub fn npi_check_digit(first9: &[u8]) -> u8 {
    let mut buf = [0u8; 14];
    buf[..5].copy_from_slice(b"80840");
    buf[5..].copy_from_slice(&first9[..9]);
    luhn_check_digit(&buf)
}

/// DEA registration number: 2 letters (registrant type, then the registrant's last-name
/// initial or `9`) and 7 digits whose last is `(d1+d3+d5 + 2*(d2+d4+d6)) mod 10`.
pub fn dea(s: &[u8]) -> bool {
    if s.len() != 9 {
        return false;
    }
    if !b"ABCDEFGHJKLMPRSTUX".contains(&s[0]) {
        return false;
    }
    if !(s[1].is_ascii_uppercase() || s[1] == b'9') {
        return false;
    }
    let d = &s[2..];
    if !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let v = |i: usize| (d[i] - b'0') as u32;
    (v(0) + v(2) + v(4) + 2 * (v(1) + v(3) + v(5))) % 10 == v(6)
}

/// The DEA check digit for 2 letters + 6 digits.
pub fn dea_check_digit(d6: &[u8]) -> u8 {
    let v = |i: usize| (d6[i].wrapping_sub(b'0') % 10) as u32;
    b'0' + ((v(0) + v(2) + v(4) + 2 * (v(1) + v(3) + v(5))) % 10) as u8
}

fn vin_value(c: u8) -> Option<u32> {
    Some(match c {
        b'0'..=b'9' => (c - b'0') as u32,
        b'A' | b'J' => 1,
        b'B' | b'K' | b'S' => 2,
        b'C' | b'L' | b'T' => 3,
        b'D' | b'M' | b'U' => 4,
        b'E' | b'N' | b'V' => 5,
        b'F' | b'W' => 6,
        b'G' | b'P' | b'X' => 7,
        b'H' | b'Y' => 8,
        b'R' | b'Z' => 9,
        _ => return None, // I, O, Q and anything else
    })
}

const VIN_WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// VIN (ISO 3779, North American check digit): 17 characters from `0-9A-HJ-NPR-Z`, position 9
/// the weighted mod-11 check (`X` for 10).
pub fn vin(s: &[u8]) -> bool {
    if s.len() != 17 {
        return false;
    }
    match vin_check_digit(s) {
        Some(c) => s[8] == c,
        None => false,
    }
}

/// The check character of a 17-character VIN (position 9 ignored), if all characters are legal.
pub fn vin_check_digit(s: &[u8]) -> Option<u8> {
    let mut sum = 0;
    for (i, &c) in s.iter().enumerate().take(17) {
        sum += vin_value(c)? * VIN_WEIGHTS[i];
    }
    let r = sum % 11;
    Some(if r == 10 { b'X' } else { b'0' + r as u8 })
}

/// MBI letters: upper case without S, L, O, I, B, Z.
fn mbi_alpha(c: u8) -> bool {
    c.is_ascii_uppercase() && !b"SLOIBZ".contains(&c)
}

/// Medicare Beneficiary Identifier: 11 characters `C A AN N A AN N A A N N` (C = 1–9, N = 0–9,
/// A = MBI letters, AN = either). Dashes already removed.
pub fn mbi(s: &[u8]) -> bool {
    if s.len() != 11 {
        return false;
    }
    let n = |c: u8| c.is_ascii_digit();
    let an = |c: u8| n(c) || mbi_alpha(c);
    (b'1'..=b'9').contains(&s[0])
        && mbi_alpha(s[1])
        && an(s[2])
        && n(s[3])
        && mbi_alpha(s[4])
        && an(s[5])
        && n(s[6])
        && mbi_alpha(s[7])
        && mbi_alpha(s[8])
        && n(s[9])
        && n(s[10])
}

/// SSN validity: `area` 3 digits, `group` 2, `serial` 4 (ASCII digits). Strict rules: area not
/// 000, 666 or 9xx; group not 00; serial not 0000. `extra` areas pass even if never issued.
pub fn ssn_valid(
    area: &[u8],
    group: &[u8],
    serial: &[u8],
    strict: bool,
    extra: &[(u16, u16)],
) -> bool {
    if area.len() != 3 || group.len() != 2 || serial.len() != 4 {
        return false;
    }
    if !strict {
        return true;
    }
    let a = num(area) as u16;
    let area_ok =
        (a != 0 && a != 666 && a < 900) || extra.iter().any(|&(lo, hi)| (lo..=hi).contains(&a));
    area_ok && group != b"00" && serial != b"0000"
}

/// ISO 7064 MOD 97-10 over letters (A=10…Z=35) and digits. A value shaped like an IBAN (two
/// letters, two digits, then more) is checked as IBANs are: its first four characters moved
/// to the end.
pub fn mod97(s: &[u8]) -> bool {
    let iban = s.len() > 4
        && s[..2].iter().all(u8::is_ascii_alphabetic)
        && s[2..4].iter().all(u8::is_ascii_digit);
    let (head, tail) = if iban { s.split_at(4) } else { s.split_at(0) };
    let mut r: u64 = 0;
    let mut any = false;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => (c - b'0') as u64,
            b'A'..=b'Z' => (c - b'A') as u64 + 10,
            b'a'..=b'z' => (c - b'a') as u64 + 10,
            _ => continue,
        };
        any = true;
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    any && r == 1
}

/// Weighted mod 11: the last character (digit or `X` = 10) checks the others with weights
/// 2, 3, 4… from the right.
pub fn mod11(s: &[u8]) -> bool {
    let chars: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| c.is_ascii_digit() || *c == b'X' || *c == b'x')
        .collect();
    if chars.len() < 2 {
        return false;
    }
    let (body, check) = chars.split_at(chars.len() - 1);
    if body.iter().any(|c| !c.is_ascii_digit()) {
        return false;
    }
    // Reduced as it goes: a plain sum of digit × weight overflows past ~30,000 digits.
    let sum = body.iter().rev().enumerate().fold(0u32, |acc, (i, &c)| {
        (acc + (c - b'0') as u32 * ((i % 11) as u32 + 2)) % 11
    });
    let want = (11 - sum) % 11;
    let got = match check[0] {
        b'X' | b'x' => 10,
        c => (c - b'0') as u32,
    };
    want == got
}

/// The value of up to 19 ASCII digits (callers check they are digits).
pub fn num(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |a, &b| {
        a.wrapping_mul(10)
            .wrapping_add((b.wrapping_sub(b'0') % 10) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert_eq!(luhn_check_digit(b"411111111111111"), b'1');
        assert!(npi(b"1234567893"));
        assert!(!npi(b"1234567890"));
        assert_eq!(npi_check_digit(b"123456789"), b'3');
        assert!(dea(b"AB1234563"));
        assert!(!dea(b"AB1234564"));
        assert!(vin(b"1M8GDM9AXKP042788"));
        assert!(vin(b"11111111111111111"));
        assert!(!vin(b"1M8GDM9A1KP042788"));
        assert!(mbi(b"1EG4TE5MK73"));
        assert!(!mbi(b"1EG4TE5MK7"));
        assert!(!mbi(b"0EG4TE5MK73"));
        assert!(!mbi(b"1SG4TE5MK73"));
        assert!(ssn_valid(b"123", b"45", b"6789", true, &[]));
        for (a, g, s) in [
            ("000", "12", "3456"),
            ("666", "12", "3456"),
            ("957", "12", "3456"),
            ("123", "00", "3456"),
            ("123", "45", "0000"),
        ] {
            assert!(!ssn_valid(
                a.as_bytes(),
                g.as_bytes(),
                s.as_bytes(),
                true,
                &[]
            ));
            assert!(ssn_valid(
                a.as_bytes(),
                g.as_bytes(),
                s.as_bytes(),
                false,
                &[]
            ));
        }
        assert!(ssn_valid(b"957", b"18", b"7079", true, &[(900, 999)]));
        assert!(mod97(
            b"GB82WEST12345698765432"
                .iter()
                .skip(4)
                .chain(b"GB82")
                .copied()
                .collect::<Vec<_>>()
                .as_slice()
        ));
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(mod97(b"DE89370400440532013000"));
        assert!(!mod97(b"GB83WEST12345698765432"));
        assert!(mod11(b"0306406152"));
        assert!(mod11(b"080442957X"));
        assert!(!mod11(b"0306406153"));
    }

    #[test]
    fn mod11_of_a_long_number() {
        // A custom detector's pattern may match any number of digits (values up to
        // max_scan_bytes are scanned): 9 × (2 + 3 + … + 40,001) is far past u32::MAX.
        let mut s = vec![b'9'; 40_000];
        let sum: u64 = (0..40_000u64).map(|i| 9 * (i + 2)).sum();
        let check = (11 - sum % 11) % 11;
        s.push(if check == 10 {
            b'X'
        } else {
            b'0' + check as u8
        });
        assert!(mod11(&s));
        *s.last_mut().unwrap() = if check == 0 { b'1' } else { b'0' };
        assert!(!mod11(&s));
    }
}
