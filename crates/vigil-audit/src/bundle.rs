//! Evidence bundles: every artifact for a period, the chain segment they come from, the public
//! key, and a signed manifest, in one `.tar.gz` that verifies offline.
//!
//! ```text
//! manifest.json            what is in the bundle: period, chain segment, SHA-256 of every file
//! manifest.sig             base64 ed25519 over "vigil-evidence-manifest-v1\n" + manifest.json
//! public-key.pem           the gateway's checkpoint key (an auditor should also hold it apart)
//! chain/records.jsonl      the stored records first_seq..=last_seq, byte for byte, one a line
//! artifacts/NAME.jsonl     each artifact, as `vigil export NAME --format jsonl` writes it
//! artifacts/NAME.csv       the same rows as CSV
//! replay/SESSION.jsonl     the replay captures of the period's sessions (all, none or a sample);
//!                          encrypted at rest, as stored: SESSION.jsonl.age, SESSION.jsonl.gz.age
//! ```
//!
//! The segment ends with a checkpoint: its signature, through the hash links, vouches for every
//! record in the segment. Verification ([`verify_bundle`]) checks the manifest's signature, that
//! the files are exactly those listed with those digests, the segment (seqs, links, checkpoint
//! signatures), and that each artifact is what the segment's records make of it: the same export
//! code runs over the segment and must give the same bytes; and that each replay capture is the
//! one its session's `SessionEnded` record in the segment names, none missing, none added.

use crate::export::{
    self, Artifact, ExportFilter, Format, RecordSource, Revision, RowWriter, ScanRange,
};
use crate::{AuditError, SigningKey, VerifyingKey};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use vigil_core::Timestamp;
use vigil_store::{AuditLog, AuditRow};

mod replay;
pub use replay::{BundledCapture, ReplayManifest, ReplaySelection, UnavailableCapture};

/// Where a bundle takes replay captures from, and which.
#[derive(Clone, Debug)]
pub struct ReplaySource {
    /// The gateway's capture directory (`<session id>.jsonl`).
    pub dir: PathBuf,
    pub selection: ReplaySelection,
}

pub const BUNDLE_FORMAT: &str = "vigil-evidence-bundle-v1";
const SIGNATURE_CONTEXT: &[u8] = b"vigil-evidence-manifest-v1\n";
const MANIFEST: &str = "manifest.json";
const MANIFEST_SIG: &str = "manifest.sig";
const PUBLIC_KEY: &str = "public-key.pem";
const RECORDS: &str = "chain/records.jsonl";

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: Timestamp,
    /// The period asked for: anchors at or after `since` and before `until`.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Id of the key that signed the manifest and the checkpoints.
    pub key_id: String,
    pub chain: ChainSegment,
    /// What every artifact export read (the same for all).
    pub scan: ScanRange,
    /// Which definition of the artifacts made them (absent: the first); `verify` derives them
    /// again with the same one.
    #[serde(default = "first_revision")]
    pub export_revision: Revision,
    /// Rows per artifact.
    pub rows: BTreeMap<String, u64>,
    pub files: Vec<FileEntry>,
    /// The replay captures (absent from bundles made without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayManifest>,
}

