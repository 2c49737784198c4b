//! Reading a JWT *without* verifying it, for two things only: catching `alg: none` and the
//! like before anything else (jsonwebtoken refuses them with a generic error), and routing the
//! token to the provider its `iss` names. Nothing read here is trusted: the token is then
//! verified with that provider's keys, and its claims checked, by jsonwebtoken.

use crate::rejection::AuthRejection;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use vigil_core::event::AuthFailureReason;

/// Longest token looked at. Real access tokens are a few KiB; this bounds the work a client can
/// ask for.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Whether `s` has the shape of a JWS in compact form: three base64url segments separated by
/// dots. The signature segment may be empty (that is what `alg: none` tokens look like, and
/// they must reach the JWT path to be refused as such).
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |seg: &str| {
        seg.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(sig)
}

/// What the unverified token says about itself.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// The header's `alg`, as written.
    pub alg: String,
    pub kid: Option<String>,
    /// The payload, when it is a JSON object.
    pub payload: Result<Map<String, Value>, &'static str>,
}

impl Peeked {
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.payload.as_ref().ok()?.get(name)?.as_str()
    }
    pub fn issuer(&self) -> Option<&str> {
        self.claim_str("iss")
    }
    pub fn subject(&self) -> Option<&str> {
        self.claim_str("sub")
    }
}

fn malformed(detail: &str) -> AuthRejection {
    AuthRejection::new(AuthFailureReason::JwtMalformed, detail)
}

fn decode_json_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Reads the header and payload. Fails only on a token whose header cannot be read (a payload
/// that cannot be read is reported in [`Peeked::payload`], so that `alg: none` is still
/// reported as such).
pub(crate) fn peek(token: &str) -> Result<Peeked, AuthRejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("the token is larger than 16 KiB"));
    }
    if !looks_like_jwt(token) {
        return Err(malformed(
            "the token is not a JWT in compact form (three base64url segments)",
        ));
    }
    let mut parts = token.split('.');
    let (header, payload) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = decode_json_object(header)
        .ok_or_else(|| malformed("the token's header is not base64url-encoded JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(malformed("the token's header has no `alg`")),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("the token's `kid` header is not a string")),
    };
    // We implement no JWS extension, so a token that declares one critical must be refused
    // (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(malformed(
            "the token declares critical header extensions (`crit`), which Vigil does not support",
        ));
    }
    let payload = decode_json_object(payload)
        .ok_or("the token's payload is not a base64url-encoded JSON object");
    Ok(Peeked { alg, kid, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(
            looks_like_jwt("eyJh.eyJi."),
            "alg none tokens end with a dot"
        );
        assert!(!looks_like_jwt("eyJh.eyJi"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".eyJi.c2ln"));
        assert!(!looks_like_jwt("eyJh.eyJi.c2l="));
        assert!(!looks_like_jwt("vgt_abc"));
        assert!(!looks_like_jwt("hunter2"));
        assert!(!looks_like_jwt("eyJh.eyJi.c2ln\n"));
    }

    #[test]
    fn reads_header_and_payload() {
        let t = format!(
            "{}.{}.sig",
            seg(r#"{"alg":"RS256","kid":"k1"}"#),
            seg(r#"{"iss":"https://idp","sub":"s"}"#)
        );
        let p = peek(&t).unwrap();
        assert_eq!(p.alg, "RS256");
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.issuer(), Some("https://idp"));
        assert_eq!(p.subject(), Some("s"));
    }

    #[test]
    fn unreadable_payload_is_reported_not_fatal() {
        let t = format!("{}.{}.", seg(r#"{"alg":"none"}"#), seg("[1]"));
        let p = peek(&t).unwrap();
        assert_eq!(p.alg, "none");
        assert!(p.payload.is_err());
    }

    #[test]
    fn refuses_bad_headers() {
        let body = seg("{}");
        for h in [
            r#"{"kid":"k"}"#,
            r#"{"alg":5}"#,
            r#"{"alg":"RS256","kid":7}"#,
            "[]",
        ] {
            let e = peek(&format!("{}.{body}.sig", seg(h))).unwrap_err();
            assert_eq!(e.reason, AuthFailureReason::JwtMalformed, "{h}");
        }
        let crit = format!("{}.{body}.sig", seg(r#"{"alg":"RS256","crit":["exp"]}"#));
        assert!(peek(&crit).unwrap_err().detail.contains("crit"));
        let big = format!(
            "{}.{}.sig",
            seg(r#"{"alg":"RS256"}"#),
            "A".repeat(MAX_TOKEN_BYTES)
        );
        assert!(peek(&big).unwrap_err().detail.contains("16 KiB"));
    }
}
