//! Evidence bundles: made from a store, verified offline; every kind of tampering is named.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vigil_audit::bundle::{self, Manifest};
use vigil_audit::SigningKey;

fn make(env: &Env) -> PathBuf {
    populate(env);
    let out = env.dir.path().join("bundle.tar.gz");
    let summary = bundle::create_bundle(&env.source(), &env.key, None, None, None, &out).unwrap();
    assert_eq!(summary.manifest.rows["statements"], 6);
    out
}

fn unpack(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

fn pack(path: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// What an insider holding the key could do: rewrite files, fix the digests, sign again.
fn resign(files: &mut BTreeMap<String, Vec<u8>>, key: &SigningKey) {
    let mut manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for entry in &mut manifest.files {
        let bytes = &files[&entry.path];
        entry.sha256 = hex::encode(sha(bytes));
        entry.bytes = bytes.len() as u64;
    }
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    files.insert(
        "manifest.sig".into(),
        bundle::sign_manifest(key, &bytes).into_bytes(),
    );
    files.insert("manifest.json".into(), bytes);
}

fn problems(env: &Env, files: &BTreeMap<String, Vec<u8>>, key: Option<&SigningKey>) -> String {
    let path = env.dir.path().join("tampered.tar.gz");
    pack(&path, files);
    let public = key.map(|k| k.verifying_key());
    match bundle::verify_bundle(&path, public.as_ref()).unwrap() {
        Ok(_) => panic!("tampering not caught"),
        Err(p) => p.to_string(),
    }
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

#[test]
fn a_bundle_verifies_offline_with_its_own_or_the_given_key() {
    let env = Env::new();
    let path = make(&env);
    let public = env.key.verifying_key();
    let ok = bundle::verify_bundle(&path, Some(&public))
        .unwrap()
        .unwrap();
    assert!(!ok.self_keyed);
    assert_eq!(ok.manifest.chain.first_seq, 1);
    let files = unpack(&path);
    for a in [
        "sessions",
        "statements",
        "denials",
        "grants",
        "approvals",
        "masking",
    ] {
        assert!(files.contains_key(&format!("artifacts/{a}.jsonl")));
        assert!(files.contains_key(&format!("artifacts/{a}.csv")));
    }
    assert!(files.contains_key("chain/records.jsonl") && files.contains_key("public-key.pem"));
    // The segment ends with the sealing checkpoint.
    let records = lines(&files["chain/records.jsonl"]);
    let last: serde_json::Value = serde_json::from_slice(records.last().unwrap()).unwrap();
    assert_eq!(last["type"], "Checkpoint");
    assert!(
        bundle::verify_bundle(&path, None)
            .unwrap()
            .unwrap()
            .self_keyed
    );
}

#[test]
fn a_period_bundle_holds_a_segment_that_verifies_on_its_own() {
    let env = Env::new();
    populate(&env);
    let since = vigil_core::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let writer = env.start();
    let s = vigil_core::SessionId::new();
    vigil_audit::wait_durable(writer.append(session_started(s))).unwrap();
    vigil_audit::wait_durable(writer.append(statement_started(s, 1))).unwrap();
    vigil_audit::wait_durable(writer.append(statement_finished(s, 1))).unwrap();
    writer.shutdown().unwrap();
    let out = env.dir.path().join("period.tar.gz");
    let made =
        bundle::create_bundle(&env.source(), &env.key, Some(since), None, None, &out).unwrap();
    assert_eq!(
        made.manifest.rows["statements"], 1,
        "only the period's statement"
    );
    assert_eq!(made.manifest.rows["sessions"], 1);
    let ok = bundle::verify_bundle(&out, Some(&env.key.verifying_key()))
        .unwrap()
        .unwrap();
    assert_eq!(ok.manifest, made.manifest);
}

#[test]
fn every_kind_of_tampering_is_caught_and_named() {
    let env = Env::new();
    let path = make(&env);
    let original = unpack(&path);
    let key = Some(&env.key);

    // A changed byte in an artifact.
    let mut files = original.clone();
    let csv = files.get_mut("artifacts/statements.csv").unwrap();
    let at = csv.len() - 5;
    csv[at] ^= 1;
    let p = problems(&env, &files, key);
    assert!(
        p.contains("artifacts/statements.csv: SHA-256") && p.contains("altered"),
        "{p}"
    );

    // A file removed, a file added.
    let mut files = original.clone();
    files.remove("artifacts/denials.jsonl");
    let p = problems(&env, &files, key);
    assert!(p.contains("artifacts/denials.jsonl is missing"), "{p}");
    let mut files = original.clone();
    files.insert("artifacts/extra.csv".into(), b"seq\n".to_vec());
    let p = problems(&env, &files, key);
    assert!(
        p.contains("artifacts/extra.csv is not listed in the manifest"),
        "{p}"
    );

    // The manifest altered (without the key).
    let mut files = original.clone();
    let text = String::from_utf8(files["manifest.json"].clone()).unwrap();
    files.insert(
        "manifest.json".into(),
        text.replacen("\"statements\": 6", "\"statements\": 5", 1)
            .into_bytes(),
    );
    let p = problems(&env, &files, key);
    assert!(
        p.contains("manifest.sig does not verify manifest.json"),
        "{p}"
    );

    // Verified with the wrong key.
    let other = SigningKey::from_bytes(&[3; 32]);
    let p = problems(&env, &original, Some(&other));
    assert!(
        p.contains("does not verify") && p.contains(&vigil_audit::key_id(&other.verifying_key())),
        "{p}"
    );
    // Re-signed by another key: the bundle's own key no longer matches the given one either.
    let mut files = original.clone();
    resign(&mut files, &other);
    let p = problems(&env, &files, key);
    assert!(p.contains("does not verify"), "{p}");

    // From here on, the insider re-signs: the chain itself must give the change away.
    let records = lines(&original["chain/records.jsonl"]);

    // A record deleted (a broken link).
    let mut files = original.clone();
    let mut cut = records.clone();
    cut.remove(5);
    files.insert("chain/records.jsonl".into(), join(&cut));
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains("chain/records.jsonl: record 6 is missing: record 7 comes right after record 5"),
        "{p}"
    );

    // Records reordered.
    let mut files = original.clone();
    let mut swapped = records.clone();
    swapped.swap(4, 5);
    files.insert("chain/records.jsonl".into(), join(&swapped));
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(p.contains("record 5 is missing: record 6 comes right after record 4 (deleted, or records reordered?)"), "{p}");

    // A record's contents edited (its successor's link breaks).
    let mut files = original.clone();
    let mut edited = records.clone();
    let text = String::from_utf8(edited[2].clone()).unwrap();
    assert!(text.contains("10.0.0.7"), "{text}");
    edited[2] = text.replace("10.0.0.7", "10.0.0.8").into_bytes();
    files.insert("chain/records.jsonl".into(), join(&edited));
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains("record 3 does not match the hash that record 4 holds"),
        "{p}"
    );

    // The sealing checkpoint dropped.
    let mut files = original.clone();
    files.insert(
        "chain/records.jsonl".into(),
        join(&records[..records.len() - 1]),
    );
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(p.contains("not a checkpoint"), "{p}");

    // An artifact that says something the chain does not (digests and signature in order).
    let mut files = original.clone();
    let jsonl = String::from_utf8(files["artifacts/statements.jsonl"].clone()).unwrap();
    files.insert(
        "artifacts/statements.jsonl".into(),
        jsonl.replacen("\"rows\":1", "\"rows\":7", 1).into_bytes(),
    );
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains("artifacts/statements.jsonl line 1")
            && p.contains("rows is 7 but the chain records say 1"),
        "{p}"
    );

    // A row dropped from an artifact.
    let mut files = original.clone();
    let csv = String::from_utf8(files["artifacts/denials.csv"].clone()).unwrap();
    let mut rows: Vec<&str> = csv.split_inclusive("\r\n").collect();
    rows.remove(2);
    files.insert("artifacts/denials.csv".into(), rows.concat().into_bytes());
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(p.contains("artifacts/denials.csv"), "{p}");

    // Not a bundle at all.
    let junk = env.dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not gzip").unwrap();
    assert!(bundle::verify_bundle(&junk, None).is_err());
}

