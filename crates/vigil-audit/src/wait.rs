//! Waiting for a ticket from synchronous code.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use vigil_core::{AuditUnavailable, DurableTicket};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Blocks the calling thread until the ticket resolves. For synchronous callers (CLI
/// commands, tests, benchmarks); async code awaits the ticket instead and must not call this,
/// which would block a runtime worker.
pub fn wait_durable(ticket: DurableTicket) -> Result<u64, AuditUnavailable> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut ticket = pin!(ticket);
    loop {
        match ticket.as_mut().poll(&mut cx) {
            Poll::Ready(result) => return result,
            // Spurious unparks just poll again.
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_sender_on_another_thread() {
        let (tx, ticket) = DurableTicket::channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(Ok(5)).unwrap();
        });
        assert_eq!(wait_durable(ticket), Ok(5));
        t.join().unwrap();
        assert!(wait_durable(DurableTicket::ready(Err(AuditUnavailable("x".into())))).is_err());
    }
}