fn first_revision() -> Revision {
    Revision::FIRST
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSegment {
    pub first_seq: u64,
    /// A checkpoint record.
    pub last_seq: u64,
    /// Hex hash of record `last_seq`.
    pub last_hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What a bundle held (made or verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    pub manifest: Manifest,
    /// Whether the key came from the bundle itself (no independent key given).
    pub self_keyed: bool,
    /// The encrypted replay captures checked (none in a bundle that was just made).
    pub sealed_captures: SealedCaptures,
}

fn err(what: impl Into<String>) -> AuditError {
    AuditError::Export(what.into())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |e| err(format!("{}: {e}", path.display()))
}

/// A file being written with its SHA-256 computed on the way.
struct HashingFile {
    out: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl HashingFile {
    fn create(path: &Path) -> Result<Self, AuditError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        Ok(HashingFile {
            out: BufWriter::new(File::create(path).map_err(io_err(path))?),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn done(mut self, name: &str) -> Result<FileEntry, AuditError> {
        self.out.flush().map_err(|e| err(format!("{name}: {e}")))?;
        Ok(FileEntry {
            path: name.to_string(),
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        })
    }
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The seq of the last checkpoint at or before the head.
fn last_checkpoint(store: &dyn AuditLog) -> Result<u64, AuditError> {
    let Some(head) = store.audit_head()? else {
        return Err(err("the audit trail is empty: nothing to bundle"));
    };
    let mut seq = head.seq;
    while seq > 0 {
        if let Some(row) = store.audit_row(seq)? {
            if row.kind == "Checkpoint" {
                return Ok(seq);
            }
        }
        seq -= 1;
    }
    Err(err(
        "the audit trail has no checkpoint yet: start the gateway (or any recording command) \
         once to seal it",
    ))
}

/// Writes a bundle of the period `[since, until)` to `out`: the chain is read up to its last
/// checkpoint (callers seal it first, so that the bundle reaches the present), with the replay
/// captures `replay` selects. Files are staged in a temporary directory, so memory stays flat
/// whatever the period's size.
pub fn create_bundle(
    stores: &export::StoreSource<'_>,
    key: &SigningKey,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    replay: Option<&ReplaySource>,
    out: &Path,
) -> Result<BundleSummary, AuditError> {
    let store = stores.log;
    let through = last_checkpoint(store)?;
    let filter = ExportFilter {
        since,
        until,
        ..ExportFilter::default()
    };
    let mut scan = export::plan(store, &filter, Some(through))?;
    // The segment: everything the exports read, up to the sealing checkpoint, and unbroken:
    // it starts after the last gap that retention left (the purged records are gone anyway).
    let mut first_seq = (scan.after_seq + 1).min(through);
    let mut expected = first_seq;
    export::visit_rows(store, first_seq - 1, through, &mut |row| {
        if row.seq != expected {
            first_seq = row.seq;
        }
        expected = row.seq + 1;
        Ok(true)
    })?;
    scan.after_seq = scan.after_seq.max(first_seq - 1);
    let staging = tempfile::tempdir().map_err(|e| err(format!("cannot stage the bundle: {e}")))?;
    let dir = staging.path();
    let mut files = Vec::new();

    let mut records = HashingFile::create(&dir.join(RECORDS))?;
    let mut last_hash = String::new();
    export::visit_rows(store, first_seq - 1, through, &mut |row| {
        records
            .write_all(&row.body)
            .and_then(|()| records.write_all(b"\n"))
            .map_err(|e| err(format!("{RECORDS}: {e}")))?;
        last_hash = hex::encode(row.hash);
        Ok(true)
    })?;
    files.push(records.done(RECORDS)?);

    let mut rows = BTreeMap::new();
    for artifact in Artifact::ALL {
        for format in [Format::Jsonl, Format::Csv] {
            let name = format!("artifacts/{}.{}", artifact.as_str(), format.as_str());
            let file = HashingFile::create(&dir.join(&name))?;
            let mut writer = RowWriter::new(format, artifact, file)?;
            let stats = export::export_rows(stores, artifact, &filter, scan, &mut |row| {
                writer.write(&row)
            })?;
            files.push(writer.finish()?.done(&name)?);
            rows.insert(artifact.as_str().to_string(), stats.rows);
        }
    }

    let replay = match replay {
        Some(source) => Some(bundle_captures(
            store,
            source,
            scan,
            (since, until),
            &last_hash,
            dir,
            &mut files,
        )?),
        None => None,
    };

    let public = key.verifying_key();
    let mut pem = HashingFile::create(&dir.join(PUBLIC_KEY))?;
    pem.write_all(crate::public_key_pem(&public).as_bytes())
        .map_err(|e| err(e.to_string()))?;
    files.push(pem.done(PUBLIC_KEY)?);

    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        created_at: Timestamp::now(),
        since,
        until,
        key_id: crate::key_id(&public),
        chain: ChainSegment {
            first_seq,
            last_seq: through,
            last_hash,
        },
        scan,
        export_revision: Revision::CURRENT,
        rows,
        files,
        replay,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| err(e.to_string()))?;
    let signature = BASE64.encode(key.sign(&signed_message(&manifest_bytes)).to_bytes());

    let file = File::create(out).map_err(io_err(out))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        BufWriter::new(file),
        flate2::Compression::default(),
    ));
    let mut add_bytes = |name: &str, bytes: &[u8]| -> Result<(), AuditError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(manifest.created_at.as_micros().max(0) as u64 / 1_000_000);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
            .map_err(|e| err(format!("{}: {e}", out.display())))
    };
    add_bytes(MANIFEST, &manifest_bytes)?;
    add_bytes(MANIFEST_SIG, format!("{signature}\n").as_bytes())?;
    for entry in &manifest.files {
        tar.append_path_with_name(dir.join(&entry.path), &entry.path)
            .map_err(|e| err(format!("{}: {e}", out.display())))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| err(format!("{}: {e}", out.display())))?;
    let buffered = gz.finish().map_err(io_err(out))?;
    buffered
        .into_inner()
        .map_err(|e| err(format!("{}: {e}", out.display())))?
        .sync_all()
        .map_err(io_err(out))?;
    Ok(BundleSummary {
        manifest,
        self_keyed: false,
        sealed_captures: SealedCaptures::default(),
    })
}

/// Copies the captures `source` selects into the staging directory, each checked against the
/// digest its end record holds on the way.
fn bundle_captures(
    store: &dyn AuditLog,
    source: &ReplaySource,
    scan: ScanRange,
    (since, until): (Option<Timestamp>, Option<Timestamp>),
    sealing_hash: &str,
    dir: &Path,
    files: &mut Vec<FileEntry>,
) -> Result<ReplayManifest, AuditError> {
    let recorded = replay::recorded_captures(&export::ChainSource(store), scan, since, until)?;
    let mut manifest = ReplayManifest {
        selection: source.selection.to_string(),
        recorded: recorded.len() as u64,
        captures: Vec::new(),
        unavailable: Vec::new(),
    };
    for capture in replay::select(source.selection, &recorded, sealing_hash) {
        let unavailable = |reason: String| UnavailableCapture {
            session_id: capture.session_id.clone(),
            ended_seq: capture.ended_seq,
            recorded_sha256: capture.sha256.clone(),
            reason,
        };
        if let Some(file_sha256) = &capture.file_sha256 {
            match bundle_sealed_capture(source, &capture, file_sha256, dir)? {
                Ok((bundled, entry)) => {
                    manifest.captures.push(bundled);
                    files.push(entry);
                }
                Err(reason) => manifest.unavailable.push(unavailable(reason)),
            }
            continue;
        }
        // The capture's content, decompressed when the gateway compressed it: the digest is of
        // the content, and the bundle itself is compressed.
        let (from, mut input) = match vigil_replay::open_capture(&source.dir, &capture.session_id) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let from = vigil_replay::CaptureWriter::path_of(&source.dir, &capture.session_id);
                manifest.unavailable.push(unavailable(format!(
                    "no capture file in the replay directory ({}[.gz]): rotated out, purged or removed",
                    from.display()
                )));
                continue;
            }
            Err(e) if vigil_replay::SealedError::of(&e).is_some() => {
                manifest.unavailable.push(unavailable(format!(
                    "its end record names a capture stored in clear, but the replay directory holds an encrypted one: it was replaced ({e})"
                )));
                continue;
            }
            Err(e) => {
                let from = vigil_replay::CaptureWriter::path_of(&source.dir, &capture.session_id);
                return Err(io_err(&from)(e));
            }
        };
        let path = replay::bundle_path(&capture.session_id);
        let staged = dir.join(&path);
        let mut copy = HashingFile::create(&staged)?;
        std::io::copy(&mut input, &mut copy).map_err(io_err(&from))?;
        let entry = copy.done(&path)?;
        if entry.sha256 != capture.sha256 {
            // Only what the chain vouches for goes in; the mismatch is declared instead.
            std::fs::remove_file(&staged).map_err(io_err(&staged))?;
            manifest.unavailable.push(unavailable(format!(
                "the file in the replay directory does not match its end record (SHA-256 {}): \
                 it was altered or replaced",
                entry.sha256
            )));
            continue;
        }
        manifest.captures.push(BundledCapture {
            session_id: capture.session_id,
            path,
            sha256: entry.sha256.clone(),
            file_sha256: None,
            ended_seq: capture.ended_seq,
        });
        files.push(entry);
    }
    Ok(manifest)
}

