//! Operators: what replaces a value once a rule or a detector has decided it is PHI.
//!
//! Every operator either writes a replacement, asks for SQL NULL, or fails; a failure is never
//! answered with the clear value (the caller withholds it).

use crate::checksum;
use crate::config::{Generalization, OperatorSpec, OperatorSpecTable};
use crate::date;
use crate::dict::WordTable;
use crate::entity::Entity;
use crate::error::MaskError;
use crate::memo;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

/// Safe Harbor (45 CFR 164.514(b)(2)(i)(B)): three-digit ZIP prefixes whose areas hold 20,000
/// people or fewer (2000 Census) are written `000`.
const RESTRICTED_ZIP3: [&[u8; 3]; 17] = [
    b"036", b"059", b"063", b"102", b"203", b"556", b"692", b"790", b"821", b"823", b"830", b"831",
    b"878", b"879", b"884", b"890", b"893",
];

/// What an operator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A replacement was appended to `out`.
    Replaced,
    /// The value is to be SQL NULL.
    Null,
    /// The value passes as it is (`keep`, or a generalization with nothing to hide: an age
    /// under 90).
    Kept,
}

/// The value does not have the shape the operator needs (e.g. `generalize` to a year of a
/// value that is not a date). The caller withholds it.
#[derive(Debug)]
pub(crate) struct OperatorFailed;

/// A compiled operator.
#[derive(Clone)]
pub(crate) enum Operator {
    Redact(Box<[u8]>),
    Null,
    Keep,
    Partial {
        keep: usize,
        mask: Box<[u8]>,
    },
    Hmac {
        prefix: Box<[u8]>,
        length: usize,
        mac: HmacSha256,
        /// Identifies this operator in the pseudonym memo.
        memo: u64,
    },
    Generalize(Generalization),
    Fake {
        mac: HmacSha256,
        words: Arc<WordTable>,
        memo: u64,
    },
}

pub(crate) struct OperatorEnv<'a> {
    pub key: Option<&'a [u8]>,
    pub redact_token: &'a str,
    pub words: &'a Arc<WordTable>,
}

