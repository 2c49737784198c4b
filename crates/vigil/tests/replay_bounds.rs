//! Replay captures are bounded and hold no client literal (issue 12), through the real gateway:
//! - the literals of a refused and of an allowed statement, bound parameters, COPY data, a
//!   value PostgreSQL echoes in an error and a NOTIFY payload are in no capture file and in no
//!   file of an evidence bundle, while the capture still replays and exports to pcapng;
//! - a session pushing past `max_session_bytes` leaves a bounded file that says where it
//!   stopped, its end record says so too, and its statements are all in the audit trail;
//! - across many sessions the replay directory stays within `max_total_bytes`: the oldest
//!   captures are rotated out (recorded first), never one under a legal hold;
//! - when nothing may be rotated out, new sessions are refused rather than run uncaptured.

mod support;

use std::process::Command;
use support::*;

const PATIENTS: &str = "
CREATE TABLE patients (id int primary key, name text, ssn text);
INSERT INTO patients VALUES (1, 'Zelda Quist', '123-45-6789'), (2, 'Ario Mbeki', '987-65-4321');
";

/// Values the clients send; none may rest in Vigil's files.
const CANARIES: [&str; 7] = [
    "123-45-6789",
    "Zelda Quist",
    "Bound-Canary-9931",
    "Copy-Canary-7702",
    "Echo-Canary-5521",
    "Notify-Canary-3318",
    "Insert-Canary-4410",
];

