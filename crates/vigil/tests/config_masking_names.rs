//! A masking rule that names an identity, group or connection nobody declared applies to
//! nobody (or exempts nobody), and nothing would say so: `vigil config check` and `vigil
//! serve` refuse such a configuration, naming the rule, the key and the unknown name.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A configuration with `identities` `demo-app` (group `billing`) and `clinician`, connection
/// `ehr`, and `masking` appended.
fn config(masking: &str) -> VigilConfig {
    let mut cfg = VigilConfig::for_port(free_port());
    cfg.identities = vec![
        (
            "demo-app".into(),
            "connections = [\"ehr\"]\ngroups = [\"billing\", \"testers\"]".into(),
        ),
        ("clinician".into(), "connections = [\"ehr\"]".into()),
    ];
    cfg.extra = masking.to_string();
    cfg
}

const RULE: &str = "[masking]\n\n[[masking.rules]]\nname = \"ssn-partial\"\ncolumns = [\"*.ssn\"]\noperator = { kind = \"partial\", keep = 4 }\n";

fn check(cfg: &VigilConfig) -> (bool, String) {
    let out = cfg.cli(&["config", "check"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_masking_rules_naming_undeclared_objects() {
    // Positive control: every name declared.
    let good = config(&format!(
        "{RULE}identities = [\"demo-app\"]\ngroups = [\"billing\"]\nconnections = [\"ehr\"]\nexempt_identities = [\"clinician\"]\nexempt_groups = [\"billing\"]\n"
    ));
    let (ok, err) = check(&good);
    assert!(ok, "{err}");

    for (extra, expected) in [
        (
            "identities = [\"demo-ap\"]",
            "masking rule \"ssn-partial\" (rule 1): identities: identity \"demo-ap\" is not declared under [[identities]]; did you mean \"demo-app\"?",
        ),
        (
            "groups = [\"biling\"]",
            "masking rule \"ssn-partial\" (rule 1): groups: no identity declared under [[identities]] belongs to group \"biling\"; did you mean \"billing\"?",
        ),
        (
            "connections = [\"ehr2\"]",
            "masking rule \"ssn-partial\" (rule 1): connections: connection \"ehr2\" is not declared under [[connections]]; did you mean \"ehr\"?",
        ),
        (
            "exempt_identities = [\"clinican\"]",
            "masking rule \"ssn-partial\" (rule 1): exempt_identities: identity \"clinican\" is not declared under [[identities]]; did you mean \"clinician\"?",
        ),
        (
            "exempt_groups = [\"auditors\"]",
            "masking rule \"ssn-partial\" (rule 1): exempt_groups: no identity declared under [[identities]] belongs to group \"auditors\"",
        ),
    ] {
        let cfg = config(&format!("{RULE}{extra}\n"));
        let (ok, err) = check(&cfg);
        assert!(!ok, "{extra}: accepted");
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(err.contains("(line "), "{extra}: the line of the key: {err}");
    }
    // The [masking] table's own exemptions.
    let cfg = config("[masking]\nexempt_identities = [\"demo-ap\"]\n");
    let (ok, err) = check(&cfg);
    assert!(!ok);
    assert!(
        err.contains("[masking]: exempt_identities: identity \"demo-ap\" is not declared under [[identities]]; did you mean \"demo-app\"?"),
        "{err}"
    );
    let cfg = config("[masking]\nexempt_groups = [\"nobody\"]\n");
    let (ok, err) = check(&cfg);
    assert!(!ok && err.contains("[masking]: exempt_groups:"), "{err}");
}

#[test]
fn serve_refuses_them_before_listening() {
    let cfg = config(&format!("{RULE}identities = [\"demo-ap\"]\n"));
    let path = cfg.write();
    let mut child = Command::new(vigil_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
        .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VIGIL_TEST_AUDITOR_TOKEN", AUDITOR_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vigil serve started with a rule naming an undeclared identity");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    assert!(
        err.contains("masking rule \"ssn-partial\" (rule 1): identities: identity \"demo-ap\" is not declared"),
        "{err}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", cfg.pg_port)).is_err(),
        "nothing listens"
    );
}
