//! # vigil-core
//!
//! The protocol-neutral model that every other Vigil crate speaks: who is asking ([`Principal`]),
//! when ([`Timestamp`]), and what happened ([`Event`]). Protocol adapters (PostgreSQL today) turn
//! bytes on the wire into these events; the audit writer chains and stores them; exports and
//! replays read them back.
//!
//! This crate does no I/O. The one seam to the outside is [`EventSink`]: the data path hands
//! events to a sink and, when the event must be durable before anything else happens (a
//! statement's start record, which gates forwarding the statement), waits on the returned
//! [`DurableTicket`].
//!
//! ```
//! use vigil_core::{Event, EventDraft, SessionId, Timestamp};
//! let draft = EventDraft::new(Event::Checkpoint(vigil_core::event::Checkpoint {
//!     covers_seq: 41,
//!     head_hash: "00".repeat(32),
//!     key_id: "k1".into(),
//!     signature: String::new(),
//! }));
//! assert!(draft.session_id.is_none());
//! let _ = (SessionId::new(), Timestamp::now());
//! ```

pub mod event;
pub mod identity;
pub mod secret;
pub mod sink;
pub mod slots;
pub mod time;

pub use event::{Event, EventDraft, EventKind, Record};
pub use identity::{AuthMethod, IdentityKind, Principal};
pub use secret::{SecretError, SecretRef, SecretString};
pub use sink::{
    AuditUnavailable, DurableTicket, EventSink, ReplayEnd, ReplayHeader, ReplayRecorder, ReplaySink,
};
pub use slots::{SessionSlot, SessionSlots, SlotRefusal};
pub use time::Timestamp;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one client session through a gateway, from authentication to disconnect.
///
/// A UUIDv7, so session ids sort by start time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub uuid::Uuid);

impl SessionId {
    pub fn new() -> Self {
        SessionId(uuid::Uuid::now_v7())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(SessionId)
    }
}