/// Copies an encrypted capture into the staging directory as it is stored (the bundle has no
/// key either), checked against the file digest its end record holds. `Err`: why it cannot be
/// bundled.
fn bundle_sealed_capture(
    source: &ReplaySource,
    capture: &replay::RecordedCapture,
    file_sha256: &str,
    dir: &Path,
) -> Result<Result<(BundledCapture, FileEntry), String>, AuditError> {
    let from = match vigil_replay::find_capture(&source.dir, &capture.session_id) {
        Some(p) if vigil_replay::is_sealed(&p) => p,
        Some(p) => {
            return Ok(Err(format!(
                "its end record names an encrypted capture, but the replay directory holds {}: it was replaced",
                p.display()
            )))
        }
        None => {
            return Ok(Err(format!(
                "no capture file in the replay directory ({}.age): rotated out, purged or removed",
                vigil_replay::CaptureWriter::path_of(&source.dir, &capture.session_id).display()
            )))
        }
    };
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let path = format!("replay/{name}");
    let staged = dir.join(&path);
    let mut input = File::open(&from).map_err(io_err(&from))?;
    let mut copy = HashingFile::create(&staged)?;
    std::io::copy(&mut input, &mut copy).map_err(io_err(&from))?;
    let entry = copy.done(&path)?;
    if entry.sha256 != file_sha256 {
        std::fs::remove_file(&staged).map_err(io_err(&staged))?;
        return Ok(Err(format!(
            "the encrypted file in the replay directory does not match its end record (SHA-256 {} as stored): it was altered or replaced",
            entry.sha256
        )));
    }
    Ok(Ok((
        BundledCapture {
            session_id: capture.session_id.clone(),
            path,
            sha256: capture.sha256.clone(),
            file_sha256: Some(entry.sha256.clone()),
            ended_seq: capture.ended_seq,
        },
        entry,
    )))
}

