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
