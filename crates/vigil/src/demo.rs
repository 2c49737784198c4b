//! `vigil demo`: a throwaway PostgreSQL cluster (from the machine's server binaries) holding a
//! small synthetic EHR, and Vigil in front of it with the embedded store. Everything it makes
//! lives in one directory (default `./vigil-demo`); the cluster is recreated on every run, the
//! audit trail is kept.

mod ehr;

use crate::config::Config;
use crate::serve;
use anyhow::{bail, Context, Result};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_core::event::TokenIssued;
use vigil_core::{Event, EventDraft};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its cluster, config, store and keys.
    #[arg(long, default_value = "vigil-demo")]
    pub dir: PathBuf,
    /// Address of Vigil's PostgreSQL listener.
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub listen: SocketAddr,
    /// Address of Vigil's HTTP API.
    #[arg(long, default_value = "127.0.0.1:9480")]
    pub api_listen: SocketAddr,
    /// Once ready, write PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, VIGIL_STORE,
    /// VIGIL_API_URL (KEY=VALUE lines) to this file.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Front an existing database (postgres://user:password@host:port/db) instead of a
    /// throwaway one. Its schema is left as it is.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Patients to generate in the synthetic EHR.
    #[arg(long, default_value_t = 1000)]
    pub patients: usize,
}