/// Checks the bundle's captures against the end records of its chain segment: those the
/// selection calls for are there (or declared unavailable), none other is, each is the capture
/// its end record names.
fn verify_captures(
    manifest: &Manifest,
    replay_manifest: &ReplayManifest,
    dir: &Path,
    replay_keys: Option<&vigil_replay::Keyring>,
    problems: &mut Vec<String>,
) -> Result<SealedCaptures, AuditError> {
    let mut sealed = SealedCaptures::default();
    let selection: ReplaySelection = match replay_manifest.selection.parse() {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{MANIFEST}: replay selection {e}"));
            return Ok(sealed);
        }
    };
    let recorded = replay::recorded_captures(
        &SegmentFile(dir.join(RECORDS)),
        manifest.scan,
        manifest.since,
        manifest.until,
    )?;
    if recorded.len() as u64 != replay_manifest.recorded {
        problems.push(format!(
            "{MANIFEST}: the chain records name {} captures in the period, the manifest says {}",
            recorded.len(),
            replay_manifest.recorded
        ));
    }
    let expected = replay::select(selection, &recorded, &manifest.chain.last_hash);
    for capture in &expected {
        let id = &capture.session_id;
        if let Some(bundled) = replay_manifest
            .captures
            .iter()
            .find(|c| &c.session_id == id)
        {
            if let Some(file_sha256) = &capture.file_sha256 {
                verify_sealed_capture(
                    capture,
                    file_sha256,
                    bundled,
                    dir,
                    replay_keys,
                    &mut sealed,
                    problems,
                )?;
                continue;
            }
            let path = replay::bundle_path(id);
            if bundled.path != path {
                problems.push(format!(
                    "{MANIFEST}: the capture of session {id} is at {}, expected {path}",
                    bundled.path
                ));
                continue;
            }
            let full = dir.join(&path);
            if !full.exists() {
                problems.push(format!("{path} (session {id}) is missing: removed"));
                continue;
            }
            let (sha, _) = sha256_file(&full)?;
            if sha != capture.sha256 {
                problems.push(format!(
                    "{path} (session {id}): SHA-256 {sha}, but the session's end record (seq {}) \
                     says {}: the capture was altered",
                    capture.ended_seq, capture.sha256
                ));
            }
        } else if !replay_manifest
            .unavailable
            .iter()
            .any(|u| &u.session_id == id && u.recorded_sha256 == capture.sha256)
        {
            problems.push(format!(
                "the capture of session {id} (end record seq {}, SHA-256 {}) is not in the \
                 bundle, though the selection {selection} calls for it: removed",
                capture.ended_seq, capture.sha256
            ));
        }
    }
    for bundled in &replay_manifest.captures {
        if !expected.iter().any(|c| c.session_id == bundled.session_id) {
            problems.push(format!(
                "{} (session {}) is not a capture the period and the selection {selection} call \
                 for: added",
                bundled.path, bundled.session_id
            ));
        }
    }
    for file in &manifest.files {
        if file.path.starts_with("replay/")
            && !replay_manifest.captures.iter().any(|c| c.path == file.path)
        {
            problems.push(format!(
                "{} is not one of the bundle's captures: added",
                file.path
            ));
        }
    }
    Ok(sealed)
}

