//! The seam between the data path and the audit trail.

use crate::EventDraft;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The audit trail could not take a record. The data path must not go on with what the record
/// was meant to cover (fail closed).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("the audit trail is unavailable: {0}")]
pub struct AuditUnavailable(pub String);

/// Resolves to the record's sequence number once it is durable, or to [`AuditUnavailable`].
///
/// For a batch ([`EventSink::append_all`]) it resolves to the sequence number of the last record.
#[must_use = "a durable ticket means nothing unless awaited"]
pub struct DurableTicket(TicketInner);

enum TicketInner {
    Ready(Option<Result<u64, AuditUnavailable>>),
    Waiting(oneshot::Receiver<Result<u64, AuditUnavailable>>),
}

/// The sending half that a sink completes when the record is durable (or has failed).
pub type DurableSender = oneshot::Sender<Result<u64, AuditUnavailable>>;

impl DurableTicket {
    /// A pair: the ticket for the caller, the sender for the sink.
    pub fn channel() -> (DurableSender, DurableTicket) {
        let (tx, rx) = oneshot::channel();
        (tx, DurableTicket(TicketInner::Waiting(rx)))
    }

    /// A ticket that is already resolved.
    pub fn ready(result: Result<u64, AuditUnavailable>) -> DurableTicket {
        DurableTicket(TicketInner::Ready(Some(result)))
    }
}

impl Future for DurableTicket {
    type Output = Result<u64, AuditUnavailable>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            TicketInner::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(AuditUnavailable("ticket polled twice".into()))),
            ),
            TicketInner::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| Err(AuditUnavailable("the audit writer stopped".into())))
            }),
        }
    }
}

/// Where the data path sends events.
///
/// Contract:
/// - Records are appended in the order the calls were made (per caller and globally).
/// - [`append`](EventSink::append) and [`append_all`](EventSink::append_all) return a ticket
///   that resolves once the records are durable. If they cannot be stored, the ticket resolves
///   to an error and the records are dropped: the caller must then not do what they cover.
/// - [`append_detached`](EventSink::append_detached) is for records of facts that already
///   happened (a statement finished, a session ended). Nobody waits for them, so a sink must
///   not drop them on a store failure: it keeps them, in order, and retries.
pub trait EventSink: Send + Sync + 'static {
    /// Appends one record; the ticket resolves when it is durable.
    fn append(&self, draft: EventDraft) -> DurableTicket {
        self.append_all(vec![draft])
    }

    /// Appends records atomically (all or none) in one go; the ticket resolves when all are
    /// durable.
    fn append_all(&self, drafts: Vec<EventDraft>) -> DurableTicket;

    /// Appends a record of something that already happened; kept and retried on failure.
    fn append_detached(&self, draft: EventDraft);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn ticket_resolves_from_its_sender() {
        let (tx, ticket) = DurableTicket::channel();
        tx.send(Ok(9)).unwrap();
        assert_eq!(ticket.await, Ok(9));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropped_sender_is_an_error_not_success() {
        let (tx, ticket) = DurableTicket::channel();
        drop(tx);
        assert!(ticket.await.is_err());
    }
}

/// Where sessions' replay captures go: what the client sent and what it received (after
/// masking), with timing. See `vigil-replay` for the file format.
pub trait ReplaySink: Send + Sync {
    /// Starts the capture of one session. May block on file I/O: call it off the async path.
    fn open(&self, session: &ReplayHeader) -> Result<Box<dyn ReplayRecorder>, String>;
}

/// One session's capture. Calls never block on I/O.
pub trait ReplayRecorder: Send + Sync {
    /// Bytes the client sent (`from_client`) or was sent, as they crossed the gateway.
    fn record(&self, from_client: bool, bytes: &[u8]);
    /// `false` once the capture has failed (the session must then end: no unrecorded access).
    fn healthy(&self) -> bool;
    /// Ends the capture: the SHA-256 (hex) of the complete capture (`None` if it failed), of
    /// the file as stored when that differs (an encrypted capture), and whether it stopped early
    /// at a configured bound, for the session's end record.
    fn finish(&self, reason: &str) -> ReplayEnd;
}

/// What a finished capture tells the session's end record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayEnd {
    /// SHA-256 of the capture's content (its JSON lines).
    pub sha256: Option<String>,
    /// SHA-256 of the file as stored, when it is not the content itself: an encrypted capture,
    /// whose integrity can then be checked without its key.
    pub file_sha256: Option<String>,
    pub truncated: Option<crate::event::ReplayTruncated>,
}

/// What a capture file says of its session first.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ReplayHeader {
    pub session_id: String,
    pub identity: String,
    pub identity_kind: crate::IdentityKind,
    pub connection: String,
    pub client_addr: String,
    pub started_at: crate::Timestamp,
}