fn random_secret(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn write_secret(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(value.as_bytes())?;
    Ok(())
}

/// The upstream the demo fronts.
struct Upstream {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: String,
    cluster: Option<Cluster>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    serve::init_tracing();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    for addr in [args.listen, args.api_listen] {
        if std::net::TcpListener::bind(addr).is_err() {
            bail!("{addr} is already in use; pick another with --listen / --api-listen");
        }
    }

    let upstream = match &args.upstream {
        Some(url) => parse_upstream(url)?,
        None => {
            let cluster = Cluster::create(&cluster_dir(&dir)?)?;
            let admin_password = cluster.superuser_password.clone();
            let gateway_password = random_secret(24);
            let rt = serve::runtime(vigil_pg::Limits::default().blocking_threads)?;
            rt.block_on(ehr::load(
                cluster.port,
                &admin_password,
                &gateway_password,
                args.patients,
            ))
            .context("cannot load the synthetic EHR")?;
            Upstream {
                host: "127.0.0.1".into(),
                port: cluster.port,
                database: "ehr".into(),
                user: "vigil_gateway".into(),
                password: gateway_password,
                cluster: Some(cluster),
            }
        }
    };

    // The upstream password and the API token live in files Vigil reads: the config holds only
    // references, as a real deployment's would.
    write_secret(&dir.join("upstream-password"), &upstream.password)?;
    let admin_token = random_secret(32);
    write_secret(&dir.join("api-admin-token"), &admin_token)?;
    let auditor_token = random_secret(32);
    write_secret(&dir.join("api-auditor-token"), &auditor_token)?;
    if !dir.join("masking-key").exists() {
        write_secret(&dir.join("masking-key"), &random_secret(48))?;
    }
    let config_path = dir.join("vigil.toml");
    std::fs::write(&config_path, demo_config(&args, &upstream))?;
    let config = Config::load(&config_path)?;

    let rt = serve::runtime(config.limits.blocking_threads)?;
    let result = rt.block_on(async {
        let running = serve::start(config).await?;
        let token = issue_token(&dir, &running.store_url, "demo-app").await?;
        let analyst = issue_token(&dir, &running.store_url, "demo-analyst").await?;
        let maintenance = issue_token(&dir, &running.store_url, "demo-maintenance").await?;
        let store_url = running.store_url.clone();
        let api_url = format!("http://{}", args.api_listen);
        print_welcome(
            &args,
            [&token, &analyst, &maintenance],
            &store_url,
            &api_url,
            &config_path,
        );
        if let Some(path) = &args.env_file {
            let mut env = String::new();
            for (k, v) in [
                ("PGHOST", args.listen.ip().to_string()),
                ("PGPORT", args.listen.port().to_string()),
                ("PGUSER", "demo-app".to_string()),
                ("PGPASSWORD", token.clone()),
                ("PGDATABASE", "ehr".to_string()),
                ("PGSSLMODE", "disable".to_string()),
                ("VIGIL_STORE", store_url.clone()),
                ("VIGIL_API_URL", api_url.clone()),
                ("VIGIL_API_TOKEN", admin_token.clone()),
                ("VIGIL_AUDITOR_TOKEN", auditor_token.clone()),
                ("VIGIL_CONFIG", config_path.display().to_string()),
                ("VIGIL_DEMO_ANALYST_TOKEN", analyst.clone()),
                ("VIGIL_DEMO_MAINTENANCE_TOKEN", maintenance.clone()),
            ] {
                let _ = writeln!(env, "{k}={v}");
            }
            write_secret(path, &env)?;
        }
        serve::wait_for_signal().await;
        running.stop().await
    });
    if let Some(cluster) = upstream.cluster {
        cluster.stop();
    }
    result
}

/// Issues the demo identity's token through the running gateway's store (recorded like
/// `vigil token create` does).
async fn issue_token(dir: &Path, store_url: &str, identity: &str) -> Result<String> {
    let store = crate::wiring::open_store(None, Some(store_url))?;
    let key =
        vigil_audit::load_or_generate_signing_key(&dir.join("data").join("audit-signing-key.pem"))?;
    let mut options = vigil_audit::AuditOptions::new(key);
    options.anchor_path = Some(dir.join("data").join("audit-anchor.json"));
    let writer = vigil_audit::AuditWriter::start(store.audit.clone(), options)?;
    let service = vigil_identity::TokenService::new(store.tokens);
    let (token, record) = service.prepare(
        identity,
        Some(std::time::Duration::from_secs(7 * 86400)),
        Some("vigil demo"),
    )?;
    writer
        .append(EventDraft::new(Event::TokenIssued(TokenIssued {
            token_id: record.id.clone(),
            identity_name: identity.into(),
            expires_at: record.expires_at,
            issued_by: "demo".into(),
        })))
        .await?;
    service.insert(&record)?;
    tokio::task::spawn_blocking(move || writer.shutdown()).await??;
    Ok(token)
}

fn demo_config(args: &DemoArgs, up: &Upstream) -> String {
    format!(
        r#"# Written by `vigil demo`. See docs/CONFIG.md for every key.
data_dir = "data"

[audit]
checkpoint_interval = "5s"

[api]
listen = "{api}"
admin_token = "file:api-admin-token"
auditor_token = "file:api-auditor-token"

[[listeners]]
protocol = "postgres"
address = "{listen}"

[[connections]]
name = "ehr"
host = "{host}"
port = {port}
database = "{database}"
user = "{user}"
password = "file:upstream-password"
tls = "prefer"
# No identity may take every upstream slot (docs/CONFIG.md).
max_sessions = 50
max_sessions_per_identity = 20

[[identities]]
name = "demo-app"
kind = "machine"
connections = ["ehr"]

# A second machine identity with a narrow scope: it reads encounters and diagnoses and the
# non-identifying columns of patients, nothing else: at most 100 rows and 64 KiB per statement
# (however it is fetched), 5,000 rows per session, 30 s per statement, 5 sessions at once.
[[identities]]
name = "demo-analyst"
kind = "machine"
connections = ["ehr"]

# A maintenance job whose access needs a human's approval each time (docs/APPROVALS.md), and
# the on-call DBA who approves it (with the admin token: `vigil request approve ID --as
# demo-dba`).
[[identities]]
name = "demo-maintenance"
kind = "machine"
connections = ["ehr"]

[[identities]]
name = "demo-dba"
kind = "human"
groups = ["dba-oncall"]

# The clinical app: reads and writes the EHR tables; no DDL, no functions outside SQL.
[[policies]]
name = "demo-app-ehr"
identities = ["demo-app"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "copy_out", "transaction", "session"]
relations = ["public.patients", "public.encounters", "public.diagnoses"]

[[policies]]
name = "demo-analyst-reads"
identities = ["demo-analyst"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["public.encounters", "public.diagnoses", "public.patients"]
deny_columns = {{ "public.patients" = ["ssn", "phone", "email", "street", "first_name", "last_name", "date_of_birth"] }}
row_cap = 100
byte_cap = 65536
session_row_cap = 5000
read_only = true
max_session = "8h"
statement_timeout = "30s"
idle_in_transaction_timeout = "5m"
max_sessions = 5

[[policies]]
name = "demo-maintenance-on-approval"
identities = ["demo-maintenance"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session"]
relations = ["public.encounters", "public.diagnoses"]
[policies.approval]
approver_groups = ["dba-oncall"]
max_duration = "15m"
pending_expiry = "30m"
mode = "fail"
# PHI masking (docs/MASKING.md): rules for the PHI columns, detectors for everything else
# (free-text notes, error messages that echo values, notifications, COPY rows).
[masking]
hmac_key = "file:masking-key"

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = {{ kind = "partial", keep = 4 }}

[[masking.rules]]
name = "patient-names"
columns = ["patients.first_name", "patients.last_name"]
entity = "person_name"
operator = "fake"

[[masking.rules]]
name = "dates"
columns = ["patients.date_of_birth", "encounters.started_at"]
entity = "date"
operator = "generalize"

[[masking.rules]]
name = "contact"
columns = ["patients.phone", "patients.email", "patients.street"]
operator = "redact"

[[masking.rules]]
name = "zip"
columns = ["patients.zip"]
entity = "zip"
operator = "generalize"

[[masking.rules]]
name = "mrn"
columns = ["patients.mrn"]
entity = "mrn"
operator = {{ kind = "hmac", prefix = "mrn_", length = 12 }}

[masking.detectors]
skip_columns = ["*.id", "*.*_id", "encounters.provider_npi"]

[masking.detectors.ssn]
extra_areas = ["900-999"]   # the demo's synthetic SSNs use the never-issued 9xx area
"#,
        api = args.api_listen,
        listen = args.listen,
        host = up.host,
        port = up.port,
        database = up.database,
        user = up.user,
    )
}

fn print_welcome(
    args: &DemoArgs,
    [token, analyst, maintenance]: [&str; 3],
    store_url: &str,
    api_url: &str,
    config: &Path,
) {
    let vigil = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "vigil".into());
    println!(
        r#"
Vigil demo is ready.

  Vigil (PostgreSQL protocol)  {listen}
  HTTP API                     {api_url}
  Audit store                  {store_url}
  Config                       {config}

Connect as the machine identity "demo-app" (its token is its password):

  PGPASSWORD='{token}' psql "host={host} port={port} dbname=ehr user=demo-app sslmode=disable"

Try (masking is on: SSNs, names, dates of birth, contact details and MRNs come out masked):
  SELECT mrn, first_name, last_name, date_of_birth, ssn, zip FROM patients LIMIT 5;
  SELECT count(*) FROM encounters;
  SELECT first_name FROM patients WHERE ssn LIKE '9%';   -- refused: a masked column in a filter

"demo-analyst" has a narrow grant (encounters, diagnoses, non-identifying patient columns,
read-only, 100 rows and 64 KiB per statement, 5,000 rows per session). Watch Vigil refuse
what it does not allow:

  PGPASSWORD='{analyst}' psql "host={host} port={port} dbname=ehr user=demo-analyst sslmode=disable" \
      -c "SELECT mrn, ssn FROM patients LIMIT 5"

"demo-maintenance" needs a human's approval each time. Its first connection fails naming an
access request; the DBA approves it (here through the admin token, acting as demo-dba); the
second connection runs under a 15-minute grant:

  PGPASSWORD='{maintenance}' PGOPTIONS='-c vigil.reason=reindex' psql "host={host} port={port} dbname=ehr user=demo-maintenance sslmode=disable" -c "SELECT count(*) FROM encounters"
  VIGIL_API_URL={api_url} VIGIL_API_TOKEN=$(cat {dir}/api-admin-token) {vigil} request approve <request-id> --as demo-dba --reason "OPS-1"
  (then the psql command again)

Then look at what Vigil recorded:
  {vigil} sessions list --store {store_url}
  {vigil} audit verify --store {store_url}

Press Ctrl-C to stop.
"#,
        listen = args.listen,
        host = args.listen.ip(),
        port = args.listen.port(),
        config = config.display(),
        dir = config.parent().unwrap_or(Path::new(".")).display(),
    );
}

fn parse_upstream(url: &str) -> Result<Upstream> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("invalid --upstream URL {url:?}"))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("--upstream must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .context("--upstream must include a user")?
        .to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    Ok(Upstream {
        host,
        port,
        database,
        user,
        password,
        cluster: None,
    })
}

/// A throwaway cluster started from the machine's PostgreSQL server binaries.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    superuser_password: String,
    as_postgres_user: bool,
}