/// Checks an encrypted capture of the bundle: the file against the digest of the file as
/// stored its end record holds (no key needed) and, given the key, its content against
/// `replay_sha256`.
fn verify_sealed_capture(
    capture: &replay::RecordedCapture,
    file_sha256: &str,
    bundled: &BundledCapture,
    dir: &Path,
    replay_keys: Option<&vigil_replay::Keyring>,
    sealed: &mut SealedCaptures,
    problems: &mut Vec<String>,
) -> Result<(), AuditError> {
    let id = &capture.session_id;
    let path = &bundled.path;
    if !replay::sealed_bundle_paths(id).contains(path) {
        problems.push(format!(
            "{MANIFEST}: the encrypted capture of session {id} is at {path}, expected replay/{id}.jsonl.age or replay/{id}.jsonl.gz.age"
        ));
        return Ok(());
    }
    let full = dir.join(path);
    if !full.exists() {
        problems.push(format!("{path} (session {id}) is missing: removed"));
        return Ok(());
    }
    sealed.bundled += 1;
    let (sha, _) = sha256_file(&full)?;
    if sha != file_sha256 {
        problems.push(format!(
            "{path} (session {id}): SHA-256 {sha}, but the session's end record (seq {}) says the encrypted file is {file_sha256}: the capture was altered",
            capture.ended_seq
        ));
        return Ok(());
    }
    let Some(keys) = replay_keys else {
        return Ok(());
    };
    let content = vigil_replay::open_content_with(&full, Some(keys)).and_then(|mut input| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut input, &mut HashOnly(&mut hasher))?;
        Ok(hex::encode(hasher.finalize()))
    });
    match content {
        Ok(digest) if digest == capture.sha256 => sealed.content_checked += 1,
        Ok(digest) => problems.push(format!(
            "{path} (session {id}): its decrypted content has SHA-256 {digest}, but the session's end record (seq {}) says {}: the capture was altered",
            capture.ended_seq, capture.sha256
        )),
        Err(e) => problems.push(format!("{path} (session {id}): cannot be decrypted: {e}")),
    }
    Ok(())
}

/// Feeds what is written to a hasher.
struct HashOnly<'a>(&'a mut Sha256);

impl Write for HashOnly<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The encrypted captures a verification met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealedCaptures {
    /// Encrypted captures in the bundle (each checked against its file digest).
    pub bundled: u64,
    /// Of those, the ones whose content was decrypted and checked (a key was given).
    pub content_checked: u64,
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut msg = SIGNATURE_CONTEXT.to_vec();
    msg.extend_from_slice(manifest);
    msg
}

