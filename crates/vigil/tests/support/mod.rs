//! Test harness: real processes only. A throwaway PostgreSQL cluster with SCRAM-SHA-256 auth,
//! the real `vigil` binary in front of it, and helpers to run real clients.
#![allow(dead_code)]

pub mod raw;
pub mod serverlog;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Password of the cluster's superuser: what Vigil holds in its vault, never the client.
pub const UPSTREAM_PASSWORD: &str = "upstream-secret-Zq9";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a PostgreSQL server binary, as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root).
fn pg_command(bin: &str) -> Command {
    let path = format!("{PG_BIN}/{bin}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// A scratch directory PostgreSQL (running as `postgres`) can use.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    chown_postgres(dir.path());
    dir
}

/// An initdb'd data directory made once per machine and copied for each cluster: initdb
/// takes seconds, a copy milliseconds.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let root = std::env::temp_dir().join("vigil-test-pg15-template-v1");
        let done = root.join("READY");
        let lock_path = std::env::temp_dir().join("vigil-test-pg15-template.lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        lock.lock().unwrap();
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            chown_postgres(&root);
            let data = root.join("data");
            let pwfile = root.join("pw");
            std::fs::write(&pwfile, UPSTREAM_PASSWORD).unwrap();
            chown_postgres(&pwfile);
            let out = pg_command("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&done, "").unwrap();
        }
        lock.unlock().unwrap();
        root.join("data")
    })
}