impl Operator {
    pub(crate) fn compile(
        spec: &OperatorSpec,
        entity: Entity,
        entity_label: &str,
        env: &OperatorEnv<'_>,
        needed_by: &str,
    ) -> Result<Operator, MaskError> {
        let bad = |problem: String| MaskError::Operator {
            entity: entity_label.to_string(),
            problem,
        };
        let keyed = |domain: &str| -> Result<HmacSha256, MaskError> {
            let key = env.key.ok_or_else(|| MaskError::KeyMissing {
                needed_by: needed_by.to_string(),
            })?;
            if key.len() < 32 {
                return Err(MaskError::KeyTooShort { len: key.len() });
            }
            let mut mac = HmacSha256::new_from_slice(key).map_err(|e| bad(e.to_string()))?;
            // Domain separation: equal values of different entities get unrelated pseudonyms.
            mac.update(domain.as_bytes());
            mac.update(&[0]);
            Ok(mac)
        };
        Ok(match &spec.0 {
            OperatorSpecTable::Redact { token } => {
                let token = token.as_deref().unwrap_or(env.redact_token);
                Operator::Redact(token.replace("{entity}", entity_label).into_bytes().into())
            }
            OperatorSpecTable::Null => Operator::Null,
            OperatorSpecTable::Keep => Operator::Keep,
            OperatorSpecTable::Partial { keep, mask_char } => {
                let mut buf = [0u8; 4];
                Operator::Partial {
                    keep: *keep,
                    mask: mask_char.encode_utf8(&mut buf).as_bytes().into(),
                }
            }
            OperatorSpecTable::Hmac {
                prefix,
                length,
                domain,
            } => {
                if !(8..=64).contains(length) {
                    return Err(bad(format!(
                        "hmac length {length} must be between 8 and 64 hex digits"
                    )));
                }
                Operator::Hmac {
                    prefix: prefix.clone().unwrap_or_default().into_bytes().into(),
                    length: *length,
                    mac: keyed(domain.as_deref().unwrap_or(entity_label))?,
                    memo: memo::next_id(),
                }
            }
            OperatorSpecTable::Generalize { to } => {
                let to = match (to, entity) {
                    (Some(t), _) => *t,
                    (None, Entity::Date) => Generalization::Year,
                    (None, Entity::Zip) => Generalization::Zip3,
                    (None, Entity::Age) => Generalization::Age,
                    (None, _) => {
                        return Err(bad(
                            "generalize needs `to = \"year\"`, `\"zip3\"` or `\"age\"` (it is \
                             inferred only for the date, zip and age entities)"
                                .into(),
                        ))
                    }
                };
                Operator::Generalize(to)
            }
            OperatorSpecTable::Fake => Operator::Fake {
                mac: keyed(&format!("fake:{entity_label}"))?,
                words: env.words.clone(),
                memo: memo::next_id(),
            },
        })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Operator::Redact(_) => "redact",
            Operator::Null => "null",
            Operator::Keep => "keep",
            Operator::Partial { .. } => "partial",
            Operator::Hmac { .. } => "hmac",
            Operator::Generalize(_) => "generalize",
            Operator::Fake { .. } => "fake",
        }
    }

    /// Masks `value` (of `entity`) into `out`.
    pub(crate) fn apply(
        &self,
        entity: Entity,
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Applied, OperatorFailed> {
        match self {
            Operator::Redact(token) => out.extend_from_slice(token),
            Operator::Null => return Ok(Applied::Null),
            Operator::Keep => return Ok(Applied::Kept),
            Operator::Partial { keep, mask } => partial(value, *keep, mask, out),
            Operator::Hmac {
                prefix,
                length,
                mac,
                memo,
            } => memo::pseudonym(*memo, entity.index() as u32, value, out, |out| {
                let mut mac = mac.clone();
                mac.update(value);
                let digest = mac.finalize().into_bytes();
                out.extend_from_slice(prefix);
                push_hex(&digest, *length, out);
                Ok::<(), OperatorFailed>(())
            })?,
            Operator::Generalize(to) => return generalize(*to, value, out),
            Operator::Fake { mac, words, memo } => {
                memo::pseudonym(*memo, entity.index() as u32, value, out, |out| {
                    fake(entity, mac, words, value, out)
                })?
            }
        }
        Ok(Applied::Replaced)
    }
}

fn push_hex(bytes: &[u8], digits: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..digits {
        let b = bytes[i / 2];
        out.push(HEX[if i % 2 == 0 { b >> 4 } else { b & 15 } as usize]);
    }
}

/// Keeps the last `keep` letters and digits, never more than half of them (a short value
/// would otherwise pass nearly whole).
fn partial(value: &[u8], keep: usize, mask: &[u8], out: &mut Vec<u8>) {
    if value.is_ascii() && mask.len() == 1 {
        // The common case, in place: the value copied, then its first letters and digits
        // overwritten (the same result as the general path below).
        let total = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
        let hide = total - keep.min(total / 2);
        let start = out.len();
        out.extend_from_slice(value);
        let mut seen = 0;
        for b in &mut out[start..] {
            if seen == hide {
                break;
            }
            if b.is_ascii_alphanumeric() {
                *b = mask[0];
                seen += 1;
            }
        }
        return;
    }
    partial_general(value, keep, mask, out)
}