/// Sessions whose end records name the captures written beside the store; the last one's file
/// is not there. Returns the capture directory and the session ids, in chain order.
fn sessions_with_captures(env: &Env, n: usize) -> (PathBuf, Vec<String>) {
    let dir = env.dir.path().join("replay");
    std::fs::create_dir_all(&dir).unwrap();
    let writer = env.start();
    let mut ids = Vec::new();
    for i in 0..n {
        let s = vigil_core::SessionId::new();
        let capture = format!(
            "{{\"format\":\"vigil-replay/1\",\"session_id\":\"{s}\"}}\n{{\"t\":{i},\"d\":\"c\",\"b\":\"AA==\"}}\n"
        );
        if i + 1 < n {
            std::fs::write(dir.join(format!("{s}.jsonl")), &capture).unwrap();
        }
        let mut ended = session_ended(s);
        if let vigil_core::Event::SessionEnded(e) = &mut ended.event {
            e.replay_sha256 = Some(hex::encode(sha(capture.as_bytes())));
        }
        vigil_audit::wait_durable(writer.append(session_started(s))).unwrap();
        vigil_audit::wait_durable(writer.append(ended)).unwrap();
        ids.push(s.to_string());
    }
    writer.shutdown().unwrap();
    (dir, ids)
}

fn bundle_with(env: &Env, dir: &Path, selection: &str) -> (PathBuf, Manifest) {
    let out = env.dir.path().join(format!("replay-{selection}.tar.gz"));
    let source = bundle::ReplaySource {
        dir: dir.to_path_buf(),
        selection: selection.parse().unwrap(),
    };
    let made =
        bundle::create_bundle(&env.source(), &env.key, None, None, Some(&source), &out).unwrap();
    (out, made.manifest)
}

