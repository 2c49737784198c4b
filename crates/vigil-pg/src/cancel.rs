//! Cancel routing. Each client is given the upstream backend's real process id (so that
//! `pg_backend_pid()` and NOTIFY sender pids match what the client was told) and a secret key
//! made by Vigil. A CancelRequest is forwarded only if both match a live session, and then with
//! that session's real upstream key: a client can cancel its own statements and nobody else's.

use crate::config::Target;
use crate::messages::BackendKeyData;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a cancel for one session goes.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    pub target: Arc<Target>,
    pub upstream_key: BackendKeyData,
}

#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<BackendKeyData, CancelTarget>>,
}

impl CancelRegistry {
    /// Registers a session and returns the key data to hand its client.
    pub fn register(&self, target: CancelTarget) -> BackendKeyData {
        let mut sessions = self.sessions.lock();
        loop {
            let key = BackendKeyData {
                process_id: target.upstream_key.process_id,
                secret_key: rand::random(),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = sessions.entry(key) {
                slot.insert(target);
                return key;
            }
        }
    }

    pub fn unregister(&self, client_key: &BackendKeyData) {
        self.sessions.lock().remove(client_key);
    }

    pub fn lookup(&self, client_key: &BackendKeyData) -> Option<CancelTarget> {
        self.sessions.lock().get(client_key).cloned()
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamTlsMode;

    fn target() -> CancelTarget {
        CancelTarget {
            target: Arc::new(Target {
                max_sessions: None,
                max_sessions_per_identity: None,
                name: "t".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                database: "d".into(),
                user: "u".into(),
                password: None,
                tls: UpstreamTlsMode::Disable,
                ca_file: None,
            }),
            upstream_key: BackendKeyData {
                process_id: 77,
                secret_key: 1234,
            },
        }
    }

    #[test]
    fn only_the_exact_key_routes() {
        let reg = CancelRegistry::default();
        let key = reg.register(target());
        assert_eq!(key.process_id, 77, "clients see the real backend pid");
        assert_eq!(reg.lookup(&key).unwrap().upstream_key.secret_key, 1234);
        let guess = BackendKeyData {
            process_id: 77,
            secret_key: 1234,
        };
        if guess != key {
            assert!(
                reg.lookup(&guess).is_none(),
                "the upstream secret is not a valid key"
            );
        }
        reg.unregister(&key);
        assert!(reg.lookup(&key).is_none());
    }
}