/// Signs manifest bytes as a bundle does (for tools that rebuild bundles, and tests).
pub fn sign_manifest(key: &SigningKey, manifest: &[u8]) -> String {
    BASE64.encode(key.sign(&signed_message(manifest)).to_bytes())
}

/// Everything wrong with a bundle, each problem in words meant for the auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleProblems(pub Vec<String>);

impl std::fmt::Display for BundleProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "- {p}")?;
        }
        Ok(())
    }
}

/// The outcome of [`verify_bundle`]: `Ok` with what it holds, or every problem found.
pub type BundleVerdict = Result<BundleSummary, BundleProblems>;

/// Verifies a bundle offline: no store, no network. `public_key` is the gateway's key obtained
/// independently; without it the bundle's own `public-key.pem` is used (which proves integrity
/// only against accidents, not against whoever made the bundle). The outer error is for a
/// bundle that cannot be read at all.
pub fn verify_bundle(
    path: &Path,
    public_key: Option<&VerifyingKey>,
) -> Result<BundleVerdict, AuditError> {
    verify_bundle_with(path, public_key, None)
}

/// [`verify_bundle`], with the identities that decrypt the bundle's encrypted replay captures:
/// their content is then checked too (without them, only the files as stored are).
pub fn verify_bundle_with(
    path: &Path,
    public_key: Option<&VerifyingKey>,
    replay_keys: Option<&vigil_replay::Keyring>,
) -> Result<BundleVerdict, AuditError> {
    let staging = tempfile::tempdir().map_err(|e| err(format!("cannot unpack: {e}")))?;
    let dir = staging.path();
    let mut present: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let file = File::open(path).map_err(io_err(path))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let entries = archive
        .entries()
        .map_err(|e| err(format!("{} is not a .tar.gz: {e}", path.display())))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| err(format!("{} is not a valid .tar.gz: {e}", path.display())))?;
        let name = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let safe = Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !safe || !entry.header().entry_type().is_file() {
            problems.push(format!(
                "unexpected entry {name:?} (not a plain file with a relative path)"
            ));
            continue;
        }
        if present.contains(&name) {
            problems.push(format!("{name} appears twice in the archive"));
            continue;
        }
        let target = dir.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut out = File::create(&target).map_err(io_err(&target))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| err(format!("{name}: cannot unpack: {e}")))?;
        present.push(name);
    }

    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    let Some(manifest_bytes) = read(MANIFEST) else {
        return Ok(Err(BundleProblems(vec![format!(
            "{MANIFEST} is missing: not an evidence bundle"
        )])));
    };
    let (key, self_keyed) = match public_key {
        Some(k) => (*k, false),
        None => match read(PUBLIC_KEY)
            .and_then(|b| String::from_utf8(b).ok())
            .map(|t| crate::parse_public_key(&t))
        {
            Some(Ok(k)) => (k, true),
            _ => {
                problems.push(format!(
                    "{PUBLIC_KEY} is missing or unreadable and no public key was given"
                ));
                return Ok(Err(BundleProblems(problems)));
            }
        },
    };
    let signature_ok = read(MANIFEST_SIG)
        .and_then(|s| BASE64.decode(String::from_utf8_lossy(&s).trim()).ok())
        .and_then(|b| Signature::from_slice(&b).ok())
        .is_some_and(|sig| {
            key.verify_strict(&signed_message(&manifest_bytes), &sig)
                .is_ok()
        });
    if !signature_ok {
        problems.push(format!(
            "{MANIFEST_SIG} does not verify {MANIFEST} with key {}: the manifest was altered, \
             or the bundle was signed by another key",
            crate::key_id(&key)
        ));
        // Nothing the manifest says can be trusted; stop here.
        return Ok(Err(BundleProblems(problems)));
    }
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{MANIFEST} is not a bundle manifest: {e}"));
            return Ok(Err(BundleProblems(problems)));
        }
    };
    if manifest.format != BUNDLE_FORMAT {
        problems.push(format!(
            "unknown bundle format {:?} (expected {BUNDLE_FORMAT})",
            manifest.format
        ));
        return Ok(Err(BundleProblems(problems)));
    }
    if manifest.key_id != crate::key_id(&key) {
        problems.push(format!(
            "the manifest names key {}, not the given key {}",
            manifest.key_id,
            crate::key_id(&key)
        ));
    }
    if let Some(bundled) = read(PUBLIC_KEY)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| crate::parse_public_key(&t).ok())
    {
        if bundled != key {
            problems.push(format!(
                "{PUBLIC_KEY} is key {}, not the given key {}",
                crate::key_id(&bundled),
                crate::key_id(&key)
            ));
        }
    }

    // Exactly the listed files, each with its digest.
    for entry in &manifest.files {
        let full = dir.join(&entry.path);
        if !present.contains(&entry.path) {
            problems.push(format!(
                "{} is missing (listed in the manifest)",
                entry.path
            ));
            continue;
        }
        let (sha, bytes) = sha256_file(&full)?;
        if sha != entry.sha256 || bytes != entry.bytes {
            problems.push(format!(
                "{}: SHA-256 {sha} ({bytes} bytes) differs from the manifest's {} ({} bytes): \
                 the file was altered",
                entry.path, entry.sha256, entry.bytes
            ));
        }
    }
    for name in &present {
        let listed = manifest.files.iter().any(|f| &f.path == name);
        if !listed && name != MANIFEST && name != MANIFEST_SIG {
            problems.push(format!("{name} is not listed in the manifest (added)"));
        }
    }
    if !problems.is_empty() {
        return Ok(Err(BundleProblems(problems)));
    }

    // The chain segment.
    let records_path = dir.join(RECORDS);
    let segment = {
        let file = File::open(&records_path).map_err(io_err(&records_path))?;
        let mut lines = BufReader::new(file)
            .split(b'\n')
            .map(|l| l.map_err(|e| err(format!("{RECORDS}: {e}"))));
        crate::verify_segment(&mut lines, &key, manifest.chain.first_seq)
    };
    match segment {
        Ok(report) => {
            if report.last_seq != manifest.chain.last_seq
                || report.last_hash != manifest.chain.last_hash
            {
                problems.push(format!(
                    "{RECORDS} ends at record {} (hash {}), but the manifest says {} (hash {})",
                    report.last_seq,
                    report.last_hash,
                    manifest.chain.last_seq,
                    manifest.chain.last_hash
                ));
            }
        }
        Err(AuditError::Tamper { reason, .. }) => {
            problems.push(format!("{RECORDS}: {reason}"));
        }
        Err(e) => return Err(e),
    }
    if !problems.is_empty() {
        return Ok(Err(BundleProblems(problems)));
    }

    // The artifacts are what the chain says, as the revision that made them defines them.
    let revision = manifest.export_revision;
    if revision > Revision::CURRENT {
        problems.push(format!(
            "the artifacts were made by a newer Vigil (export revision {revision}; this one \
             knows up to {}): verify with that version or a later one",
            Revision::CURRENT
        ));
        return Ok(Err(BundleProblems(problems)));
    }
    let filter = ExportFilter {
        since: manifest.since,
        until: manifest.until,
        ..ExportFilter::default()
    };
    let source = SegmentFile(records_path);
    for artifact in Artifact::all_at(revision) {
        for format in [Format::Jsonl, Format::Csv] {
            let name = format!("artifacts/{}.{}", artifact.as_str(), format.as_str());
            if !manifest.files.iter().any(|f| f.path == name) {
                problems.push(format!("{name} is not in the bundle"));
                continue;
            }
            let derived = dir.join(format!("derived-{}.{}", artifact.as_str(), format.as_str()));
            {
                let file = File::create(&derived).map_err(io_err(&derived))?;
                let mut writer = RowWriter::at(format, artifact, revision, BufWriter::new(file))?;
                export::export_rows_at(
                    &source,
                    artifact,
                    revision,
                    &filter,
                    manifest.scan,
                    &mut |row| writer.write(&row),
                )?;
                writer.finish()?;
            }
            if sha256_file(&derived)?.0 != sha256_file(&dir.join(&name))?.0 {
                problems.push(describe_difference(
                    &name,
                    format,
                    (artifact, revision),
                    &dir.join(&name),
                    &derived,
                ));
            }
        }
    }
    let mut sealed_captures = SealedCaptures::default();
    match &manifest.replay {
        Some(replay_manifest) => {
            sealed_captures =
                verify_captures(&manifest, replay_manifest, dir, replay_keys, &mut problems)?
        }
        None => {
            if let Some(f) = manifest
                .files
                .iter()
                .find(|f| f.path.starts_with("replay/"))
            {
                problems.push(format!(
                    "{} is a capture, but the manifest has no replay section: added",
                    f.path
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Ok(Err(BundleProblems(problems)));
    }
    Ok(Ok(BundleSummary {
        manifest,
        self_keyed,
        sealed_captures,
    }))
}

fn sha256_file(path: &Path) -> Result<(String, u64), AuditError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Names the first row and column where an artifact file and what the chain makes of it differ.
fn describe_difference(
    name: &str,
    format: Format,
    (artifact, revision): (Artifact, Revision),
    file: &Path,
    derived: &Path,
) -> String {
    let rows = |path: &Path| -> Result<Vec<(usize, export::Row)>, String> {
        let f = File::open(path).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        export::read_rows_at(
            format,
            artifact,
            revision,
            BufReader::new(f),
            &mut |line, row| {
                out.push((line, row));
                Ok(())
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(out)
    };
    let theirs = match rows(file) {
        Ok(r) => r,
        Err(e) => return format!("{name} disagrees with the chain records: {e}"),
    };
    let ours = rows(derived).unwrap_or_default();
    for (i, (line, row)) in theirs.iter().enumerate() {
        let Some((_, expected)) = ours.get(i) else {
            return format!("{name} line {line}: a row the chain records do not have (added?)");
        };
        for (column, (got, want)) in artifact
            .columns_at(revision)
            .iter()
            .zip(row.iter().zip(expected))
        {
            if got != want {
                return format!(
                    "{name} line {line} (record {}): {} is {got} but the chain records say {want}",
                    expected.first().cloned().unwrap_or_default(),
                    column.name
                );
            }
        }
    }
    if ours.len() > theirs.len() {
        let missing = &ours[theirs.len()].1;
        return format!(
            "{name}: the row of record {} is missing ({} rows, the chain records make {})",
            missing.first().cloned().unwrap_or_default(),
            theirs.len(),
            ours.len()
        );
    }
    format!("{name} differs from what the chain records make of it (formatting)")
}

/// A [`RecordSource`] over a bundle's `chain/records.jsonl`, read again for each artifact.
struct SegmentFile(PathBuf);

impl RecordSource for SegmentFile {
    fn visit(
        &self,
        range: ScanRange,
        kinds: &[&str],
        visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        #[derive(Deserialize)]
        struct Envelope {
            seq: u64,
            at: Timestamp,
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            session_id: Option<String>,
            #[serde(default)]
            identity: Option<Name>,
            #[serde(default)]
            connection: Option<String>,
        }
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        let file = File::open(&self.0).map_err(io_err(&self.0))?;
        for line in BufReader::new(file).split(b'\n') {
            let body = line.map_err(|e| err(format!("{RECORDS}: {e}")))?;
            let env: Envelope = serde_json::from_slice(&body)
                .map_err(|e| err(format!("{RECORDS}: a record does not decode: {e}")))?;
            if env.seq <= range.after_seq || !kinds.contains(&env.kind.as_str()) {
                continue;
            }
            if env.seq > range.through_seq {
                break;
            }
            let row = AuditRow {
                seq: env.seq,
                at_us: env.at.as_micros(),
                kind: env.kind,
                session_id: env.session_id,
                identity: env.identity.map(|i| i.name),
                connection: env.connection,
                hash: Sha256::digest(&body).into(),
                body,
            };
            if !visit(row)? {
                break;
            }
        }
        Ok(())
    }
}
