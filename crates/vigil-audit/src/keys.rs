//! The checkpoint signing key: file format, key ids, and what exactly is signed.

use crate::AuditError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The exact bytes a checkpoint signs.
pub fn checkpoint_message(covers_seq: u64, head_hash: &str) -> String {
    format!("vigil-checkpoint-v1\n{covers_seq}\n{head_hash}")
}

/// Base64 ed25519 signature of [`checkpoint_message`].
pub fn sign_checkpoint(key: &SigningKey, covers_seq: u64, head_hash: &str) -> String {
    let signature = key.sign(checkpoint_message(covers_seq, head_hash).as_bytes());
    BASE64.encode(signature.to_bytes())
}

/// Whether `signature` (base64) is `key`'s signature of [`checkpoint_message`]. Strict
/// verification: malleable or small-order signatures are refused.
pub fn verify_checkpoint(
    key: &VerifyingKey,
    covers_seq: u64,
    head_hash: &str,
    signature: &str,
) -> bool {
    let Ok(bytes) = BASE64.decode(signature.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify_strict(
        checkpoint_message(covers_seq, head_hash).as_bytes(),
        &signature,
    )
    .is_ok()
}

/// Identifies a key in checkpoints: hex of the first 8 bytes of SHA-256 of the raw 32-byte
/// public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), to hand to
/// auditors who run `vigil audit verify`.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("encoding a 32-byte ed25519 public key cannot fail")
}

/// Parses a public key written by [`public_key_pem`].
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, AuditError> {
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
        AuditError::PublicKey(format!(
            "{e}: expected an ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----)"
        ))
    })
}

/// Loads the signing key from a PKCS#8 PEM file, or creates one (mode 0600, parent
/// directories as needed) if there is none. Two processes racing to create it end up with
/// the same key: the loser reads the winner's file.
pub fn load_or_generate_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    let key_err = |reason: String| AuditError::Key {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_signing_key(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(key_err(e.to_string())),
    }

    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_err(format!("cannot encode the new key: {e}")))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| key_err(e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
            return parse_signing_key(path, &text);
        }
        Err(e) => return Err(key_err(e.to_string())),
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_err(format!("cannot write the new key: {e}")))?;
    tracing::info!(
        path = %path.display(),
        key_id = %key_id(&key.verifying_key()),
        "created a new audit signing key"
    );
    Ok(key)
}

fn parse_signing_key(path: &Path, text: &str) -> Result<SigningKey, AuditError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the audit signing key file is readable by other users: chmod 600 it"
            );
        }
    }
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| AuditError::Key {
        path: path.display().to_string(),
        reason: format!("not an ed25519 private key in PKCS#8 PEM ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let key = load_or_generate_signing_key(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_generate_signing_key(&path).unwrap();
        assert_eq!(key.to_bytes(), again.to_bytes());
    }

    #[test]
    fn a_bad_key_file_is_an_error_that_shows_no_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        std::fs::write(&path, "hunter2-not-a-key").unwrap();
        let err = load_or_generate_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains("PKCS#8"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn public_key_pem_round_trips_and_key_id_is_stable() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let pem = public_key_pem(&public);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(parse_public_key(&format!("\n{pem}\n")).unwrap(), public);
        assert!(parse_public_key("nope").is_err());
        let id = key_id(&public);
        assert_eq!(id.len(), 16);
        assert_eq!(id, hex::encode(&Sha256::digest(public.as_bytes())[..8]));
    }

    #[test]
    fn checkpoint_signatures_bind_seq_and_hash() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let public = key.verifying_key();
        let head = "ab".repeat(32);
        let sig = sign_checkpoint(&key, 41, &head);
        assert!(verify_checkpoint(&public, 41, &head, &sig));
        assert!(!verify_checkpoint(&public, 42, &head, &sig));
        assert!(!verify_checkpoint(&public, 41, &"cd".repeat(32), &sig));
        assert!(!verify_checkpoint(&other.verifying_key(), 41, &head, &sig));
        assert!(!verify_checkpoint(&public, 41, &head, "not base64!"));
        assert!(!verify_checkpoint(&public, 41, &head, ""));
        assert_eq!(checkpoint_message(41, "aa"), "vigil-checkpoint-v1\n41\naa");
    }
}
