//! Captures encrypted at rest: written through the background writer, read back with the key,
//! refused without it or with another.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use vigil_core::{ReplayHeader, ReplaySink, Timestamp};
use vigil_replay::{CaptureBounds, CaptureWriter, Keyring, Recipients, SealedError};

const CANARY: &[u8] = b"CANARY-7f3e9a-result-value";

fn header(id: &str) -> ReplayHeader {
    ReplayHeader {
        session_id: id.into(),
        identity: "etl".into(),
        identity_kind: vigil_core::IdentityKind::Machine,
        connection: "ehr".into(),
        client_addr: "127.0.0.1:5000".into(),
        started_at: Timestamp::now(),
    }
}

/// A DataRow carrying `value` (what the client received), as the server sent it.
fn data_row(value: &[u8]) -> Vec<u8> {
    let mut m = vec![b'D'];
    m.extend_from_slice(&(4 + 2 + 4 + value.len() as u32).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(value.len() as u32).to_be_bytes());
    m.extend_from_slice(value);
    m
}

fn keypair(dir: &Path) -> (Keyring, Recipients, std::path::PathBuf) {
    let (identity, recipient) = vigil_replay::seal::generate_identity();
    let path = dir.join("key.txt");
    std::fs::write(&path, identity).unwrap();
    (
        Keyring::from_file(&path).unwrap(),
        Recipients::parse(&[recipient]).unwrap(),
        path,
    )
}

fn sealed_bounds(recipients: Recipients, compress: bool) -> CaptureBounds {
    CaptureBounds {
        compress,
        encrypt_to: Some(recipients),
        ..CaptureBounds::default()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        out.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    out
}

/// Records a session that received the canary in many rows; returns its end.
fn record_session(writer: &CaptureWriter, id: &str, rows: usize) -> vigil_core::ReplayEnd {
    let recorder = writer.open(&header(id)).unwrap();
    recorder.record(true, b"Q\0\0\0\x0dSELECT 1;\0");
    for _ in 0..rows {
        recorder.record(false, &data_row(CANARY));
    }
    recorder.finish("client_terminated")
}

#[test]
fn an_encrypted_capture_holds_nothing_in_clear_and_reads_back_with_its_key() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (keyring, recipients, _) = keypair(keys.path());
        let writer =
            CaptureWriter::start_bounded(tmp.path(), sealed_bounds(recipients, compress)).unwrap();
        // Enough rows for several age chunks.
        let end = record_session(&writer, "s1", 5000);

        let name = if compress {
            "s1.jsonl.gz.age"
        } else {
            "s1.jsonl.age"
        };
        let path = tmp.path().join(name);
        let files: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec![name.to_string()], "compress={compress}");
        let stored = std::fs::read(&path).unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1\n"));
        let on_disk = all_bytes(tmp.path());
        assert!(!contains(&on_disk, CANARY), "compress={compress}");
        assert!(!contains(&on_disk, b"SELECT"), "compress={compress}");
        assert!(
            !contains(&on_disk, b"\"session_id\""),
            "compress={compress}"
        );
        if compress {
            // Compressed before it was encrypted.
            assert!(stored.len() < 5000 * CANARY.len() / 4, "{}", stored.len());
        }

        // The end record's two digests: the content, and the file as stored.
        assert_eq!(
            end.file_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&stored)).as_str())
        );
        assert_eq!(
            vigil_replay::file_sha256(&path).unwrap(),
            end.file_sha256.clone().unwrap()
        );
        let (opened, mut content) =
            vigil_replay::open_capture_with(tmp.path(), "s1", Some(&keyring)).unwrap();
        assert_eq!(opened, path);
        let mut plain = Vec::new();
        content.read_to_end(&mut plain).unwrap();
        assert_eq!(
            end.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&plain)).as_str())
        );
        let capture = vigil_replay::read_capture_with(&path, Some(&keyring)).unwrap();
        assert_eq!(capture.header.session.session_id, "s1");
        assert_eq!(capture.frames.len(), 5001);
        assert_eq!(capture.frames[1].bytes, data_row(CANARY));
        assert_eq!(capture.trailer.unwrap().reason, "client_terminated");
        assert_eq!(vigil_replay::find_capture(tmp.path(), "s1"), Some(path));
    }
}

