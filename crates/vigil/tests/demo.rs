//! `vigil demo` as a newcomer runs it: a throwaway cluster with the synthetic EHR, Vigil in
//! front, an env file a script can source, and a clean stop on SIGTERM.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn demo_serves_the_synthetic_ehr_and_writes_an_env_file() {
    let dir = tempfile::Builder::new()
        .prefix("vigil-demo-")
        .tempdir()
        .unwrap();
    let env_file = dir.path().join("demo.env");
    let (pg_port, api_port) = (free_port(), free_port());
    let mut child = Command::new(vigil_bin())
        .args(["demo", "--dir"])
        .arg(dir.path().join("state"))
        .args(["--listen", &format!("127.0.0.1:{pg_port}")])
        .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
        .args(["--patients", "200", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !env_file.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "demo exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "demo did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let env: HashMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for key in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "VIGIL_STORE",
        "VIGIL_API_URL",
        "VIGIL_AUDITOR_TOKEN",
    ] {
        assert!(env.contains_key(key), "{key} missing from the env file");
    }
    // psql with nothing but the env file.
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM patients WHERE id > 0",
        ])
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200");
    // Masking is on for the default identity: masked SSNs, fake names, years of birth.
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT ssn, date_of_birth, mrn FROM patients ORDER BY id LIMIT 3",
        ])
        .envs(&env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        assert!(cols[0].starts_with("***-**-"), "{line}");
        assert_eq!(cols[1].len(), 4, "{line}");
        assert!(cols[2].starts_with("mrn_"), "{line}");
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    // The narrow identity is refused what its grant does not allow, and nothing leaks.
    let analyst = &env["VIGIL_DEMO_ANALYST_TOKEN"];
    let run = |sql: &str| {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-c", sql])
            .envs(&env)
            .env("PGUSER", "demo-analyst")
            .env("PGPASSWORD", analyst)
            .output()
            .unwrap()
    };
    let out = run("SELECT mrn, ssn FROM patients LIMIT 5");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Vigil refused this statement") && err.contains("ssn"),
        "{err}"
    );
    let out = run("SELECT count(*) FROM encounters e JOIN diagnoses d ON d.encounter_id = e.id");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("SELECT id, mrn FROM patients");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        100,
        "row cap"
    );
    let out = run("DELETE FROM diagnoses");
    assert!(!out.status.success());
    // What the README's tour shows: the decision, without running anything.
    let vigil = |args: &[&str]| {
        Command::new(vigil_bin())
            .args(args)
            .envs(&env)
            .output()
            .unwrap()
    };
    let test = vigil(&[
        "policy",
        "test",
        "--identity",
        "demo-analyst",
        "--connection",
        "ehr",
        "SELECT count(*) FROM patients WHERE ssn LIKE '9%'",
    ]);
    let said = String::from_utf8_lossy(&test.stdout);
    assert_eq!(
        test.status.code(),
        Some(1),
        "{said}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(said.contains("rule column_denied"), "{said}");
    let grants = vigil(&["grant", "list"]);
    let listed = String::from_utf8_lossy(&grants.stdout);
    assert!(
        listed.contains("policy:demo-analyst-reads") && listed.contains("live"),
        "{listed}"
    );

    // The session is on record and the chain verifies.
    let sessions = Command::new(vigil_bin())
        .args(["sessions", "list", "--json"])
        .envs(&env)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sessions.stdout).contains("demo-app"));
    let verify = Command::new(vigil_bin())
        .args(["audit", "verify"])
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo did not stop cleanly: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}
