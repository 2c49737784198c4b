//! Who is asking: an authenticated identity as it appears in every audit record.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether an identity is a program (service account, pipeline, script, agent) or a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    #[default]
    Machine,
    Human,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Machine => "machine",
            IdentityKind::Human => "human",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IdentityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "machine" => Ok(IdentityKind::Machine),
            "human" => Ok(IdentityKind::Human),
            other => Err(format!(
                "unknown identity kind {other:?}: expected \"machine\" or \"human\""
            )),
        }
    }
}

/// How the identity proved itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A token issued by Vigil (`vigil token create`).
    ServiceToken,
    /// A JWT issued by an OIDC provider and validated against its published keys.
    Oidc,
    /// Vigil's own administrative token (HTTP API, CLI).
    AdminToken,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ServiceToken => "service_token",
            AuthMethod::Oidc => "oidc",
            AuthMethod::AdminToken => "admin_token",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated identity. Carried (shared, by `Arc`) into every event of its session.
///
/// Never holds the credential itself: only the id of a service token, or the issuer and subject
/// of an OIDC token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The identity's name as configured in Vigil (what clients give as `user`).
    pub name: String,
    pub kind: IdentityKind,
    pub auth_method: AuthMethod,
    /// OIDC issuer URL, for `auth_method = oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// OIDC `sub` claim, for `auth_method = oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Id of the Vigil service token (never the token), for `auth_method = service_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}
