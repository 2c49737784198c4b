//! Authentication (`'R'`, backend): requests and outcomes of the login exchange.

use crate::codec::{put_message, DecodeError, Reader};
use crate::messages::tag::backend;

#[derive(Debug, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    /// SASL mechanisms the server offers.
    Sasl {
        mechanisms: Vec<&'a [u8]>,
    },
    SaslContinue {
        data: &'a [u8],
    },
    SaslFinal {
        data: &'a [u8],
    },
    /// Kerberos, GSS, SSPI…: not supported upstream.
    Other(i32),
}

impl<'a> Authentication<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "Authentication");
        let code = r.i32("authentication code")?;
        Ok(match code {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4, "salt")?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr("mechanism")?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue { data: r.rest() },
            12 => Authentication::SaslFinal { data: r.rest() },
            other => Authentication::Other(other),
        })
    }
}

/// Appends AuthenticationOk.
pub fn encode_ok(out: &mut Vec<u8>) {
    put_message(out, backend::AUTHENTICATION, |b| {
        b.extend_from_slice(&0i32.to_be_bytes())
    });
}

/// Appends AuthenticationCleartextPassword.
pub fn encode_cleartext_request(out: &mut Vec<u8>) {
    put_message(out, backend::AUTHENTICATION, |b| {
        b.extend_from_slice(&3i32.to_be_bytes())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sasl_offer() {
        let body = b"\0\0\0\x0aSCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0";
        match Authentication::decode(body).unwrap() {
            Authentication::Sasl { mechanisms } => assert_eq!(mechanisms.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut out = Vec::new();
        encode_cleartext_request(&mut out);
        assert_eq!(
            Authentication::decode(&out[5..]).unwrap(),
            Authentication::CleartextPassword
        );
    }
}