#[test]
fn without_the_key_or_with_another_an_encrypted_capture_says_what_it_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (_, recipients, _) = keypair(keys.path());
    let writer = CaptureWriter::start_bounded(tmp.path(), sealed_bounds(recipients, true)).unwrap();
    record_session(&writer, "s2", 3);

    let Err(e) = vigil_replay::open_capture(tmp.path(), "s2") else {
        panic!("read without a key");
    };
    assert!(
        matches!(SealedError::of(&e), Some(SealedError::NeedsKey { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("encrypted at rest"), "{e}");
    assert!(e.to_string().contains("--identity"), "{e}");

    let other = tempfile::tempdir().unwrap();
    let (wrong, _, _) = keypair(other.path());
    let Err(e) = vigil_replay::open_capture_with(tmp.path(), "s2", Some(&wrong)) else {
        panic!("read with another key");
    };
    assert!(
        matches!(SealedError::of(&e), Some(SealedError::WrongKey { .. })),
        "{e}"
    );
}

#[test]
fn a_flipped_byte_in_an_encrypted_capture_fails_to_read_and_changes_its_file_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (keyring, recipients, _) = keypair(keys.path());
    let writer =
        CaptureWriter::start_bounded(tmp.path(), sealed_bounds(recipients, false)).unwrap();
    let end = record_session(&writer, "s3", 100);
    let path = tmp.path().join("s3.jsonl.age");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_ne!(
        vigil_replay::file_sha256(&path).unwrap(),
        end.file_sha256.unwrap()
    );
    assert!(vigil_replay::read_capture_with(&path, Some(&keyring)).is_err());
}

#[test]
fn max_session_bytes_bounds_an_encrypted_file_as_stored() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (keyring, recipients, _) = keypair(keys.path());
        let max = 64 * 1024;
        let bounds = CaptureBounds {
            max_session_bytes: Some(max),
            ..sealed_bounds(recipients, compress)
        };
        let writer = CaptureWriter::start_bounded(tmp.path(), bounds).unwrap();
        let recorder = writer.open(&header("s4")).unwrap();
        // Bytes that do not compress: the cap must hold on the worst case too.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..400 {
            let noise: Vec<u8> = (0..500)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            recorder.record(false, &data_row(&noise));
        }
        let end = recorder.finish("client_terminated");
        let truncated = end.truncated.expect("stopped at its cap");
        assert_eq!(truncated.limit_bytes, max);
        let path = vigil_replay::find_capture(tmp.path(), "s4").unwrap();
        let stored = std::fs::metadata(&path).unwrap().len();
        assert!(stored <= max, "compress={compress}: {stored} > {max}");
        assert!(stored > max / 3, "compress={compress}: {stored}");
        assert_eq!(writer.total_bytes(), stored, "compress={compress}");
        let capture = vigil_replay::read_capture_with(&path, Some(&keyring)).unwrap();
        assert_eq!(capture.truncated, Some(truncated));
    }
}

#[test]
fn rotation_takes_encrypted_captures_oldest_first_also_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (_, recipients, _) = keypair(keys.path());
    let rotated: Log = Default::default();
    let bounds = |recipients: Recipients, log: Log| {
        let sessions: std::collections::HashMap<String, ReplayHeader> = (0..6)
            .map(|i| (format!("r{i}"), header(&format!("r{i}"))))
            .collect();
        CaptureBounds {
            max_session_bytes: Some(64 * 1024),
            max_total_bytes: Some(200 * 1024),
            record_rotation: std::sync::Arc::new(move |r| {
                log.lock().unwrap().extend(r.captures.clone());
                Ok(())
            }),
            describe: std::sync::Arc::new(move |id| sessions.get(id).cloned()),
            ..sealed_bounds(recipients, false)
        }
    };
    {
        let writer =
            CaptureWriter::start_bounded(tmp.path(), bounds(recipients.clone(), rotated.clone()))
                .unwrap();
        for i in 0..3 {
            record_session(&writer, &format!("r{i}"), 1200);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    // A new writer (a restart) reads the directory: the sealed files' sessions come from the
    // lookup, and the oldest go once it passes its bound.
    let writer =
        CaptureWriter::start_bounded(tmp.path(), bounds(recipients, rotated.clone())).unwrap();
    for i in 3..6 {
        record_session(&writer, &format!("r{i}"), 1200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rotated.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let gone = rotated.lock().unwrap().clone();
    assert!(gone.contains(&"r0".to_string()), "{gone:?}");
    // Recorded first, deleted next.
    let on_disk = |ids: &[String]| {
        ids.iter()
            .filter(|id| vigil_replay::find_capture(tmp.path(), id).is_some())
            .cloned()
            .collect::<Vec<_>>()
    };
    while !on_disk(&gone).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(on_disk(&gone).is_empty(), "{:?}", on_disk(&gone));
    assert!(vigil_replay::find_capture(tmp.path(), "r5").is_some());
}

/// The sessions rotation recorded.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

#[test]
fn recipients_parse_from_keys_and_files_and_refuse_anything_else() {
    let keys = tempfile::tempdir().unwrap();
    let (_, r1) = vigil_replay::seal::generate_identity();
    let (_, r2) = vigil_replay::seal::generate_identity();
    let file = keys.path().join("recipients.txt");
    std::fs::write(&file, format!("# auditors\n{r2}\n\n")).unwrap();
    let parsed = Recipients::parse(&[r1.clone(), format!("file:{}", file.display())]).unwrap();
    assert_eq!(parsed.len(), 2);

    for (entries, says) in [
        (
            vec!["age1notakey".to_string()],
            "not an age X25519 recipient",
        ),
        (vec![String::new()], "not an age X25519 recipient"),
        (
            vec!["ssh-ed25519 AAAAC3Nza".to_string()],
            "not an age X25519 recipient",
        ),
        (vec![], "names no recipient"),
        (
            vec![format!("file:{}", keys.path().join("missing").display())],
            "cannot read the recipients file",
        ),
    ] {
        let e = Recipients::parse(&entries).unwrap_err().to_string();
        assert!(e.contains(says), "{entries:?}: {e}");
    }
    std::fs::write(&file, format!("{r1}\nnot-a-key\n")).unwrap();
    let e = Recipients::parse(&[format!("file:{}", file.display())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    // A secret key is not a recipient (and is not echoed back).
    let (secret, _) = vigil_replay::seal::generate_identity();
    let secret_line = secret.lines().last().unwrap().to_string();
    let e = Recipients::parse(std::slice::from_ref(&secret_line))
        .unwrap_err()
        .to_string();
    assert!(!e.contains(&secret_line[20..]), "{e}");
    assert!(e.contains("secret key"), "{e}");
}

#[test]
fn unencrypted_captures_are_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = CaptureWriter::start(tmp.path()).unwrap();
    let end = record_session(&writer, "p1", 2);
    let path = tmp.path().join("p1.jsonl");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"{\"format\":\"vigil-replay/2\""));
    assert_eq!(end.file_sha256, None);
    assert_eq!(
        end.sha256.unwrap(),
        hex::encode(Sha256::digest(&bytes)).as_str()
    );
}
