//! Why an authentication attempt was refused, in words that are safe to log and to show the
//! client.

use vigil_core::event::{AuthFailed, AuthFailureReason};

/// Longest issuer, subject or user name copied into a rejection (they come from the client).
const MAX_ECHO_CHARS: usize = 128;

/// A refused authentication attempt.
///
/// Everything in it is safe for log lines, the audit trail and the client: it never holds the
/// token, nor any claim value except the JWT's `iss` and `sub` (which the audit trail records
/// anyway, and which are cut to 128 characters with control characters replaced, because they
/// come from an unverified token).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason_name(*.reason))]
pub struct AuthRejection {
    pub reason: AuthFailureReason,
    /// What went wrong, for operators and clients. No token, no claims beyond `iss`/`sub`.
    pub detail: String,
    /// The JWT's `iss`, when a JWT was presented and its payload could be read.
    pub issuer: Option<String>,
    /// The JWT's `sub`, likewise.
    pub subject: Option<String>,
}

impl AuthRejection {
    pub fn new(reason: AuthFailureReason, detail: impl Into<String>) -> Self {
        AuthRejection {
            reason,
            detail: detail.into(),
            issuer: None,
            subject: None,
        }
    }

    /// Attaches the (sanitised) issuer and subject of the JWT this rejection is about.
    pub fn with_token_context(mut self, issuer: Option<&str>, subject: Option<&str>) -> Self {
        self.issuer = issuer.map(sanitize);
        self.subject = subject.map(sanitize);
        self
    }

    /// What the client should be told: what failed and what to do about it. Never names
    /// another identity, nor anything from the token beyond what the client sent.
    pub fn client_message(&self) -> String {
        use AuthFailureReason as R;
        let advice = match self.reason {
            R::MissingToken => {
                "no token was given; pass a Vigil service token or an OIDC access token as the password"
            }
            R::UnknownToken => {
                "the token is not valid; check that the whole token was passed as the password, or request a new one"
            }
            R::TokenExpired => "the token has expired; request a new one",
            R::TokenRevoked => "the token has been revoked; request a new one",
            R::IdentityMismatch => {
                "the token does not belong to this user; connect with the user name the token was issued for"
            }
            R::UnknownIdentity => {
                "this identity is not declared in Vigil; ask an administrator to declare it"
            }
            R::ConnectionNotAllowed => {
                "this identity may not use the requested connection; ask an administrator for access"
            }
            R::UnknownConnection => {
                "the requested connection (database name) does not exist; check the connection name"
            }
            R::JwtAlgNone => "unsigned tokens (alg \"none\") are refused; use a token signed by your identity provider",
            R::JwtAlgorithmNotAllowed => {
                "the token's signature algorithm is not allowed; use an access token signed by your identity provider with an asymmetric key"
            }
            R::JwtBadSignature => {
                "the token's signature does not verify; use an unmodified token from your identity provider"
            }
            R::JwtExpired => "the token has expired; request a new one",
            R::JwtNotYetValid => {
                "the token is not valid yet; check the clocks, or wait and retry"
            }
            R::JwtWrongAudience => {
                "the token was issued for another audience; request a token for Vigil's audience"
            }
            R::JwtWrongIssuer => {
                "the token's issuer is not a trusted identity provider; request a token from a provider Vigil trusts"
            }
            R::JwtUnknownKey => {
                "the token was signed with a key the identity provider does not publish; request a new token"
            }
            R::JwtMalformed => "the token is malformed or lacks a required claim; request a new one",
            R::JwtNoIdentity => {
                "the token does not name an identity that Vigil knows; ask an administrator to map it"
            }
            R::ProviderUnavailable => {
                "the identity provider could not be reached to check the token; retry later"
            }
            R::TlsRequired => "this listener requires TLS; connect with sslmode=require or stronger",
            R::Timeout => "authentication took too long; retry",
            R::SessionLimit => "too many sessions are open; close one and retry",
            R::StartupSettingRefused => {
                "a startup parameter was refused; connect without it"
            }
        };
        format!(
            "authentication failed ({}): {advice}",
            reason_name(self.reason)
        )
    }

    /// The audit record of this rejection. `user` is what the client gave (cut to 128
    /// characters, as the event's contract says).
    pub fn to_auth_failed(
        &self,
        user: &str,
        requested_connection: Option<&str>,
        client_addr: &str,
    ) -> AuthFailed {
        AuthFailed {
            reason: self.reason,
            user: truncate(user, MAX_ECHO_CHARS),
            requested_connection: requested_connection.map(str::to_string),
            client_addr: client_addr.to_string(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// The stable snake_case name of a reason (as it appears in the audit trail).
pub fn reason_name(reason: AuthFailureReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// Makes a client-supplied string fit for a log line: bounded length, no control characters
/// (which could forge log lines or terminal escapes).
pub(crate) fn sanitize(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    truncate(&cleaned, MAX_ECHO_CHARS)
}

/// At most `max_chars` characters; a cut string ends with `…` (counted).
fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let keep: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{keep}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_the_export_names() {
        assert_eq!(reason_name(AuthFailureReason::JwtAlgNone), "jwt_alg_none");
        assert_eq!(
            reason_name(AuthFailureReason::TokenExpired),
            "token_expired"
        );
    }

    #[test]
    fn client_message_says_what_to_do() {
        let r = AuthRejection::new(AuthFailureReason::TokenExpired, "token t1 expired at …");
        assert_eq!(
            r.client_message(),
            "authentication failed (token_expired): the token has expired; request a new one"
        );
        assert_eq!(r.to_string(), "token_expired: token t1 expired at …");
    }

    #[test]
    fn context_is_sanitised_and_bounded() {
        let long = "x".repeat(500);
        let r = AuthRejection::new(AuthFailureReason::JwtExpired, "expired")
            .with_token_context(Some("https://idp\n\u{1b}[31m"), Some(&long));
        assert_eq!(r.issuer.as_deref(), Some("https://idp\u{FFFD}\u{FFFD}[31m"));
        assert_eq!(r.subject.as_ref().unwrap().chars().count(), 128);
    }

    #[test]
    fn audit_record_cuts_the_user() {
        let r = AuthRejection::new(AuthFailureReason::UnknownToken, "unknown");
        let ev = r.to_auth_failed(&"u".repeat(300), Some("ehr"), "127.0.0.1:5000");
        assert_eq!(ev.user.chars().count(), 128);
        assert_eq!(ev.reason, AuthFailureReason::UnknownToken);
        assert_eq!(ev.requested_connection.as_deref(), Some("ehr"));
    }
}
