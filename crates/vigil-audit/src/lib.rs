//! # vigil-audit
//!
//! The tamper-evident audit trail: this crate turns the data path's events into a hash chain in
//! a [`vigil_store::AuditLog`], seals it with signed checkpoints, and verifies it. Each part
//! takes only the store concerns it reads: the writer, verification and retention the chain;
//! session reads the chain and the [`vigil_store::SessionsIndex`]; exports and bundles the chain
//! and, to say who an older grant or request was for, the grants and access requests
//! ([`export::StoreSource`]).
//!
//! - [`AuditWriter`] is the [`vigil_core::EventSink`] the gateway hands its events to. One
//!   dedicated OS thread owns the chain's head: it takes whatever is queued, gives each record
//!   its `seq` and `prev_hash`, serialises it, and appends the whole batch in one store
//!   transaction (group commit) before resolving the callers' [`DurableTicket`]s. It seals the
//!   chain with a signed `Checkpoint` record at start, every `checkpoint_interval` when new
//!   records exist, on [`AuditWriter::checkpoint_now`] and at [`AuditWriter::shutdown`], and
//!   after each checkpoint rewrites the **anchor file**: a copy of the latest checkpoint kept
//!   apart from the store, so that cutting the chain's tail is detected.
//! - [`verify`] reads the chain in order, streaming, and reports the first record that is not
//!   what was written: edited, deleted, inserted, reordered, truncated or wrongly signed.
//! - [`sessions`] reads sessions back (what `vigil sessions` and the HTTP API show): a read
//!   model over the store's session index, never writing.
//!
//! What a stored record is: `body` is the `serde_json` bytes of a [`vigil_core::Record`], and
//! those exact bytes are hashed (SHA-256); `prev_hash` is the hex hash of the previous record's
//! body (64 zeros for record 1). A checkpoint signs (ed25519) the text
//! `vigil-checkpoint-v1\n{covers_seq}\n{head_hash}`, where `covers_seq` is the record just before
//! the checkpoint and `head_hash` its hash. Verifying needs only the store, the public key and,
//! for truncation, the anchor file.
//!
//! This crate never logs a record's contents or key material.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vigil_audit::{AuditOptions, AuditWriter};
//! use vigil_core::{event::TokenIssued, Event, EventDraft};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(vigil_store::open("/var/lib/vigil/vigil.db", Default::default())?);
//! let key = vigil_audit::load_or_generate_signing_key("/var/lib/vigil/audit.key".as_ref())?;
//! let public = key.verifying_key();
//! let mut options = AuditOptions::new(key);
//! options.anchor_path = Some("/var/lib/vigil/audit.anchor".into());
//! let writer = AuditWriter::start(store.clone(), options)?; // seals the chain, spawns the thread
//!
//! let draft = EventDraft::new(Event::TokenIssued(TokenIssued {
//!     token_id: "tok_1".into(),
//!     identity_name: "etl".into(),
//!     expires_at: None,
//!     issued_by: "cli".into(),
//! }));
//! // Synchronous code waits like this; async code awaits the ticket instead.
//! let seq = vigil_audit::wait_durable(writer.append(draft))?;
//! println!("recorded as {seq}");
//!
//! writer.shutdown()?; // drains the queue, writes the final checkpoint and the anchor
//! let report = vigil_audit::verify(&*store, &public, Some("/var/lib/vigil/audit.anchor".as_ref()))?;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod anchor;
pub mod bundle;
pub mod export;
mod keys;
pub mod retention;
pub mod sessions;
mod verify;
mod wait;
mod writer;

pub use anchor::{read_anchor, Anchor};
pub use keys::{
    checkpoint_message, key_id, load_or_generate_signing_key, parse_public_key, public_key_pem,
    sign_checkpoint, verify_checkpoint,
};
pub use verify::{verify, verify_segment, SegmentReport, VerifyReport};
pub use wait::wait_durable;
pub use writer::{AuditOptions, AuditWriter};

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use vigil_core::DurableTicket;

use vigil_store::StoreError;

/// Hex SHA-256 of nothing-before-the-first-record: `prev_hash` of record 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key file cannot be read, parsed or created.
    #[error("audit signing key {path}: {reason}")]
    Key { path: String, reason: String },
    /// A public key given for verification is not an ed25519 public key in PEM.
    #[error("invalid audit public key: {0}")]
    PublicKey(String),
    /// The anchor file cannot be read or written, or is not a validly signed anchor.
    #[error("audit anchor file {path}: {reason}")]
    Anchor { path: String, reason: String },
    /// The chain is not what was written. `seq` is the first record found bad; `reason` says
    /// what is wrong in words meant for the operator.
    #[error("audit trail tampered: {reason}")]
    Tamper { seq: u64, reason: String },
    /// A stored record cannot be decoded as a [`vigil_core::Record`] (when reading sessions
    /// back; `verify` says whether the chain is intact).
    #[error("audit record {seq} cannot be decoded: {reason}")]
    Decode { seq: u64, reason: String },
    /// Detached records that could not be stored before the writer stopped (the store stayed
    /// unavailable through shutdown). They are gone; the count is in the message and the log.
    #[error("{count} audit records could not be stored before shutdown: {reason}")]
    Lost { count: usize, reason: String },
    /// The store could not take the writer's first checkpoint, so the writer did not start.
    #[error("the audit store is unavailable: {0}")]
    Unavailable(String),
    /// An export or evidence bundle could not be made or read (bad arguments, I/O).
    #[error("{0}")]
    Export(String),
    /// The writer thread is gone (it stopped, or could not be started).
    #[error("the audit writer is not running: {0}")]
    Stopped(String),
}

impl AuditError {
    /// The first bad sequence number, if this is a tampering finding.
    pub fn tampered_seq(&self) -> Option<u64> {
        match self {
            AuditError::Tamper { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}