fn deny_ssn_policy() -> String {
    r#"
[[policies]]
name = "no-ssn"
groups = ["testers"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "copy_in", "transaction", "session", "utility"]
relations = ["public.patients"]
functions = ["*"]
deny_columns = { "public.patients" = ["ssn"] }
"#
    .to_string()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn cli_ok(cfg: &VigilConfig, args: &[&str]) -> Vec<u8> {
    let out = cfg.cli(args);
    assert!(
        out.status.success(),
        "vigil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Bytes of every capture file in the replay directory, as they are on disk.
fn replay_dir_bytes(cfg: &VigilConfig) -> u64 {
    dir_bytes(&replay_dir(cfg))
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_literal_rests_in_captures_or_evidence_bundles() {
    let pg = PgCluster::start();
    pg.sql("postgres", PATIENTS);
    let mut cfg = VigilConfig::new(&pg);
    cfg.policies = deny_ssn_policy();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    // Refused: a denied column compared with a literal.
    let refused = "SELECT name FROM patients WHERE ssn = '123-45-6789'";
    let (ok, _, err) = vigil.psql("etl", &token, refused);
    assert!(!ok, "the policy refuses it");
    assert!(!err.contains("123-45-6789"), "{err}");
    // Allowed, with literals; a value PostgreSQL quotes back in its error; a NOTIFY payload.
    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "SELECT id FROM patients WHERE name = 'Zelda Quist'",
    );
    assert!(ok && out == "1", "{out} {err}");
    let (ok, _, err) = vigil.psql("etl", &token, "SELECT 'Echo-Canary-5521'::int");
    assert!(
        !ok && err.contains("Echo-Canary-5521"),
        "the client sees it: {err}"
    );
    let (ok, _, err) = vigil.psql(
        "etl",
        &token,
        "LISTEN events; NOTIFY events, 'Notify-Canary-3318'; INSERT INTO patients (id, name) VALUES (3, 'Insert-Canary-4410')",
    );
    assert!(ok, "{err}");
    // COPY data from the client.
    let (ok, _, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &["-c", "COPY patients (id, name) FROM STDIN"],
        "4\tCopy-Canary-7702\n",
    );
    assert!(ok, "{err}");
    // A driver's bound parameter.
    let (client, conn) =
        tokio_postgres::connect(&vigil.conn_string("etl", &token), tokio_postgres::NoTls)
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .query(
            "SELECT count(*) FROM patients WHERE name = $1",
            &[&"Bound-Canary-9931"],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    drop(client);
    conn.await.unwrap();

    let store = cfg.store_path();
    let ended = eventually("six sessions ended", || {
        let e = records_of(&store, "SessionEnded");
        (e.len() >= 6).then_some(e)
    });
    // Every capture complete (its trailer written), compressed or not.
    let captures = eventually("six complete captures", || {
        let captures = all_captures(&cfg);
        let complete: std::collections::HashSet<String> = captures
            .iter()
            .filter(|(_, c)| {
                String::from_utf8_lossy(c)
                    .lines()
                    .last()
                    .is_some_and(|l| l.starts_with("{\"end\""))
            })
            .map(|(p, _)| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        (complete.len() == ended.len()).then_some(captures)
    });

    // No capture holds a literal, decompressed or as stored.
    for (path, content) in &captures {
        let stored = std::fs::read(path).unwrap();
        let mut decoded = Vec::new();
        for line in String::from_utf8_lossy(content).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(b) = v["b"].as_str() {
                use base64::Engine;
                decoded.extend(base64::engine::general_purpose::STANDARD.decode(b).unwrap());
            }
        }
        for canary in CANARIES {
            for (what, bytes) in [("file", &stored), ("content", content), ("bytes", &decoded)] {
                assert!(
                    !contains(bytes, canary),
                    "{canary} in the {what} of {}",
                    path.display()
                );
            }
        }
    }

    // The refused session replays without its literal, and still exports to pcapng.
    let first = ended[0]["session_id"].as_str().unwrap();
    let out = cfg.cli(&["replay", first, "--speed", "0"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("SELECT name FROM patients WHERE ssn = $1"),
        "{shown}"
    );
    assert!(shown.contains("ERROR:"), "the refusal is shown: {shown}");
    let driver = ended[5]["session_id"].as_str().unwrap();
    let out = cfg.cli(&["replay", driver, "--speed", "0"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("SELECT count(*) FROM patients WHERE name = $1")
            && shown.contains("(1 row)"),
        "{shown}"
    );
    let pcap = cfg.dir.path().join("refused.pcapng");
    cli_ok(
        &cfg,
        &[
            "replay",
            first,
            "--format",
            "pcapng",
            "-o",
            pcap.to_str().unwrap(),
        ],
    );
    let pcap_bytes = std::fs::read(&pcap).unwrap();
    assert!(contains(&pcap_bytes, "WHERE ssn = $1"));
    if Command::new("tshark").arg("--version").output().is_ok() {
        let out = Command::new("tshark")
            .args(["-r", pcap.to_str().unwrap(), "-Y", "pgsql", "-T", "fields"])
            .args(["-e", "pgsql.query"])
            .output()
            .unwrap();
        let decoded = String::from_utf8_lossy(&out.stdout);
        assert!(decoded.contains("WHERE ssn = $1"), "{decoded}");
    }

    // An evidence bundle carries every capture and none of the literals, in any of its files.
    let bundle = cfg.dir.path().join("evidence.tar.gz");
    cli_ok(
        &cfg,
        &[
            "evidence",
            "bundle",
            "--since",
            "1h",
            "-o",
            bundle.to_str().unwrap(),
        ],
    );
    let unpacked = cfg.dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let out = Command::new("tar")
        .arg("xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut files = 0;
    let mut replay_files = 0;
    let mut stack = vec![unpacked.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            replay_files += usize::from(path.parent().unwrap().ends_with("replay"));
            let bytes = std::fs::read(&path).unwrap();
            for canary in CANARIES {
                assert!(
                    !contains(&bytes, canary),
                    "{canary} in the bundle's {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 5, "{files} files");
    assert_eq!(replay_files, 6, "the bundle carries the captures");
    let verified = Command::new(vigil_bin())
        .args(["evidence", "verify"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn a_session_past_its_cap_leaves_a_bounded_capture_and_a_recorded_truncation() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    let cap: u64 = 65_536;
    cfg.extra = format!("[replay]\nmax_session_bytes = {cap}\n");
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    // About 400 kB of results, then more statements after the capture stopped.
    let (ok, out, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &[],
        "SELECT 1;\n\
         SELECT md5(i::text) || md5((i + 1)::text) FROM generate_series(1, 6000) i;\n\
         SELECT 'after the cap' AS still_served;\n",
    );
    assert!(ok, "{err}");
    assert!(
        out.ends_with("after the cap"),
        "the session went on: …{}",
        &out[out.len() - 40..]
    );

    let store = cfg.store_path();
    let ended = eventually("the session's end", || {
        records_of(&store, "SessionEnded").pop()
    });
    let session = ended["session_id"].as_str().unwrap();
    let truncated = &ended["replay_truncated"];
    assert_eq!(truncated["reason"], "max_session_bytes", "{ended}");
    assert_eq!(truncated["limit_bytes"], cap);
    assert!(truncated["at_us"].as_u64().unwrap() > 0);
    assert_eq!(ended["replay_sha256"].as_str().unwrap().len(), 64);
    // Every statement is in the audit trail, those after the cap included.
    let statements = records_of(&store, "StatementStarted");
    assert_eq!(statements.len(), 3, "{statements:?}");

    let path = closed_capture(&cfg, session);
    let content = capture_content(&path);
    assert!(
        content.len() as u64 <= cap,
        "capture of {} bytes under a cap of {cap}",
        content.len()
    );
    let text = String::from_utf8(content).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let marker: serde_json::Value =
        serde_json::from_str(lines[lines.len() - 2]).expect("the truncation line");
    assert_eq!(
        marker["truncated"], *truncated,
        "the file says what the record says"
    );
    assert!(lines.last().unwrap().starts_with("{\"end\""));
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["max_session_bytes"], cap, "the cap is recorded");
    assert!(std::fs::metadata(&path).unwrap().len() < cap, "compressed");

    // It still plays (up to where it stopped) and verifies against its end record.
    let out = cfg.cli(&["replay", session, "--speed", "0"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matches its session's end record"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("capture stopped at"), "{shown}");
    assert!(shown.contains("max_session_bytes"), "{shown}");
    assert!(!shown.contains("after the cap"));
}

#[test]
fn the_replay_directory_stays_within_its_bound_and_keeps_held_captures() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    let (per_session, total): (u64, u64) = (32_768, 200_000);
    cfg.identities
        .push(("held".into(), "connections = [\"ehr\"]".into()));
    cfg.extra = format!(
        "[replay]\nmax_session_bytes = {per_session}\nmax_total_bytes = {total}\n\n\
         [retention]\n[[retention.legal_holds]]\nidentity = \"held\"\nreason = \"matter 12\"\n"
    );
    let token = cfg.create_token("etl");
    let held_token = cfg.create_token("held");
    let vigil = Vigil::start(&cfg);

    // A held session first: the oldest capture, never rotated out.
    let (ok, _, err) = vigil.psql(
        "held",
        &held_token,
        "SELECT md5(i::text) FROM generate_series(1, 300) i",
    );
    assert!(ok, "{err}");
    let sessions = 40;
    // The directory's size, sampled every 2 ms while the sessions run.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, dir) = (sampling.clone(), replay_dir(&cfg));
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(dir_bytes(&dir));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        })
    };
    let mut peak = 0;
    for n in 0..sessions {
        // Random digests compress poorly: each capture is most of its cap on disk.
        let (ok, _, err) = vigil.psql(
            "etl",
            &token,
            &format!(
                "SELECT md5(random()::text || i::text || '{n}') FROM generate_series(1, 400) i"
            ),
        );
        assert!(ok, "session {n}: {err}");
        peak = peak.max(replay_dir_bytes(&cfg));
    }
    let store = cfg.store_path();
    let ended = eventually("every session ended", || {
        let e = records_of(&store, "SessionEnded");
        (e.len() > sessions).then_some(e)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    peak = peak.max(sampler.join().unwrap());
    let now = replay_dir_bytes(&cfg);
    // Past the bound only while a session runs: its open capture (up to its cap) and, for a
    // moment, the same capture plain and compressed.
    assert!(
        peak <= total + 2 * per_session,
        "peak {peak} bytes, bound {total} (+ twice one session's {per_session})"
    );
    assert!(now <= total, "{now} bytes at rest, bound {total}");

    let rotated = records_of(&store, "ReplayCapturesRotated");
    assert!(!rotated.is_empty(), "rotations are recorded");
    let mut gone = Vec::new();
    for r in &rotated {
        assert_eq!(r["max_total_bytes"], total);
        for s in r["captures"].as_array().unwrap() {
            gone.push(s.as_str().unwrap().to_string());
        }
    }
    let held_session = ended[0]["session_id"].as_str().unwrap();
    assert_eq!(ended[0]["identity"]["name"], "held");
    assert!(
        !gone.iter().any(|s| s == held_session),
        "a held capture is never rotated out"
    );
    assert!(find_any(&cfg, held_session), "the held capture is kept");
    for s in &gone {
        assert!(!find_any(&cfg, s), "rotated capture {s} still on disk");
    }
    // The newest session's capture is there, and plays.
    let last = ended.last().unwrap()["session_id"].as_str().unwrap();
    assert!(find_any(&cfg, last));
    cli_ok(&cfg, &["replay", last, "--speed", "0"]);
    // A rotated one says where it went.
    let out = cfg.cli(&["replay", &gone[0], "--speed", "0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotated out"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{sessions} sessions: peak {peak} bytes, at rest {now} bytes, bound {total}; {} captures rotated out in {} records",
        gone.len(),
        rotated.len()
    );
}

fn find_any(cfg: &VigilConfig, session: &str) -> bool {
    let dir = replay_dir(cfg);
    dir.join(format!("{session}.jsonl")).exists()
        || dir.join(format!("{session}.jsonl.gz")).exists()
}

#[test]
fn when_nothing_may_be_rotated_out_new_sessions_are_refused_not_run_uncaptured() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    let (per_session, total): (u64, u64) = (32_768, 65_536);
    cfg.extra = format!(
        "[replay]\nmax_session_bytes = {per_session}\nmax_total_bytes = {total}\n\n\
         [retention]\n[[retention.legal_holds]]\nidentity = \"etl\"\nreason = \"matter 12\"\n"
    );
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let mut refused = None;
    for n in 0..12 {
        let (ok, _, err) = vigil.psql(
            "etl",
            &token,
            &format!(
                "SELECT md5(random()::text || i::text || '{n}') FROM generate_series(1, 400) i"
            ),
        );
        if !ok {
            refused = Some((n, err));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (n, err) = refused.expect("a session refused once the held captures fill the directory");
    assert!(n >= 2, "refused after {n} sessions");
    assert!(err.contains("replay capture"), "{err}");
    assert!(records_of(&cfg.store_path(), "ReplayCapturesRotated").is_empty());
    assert!(replay_dir_bytes(&cfg) <= total + per_session);
    eventually("the refused session's end record", || {
        records_of(&cfg.store_path(), "SessionEnded")
            .iter()
            .any(|e| e["reason"] == "audit_unavailable")
            .then_some(())
    });
    // The session running when the directory filled up stopped its capture, and says so.
    let truncated = records_of(&cfg.store_path(), "SessionEnded")
        .into_iter()
        .filter(|e| e["replay_truncated"]["reason"] == "max_total_bytes")
        .count();
    assert!(truncated <= 1, "{truncated}");
}