/// [`partial`] for any text: counts characters, not bytes.
fn partial_general(value: &[u8], keep: usize, mask: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(value);
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = keep.min(total / 2);
    let mut seen = 0;
    for c in text.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen > total - keep {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            } else {
                out.extend_from_slice(mask);
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

fn generalize(
    to: Generalization,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<Applied, OperatorFailed> {
    let trimmed = value.trim_ascii();
    match to {
        Generalization::Year => {
            let d = date::parse_whole(value)
                .or_else(|| date::parse_month_first(trimmed, 0).map(|(d, _)| d))
                .or_else(|| date::parse_day_first(trimmed, 0).map(|(d, _)| d))
                .ok_or(OperatorFailed)?;
            out.extend_from_slice(itoa::Buffer::new().format(d.year).as_bytes());
        }
        Generalization::Zip3 => {
            let ok = (trimmed.len() == 5 || (trimmed.len() == 10 && trimmed[5] == b'-'))
                && trimmed[..5].iter().all(u8::is_ascii_digit);
            if !ok {
                return Err(OperatorFailed);
            }
            let zip3: &[u8; 3] = trimmed[..3].try_into().map_err(|_| OperatorFailed)?;
            if RESTRICTED_ZIP3.contains(&zip3) {
                out.extend_from_slice(b"000");
            } else {
                out.extend_from_slice(zip3);
            }
        }
        Generalization::Age => {
            let digits: &[u8] = trimmed
                .split(|b| !b.is_ascii_digit())
                .find(|p| !p.is_empty())
                .ok_or(OperatorFailed)?;
            if digits.len() > 3 {
                return Err(OperatorFailed);
            }
            if checksum::num(digits) <= 89 {
                return Ok(Applied::Kept);
            }
            out.extend_from_slice(b"90+");
        }
    }
    Ok(Applied::Replaced)
}

/// A keyed stream of pseudo-random bytes for one value.
struct Stream {
    mac: HmacSha256,
    block: [u8; 32],
    at: usize,
    counter: u32,
}

impl Stream {
    fn new(mac: &HmacSha256, value: &[u8]) -> Stream {
        let mut m = mac.clone();
        m.update(value);
        let seed: [u8; 32] = m.finalize().into_bytes().into();
        Stream {
            mac: HmacSha256::new_from_slice(&seed).expect("any key length"),
            block: seed,
            at: 0,
            counter: 0,
        }
    }

    fn byte(&mut self) -> u8 {
        if self.at == 32 {
            let mut m = self.mac.clone();
            m.update(&self.counter.to_be_bytes());
            self.counter += 1;
            self.block = m.finalize().into_bytes().into();
            self.at = 0;
        }
        self.at += 1;
        self.block[self.at - 1]
    }

    fn below(&mut self, n: u32) -> u32 {
        (u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])) % n
    }

    fn digit(&mut self) -> u8 {
        b'0' + self.below(10) as u8
    }
}

/// Same shape: digits → digits, letters → letters of the same case, the rest kept.
fn shape(s: &mut Stream, value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        out.push(match b {
            b'0'..=b'9' => s.digit(),
            b'a'..=b'z' => b'a' + s.below(26) as u8,
            b'A'..=b'Z' => b'A' + s.below(26) as u8,
            _ if b >= 0x80 => b'x',
            _ => b,
        });
    }
}

