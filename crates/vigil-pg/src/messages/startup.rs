//! The untagged first message of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest, told apart by a 32-bit code after the length.

use crate::codec::{DecodeError, Reader};

/// PostgreSQL's own bound on a startup packet; anything longer is refused before it is read.
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// What the client asked for first.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupRequest<'a> {
    Ssl,
    GssEnc,
    Cancel { process_id: i32, secret_key: i32 },
    Startup(StartupPacket<'a>),
}

/// A StartupMessage: the protocol version and the connection parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct StartupPacket<'a> {
    pub major: u16,
    pub minor: u16,
    /// Parameters in the order sent (`user`, `database`, `application_name`, `options`, …).
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> StartupPacket<'a> {
    /// The last value given for `name` (PostgreSQL lets later ones win).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// Checks the length word of a startup packet (which counts itself) and returns the number of
/// bytes that follow it.
pub fn body_len(length_word: [u8; 4]) -> Result<usize, DecodeError> {
    let len = i32::from_be_bytes(length_word);
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&len) {
        return Err(DecodeError::Invalid {
            message: "startup packet",
            problem: format!(
                "invalid length {len} (must be between 8 and {MAX_STARTUP_PACKET} bytes)"
            ),
        });
    }
    Ok(len as usize - 4)
}

impl<'a> StartupRequest<'a> {
    /// Decodes the bytes after the length word.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "startup packet");
        let code = r.i32("protocol code")?;
        match code {
            SSL_REQUEST => {
                r.finish()?;
                Ok(StartupRequest::Ssl)
            }
            GSSENC_REQUEST => {
                r.finish()?;
                Ok(StartupRequest::GssEnc)
            }
            CANCEL_REQUEST => {
                let process_id = r.i32("process id")?;
                let secret_key = r.i32("secret key")?;
                r.finish()?;
                Ok(StartupRequest::Cancel {
                    process_id,
                    secret_key,
                })
            }
            _ => {
                let major = (code >> 16) as u16;
                let minor = (code & 0xffff) as u16;
                if major != 3 {
                    return Err(r.invalid(format!(
                        "unsupported frontend protocol {major}.{minor}: Vigil speaks protocol 3.0"
                    )));
                }
                let mut params = Vec::new();
                loop {
                    let name = r.cstr_utf8("parameter name")?;
                    if name.is_empty() {
                        break;
                    }
                    let value = r.cstr_utf8("parameter value")?;
                    params.push((name, value));
                }
                r.finish()?;
                Ok(StartupRequest::Startup(StartupPacket {
                    major,
                    minor,
                    params,
                }))
            }
        }
    }
}

/// Appends a StartupMessage (protocol 3.0) with the given parameters, length word included.
pub fn encode_startup(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&196_608i32.to_be_bytes());
    for (k, v) in params {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends an SSLRequest, length word included.
pub fn encode_ssl_request(out: &mut Vec<u8>) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&SSL_REQUEST.to_be_bytes());
}

/// Appends a CancelRequest, length word included.
pub fn encode_cancel_request(out: &mut Vec<u8>, process_id: i32, secret_key: i32) {
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&process_id.to_be_bytes());
    out.extend_from_slice(&secret_key.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_startup_parameters() {
        let mut out = Vec::new();
        encode_startup(
            &mut out,
            &[("user", "etl"), ("database", "ehr"), ("user", "x")],
        );
        let n = body_len(out[..4].try_into().unwrap()).unwrap();
        assert_eq!(n, out.len() - 4);
        match StartupRequest::decode(&out[4..]).unwrap() {
            StartupRequest::Startup(p) => {
                assert_eq!((p.major, p.minor), (3, 0));
                assert_eq!(p.param("user"), Some("x"));
                assert_eq!(p.param("database"), Some("ehr"));
                assert_eq!(p.param("options"), None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_special_requests() {
        let mut out = Vec::new();
        encode_ssl_request(&mut out);
        assert_eq!(
            StartupRequest::decode(&out[4..]).unwrap(),
            StartupRequest::Ssl
        );
        out.clear();
        encode_cancel_request(&mut out, 7, -9);
        assert_eq!(
            StartupRequest::decode(&out[4..]).unwrap(),
            StartupRequest::Cancel {
                process_id: 7,
                secret_key: -9
            }
        );
        assert_eq!(
            StartupRequest::decode(&80_877_104i32.to_be_bytes()).unwrap(),
            StartupRequest::GssEnc
        );
    }

    #[test]
    fn refuses_malformed_packets() {
        assert!(body_len(4i32.to_be_bytes()).is_err());
        assert!(body_len(10_001i32.to_be_bytes()).is_err());
        assert!(body_len((-1i32).to_be_bytes()).is_err());
        // protocol 2.0
        assert!(StartupRequest::decode(&0x0002_0000i32.to_be_bytes()).is_err());
        // missing final terminator
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0etl\0");
        assert!(StartupRequest::decode(&body).is_err());
        // value not UTF-8
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0\xff\0\0");
        assert!(StartupRequest::decode(&body).is_err());
        // cancel with trailing bytes
        let mut body = 80_877_102i32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 9]);
        assert!(StartupRequest::decode(&body).is_err());
    }
}