/// Where a cluster left in another place than `<demo dir>/pg` is named, for the next run.
const ELSEWHERE: &str = "pg-elsewhere";
const ELSEWHERE_PREFIX: &str = "vigil-demo-pg-";

/// Where the throwaway cluster lives: `<dir>/pg`, unless the demo runs as root (PostgreSQL then
/// runs as the `postgres` user) and that user cannot reach `<dir>`, which is the case under
/// root's home (mode 0700). Then in a new folder of the temporary directory, named in
/// `<dir>/pg-elsewhere` so that the next run stops and removes it, as it does `<dir>/pg`.
fn cluster_dir(dir: &Path) -> Result<PathBuf> {
    let pointer = dir.join(ELSEWHERE);
    if let Ok(old) = std::fs::read_to_string(&pointer) {
        let old = PathBuf::from(old.trim());
        let ours = old.parent() == Some(std::env::temp_dir().as_path())
            && old
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(ELSEWHERE_PREFIX));
        if ours && old.is_dir() {
            if let Ok(bin) = find_pg_bin() {
                let _ = pg_tool(&bin, nix_is_root(), "pg_ctl")
                    .arg("-D")
                    .arg(old.join("data"))
                    .args(["-m", "immediate", "stop"])
                    .output();
            }
            let _ = std::fs::remove_dir_all(&old);
        }
        let _ = std::fs::remove_file(&pointer);
    }
    if !nix_is_root() || postgres_can_reach(dir) {
        return Ok(dir.join("pg"));
    }
    let elsewhere = std::env::temp_dir().join(format!("{ELSEWHERE_PREFIX}{}", random_secret(12)));
    // A new folder: fails rather than reuse one that exists.
    std::fs::create_dir(&elsewhere)
        .with_context(|| format!("cannot create {}", elsewhere.display()))?;
    std::fs::write(&pointer, elsewhere.display().to_string())?;
    eprintln!(
        "PostgreSQL runs as the postgres user, who cannot reach {}: its cluster goes in {}",
        dir.display(),
        elsewhere.display()
    );
    Ok(elsewhere)
}