fn fake(
    entity: Entity,
    mac: &HmacSha256,
    words: &WordTable,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), OperatorFailed> {
    let mut s = Stream::new(mac, value);
    let start = out.len();
    match entity {
        Entity::Ssn => {
            // Area 900–999 is never issued: a fake can never be someone's SSN.
            shape(&mut s, value, out);
            let first = out[start..]
                .iter()
                .position(u8::is_ascii_digit)
                .ok_or(OperatorFailed)?;
            out[start + first] = b'9';
        }
        Entity::CreditCard | Entity::Npi => {
            shape(&mut s, value, out);
            let digits: Vec<usize> = (start..out.len())
                .filter(|&i| out[i].is_ascii_digit())
                .collect();
            let (&last, body) = digits.split_last().ok_or(OperatorFailed)?;
            if entity == Entity::Npi {
                if digits.len() != 10 {
                    return Err(OperatorFailed);
                }
                out[digits[0]] = b'1';
                let first9: Vec<u8> = body.iter().map(|&i| out[i]).collect();
                out[last] = checksum::npi_check_digit(&first9);
            } else {
                let body: Vec<u8> = body.iter().map(|&i| out[i]).collect();
                out[last] = checksum::luhn_check_digit(&body);
            }
        }
        Entity::Dea => {
            if value.len() != 9 {
                return Err(OperatorFailed);
            }
            out.extend_from_slice(&value[..2]);
            let mut d6 = [0u8; 6];
            for d in &mut d6 {
                *d = s.digit();
            }
            out.extend_from_slice(&d6);
            out.push(checksum::dea_check_digit(&d6));
        }
        Entity::Date => {
            let d = date::parse_whole(value).ok_or(OperatorFailed)?;
            out.extend_from_slice(value);
            let day = 1 + s.below(28) as u8;
            let put = |out: &mut Vec<u8>, at: &std::ops::Range<usize>, v: u8| {
                if at.len() == 2 {
                    out[start + at.start] = b'0' + v / 10;
                    out[start + at.start + 1] = b'0' + v % 10;
                } else if v < 10 {
                    out[start + at.start] = b'0' + v;
                }
            };
            if let Some(m) = &d.month_at {
                put(out, m, 1 + s.below(12) as u8);
            }
            put(out, &d.day_at, day);
        }
        Entity::Email => {
            let at = value
                .iter()
                .rposition(|&b| b == b'@')
                .ok_or(OperatorFailed)?;
            shape(&mut s, &value[..at], out);
            out.extend_from_slice(b"@example.org");
        }
        Entity::PersonName => {
            let text = String::from_utf8_lossy(value);
            let mut first_word = true;
            for (i, part) in text.split(' ').enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                if part.is_empty() {
                    continue;
                }
                let list = if first_word {
                    &words.first
                } else {
                    &words.last
                };
                first_word = false;
                let w = list[s.below(list.len() as u32) as usize];
                let upper = part.chars().all(|c| !c.is_lowercase());
                for (j, c) in w.chars().enumerate() {
                    out.push(if upper || j == 0 {
                        c.to_ascii_uppercase() as u8
                    } else {
                        c as u8
                    });
                }
                if part.ends_with(',') {
                    out.push(b',');
                }
            }
        }
        _ => shape(&mut s, value, out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn op(spec: &str, entity: Entity) -> Operator {
        #[derive(serde::Deserialize)]
        struct W {
            o: OperatorSpec,
        }
        let w: W = toml::from_str(&format!("o = {spec}")).unwrap();
        let words = Arc::new(WordTable::new());
        let env = OperatorEnv {
            key: Some(KEY),
            redact_token: "[REDACTED:{entity}]",
            words: &words,
        };
        Operator::compile(&w.o, entity, entity.builtin_name().unwrap(), &env, "test").unwrap()
    }

    fn run(o: &Operator, e: Entity, v: &str) -> Result<String, OperatorFailed> {
        let mut out = Vec::new();
        match o.apply(e, v.as_bytes(), &mut out)? {
            Applied::Replaced => Ok(String::from_utf8(out).unwrap()),
            Applied::Null => Ok("NULL".into()),
            Applied::Kept => Ok(v.to_string()),
        }
    }

    #[test]
    fn the_ascii_fast_paths_match_the_general_ones() {
        for v in [
            "123-45-6789",
            "(617) 555-0199",
            "ab",
            "",
            "x",
            "--",
            "A1-b2 c3!",
            "4111111111111111",
        ] {
            for keep in [0, 1, 2, 4, 10] {
                for mask in [&b"*"[..], "•".as_bytes()] {
                    let (mut fast, mut general) = (Vec::new(), Vec::new());
                    partial(v.as_bytes(), keep, mask, &mut fast);
                    partial_general(v.as_bytes(), keep, mask, &mut general);
                    assert_eq!(fast, general, "{v:?} keep {keep}");
                }
            }
        }
    }

    #[test]
    fn redact_null_keep_partial() {
        assert_eq!(
            run(&op("\"redact\"", Entity::Ssn), Entity::Ssn, "123-45-6789").unwrap(),
            "[REDACTED:ssn]"
        );
        assert_eq!(
            run(&op("\"null\"", Entity::Ssn), Entity::Ssn, "x").unwrap(),
            "NULL"
        );
        let p = op("{ kind = \"partial\", keep = 4 }", Entity::Ssn);
        assert_eq!(run(&p, Entity::Ssn, "123-45-6789").unwrap(), "***-**-6789");
        // Never more than half.
        assert_eq!(run(&p, Entity::Ssn, "12345").unwrap(), "***45");
        assert_eq!(run(&p, Entity::Ssn, "").unwrap(), "");
    }

    #[test]
    fn hmac_is_keyed_deterministic_and_domain_separated() {
        let h = op(
            "{ kind = \"hmac\", prefix = \"p_\", length = 12 }",
            Entity::Ssn,
        );
        let a = run(&h, Entity::Ssn, "123-45-6789").unwrap();
        assert_eq!(a, run(&h, Entity::Ssn, "123-45-6789").unwrap());
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("p_"));
        assert_ne!(a, run(&h, Entity::Ssn, "123-45-6788").unwrap());
        let other = op(
            "{ kind = \"hmac\", prefix = \"p_\", length = 12 }",
            Entity::Mrn,
        );
        assert_ne!(a, run(&other, Entity::Mrn, "123-45-6789").unwrap());
    }

    #[test]
    fn generalize() {
        let g = op("\"generalize\"", Entity::Date);
        assert_eq!(run(&g, Entity::Date, "1984-03-07").unwrap(), "1984");
        assert_eq!(run(&g, Entity::Date, "March 7, 1984").unwrap(), "1984");
        assert!(run(&g, Entity::Date, "not a date").is_err());
        let z = op("\"generalize\"", Entity::Zip);
        assert_eq!(run(&z, Entity::Zip, "02139").unwrap(), "021");
        assert_eq!(run(&z, Entity::Zip, "03601-1234").unwrap(), "000");
        assert!(run(&z, Entity::Zip, "2139").is_err());
        let a = op("\"generalize\"", Entity::Age);
        assert_eq!(run(&a, Entity::Age, "93").unwrap(), "90+");
        assert_eq!(run(&a, Entity::Age, "89").unwrap(), "89");
        assert!(run(&a, Entity::Age, "old").is_err());
    }

    #[test]
    fn fake_keeps_shape_and_validity() {
        let f = op("\"fake\"", Entity::Ssn);
        let v = run(&f, Entity::Ssn, "123-45-6789").unwrap();
        assert_eq!(v.len(), 11);
        assert!(v.starts_with('9') && v.as_bytes()[3] == b'-');
        assert_eq!(v, run(&f, Entity::Ssn, "123-45-6789").unwrap());
        let c = op("\"fake\"", Entity::CreditCard);
        let v = run(&c, Entity::CreditCard, "4111 1111 1111 1111").unwrap();
        let digits: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).collect();
        assert!(checksum::luhn(&digits) && v.len() == 19);
        let n = op("\"fake\"", Entity::Npi);
        assert!(checksum::npi(
            run(&n, Entity::Npi, "1234567893").unwrap().as_bytes()
        ));
        let d = op("\"fake\"", Entity::Date);
        let v = run(&d, Entity::Date, "1984-03-07").unwrap();
        assert!(v.starts_with("1984-") && date::parse_whole(v.as_bytes()).is_some());
        let e = op("\"fake\"", Entity::Email);
        assert!(run(&e, Entity::Email, "jane.doe@mail.com")
            .unwrap()
            .ends_with("@example.org"));
        let p = op("\"fake\"", Entity::PersonName);
        let v = run(&p, Entity::PersonName, "Jane Doe").unwrap();
        assert_ne!(v, "Jane Doe");
        assert!(v.chars().next().unwrap().is_uppercase());
    }

    #[test]
    fn keyed_operators_need_a_long_key() {
        let words = Arc::new(WordTable::new());
        let env = OperatorEnv {
            key: None,
            redact_token: "x",
            words: &words,
        };
        let spec = OperatorSpec(OperatorSpecTable::Fake);
        assert!(matches!(
            Operator::compile(&spec, Entity::Ssn, "ssn", &env, "rule \"x\""),
            Err(MaskError::KeyMissing { .. })
        ));
        let env = OperatorEnv {
            key: Some(b"short"),
            redact_token: "x",
            words: &words,
        };
        assert!(matches!(
            Operator::compile(&spec, Entity::Ssn, "ssn", &env, "rule \"x\""),
            Err(MaskError::KeyTooShort { len: 5 })
        ));
    }
}
