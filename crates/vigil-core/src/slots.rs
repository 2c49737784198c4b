//! Session slots: how many sessions run at once, per connection and per identity on it, so
//! that one identity cannot take every upstream slot and lock the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The sessions open now, by connection and by (connection, identity). Shared by every
/// listener of a gateway.
#[derive(Debug, Default)]
pub struct SessionSlots {
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_connection: HashMap<Arc<str>, u32>,
    per_identity: HashMap<(Arc<str>, Arc<str>), u32>,
}

/// Why a session got no slot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    #[error("connection \"{connection}\" already has {limit} sessions open, the most it allows")]
    Connection { connection: String, limit: u32 },
    #[error("identity \"{identity}\" already has {limit} sessions open on connection \"{connection}\", the most its grants allow")]
    Identity {
        identity: String,
        connection: String,
        limit: u32,
    },
}

impl SessionSlots {
    /// Takes a slot for one session of `identity` on `connection`, if neither limit is
    /// reached; the slot is given back when the returned guard is dropped.
    pub fn acquire(
        self: &Arc<Self>,
        connection: &str,
        identity: &str,
        per_connection: Option<u32>,
        per_identity: Option<u32>,
    ) -> Result<SessionSlot, SlotRefusal> {
        let connection: Arc<str> = connection.into();
        let identity: Arc<str> = identity.into();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let on_connection = open.per_connection.get(&connection).copied().unwrap_or(0);
        if let Some(limit) = per_connection.filter(|&l| on_connection >= l) {
            return Err(SlotRefusal::Connection {
                connection: connection.to_string(),
                limit,
            });
        }
        let key = (connection.clone(), identity.clone());
        let of_identity = open.per_identity.get(&key).copied().unwrap_or(0);
        if let Some(limit) = per_identity.filter(|&l| of_identity >= l) {
            return Err(SlotRefusal::Identity {
                identity: identity.to_string(),
                connection: connection.to_string(),
                limit,
            });
        }
        *open.per_connection.entry(connection).or_default() += 1;
        *open.per_identity.entry(key.clone()).or_default() += 1;
        Ok(SessionSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Sessions open on a connection now.
    pub fn open_on(&self, connection: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.per_connection.get(connection).copied().unwrap_or(0)
    }
}

/// One session's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct SessionSlot {
    slots: Arc<SessionSlots>,
    key: (Arc<str>, Arc<str>),
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        let emptied = |n: &mut u32| {
            *n = n.saturating_sub(1);
            *n == 0
        };
        if open
            .per_connection
            .get_mut(&self.key.0)
            .is_some_and(emptied)
        {
            open.per_connection.remove(&self.key.0);
        }
        if open.per_identity.get_mut(&self.key).is_some_and(emptied) {
            open.per_identity.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_identity_and_per_connection_and_slots_come_back() {
        let slots = Arc::new(SessionSlots::default());
        let a1 = slots.acquire("db", "a", Some(3), Some(2)).unwrap();
        let _a2 = slots.acquire("db", "a", Some(3), Some(2)).unwrap();
        assert!(matches!(
            slots.acquire("db", "a", Some(3), Some(2)),
            Err(SlotRefusal::Identity { limit: 2, .. })
        ));
        // Another identity is not locked out by a's sessions…
        let b1 = slots.acquire("db", "b", Some(3), Some(2)).unwrap();
        // …but the connection's own limit holds for everyone.
        assert!(matches!(
            slots.acquire("db", "c", Some(3), None),
            Err(SlotRefusal::Connection { limit: 3, .. })
        ));
        // Other connections count apart.
        let _other = slots.acquire("other", "a", Some(1), Some(1)).unwrap();
        drop(a1);
        drop(b1);
        assert_eq!(slots.open_on("db"), 1);
        let _a3 = slots.acquire("db", "a", Some(3), Some(2)).unwrap();
        assert!(
            slots.acquire("db", "a", None, None).is_ok(),
            "no limits, no refusal"
        );
    }
}
