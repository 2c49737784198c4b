//! Replay captures encrypted at rest (issue 12), through the real gateway, real psql and real
//! PostgreSQL:
//! - with `[replay] encrypt_to`, what a client received (a result carrying a canary) is in no
//!   file of the replay directory, at any moment, nor in an evidence bundle;
//! - `vigil replay` reads a capture with an identity of one of its recipients, and says what it
//!   needs without one or with another; the HTTP route answers 409;
//! - an evidence bundle carries the capture as stored and verifies with and without the key,
//!   and a flipped byte is reported;
//! - rotation and legal holds treat encrypted captures like the others, across a restart;
//! - a malformed recipient stops startup and `vigil config check`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

const CANARY: &str = "Result-Canary-60413";

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vigil replay keygen -o FILE`, as a user runs it: the recipient it prints.
fn keygen(path: &Path) -> String {
    let out = Command::new(vigil_bin())
        .args(["replay", "keygen", "-o"])
        .arg(path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let recipient = stdout.trim().to_string();
    assert!(recipient.starts_with("age1"), "{stdout}");
    recipient
}

/// Every byte of every file in `dir` (and the names).
fn dir_snapshot(dir: &Path) -> (Vec<String>, Vec<u8>) {
    let mut names = Vec::new();
    let mut bytes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            names.push(entry.file_name().to_string_lossy().into_owned());
            if let Ok(b) = std::fs::read(entry.path()) {
                bytes.extend(b);
            }
        }
    }
    (names, bytes)
}

fn curl_status(url: &str, token: &str) -> (String, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    let status = head
        .lines()
        .next()
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn encrypted_captures_hold_nothing_in_clear_and_read_only_with_a_recipients_key() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        &format!(
            "CREATE TABLE notes (id int primary key, body text);
             INSERT INTO notes VALUES (1, '{CANARY}'), (2, 'Zelda Quist, seen 2026-11-02');"
        ),
    );
    let mut cfg = VigilConfig::new(&pg);
    let keys = scratch_dir("vigil-keys-");
    let (key1, key2, stranger) = (
        keys.path().join("auditor.key"),
        keys.path().join("second.key"),
        keys.path().join("stranger.key"),
    );
    let r1 = keygen(&key1);
    let r2 = keygen(&key2);
    keygen(&stranger);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key1).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the identity is its holder's alone");
    // keygen never writes over an identity.
    let again = Command::new(vigil_bin())
        .args(["replay", "keygen", "-o"])
        .arg(&key1)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).1.contains("exists"), "{}", text(&again).1);
    // One recipient inline, one from a recipients file (relative to the config).
    std::fs::write(
        cfg.dir.path().join("recipients.txt"),
        format!("# second auditor\n{r2}\n"),
    )
    .unwrap();
    cfg.extra = format!("[replay]\nencrypt_to = [\"{r1}\", \"file:recipients.txt\"]\n");
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    // The directory, watched every millisecond while the session runs: no plain capture, no
    // result bytes, ever.
    let dir = replay_dir(&cfg);
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, dir) = (watching.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            let mut leaks = Vec::new();
            let mut samples = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let (names, bytes) = dir_snapshot(&dir);
                for needle in [CANARY, "Zelda", "SELECT", "\"session_id\""] {
                    if contains(&bytes, needle) {
                        leaks.push(needle);
                    }
                }
                seen.extend(names);
                samples += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            (seen, leaks, samples)
        })
    };
    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "SELECT body FROM notes ORDER BY id; SELECT pg_sleep(0.5); SELECT body FROM notes WHERE id = 1",
    );
    assert!(ok, "{err}");
    assert!(out.contains(CANARY), "the client sees it in clear: {out}");
    let store = cfg.store_path();
    let ended = eventually("the session ended", || {
        records_of(&store, "SessionEnded").pop()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (seen, leaks, samples) = watcher.join().unwrap();
    assert!(
        leaks.is_empty(),
        "in clear in the replay directory: {leaks:?}"
    );
    let session = ended["session_id"].as_str().unwrap().to_string();
    let stored_name = format!("{session}.jsonl.gz.age");
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![stored_name.clone()],
        "only the encrypted file, from its first byte ({samples} samples)"
    );
    let stored = dir.join(&stored_name);
    let file = std::fs::read(&stored).unwrap();
    assert!(file.starts_with(b"age-encryption.org/v1\n"));

    // The end record: the content's digest, and the file's (checkable without the key).
    let content_sha = ended["replay_sha256"].as_str().unwrap();
    let file_sha = ended["replay_file_sha256"].as_str().unwrap();
    assert_eq!(content_sha.len(), 64);
    assert_eq!(file_sha, sha256_hex(&file));
    assert_ne!(file_sha, content_sha);

    // Without a key: what it is and what to pass.
    let out = cfg.cli(&["replay", &session, "--speed", "0"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("encrypted at rest"), "{stderr}");
    assert!(stderr.contains("--identity"), "{stderr}");
    assert!(!stdout.contains(CANARY));
    // With another key.
    let out = cfg.cli(&[
        "replay",
        &session,
        "--speed",
        "0",
        "--identity",
        stranger.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no identity given can decrypt"), "{stderr}");
    // With the first recipient's key: the session as psql showed it, checked against its end
    // record.
    let out = cfg.cli(&[
        "replay",
        &session,
        "--speed",
        "0",
        "--identity",
        key1.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("matches its session's end record"),
        "{stderr}"
    );
    assert!(
        stdout.contains("SELECT body FROM notes WHERE id = $"),
        "{stdout}"
    );
    assert!(stdout.contains(CANARY), "{stdout}");
    // The second recipient's key, from the environment; pcapng too.
    let pcap = keys.path().join("s.pcapng");
    let out = Command::new(vigil_bin())
        .args(["replay", &session, "--format", "pcapng", "-o"])
        .arg(&pcap)
        .arg("--config")
        .arg(cfg.path())
        .env("VIGIL_REPLAY_IDENTITY", &key2)
        .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
        .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VIGIL_TEST_AUDITOR_TOKEN", AUDITOR_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(contains(&std::fs::read(&pcap).unwrap(), CANARY));

    // The HTTP route: the gateway holds no key.
    let (status, head, body) = curl_status(
        &format!(
            "http://127.0.0.1:{}/api/v1/sessions/{session}/replay",
            vigil.api_port
        ),
        AUDITOR_TOKEN,
    );
    assert_eq!(status, "409", "{head}{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = problem["error"].as_str().unwrap();
    assert!(message.contains("encrypted at rest"), "{message}");
    assert!(message.contains("--identity FILE"), "{message}");
    assert!(!body.contains(CANARY));

    // An evidence bundle carries the file as stored, and verifies with and without the key.
    let bundle = keys.path().join("evidence.tar.gz");
    let out = cfg.cli(&[
        "evidence",
        "bundle",
        "--since",
        "1h",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let unpacked = scratch_dir("vigil-bundle-");
    untar(&bundle, unpacked.path());
    let bundled = unpacked.path().join("replay").join(&stored_name);
    assert_eq!(
        std::fs::read(&bundled).unwrap(),
        file,
        "carried as it is stored"
    );
    assert!(!contains(&all_bytes_under(unpacked.path()), CANARY));
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify"])
        .arg(&bundle)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("encrypted captures: 1 checked as stored"),
        "{stdout}"
    );
    assert!(stdout.contains("--replay-identity"), "{stdout}");
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify", "--json", "--replay-identity"])
        .arg(&key1)
        .arg(&bundle)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verdict["encrypted_captures"], 1);
    assert_eq!(verdict["encrypted_captures_content_checked"], 1);
    assert_eq!(verdict["replay"]["captures"][0]["file_sha256"], file_sha);
    assert_eq!(verdict["replay"]["captures"][0]["sha256"], content_sha);
    // With an identity that is not a recipient, the content cannot be checked: a problem.
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify", "--replay-identity"])
        .arg(&stranger)
        .arg(&bundle)
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cannot be decrypted"), "{stdout}");

    // A flipped byte in the bundled capture is reported (no key needed).
    let mut altered = file.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0x01;
    std::fs::write(&bundled, &altered).unwrap();
    let tampered = keys.path().join("tampered.tar.gz");
    retar(&bundle, unpacked.path(), &tampered);
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify"])
        .arg(&tampered)
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("replay/{stored_name}")),
        "{stdout}"
    );

    // And in the replay directory: the reader refuses it, a new bundle declares it.
    std::fs::write(&stored, &altered).unwrap();
    let out = cfg.cli(&[
        "replay",
        &session,
        "--speed",
        "0",
        "--identity",
        key1.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!text(&out).0.contains(CANARY));
    let second = keys.path().join("second.tar.gz");
    let out = cfg.cli(&[
        "evidence",
        "bundle",
        "--since",
        "1h",
        "-o",
        second.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("does not match its end record"),
        "{stdout}{stderr}"
    );

    // `--check` re-runs an encrypted capture's reads on a sandbox, given the key.
    let (ok, _, err) = vigil.psql("etl", &token, "SELECT body FROM notes ORDER BY id");
    assert!(ok, "{err}");
    let ended = eventually("the second session ended", || {
        let e = records_of(&store, "SessionEnded");
        (e.len() == 2).then_some(e)
    });
    let second = ended[1]["session_id"].as_str().unwrap();
    let sandbox = format!(
        "postgres://postgres:{UPSTREAM_PASSWORD}@127.0.0.1:{}/postgres",
        pg.port
    );
    let out = cfg.cli(&["replay", second, "--against", &sandbox, "--check"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("encrypted at rest"),
        "{}",
        text(&out).1
    );
    let out = cfg.cli(&[
        "replay",
        second,
        "--against",
        &sandbox,
        "--check",
        "--identity",
        key1.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 matched, 0 mismatched"), "{stdout}");
}

#[test]
fn rotation_and_legal_holds_treat_encrypted_captures_alike_across_a_restart() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    let keys = scratch_dir("vigil-keys-");
    let recipient = keygen(&keys.path().join("auditor.key"));
    let (per_session, total): (u64, u64) = (32_768, 160_000);
    cfg.identities
        .push(("held".into(), "connections = [\"ehr\"]".into()));
    cfg.extra = format!(
        "[replay]\nencrypt_to = [\"{recipient}\"]\nmax_session_bytes = {per_session}\nmax_total_bytes = {total}\n\n\
         [retention]\n[[retention.legal_holds]]\nidentity = \"held\"\nreason = \"matter 12\"\n"
    );
    let token = cfg.create_token("etl");
    let held_token = cfg.create_token("held");
    let run = |vigil: &Vigil, n: usize| {
        let (ok, _, err) = vigil.psql(
            "etl",
            &token,
            &format!(
                "SELECT md5(random()::text || i::text || '{n}') FROM generate_series(1, 400) i"
            ),
        );
        assert!(ok, "session {n}: {err}");
    };
    let mut vigil = Vigil::start(&cfg);
    let (ok, _, err) = vigil.psql(
        "held",
        &held_token,
        "SELECT md5(i::text) FROM generate_series(1, 300) i",
    );
    assert!(ok, "{err}");
    // Under the bound, then a restart: the new gateway finds encrypted captures it cannot read.
    for n in 0..6 {
        run(&vigil, n);
    }
    let store = cfg.store_path();
    eventually("seven sessions ended", || {
        (records_of(&store, "SessionEnded").len() == 7).then_some(())
    });
    assert!(records_of(&store, "ReplayCapturesRotated").is_empty());
    vigil.stop();
    let vigil = Vigil::start(&cfg);
    for n in 6..30 {
        run(&vigil, n);
    }
    let ended = eventually("every session ended", || {
        let e = records_of(&store, "SessionEnded");
        (e.len() == 31).then_some(e)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dir = replay_dir(&cfg);
    let mut gone = Vec::new();
    for r in records_of(&store, "ReplayCapturesRotated") {
        for s in r["captures"].as_array().unwrap() {
            gone.push(s.as_str().unwrap().to_string());
        }
    }
    let first_etl = ended[1]["session_id"].as_str().unwrap();
    assert!(
        gone.iter().any(|s| s == first_etl),
        "the oldest (from before the restart) goes first: {gone:?}"
    );
    let held = ended[0]["session_id"].as_str().unwrap();
    assert_eq!(ended[0]["identity"]["name"], "held");
    assert!(!gone.iter().any(|s| s == held), "a held capture stays");
    assert!(dir.join(format!("{held}.jsonl.gz.age")).exists());
    // Recorded first, deleted next.
    eventually("the rotated captures deleted", || {
        gone.iter()
            .all(|s| !dir.join(format!("{s}.jsonl.gz.age")).exists())
            .then_some(())
    });
    // At rest within the bound (once a rotation the last sessions called for is done).
    let at_rest = eventually("the directory within its bound at rest", || {
        let bytes: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        (bytes <= total).then_some(bytes)
    });
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".jsonl.gz.age"), "{name}");
    }
    println!(
        "31 sessions: {} encrypted captures rotated out, {at_rest} bytes at rest, bound {total}",
        gone.len()
    );
}

#[test]
fn a_malformed_recipient_stops_startup_and_config_check() {
    let mut cfg = VigilConfig::for_port(free_port());
    let run = |cfg: &VigilConfig, args: &[&str]| {
        let path = cfg.write();
        let out = Command::new(vigil_bin())
            .args(args)
            .arg(path)
            .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
            .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VIGIL_TEST_AUDITOR_TOKEN", AUDITOR_TOKEN)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}");
        stderr
    };
    cfg.extra = "[replay]\nencrypt_to = [\"age1notarecipient\"]\n".into();
    for args in [["config", "check", "-c"], ["serve", "--config", ""]] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let stderr = run(&cfg, &args);
        assert!(
            stderr.contains("\"age1notarecipient\" is not an age X25519 recipient"),
            "{args:?}: {stderr}"
        );
    }
    cfg.extra = "[replay]\nencrypt_to = [\"file:missing-recipients.txt\"]\n".into();
    let stderr = run(&cfg, &["config", "check", "-c"]);
    assert!(
        stderr.contains("cannot read the recipients file"),
        "{stderr}"
    );
    assert!(stderr.contains("missing-recipients.txt"), "{stderr}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn untar(bundle: &Path, into: &Path) {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Packs `dir` again as `bundle` was, member for member in its order.
fn retar(bundle: &Path, dir: &Path, out: &Path) {
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(bundle)
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(String::from)
        .collect();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .args(&names)
        .status()
        .unwrap();
    assert!(status.success());
}

fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
    }
    out
}