/// A throwaway PostgreSQL 15 cluster on 127.0.0.1, SCRAM-SHA-256 for every connection.
pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        Self::start_with(&[])
    }

    /// Starts with extra `-c name=value` settings.
    pub fn start_with(settings: &[&str]) -> PgCluster {
        let dir = scratch_dir("vigil-pg-");
        let data = dir.path().join("data");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(&data)
            .status()
            .unwrap();
        assert!(st.success());
        chown_postgres(dir.path());
        let port = free_port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        for s in settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-w", "-t", "60", "-l"])
            .arg(dir.path().join("server.log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        PgCluster { dir, port }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL directly against the cluster (as the superuser), returning psql's output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .env("PGPASSWORD", UPSTREAM_PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "direct SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// The path of the `vigil` binary under test.
pub fn vigil_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vigil")
}

/// A Vigil configuration being written for a test.
pub struct VigilConfig {
    pub dir: tempfile::TempDir,
    pub pg_port: u16,
    pub api_port: u16,
    /// Appended verbatim to the generated file.
    pub extra: String,
    /// `[[connections]]` entry for the cluster, as `name`.
    pub connection: String,
    pub identities: Vec<(String, String)>,
    pub listener_extra: String,
    pub audit_extra: String,
    /// `[[policies]]` entries; by default one that lets the group `testers` (every identity
    /// without groups of its own) do anything on `ehr`.
    pub policies: String,
}

/// A policy that allows everything a test may do, dangerous functions included (and the
/// catalog views tests read: sensitive ones must be named).
pub const FULL_ACCESS_POLICY: &str = r#"
[[policies]]
name = "test-full-access"
groups = ["testers"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["*", "pg_catalog.pg_stat_ssl"]
functions = ["*", "pg_notify", "set_config", "pg_terminate_backend", "pg_cancel_backend", "lo_import", "lo_export", "lo_get", "lo_put", "lo_create", "lo_unlink", "lo_open", "lo_close", "loread", "lowrite", "lo_from_bytea"]
allow = ["do", "create_function", "set_role", "set_session_authorization", "set_search_path", "function_call", "copy_file", "create_extension"]
"#;

pub const ADMIN_TOKEN: &str = "test-admin-token-7f3a";
pub const AUDITOR_TOKEN: &str = "test-auditor-token-91c2";

impl VigilConfig {
    pub fn new(cluster: &PgCluster) -> VigilConfig {
        Self::for_port(cluster.port)
    }

    pub fn for_port(upstream_port: u16) -> VigilConfig {
        let dir = tempfile::Builder::new()
            .prefix("vigil-gw-")
            .tempdir()
            .unwrap();
        VigilConfig {
            dir,
            pg_port: free_port(),
            api_port: free_port(),
            extra: String::new(),
            connection: format!(
                "[[connections]]\nname = \"ehr\"\nhost = \"127.0.0.1\"\nport = {upstream_port}\ndatabase = \"postgres\"\nuser = \"postgres\"\npassword = \"env:VIGIL_TEST_UPSTREAM_PASSWORD\"\ntls = \"disable\"\n"
            ),
            identities: vec![("etl".into(), "connections = [\"ehr\"]".into())],
            listener_extra: String::new(),
            audit_extra: String::new(),
            policies: FULL_ACCESS_POLICY.to_string(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("vigil.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir().join("vigil.db")
    }

    pub fn write(&self) -> PathBuf {
        let mut text = format!(
            "data_dir = \"data\"\n\n[audit]\ncheckpoint_interval = \"1s\"\n{}\n[api]\nlisten = \"127.0.0.1:{}\"\nadmin_token = \"env:VIGIL_TEST_ADMIN_TOKEN\"\nauditor_token = \"env:VIGIL_TEST_AUDITOR_TOKEN\"\n\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n{}\n{}\n",
            self.audit_extra, self.api_port, self.pg_port, self.listener_extra, self.connection
        );
        for (name, extra) in &self.identities {
            let groups = if extra.contains("groups") {
                ""
            } else {
                "groups = [\"testers\"]\n"
            };
            text.push_str(&format!(
                "[[identities]]\nname = \"{name}\"\n{extra}\n{groups}\n"
            ));
        }
        text.push_str(&self.policies);
        text.push('\n');
        text.push_str(&self.extra);
        let path = self.path();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs a `vigil` subcommand with this config; returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        let path = self.write();
        Command::new(vigil_bin())
            .args(args)
            .arg("--config")
            .arg(path)
            .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
            .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VIGIL_TEST_AUDITOR_TOKEN", AUDITOR_TOKEN)
            .output()
            .unwrap()
    }

    /// `vigil token create --identity NAME`: the token printed once.
    pub fn create_token(&self, identity: &str) -> String {
        let out = self.cli(&["token", "create", "--identity", identity]);
        assert!(
            out.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// A running `vigil serve`.
pub struct Vigil {
    pub child: Child,
    pub port: u16,
    pub api_port: u16,
    pub log_path: PathBuf,
}

impl Vigil {
    pub fn start(config: &VigilConfig) -> Vigil {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &VigilConfig, env: &[(&str, &str)]) -> Vigil {
        let path = config.write();
        let log_path = config.dir.path().join("vigil.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(vigil_bin());
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
            .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VIGIL_TEST_AUDITOR_TOKEN", AUDITOR_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut vigil = Vigil {
            child,
            port: config.pg_port,
            api_port: config.api_port,
            log_path,
        };
        vigil.wait_ready();
        vigil
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", self.api_port).parse().unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vigil exited early ({status}): {}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&api, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vigil did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops with SIGTERM (graceful) and waits.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills with SIGKILL: a crash.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn conn_string(&self, user: &str, token: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=ehr user={user} password={token} sslmode=disable",
            self.port
        )
    }

    /// Runs psql through Vigil; returns (success, stdout, stderr).
    pub fn psql(&self, user: &str, token: &str, sql: &str) -> (bool, String, String) {
        psql_at(self.port, "ehr", user, token, sql)
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn psql_at(port: u16, db: &str, user: &str, token: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-d", db, "-U", user, "-c", sql])
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Feeds `input` to psql's stdin (for COPY FROM STDIN and scripts).
pub fn psql_stdin(
    port: u16,
    user: &str,
    token: &str,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-d", "ehr", "-U", user])
        .args(args)
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", "disable")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Every audit record, as JSON values, read straight from the store file.
pub fn audit_records(store: &Path) -> Vec<serde_json::Value> {
    let conn =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM audit_log ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| serde_json::from_slice(&b.unwrap()).unwrap())
        .collect();
    rows
}

/// Records of one type.
pub fn records_of(store: &Path, kind: &str) -> Vec<serde_json::Value> {
    audit_records(store)
        .into_iter()
        .filter(|r| r["type"] == kind)
        .collect()
}

/// Waits until `f` holds (records are written asynchronously after a statement finishes).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a process's resident set size (kB) from /proc.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Lines of a child's stdout, for processes that announce readiness.
pub fn read_line_from(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// The replay directory of a test gateway.
pub fn replay_dir(cfg: &VigilConfig) -> PathBuf {
    cfg.data_dir().join("replay")
}

/// The closed capture file of a session: `<id>.jsonl.gz` once the gateway compressed it
/// (shortly after the session's end), or `<id>.jsonl` where compression is off. Waits for it.
pub fn closed_capture(cfg: &VigilConfig, session: &str) -> PathBuf {
    let dir = replay_dir(cfg);
    eventually("the session's capture closed and compressed", || {
        let gz = dir.join(format!("{session}.jsonl.gz"));
        let plain = dir.join(format!("{session}.jsonl"));
        if gz.exists() && !plain.exists() {
            return Some(gz);
        }
        let compressing = std::fs::read_to_string(cfg.path())
            .map(|t| !t.contains("compress = false"))
            .unwrap_or(true);
        (!compressing && plain.exists()).then_some(plain)
    })
}

/// The content of a capture file (decompressed when it is `.gz`).
pub fn capture_content(path: &Path) -> Vec<u8> {
    try_capture_content(path).unwrap()
}

fn try_capture_content(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    } else {
        BufReader::new(file).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Writes `content` as a capture file, compressed when the path is `.gz`.
pub fn write_capture_content(path: &Path, content: &[u8]) {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = std::fs::File::create(path).unwrap();
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        gz.write_all(content).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(path, content).unwrap();
    }
}

/// Every capture file in the replay directory, with its content.
pub fn all_captures(cfg: &VigilConfig) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(replay_dir(cfg)) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
            // A plain file may be compressed (and removed) as it is read: its `.gz` is listed.
            if let Ok(content) = try_capture_content(&path) {
                out.push((path, content));
            }
        }
    }
    out
}