#[test]
fn replay_captures_travel_in_the_bundle_and_verify_against_their_end_records() {
    let env = Env::new();
    populate(&env);
    let (dir, ids) = sessions_with_captures(&env, 4);

    let (path, manifest) = bundle_with(&env, &dir, "all");
    let replay = manifest.replay.clone().unwrap();
    assert_eq!(replay.selection, "all");
    assert_eq!(replay.recorded, 4);
    let bundled: Vec<&str> = replay
        .captures
        .iter()
        .map(|c| c.session_id.as_str())
        .collect();
    assert_eq!(
        bundled,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // The capture whose file is gone is declared, not silently left out.
    assert_eq!(replay.unavailable.len(), 1);
    assert_eq!(replay.unavailable[0].session_id, ids[3]);
    assert!(replay.unavailable[0].reason.contains("no capture file"));
    let files = unpack(&path);
    for c in &replay.captures {
        let on_disk = std::fs::read(dir.join(format!("{}.jsonl", c.session_id))).unwrap();
        assert_eq!(files[&c.path], on_disk);
        assert_eq!(c.sha256, hex::encode(sha(&on_disk)));
        let listed = manifest.files.iter().find(|f| f.path == c.path).unwrap();
        assert_eq!(listed.sha256, c.sha256);
    }
    let ok = bundle::verify_bundle(&path, Some(&env.key.verifying_key()))
        .unwrap()
        .unwrap();
    assert_eq!(ok.manifest, manifest);

    // A sample is drawn again by the verifier; `none` carries no capture but says how many.
    let (sample, manifest) = bundle_with(&env, &dir, "sample:2");
    let replay = manifest.replay.unwrap();
    assert_eq!(replay.captures.len() + replay.unavailable.len(), 2);
    assert!(bundle::verify_bundle(&sample, None).unwrap().is_ok());
    let (none, manifest) = bundle_with(&env, &dir, "none");
    let replay = manifest.replay.unwrap();
    assert_eq!((replay.recorded, replay.captures.len()), (4, 0));
    assert!(!unpack(&none).keys().any(|k| k.starts_with("replay/")));
    assert!(bundle::verify_bundle(&none, None).unwrap().is_ok());

    // A capture altered on the gateway before bundling is declared, not bundled.
    let victim = dir.join(format!("{}.jsonl", ids[0]));
    std::fs::write(&victim, "{\"format\":\"vigil-replay/1\"}\n").unwrap();
    let (_, manifest) = bundle_with(&env, &dir, "all");
    let replay = manifest.replay.unwrap();
    assert!(replay
        .unavailable
        .iter()
        .any(|u| u.session_id == ids[0] && u.reason.contains("does not match its end record")));
}

#[test]
fn a_capture_altered_removed_or_added_in_a_bundle_is_named() {
    let env = Env::new();
    populate(&env);
    let (dir, ids) = sessions_with_captures(&env, 3);
    let (path, _) = bundle_with(&env, &dir, "all");
    let original = unpack(&path);
    let key = Some(&env.key);
    let first = format!("replay/{}.jsonl", ids[0]);

    // Altered, manifest untouched: the digest check names the file.
    let mut files = original.clone();
    files
        .get_mut(&first)
        .unwrap()
        .extend_from_slice(b"{\"t\":9,\"d\":\"s\",\"b\":\"AA==\"}\n");
    let p = problems(&env, &files, key);
    assert!(
        p.contains(&format!("{first}: SHA-256")) && p.contains("altered"),
        "{p}"
    );

    // Altered by someone who re-signs the manifest: the end record in the chain still names it.
    let mut manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest.replay.as_mut().unwrap().captures[0].sha256 = hex::encode(sha(&files[&first]));
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains(&format!("{first} (session {}): SHA-256", ids[0]))
            && p.contains("end record")
            && p.contains("the capture was altered"),
        "{p}"
    );

    // Removed, manifest re-signed without it: the chain calls for it.
    let mut files = original.clone();
    files.remove(&first);
    let mut manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest.files.retain(|f| f.path != first);
    manifest
        .replay
        .as_mut()
        .unwrap()
        .captures
        .retain(|c| c.path != first);
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains(&format!("the capture of session {}", ids[0])) && p.contains("removed"),
        "{p}"
    );
    // Removed from the archive only.
    let mut files = original.clone();
    files.remove(&first);
    let p = problems(&env, &files, key);
    assert!(p.contains(&format!("{first} is missing")), "{p}");

    // Added: a capture of a session the chain does not name, listed and re-signed.
    let mut files = original.clone();
    let stranger = vigil_core::SessionId::new().to_string();
    let added = format!("replay/{stranger}.jsonl");
    files.insert(added.clone(), b"{}\n".to_vec());
    let mut manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest.files.push(bundle::FileEntry {
        path: added.clone(),
        sha256: String::new(),
        bytes: 0,
    });
    manifest
        .replay
        .as_mut()
        .unwrap()
        .captures
        .push(bundle::BundledCapture {
            session_id: stranger.clone(),
            path: added.clone(),
            sha256: hex::encode(sha(b"{}\n")),
            file_sha256: None,
            ended_seq: 1,
        });
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
    resign(&mut files, &env.key);
    let p = problems(&env, &files, key);
    assert!(
        p.contains(&format!("{added} (session {stranger})")) && p.contains("added"),
        "{p}"
    );
    // Added to the archive only.
    let mut files = original.clone();
    files.insert(added.clone(), b"{}\n".to_vec());
    let p = problems(&env, &files, key);
    assert!(
        p.contains(&format!("{added} is not listed in the manifest (added)")),
        "{p}"
    );
}
