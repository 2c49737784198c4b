//! The anchor file: the latest durable checkpoint, kept outside the store.
//!
//! A chain alone cannot prove that nothing was cut off its end: a truncated chain is still a
//! valid chain. The anchor records which checkpoint was written last (its seq and hash, and the
//! signed values it carries), so [`crate::verify`] can tell a chain that ends before it. Keep
//! it somewhere an attacker of the database cannot also rewrite (another volume, a WORM
//! bucket synced from it, a log shipper).

use crate::keys::verify_checkpoint;
use crate::AuditError;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use vigil_core::Timestamp;

pub(crate) const ANCHOR_FORMAT: &str = "vigil-anchor-v1";

/// Contents of the anchor file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Always `vigil-anchor-v1`.
    pub format: String,
    /// Seq of the checkpoint record.
    pub seq: u64,
    /// Hex SHA-256 of the checkpoint record's stored bytes.
    pub hash: String,
    /// The checkpoint's `covers_seq` (always `seq - 1`).
    pub covers_seq: u64,
    /// The checkpoint's `head_hash`: hash of record `covers_seq`.
    pub head_hash: String,
    pub key_id: String,
    /// Base64 ed25519 signature of `vigil-checkpoint-v1\n{covers_seq}\n{head_hash}`.
    pub signature: String,
    /// When the checkpoint record was made.
    pub at: Timestamp,
}

impl Anchor {
    /// Checks what can be checked without the chain: the format, that the checkpoint sits
    /// right after what it covers, and the signature.
    pub fn check(&self, key: &VerifyingKey) -> Result<(), String> {
        if self.format != ANCHOR_FORMAT {
            return Err(format!(
                "unknown format {:?} (expected {ANCHOR_FORMAT:?})",
                self.format
            ));
        }
        if self.covers_seq.checked_add(1) != Some(self.seq) {
            return Err(format!(
                "it names checkpoint {} covering {}, which is not the record before it \
                 (edited anchor?)",
                self.seq, self.covers_seq
            ));
        }
        let ours = crate::key_id(key);
        if self.key_id != ours {
            return Err(format!(
                "it was signed by key {}, not by the given key {ours} (wrong public key, or a \
                 forged anchor)",
                self.key_id
            ));
        }
        if !verify_checkpoint(key, self.covers_seq, &self.head_hash, &self.signature) {
            return Err(
                "its signature does not verify with the given key (edited or forged \
                        anchor?)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn anchor_err(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::Anchor {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads the anchor file; `None` if there is none yet.
pub fn read_anchor(path: &Path) -> Result<Option<Anchor>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anchor_err(path, e.to_string())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| anchor_err(path, format!("not a Vigil anchor file ({e})")))
}

/// Replaces the anchor file atomically (temp file, fsync, rename, fsync of the directory) so
/// that a crash leaves either the old anchor or the new one, never a torn file. An anchor
/// never moves backwards: if the file already names a later checkpoint (written by another
/// process sharing the chain), it is left alone.
pub(crate) fn write_anchor(path: &Path, anchor: &Anchor) -> Result<(), AuditError> {
    match read_anchor(path) {
        Ok(Some(existing)) if existing.seq >= anchor.seq => return Ok(()),
        _ => {}
    }
    let mut json = serde_json::to_vec_pretty(anchor)
        .map_err(|e| anchor_err(path, format!("cannot encode: {e}")))?;
    json.push(b'\n');
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        if let Some(parent) = path.parent() {
            let dir = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| anchor_err(path, e.to_string()))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "anchor".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn anchor(key: &SigningKey, seq: u64) -> Anchor {
        let head_hash = "ab".repeat(32);
        Anchor {
            format: ANCHOR_FORMAT.into(),
            seq,
            hash: "cd".repeat(32),
            covers_seq: seq - 1,
            signature: crate::sign_checkpoint(key, seq - 1, &head_hash),
            head_hash,
            key_id: crate::key_id(&key.verifying_key()),
            at: Timestamp::from_micros(1),
        }
    }

    #[test]
    fn write_read_and_never_move_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.anchor");
        assert_eq!(read_anchor(&path).unwrap(), None);
        let key = SigningKey::from_bytes(&[3; 32]);
        write_anchor(&path, &anchor(&key, 10)).unwrap();
        assert_eq!(read_anchor(&path).unwrap().unwrap().seq, 10);
        write_anchor(&path, &anchor(&key, 5)).unwrap();
        assert_eq!(read_anchor(&path).unwrap().unwrap().seq, 10);
        write_anchor(&path, &anchor(&key, 12)).unwrap();
        assert_eq!(read_anchor(&path).unwrap().unwrap().seq, 12);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn check_catches_edits_and_other_keys() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key();
        let good = anchor(&key, 10);
        good.check(&public).unwrap();

        let mut moved = good.clone();
        moved.seq = 8;
        assert!(moved
            .check(&public)
            .unwrap_err()
            .contains("not the record before"));

        let mut edited = good.clone();
        edited.head_hash = "00".repeat(32);
        assert!(edited.check(&public).unwrap_err().contains("signature"));

        let other = SigningKey::from_bytes(&[4; 32]);
        let err = good.check(&other.verifying_key()).unwrap_err();
        assert!(err.contains("signed by key"), "{err}");

        let mut format = good;
        format.format = "v0".into();
        assert!(format.check(&public).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.anchor");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(read_anchor(&path), Err(AuditError::Anchor { .. })));
    }
}