/// Whether the `postgres` user can enter `dir` (every folder above it included).
fn postgres_can_reach(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A PostgreSQL server binary, run as the `postgres` user when asked (PostgreSQL refuses root).
fn pg_tool(bin: &Path, as_postgres_user: bool, tool: &str) -> Command {
    let path = bin.join(tool);
    if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn find_pg_bin() -> Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort();
    if let Some(dir) = versions.pop() {
        return Ok(dir);
    }
    bail!("PostgreSQL server binaries (initdb, pg_ctl) not found; install them with: sudo apt-get install -y postgresql")
}

impl Cluster {
    fn create(dir: &Path) -> Result<Cluster> {
        let bin = find_pg_bin()?;
        // PostgreSQL refuses to run as root: run it as the `postgres` user then.
        let as_postgres_user = nix_is_root();
        if dir.exists() {
            let _ = pg_tool(&bin, as_postgres_user, "pg_ctl")
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-m", "immediate", "stop"])
                .output();
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        let superuser_password = random_secret(24);
        let pwfile = dir.join("superuser-password");
        write_secret(&pwfile, &superuser_password)?;
        if as_postgres_user {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?;
            if !st.success() {
                bail!("cannot hand {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        let mut cluster = Cluster {
            bin,
            dir: dir.to_path_buf(),
            data,
            port: 0,
            superuser_password,
            as_postgres_user,
        };
        eprintln!(
            "creating a throwaway PostgreSQL cluster in {} ...",
            dir.display()
        );
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = std::fs::remove_file(&pwfile);
        cluster.port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            cluster.port,
            dir.display()
        );
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-o", &opts, "-w", "-l"])
            .arg(dir.join("server.log"))
            .arg("start")
            .output()?;
        if !out.status.success() {
            bail!(
                "the demo cluster did not start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(cluster)
    }

    fn command(&self, tool: &str) -> Command {
        pg_tool(&self.bin, self.as_postgres_user, tool)
    }

    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "stop"])
            .output();
        // A cluster outside the demo's folder goes with the demo.
        if let (Some(name), Some(parent)) = (self.dir.file_name(), self.dir.parent()) {
            if name.to_string_lossy().starts_with(ELSEWHERE_PREFIX)
                && parent == std::env::temp_dir().as_path()
            {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

fn nix_is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}
