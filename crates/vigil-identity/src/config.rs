//! Declared identities, and the errors of identity configuration.

use serde::{Deserialize, Deserializer};
use std::time::Duration;
use vigil_core::IdentityKind;

/// An identity Vigil knows, as declared in the configuration (`[[identities]]`).
///
/// ```toml
/// [[identities]]
/// name = "etl"                      # what clients give as `user`
/// kind = "machine"                  # machine (default) | human
/// connections = ["ehr-replica"]     # connections it may use (checked by the gateway)
/// groups = ["analytics"]            # for policies
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The identity's name: what clients give as `user`, and what the audit trail records.
    pub name: String,
    /// `machine` (service account, pipeline, agent; the default) or `human`.
    #[serde(default)]
    pub kind: IdentityKind,
    /// Names of the connections this identity may use. Checked by the gateway, not by the
    /// authenticator.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Groups the identity belongs to, for policies.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl IdentityConfig {
    /// A machine identity with no connections and no groups.
    pub fn machine(name: impl Into<String>) -> Self {
        IdentityConfig {
            name: name.into(),
            kind: IdentityKind::Machine,
            connections: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Whether this identity may use the connection named `connection`.
    pub fn may_use(&self, connection: &str) -> bool {
        self.connections.iter().any(|c| c == connection)
    }
}

/// A configuration that cannot work. Raised when an [`crate::Authenticator`] or an
/// [`crate::oidc::OidcVerifier`] is built, so that mistakes show at startup rather than at the
/// first login.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("identity names must not be empty")]
    EmptyIdentityName,
    #[error("identity {0:?} is declared twice")]
    DuplicateIdentity(String),
    #[error("OIDC provider names must not be empty")]
    EmptyProviderName,
    #[error("OIDC provider {0:?} is declared twice")]
    DuplicateProvider(String),
    #[error("OIDC providers {first:?} and {second:?} have the same issuer {issuer:?}; tokens are routed by issuer, so each needs its own")]
    DuplicateIssuer {
        first: String,
        second: String,
        issuer: String,
    },
    #[error("OIDC provider {provider:?}: invalid issuer URL {issuer:?}: {reason}")]
    BadIssuer {
        provider: String,
        issuer: String,
        reason: String,
    },
    #[error("OIDC provider {provider:?}: issuer {issuer:?} is not https; plain http is allowed only for a loopback issuer (127.0.0.1, ::1, localhost) with allow_insecure_http = true")]
    InsecureIssuer { provider: String, issuer: String },
    #[error("OIDC provider {provider:?}: allow_insecure_http is only honoured for loopback issuers, and {issuer:?} is not one; remove it")]
    InsecureNotLoopback { provider: String, issuer: String },
    #[error("OIDC provider {0:?}: audience must not be empty")]
    EmptyAudience(String),
    #[error("OIDC provider {0:?}: identity_claim must not be empty")]
    EmptyIdentityClaim(String),
    #[error("OIDC provider {provider:?}: algorithm {algorithm:?} is not allowed: {reason}")]
    BadAlgorithm {
        provider: String,
        algorithm: String,
        reason: String,
    },
    #[error("OIDC provider {0:?}: algorithms must list at least one algorithm")]
    NoAlgorithms(String),
    #[error("OIDC provider {provider:?}: identity_map maps {claim_value:?} to {identity:?}, which is not a declared identity")]
    UnmappedIdentity {
        provider: String,
        claim_value: String,
        identity: String,
    },
    #[error("OIDC provider {provider:?}: cannot build its HTTP client: {reason}")]
    HttpClient { provider: String, reason: String },
}

/// Reads a duration written as text (`30s`, `10m`, `1h 30m`, as [`humantime`] reads it) or as a
/// whole number of seconds.
pub(crate) fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?}: {e} (write e.g. \"30s\", \"10m\" or a number of seconds)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct D {
        #[serde(deserialize_with = "deserialize_duration")]
        d: Duration,
    }

    #[test]
    fn durations_as_text_or_seconds() {
        let a: D = serde_json::from_str(r#"{"d": "1m 30s"}"#).unwrap();
        assert_eq!(a.d, Duration::from_secs(90));
        let b: D = serde_json::from_str(r#"{"d": 15}"#).unwrap();
        assert_eq!(b.d, Duration::from_secs(15));
        let err = serde_json::from_str::<D>(r#"{"d": "soon"}"#).err().unwrap();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }

    #[test]
    fn identity_defaults_and_unknown_keys() {
        let i: IdentityConfig = serde_json::from_str(r#"{"name": "etl"}"#).unwrap();
        assert_eq!(i, IdentityConfig::machine("etl"));
        let h: IdentityConfig = serde_json::from_str(
            r#"{"name": "ana", "kind": "human", "connections": ["ehr"], "groups": ["g"]}"#,
        )
        .unwrap();
        assert_eq!(h.kind, IdentityKind::Human);
        assert!(h.may_use("ehr") && !h.may_use("billing"));
        assert!(
            serde_json::from_str::<IdentityConfig>(r#"{"name": "x", "knd": "human"}"#).is_err()
        );
    }
}
