//! Describe (`'D'`) and Close (`'C'`), frontend: both name a prepared statement or a portal.

use crate::codec::{DecodeError, Reader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

fn decode_target<'a>(
    body: &'a [u8],
    message: &'static str,
) -> Result<(Target, &'a [u8]), DecodeError> {
    let mut r = Reader::new(body, message);
    let target = match r.u8("target kind")? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        other => return Err(r.invalid(format!("unknown target kind 0x{other:02x}"))),
    };
    let name = r.cstr("name")?;
    r.finish()?;
    Ok((target, name))
}

#[derive(Debug, PartialEq, Eq)]
pub struct Describe<'a> {
    pub target: Target,
    pub name: &'a [u8],
}

impl<'a> Describe<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let (target, name) = decode_target(body, "Describe")?;
        Ok(Describe { target, name })
    }

    /// Appends the whole message (tag, length, body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::codec::put_message(out, crate::messages::tag::frontend::DESCRIBE, |b| {
            b.push(match self.target {
                Target::Statement => b'S',
                Target::Portal => b'P',
            });
            crate::codec::put_cstr(b, self.name);
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Close<'a> {
    pub target: Target,
    pub name: &'a [u8],
}

impl<'a> Close<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let (target, name) = decode_target(body, "Close")?;
        Ok(Close { target, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_targets() {
        assert_eq!(
            Describe::decode(b"Ss1\0").unwrap(),
            Describe {
                target: Target::Statement,
                name: b"s1"
            }
        );
        assert_eq!(Close::decode(b"P\0").unwrap().target, Target::Portal);
        assert!(Close::decode(b"Xs\0").is_err());
        assert!(Describe::decode(b"S").is_err());
    }
}

#[cfg(test)]
mod encode_tests {
    use super::*;

    #[test]
    fn describe_round_trips() {
        let mut out = Vec::new();
        Describe {
            target: Target::Portal,
            name: b"p1",
        }
        .encode(&mut out);
        assert_eq!(out[0], b'D');
        let len = i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, out.len());
        assert_eq!(
            Describe::decode(&out[5..]).unwrap(),
            Describe {
                target: Target::Portal,
                name: b"p1"
            }
        );
    }
}
