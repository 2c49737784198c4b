//! Secrets given by reference (`env:NAME`, `file:PATH`), so that configuration files never hold
//! credentials, and a string wrapper that never prints its contents.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from. Parsed from `env:NAME` or `file:PATH`; a bare string is refused so
/// that nobody pastes a password into a config file by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret reference {0:?} must be `env:NAME` or `file:PATH`")]
    BadReference(String),
    #[error("environment variable {0} (named by a secret reference) is not set")]
    EnvMissing(String),
    #[error("cannot read secret file {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if let Some(name) = s.strip_prefix("env:") {
            if !name.is_empty() {
                return Ok(SecretRef::Env(name.to_string()));
            }
        } else if let Some(path) = s.strip_prefix("file:") {
            if !path.is_empty() {
                return Ok(SecretRef::File(PathBuf::from(path)));
            }
        }
        Err(SecretError::BadReference(redact_reference(s)))
    }

    /// Reads the secret now. Trailing newlines of files are dropped.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::new)
                .map_err(|_| SecretError::EnvMissing(name.clone())),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString::new(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| SecretError::FileUnreadable {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
        }
    }
}

/// A bad reference might be a pasted secret: show only its shape.
fn redact_reference(s: &str) -> String {
    match s.split_once(':') {
        Some((scheme, _)) if scheme.len() < 10 => format!("{scheme}:…"),
        _ => format!("<{} characters>", s.chars().count()),
    }
}

impl TryFrom<String> for SecretRef {
    type Error = SecretError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SecretRef::parse(&s)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that holds a secret. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: String) -> Self {
        SecretString(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_refuses_bare_strings() {
        assert_eq!(
            SecretRef::parse("env:PGPASS").unwrap(),
            SecretRef::Env("PGPASS".into())
        );
        assert_eq!(
            SecretRef::parse("file:/run/s").unwrap(),
            SecretRef::File("/run/s".into())
        );
        let err = SecretRef::parse("hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(SecretRef::parse("env:").is_err());
    }

    #[test]
    fn secret_string_never_prints() {
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** SecretString(***)");
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("vigil-secret-{}", std::process::id()));
        std::fs::write(&dir, "pw\n").unwrap();
        let got = SecretRef::File(dir.clone()).resolve().unwrap();
        assert_eq!(got.expose(), "pw");
        std::fs::remove_file(dir).unwrap();
    }
}
