//! Captures encrypted at rest: [age](https://age-encryption.org) files to X25519 recipients.
//!
//! The gateway holds only the recipients (public keys), so nothing on its host reads a sealed
//! capture; an auditor holds an identity (the secret key) and reads it with
//! `vigil replay --identity FILE`, or with any age tool:
//!
//! ```text
//! age -d -i key.txt <id>.jsonl.age          # the JSON lines
//! age -d -i key.txt <id>.jsonl.gz.age | gunzip
//! ```
//!
//! A sealed capture is written encrypted from its first byte (gzip, when `compress` is on,
//! comes before the encryption: ciphertext does not compress). The file names say what a file
//! is: `<id>.jsonl.age`, `<id>.jsonl.gz.age`.

use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The suffix of an encrypted capture's file name.
pub const SEALED_SUFFIX: &str = ".age";
/// Bytes of plaintext per age STREAM chunk, and what each chunk adds (its tag).
const AGE_CHUNK: u64 = 64 * 1024;
const AGE_TAG: u64 = 16;

/// A recipient, a recipients file or an identity file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("replay.encrypt_to: {entry:?} is not an age X25519 recipient (age1…, 62 characters) nor file:PATH of a recipients file")]
    BadRecipient { entry: String },
    #[error("replay.encrypt_to holds a secret key (AGE-SECRET-KEY-1…): give its public key (age1…, as `vigil replay keygen` prints it) and keep the identity file off the gateway's host")]
    SecretKey,
    #[error("replay.encrypt_to: cannot read the recipients file {path}: {error}")]
    RecipientsFile { path: String, error: std::io::Error },
    #[error("replay.encrypt_to: {path} line {line} is not an age X25519 recipient (age1…); only X25519 recipients are supported")]
    BadRecipientLine { path: String, line: usize },
    #[error("replay.encrypt_to: the recipients file {path} names no recipient")]
    EmptyRecipientsFile { path: String },
    #[error("replay.encrypt_to is set but names no recipient")]
    NoRecipients,
    #[error("cannot read the age identity file {path}: {error}")]
    IdentityFile { path: String, error: std::io::Error },
    #[error("the age identity file {path} holds no identity (AGE-SECRET-KEY-1… lines)")]
    NoIdentity { path: String },
}

/// Whom captures are encrypted to: `[replay] encrypt_to`.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

impl Recipients {
    /// Parses `encrypt_to`'s entries: each an `age1…` recipient or `file:PATH` of a recipients
    /// file (one recipient a line; blank lines and `#` comments ignored).
    pub fn parse(entries: &[String]) -> Result<Recipients, KeyError> {
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            if let Some(path) = entry.strip_prefix("file:") {
                let text =
                    std::fs::read_to_string(path).map_err(|error| KeyError::RecipientsFile {
                        path: path.into(),
                        error,
                    })?;
                let before = out.len();
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    out.push(age::x25519::Recipient::from_str(line).map_err(|_| {
                        KeyError::BadRecipientLine {
                            path: path.into(),
                            line: i + 1,
                        }
                    })?);
                }
                if out.len() == before {
                    return Err(KeyError::EmptyRecipientsFile { path: path.into() });
                }
            } else if entry.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                return Err(KeyError::SecretKey);
            } else {
                out.push(age::x25519::Recipient::from_str(entry).map_err(|_| {
                    KeyError::BadRecipient {
                        entry: entry.into(),
                    }
                })?);
            }
        }
        if out.is_empty() {
            return Err(KeyError::NoRecipients);
        }
        Ok(Recipients(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Starts an age file on `out`: its header is written now.
    fn wrap<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
                .map_err(std::io::Error::other)?;
        encryptor.wrap_output(out)
    }
}

/// Identities (secret keys) that read sealed captures: an age identity file.
pub struct Keyring(Vec<Box<dyn age::Identity + Send + Sync>>);

impl Keyring {
    /// Reads an age identity file (`AGE-SECRET-KEY-1…` lines, `#` comments), as
    /// `vigil replay keygen` or `age-keygen` write it.
    pub fn from_file(path: &Path) -> Result<Keyring, KeyError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|error| KeyError::IdentityFile {
            path: name.clone(),
            error,
        })?;
        Keyring::read(std::io::BufReader::new(file), &name)
    }

    /// Reads identities from `input` (`name` says where from, for errors).
    pub fn read(input: impl BufRead, name: &str) -> Result<Keyring, KeyError> {
        let identities = age::IdentityFile::from_buffer(input)
            .map_err(|error| KeyError::IdentityFile {
                path: name.into(),
                error,
            })?
            .into_identities()
            .map_err(|e| KeyError::IdentityFile {
                path: name.into(),
                error: std::io::Error::other(e.to_string()),
            })?;
        if identities.is_empty() {
            return Err(KeyError::NoIdentity { path: name.into() });
        }
        Ok(Keyring(identities))
    }
}

/// A new age identity: the identity file's text (secret: write it where only its holder
/// reads it) and its recipient (public: for `encrypt_to`).
pub fn generate_identity() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        vigil_core::Timestamp::now(),
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

