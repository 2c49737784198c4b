//! Errors: [`MaskError`] when a configuration cannot be compiled (startup stops). It never
//! carries a value that was being masked.

/// A configuration that cannot be compiled. Says which rule, detector or operator, and what is
/// wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("masking rule {rule:?}: {problem}")]
    Rule { rule: String, problem: String },
    #[error("masking detector {detector:?}: {problem}")]
    Detector { detector: String, problem: String },
    #[error("masking operator for {entity:?}: {problem}")]
    Operator { entity: String, problem: String },
    #[error("masking: {0}")]
    Config(String),
    #[error(
        "masking: {needed_by} needs a key: set `hmac_key = \"env:NAME\"` (or `file:PATH`) under \
         [masking], at least 32 bytes, e.g. from `openssl rand -hex 32`"
    )]
    KeyMissing { needed_by: String },
    #[error(
        "masking: hmac_key is {len} bytes; it must be at least 32 (e.g. `openssl rand -hex 32`)"
    )]
    KeyTooShort { len: usize },
}
