//! What a store call can fail with, whatever the concern.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first: reload the head and retry.
    #[error("the audit chain moved: expected to append seq {expected}, found head at {found}")]
    ChainConflict { expected: u64, found: u64 },
    /// The store is locked by someone else for longer than the busy timeout.
    #[error("the store is busy (locked by another process) and did not free up in time")]
    Busy,
    #[error("store error: {0}")]
    Backend(String),
    #[error("cannot open store {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("unsupported store URL {0:?}: expected sqlite://PATH or a file path")]
    BadUrl(String),
    /// A stored row cannot be read back as a row of its table (a column of the wrong type or
    /// size, an impossible sequence number). Only a damaged or hand-edited store has such rows:
    /// verifiers report it as tampering at `seq` (0 when the row has no usable seq).
    #[error("record {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
}