/// Why a sealed capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error("{path} is encrypted at rest (age, [replay] encrypt_to): reading it needs the identity file of one of its recipients (--identity FILE or VIGIL_REPLAY_IDENTITY)")]
    NeedsKey { path: String },
    #[error("{path} is encrypted at rest to other recipients: no identity given can decrypt it")]
    WrongKey { path: String },
    #[error("{path} is not a readable age file: {reason}")]
    Damaged { path: String, reason: String },
}

impl SealedError {
    /// The reason of an I/O error made from a `SealedError`, if it is one.
    pub fn of(error: &std::io::Error) -> Option<&SealedError> {
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<SealedError>())
    }
}

/// Whether a capture file is encrypted at rest (by its name).
pub fn is_sealed(path: &Path) -> bool {
    path.as_os_str()
        .to_str()
        .is_some_and(|n| n.ends_with(SEALED_SUFFIX))
}

/// The content of a sealed capture file (decrypted, then decompressed for `.jsonl.gz.age`).
pub(crate) fn open_sealed(
    path: &Path,
    keys: Option<&Keyring>,
) -> std::io::Result<Box<dyn Read + Send>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)?;
    let Some(keys) = keys else {
        return Err(std::io::Error::other(SealedError::NeedsKey { path: name }));
    };
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(file)).map_err(|e| {
        std::io::Error::other(SealedError::Damaged {
            path: name.clone(),
            reason: e.to_string(),
        })
    })?;
    let plain = decryptor
        .decrypt(keys.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            std::io::Error::other(match e {
                age::DecryptError::NoMatchingKeys => SealedError::WrongKey { path: name },
                other => SealedError::Damaged {
                    path: name,
                    reason: other.to_string(),
                },
            })
        })?;
    Ok(if path.to_string_lossy().ends_with(".gz.age") {
        Box::new(flate2::read::MultiGzDecoder::new(plain))
    } else {
        Box::new(plain)
    })
}

/// SHA-256 (hex) of a file's bytes as stored.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The file under a sealed capture: counts and hashes what reaches it.
pub(crate) struct StoredFile {
    file: std::fs::File,
    digest: Sha256,
    stored: Arc<AtomicU64>,
}

impl Write for StoredFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digest.update(&buf[..n]);
        self.stored.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum Stream {
    Raw(age::stream::StreamWriter<StoredFile>),
    Gzip(flate2::write::GzEncoder<age::stream::StreamWriter<StoredFile>>),
}

/// A capture being written encrypted: lines go in, age (of gzip, when compressing) comes out.
pub(crate) struct SealedWriter {
    stream: Stream,
    /// Bytes written to the file so far (header included).
    stored: Arc<AtomicU64>,
}

impl SealedWriter {
    /// Starts the age file on `file` (its header is written now).
    pub(crate) fn start(
        file: std::fs::File,
        recipients: &Recipients,
        compress: bool,
    ) -> std::io::Result<SealedWriter> {
        let stored = Arc::new(AtomicU64::new(0));
        let age = recipients.wrap(StoredFile {
            file,
            digest: Sha256::new(),
            stored: stored.clone(),
        })?;
        let stream = if compress {
            Stream::Gzip(flate2::write::GzEncoder::new(
                age,
                flate2::Compression::default(),
            ))
        } else {
            Stream::Raw(age)
        };
        Ok(SealedWriter { stream, stored })
    }

    /// Bytes of the file so far.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Raw(w) => w.write_all(bytes),
            Stream::Gzip(w) => w.write_all(bytes),
        }
    }

    /// Writes the end (gzip's trailer, age's last chunk); returns the file, synced by the
    /// caller, and the SHA-256 (hex) of all its bytes.
    pub(crate) fn finish(self) -> std::io::Result<(std::fs::File, String)> {
        let age = match self.stream {
            Stream::Raw(w) => w,
            Stream::Gzip(w) => w.finish()?,
        };
        let stored = age.finish()?;
        Ok((stored.file, hex::encode(stored.digest.finalize())))
    }
}

/// What a sealed file of at most `max` bytes keeps for its envelope beyond its content: the age
/// header (`header` bytes), a tag per 64 KiB chunk and, when compressing, gzip's worst case on
/// content that does not compress (stored blocks, header and trailer).
pub(crate) fn envelope_bytes(max: u64, header: u64, compress: bool) -> u64 {
    let tags = max.div_ceil(AGE_CHUNK) * AGE_TAG + AGE_TAG;
    let gzip = if compress { max / 256 + 1024 } else { 0 };
    header + tags + gzip
}

/// The name of a sealed capture's file: `<id>.jsonl.age`, or `<id>.jsonl.gz.age` compressed.
pub(crate) fn sealed_path(plain: &Path, compressed: bool) -> PathBuf {
    let mut name = plain.as_os_str().to_owned();
    if compressed {
        name.push(".gz");
    }
    name.push(SEALED_SUFFIX);
    PathBuf::from(name)
}
