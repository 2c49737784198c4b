//! The configuration file (TOML). docs/CONFIG.md documents every key; `examples/vigil.toml` is
//! a complete example. Unknown keys are errors, so that a typo is caught rather than ignored.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_core::event::ParameterMode;
use vigil_core::SecretRef;
use vigil_identity::{IdentityConfig, OidcProviderConfig};
use vigil_pg::{Limits, ListenerSettings, ListenerTlsMode, UpstreamTlsMode};

/// Fewer blocking threads and a slow API export could hold back every login's token check.
const MIN_BLOCKING_THREADS: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Vigil keeps its state: the embedded store, the audit signing key, the chain anchor.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    #[serde(default)]
    pub oidc_providers: Vec<OidcProviderConfig>,
    /// Least-privilege policies (docs/POLICY.md). An identity may open a session on a
    /// connection only under a policy that binds it there.
    #[serde(default)]
    pub policies: Vec<vigil_policy::PolicyConfig>,
    /// Session replay captures (docs/EVIDENCE.md).
    #[serde(default)]
    pub replay: ReplayConfig,
    /// How long audit records are kept (`vigil audit purge`), and legal holds.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Just-in-time approval: approver links and webhooks (docs/APPROVALS.md). The rules
    /// themselves are `[policies.approval]`.
    #[serde(default)]
    pub approvals: vigil_approval::ApprovalsConfig,
    /// PHI masking in flight (docs/MASKING.md). Absent: no masking.
    #[serde(default)]
    pub masking: Option<vigil_mask::MaskingConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Capture every session (what the client sent and received, after masking, with timing).
    pub enabled: bool,
    /// Where captures go; default: `replay/` in the data directory.
    pub dir: Option<PathBuf>,
    /// Bytes one session's capture file may reach (uncompressed); the capture then stops with
    /// a recorded truncation. `0`: no cap.
    pub max_session_bytes: u64,
    /// Bytes the replay directory may hold; past it the oldest closed captures under no legal
    /// hold are rotated out (recorded first). `0`: no bound.
    pub max_total_bytes: u64,
    /// Gzip each capture once its session has ended (`<id>.jsonl.gz`); an encrypted one as it
    /// is written, before encryption (`<id>.jsonl.gz.age`).
    pub compress: bool,
    /// Encrypt captures at rest to these age X25519 recipients (`age1…`, or `file:PATH` of a
    /// recipients file): `<id>.jsonl.age`, readable only with an identity the gateway's host
    /// does not hold. Absent: captures are stored as JSON lines.
    pub encrypt_to: Option<Vec<String>>,
}

/// Default `[replay] max_session_bytes`: 64 MiB.
pub const DEFAULT_REPLAY_SESSION_BYTES: u64 = 64 << 20;
/// Default `[replay] max_total_bytes`: 4 GiB.
pub const DEFAULT_REPLAY_TOTAL_BYTES: u64 = 4 << 30;

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            enabled: true,
            dir: None,
            max_session_bytes: DEFAULT_REPLAY_SESSION_BYTES,
            max_total_bytes: DEFAULT_REPLAY_TOTAL_BYTES,
            compress: true,
            encrypt_to: None,
        }
    }
}

impl ReplayConfig {
    fn validate(&self) -> Result<()> {
        let min = vigil_replay::MIN_SESSION_BYTES;
        if self.max_session_bytes != 0 && self.max_session_bytes < min {
            bail!("replay.max_session_bytes must be 0 (no cap) or at least {min}");
        }
        if self.max_total_bytes != 0 {
            if self.max_total_bytes < min {
                bail!("replay.max_total_bytes must be 0 (no bound) or at least {min}");
            }
            if self.max_session_bytes == 0 || self.max_session_bytes > self.max_total_bytes {
                bail!(
                    "replay.max_total_bytes needs a max_session_bytes no larger than itself \
                     (one session's capture must fit in the directory's bound)"
                );
            }
        }
        // Recipients files are read once paths are resolved (`Config::load`).
        if let Some(entries) = &self.encrypt_to {
            let inline: Vec<String> = entries
                .iter()
                .filter(|e| !e.trim().starts_with("file:"))
                .cloned()
                .collect();
            if entries.is_empty() || !inline.is_empty() {
                vigil_replay::Recipients::parse(&inline)?;
            }
        }
        Ok(())
    }

    /// The recipients captures are encrypted to; `None`: not encrypted.
    pub fn recipients(&self) -> Result<Option<vigil_replay::Recipients>> {
        Ok(match &self.encrypt_to {
            Some(entries) => Some(vigil_replay::Recipients::parse(entries)?),
            None => None,
        })
    }
}

impl Config {
    /// The directory of replay captures.
    pub fn replay_dir(&self) -> PathBuf {
        self.replay
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("replay"))
    }
}

/// `[retention]`: a duration per record family (default six years) and legal holds.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(with = "humantime_serde")]
    pub default: Duration,
    #[serde(with = "humantime_serde")]
    pub sessions: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub statements: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub denials: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub grants: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub approvals: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub masking: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub auth_failures: Option<Duration>,
    /// Replay capture files (default: as `sessions`).
    #[serde(with = "humantime_serde")]
    pub replay: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub tokens: Option<Duration>,
    pub legal_holds: Vec<LegalHoldConfig>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            default: Duration::from_micros(vigil_audit::retention::DEFAULT_RETENTION_US as u64),
            sessions: None,
            statements: None,
            denials: None,
            grants: None,
            approvals: None,
            masking: None,
            auth_failures: None,
            replay: None,
            tokens: None,
            legal_holds: Vec::new(),
        }
    }
}

/// `[[retention.legal_holds]]`: records matching every given condition are never purged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalHoldConfig {
    pub session: Option<String>,
    pub identity: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Why (a matter, a ticket): required.
    pub reason: String,
}

impl RetentionConfig {
    /// The policy `vigil audit purge` applies.
    pub fn policy(&self) -> Result<vigil_audit::retention::RetentionPolicy> {
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let mut policy = vigil_audit::retention::RetentionPolicy {
            default_us: us(self.default),
            ..Default::default()
        };
        for (family, value) in [
            ("sessions", self.sessions),
            ("statements", self.statements),
            ("denials", self.denials),
            ("grants", self.grants),
            ("approvals", self.approvals),
            ("masking", self.masking),
            ("auth_failures", self.auth_failures),
            ("replay", self.replay),
            ("tokens", self.tokens),
        ] {
            if let Some(d) = value {
                policy.by_family.insert(family.to_string(), us(d));
            }
        }
        for (i, h) in self.legal_holds.iter().enumerate() {
            let time = |name: &str, v: &Option<String>| -> Result<Option<vigil_core::Timestamp>> {
                v.as_deref()
                    .map(|t| {
                        vigil_core::Timestamp::parse_rfc3339(t).map_err(|e| {
                            anyhow::anyhow!(
                                "retention.legal_holds[{i}].{name}: {e} (use RFC 3339, e.g. 2026-01-01T00:00:00Z)"
                            )
                        })
                    })
                    .transpose()
            };
            let hold = vigil_audit::retention::LegalHold {
                session: h.session.clone(),
                identity: h.identity.clone(),
                since: time("since", &h.since)?,
                until: time("until", &h.until)?,
                reason: h.reason.clone(),
            };
            if hold.session.is_none()
                && hold.identity.is_none()
                && hold.since.is_none()
                && hold.until.is_none()
            {
                bail!("retention.legal_holds[{i}]: name a session, an identity or a period (since/until)");
            }
            if hold.reason.trim().is_empty() {
                bail!("retention.legal_holds[{i}]: give a reason");
            }
            policy.holds.push(hold);
        }
        Ok(policy)
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("vigil-data")
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH`; default: `vigil.db` in the data directory.
    pub url: Option<String>,
    /// Options of the embedded SQLite store (`[store.sqlite]`).
    #[serde(default)]
    pub sqlite: vigil_store::SqliteOptions,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the chain's head is signed when there are new records.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Ed25519 signing key (PKCS#8 PEM) as `file:PATH`; default: generated into the data
    /// directory on first start.
    pub signing_key: Option<String>,
    /// `redacted` (default) or `hmac-sha256`.
    pub parameters: ParameterMode,
    /// Key for `hmac-sha256` parameter recording, as `env:NAME` or `file:PATH`.
    pub parameter_key: Option<SecretRef>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval: Duration::from_secs(10),
            signing_key: None,
            parameters: ParameterMode::Redacted,
            parameter_key: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Bearer token for the HTTP API, as `env:NAME` or `file:PATH`.
    pub admin_token: SecretRef,
    /// Bearer token of the auditor role (evidence exports), as `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub auditor_token: Option<SecretRef>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Postgres,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[serde(default)]
    pub protocol: Protocol,
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: ListenerTlsMode,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl ListenerConfig {
    pub fn settings(&self) -> ListenerSettings {
        ListenerSettings {
            address: self.address,
            tls: self.tls,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// What clients give as `dbname`.
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    /// `env:NAME` or `file:PATH`; omit for trust authentication.
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub tls: UpstreamTlsMode,
    pub ca_file: Option<PathBuf>,
    /// Most sessions open at once through this connection, all identities together.
    pub max_sessions: Option<u32>,
    /// Most sessions one identity may hold at once on this connection.
    pub max_sessions_per_identity: Option<u32>,
}

fn default_pg_port() -> u16 {
    5432
}

impl Config {
    /// Reads and checks a config file. Errors name the file, and the line and key at fault.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = Config::parse(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .replay
            .recipients()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.validate(text)?;
        Ok(config)
    }

    /// The file's syntax and keys only (for `vigil policy check`, which reports the rest
    /// itself, every problem rather than the first).
    pub fn parse_unchecked(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(d) = &mut self.replay.dir {
            fix(d);
        }
        for entry in self.replay.encrypt_to.iter_mut().flatten() {
            if let Some(p) = entry.strip_prefix("file:") {
                if Path::new(p).is_relative() {
                    *entry = format!("file:{}", base.join(p).display());
                }
            }
        }
        for l in &mut self.listeners {
            if let Some(p) = &mut l.tls_cert {
                fix(p);
            }
            if let Some(p) = &mut l.tls_key {
                fix(p);
            }
        }
        let fix_secret = |r: &mut SecretRef| {
            if let SecretRef::File(p) = r {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        };
        for c in &mut self.connections {
            if let Some(p) = &mut c.ca_file {
                fix(p);
            }
            if let Some(r) = &mut c.password {
                fix_secret(r);
            }
        }
        if let Some(api) = &mut self.api {
            fix_secret(&mut api.admin_token);
            if let Some(token) = &mut api.auditor_token {
                fix_secret(token);
            }
        }
        if let Some(r) = &mut self.audit.parameter_key {
            fix_secret(r);
        }
        for hook in &mut self.approvals.webhooks {
            fix_secret(&mut hook.secret);
        }
        if let Some(r) = self.masking.as_mut().and_then(|m| m.hmac_key.as_mut()) {
            fix_secret(r);
        }
        if let Some(key) = &mut self.audit.signing_key {
            if let Some(p) = key.strip_prefix("file:") {
                if Path::new(p).is_relative() {
                    *key = format!("file:{}", base.join(p).display());
                }
            }
        }
    }

    fn validate(&self, text: &str) -> Result<()> {
        // First, so that the error has the line of the rule's key.
        self.validate_masking_names(Some(text))?;
        self.validate_sections()?;
        let identities: Vec<(&str, &[String])> = self
            .identities
            .iter()
            .map(|i| (i.name.as_str(), i.groups.as_slice()))
            .collect();
        let connections: Vec<&str> = self.connections.iter().map(|c| c.name.as_str()).collect();
        vigil_policy::validate(&self.policies, &identities, &connections)
            .map_err(|e| anyhow::anyhow!("policies: {e}{}", policy_line(text, &e.policy)))?;
        Ok(())
    }

    /// Every check but the policies'.
    pub fn validate_sections(&self) -> Result<()> {
        self.retention.policy()?;
        if self.limits.blocking_threads < MIN_BLOCKING_THREADS {
            bail!("limits.blocking_threads must be at least {MIN_BLOCKING_THREADS}");
        }
        self.replay.validate()?;
        let mut names = HashSet::new();
        for c in &self.connections {
            if c.name.is_empty() {
                bail!("connections: a connection has an empty name");
            }
            if !names.insert(c.name.as_str()) {
                bail!("connections: {:?} is declared twice", c.name);
            }
            for (key, value) in [
                ("max_sessions", c.max_sessions),
                ("max_sessions_per_identity", c.max_sessions_per_identity),
            ] {
                if value == Some(0) {
                    bail!("connections: {:?}: {key} must be at least 1", c.name);
                }
            }
        }
        let mut identities = HashSet::new();
        for i in &self.identities {
            if !identities.insert(i.name.as_str()) {
                bail!("identities: {:?} is declared twice", i.name);
            }
            for c in &i.connections {
                if !names.contains(c.as_str()) {
                    bail!(
                        "identities: {:?} may use connection {c:?}, which is not declared under [[connections]]",
                        i.name
                    );
                }
            }
        }
        let mut addrs = HashSet::new();
        for l in &self.listeners {
            if !addrs.insert(l.address) {
                bail!("listeners: {} is used twice", l.address);
            }
            if l.tls_cert.is_some() != l.tls_key.is_some() {
                bail!(
                    "listeners: {} sets only one of tls_cert and tls_key; set both",
                    l.address
                );
            }
        }
        let mut hooks = HashSet::new();
        for hook in &self.approvals.webhooks {
            if !hooks.insert(hook.name.as_str()) {
                bail!("approvals.webhooks: {:?} is declared twice", hook.name);
            }
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                bail!(
                    "approvals.webhooks {:?}: url must be http(s)://…",
                    hook.name
                );
            }
            for e in &hook.events {
                if ![
                    "request_created",
                    "request_decided",
                    "request_expired",
                    "grant_expired",
                ]
                .contains(&e.as_str())
                {
                    bail!(
                        "approvals.webhooks {:?}: unknown event {e:?} (request_created, request_decided, request_expired, grant_expired)",
                        hook.name
                    );
                }
            }
        }
        self.validate_masking_names(None)?;
        if self.audit.parameters == ParameterMode::HmacSha256 && self.audit.parameter_key.is_none()
        {
            bail!(
                "audit: parameters = \"hmac-sha256\" needs parameter_key (env:NAME or file:PATH)"
            );
        }
        Ok(())
    }

    /// Every identity, group and connection that `[masking]` and its rules name must be
    /// declared: a misspelt name in a rule's `identities` would make the rule apply to nobody,
    /// and one in `exempt_identities` would exempt nobody, silently. Groups are those of the
    /// declared identities (as for policies). `text`: the file, for the line of the key.
    pub fn validate_masking_names(&self, text: Option<&str>) -> Result<()> {
        let Some(masking) = &self.masking else {
            return Ok(());
        };
        let identities: Vec<&str> = self.identities.iter().map(|i| i.name.as_str()).collect();
        let mut groups: Vec<&str> = self
            .identities
            .iter()
            .flat_map(|i| i.groups.iter().map(String::as_str))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let connections: Vec<&str> = self.connections.iter().map(|c| c.name.as_str()).collect();
        let check = |rule: Option<(usize, &str)>, key: &str, names: &[String]| -> Result<()> {
            let (declared, what): (&[&str], fn(&str) -> String) = match key {
                "connections" => (&connections, |n| {
                    format!("connection {n:?} is not declared under [[connections]]")
                }),
                "groups" | "exempt_groups" => (&groups, |n| {
                    format!("no identity declared under [[identities]] belongs to group {n:?}")
                }),
                _ => (&identities, |n| {
                    format!("identity {n:?} is not declared under [[identities]]")
                }),
            };
            let Some(unknown) = names.iter().find(|n| !declared.contains(&n.as_str())) else {
                return Ok(());
            };
            let place = match rule {
                Some((index, name)) => format!("masking rule {name:?} (rule {index})"),
                None => "[masking]".to_string(),
            };
            let line = text
                .and_then(|t| locate_masking_key(t, rule.map(|r| r.0), key))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            let hint = did_you_mean(unknown, declared)
                .map(|d| format!("; did you mean {d:?}?"))
                .unwrap_or_default();
            bail!("{place}: {key}: {}{hint}{line}", what(unknown))
        };
        check(None, "exempt_identities", &masking.exempt_identities)?;
        check(None, "exempt_groups", &masking.exempt_groups)?;
        for (i, rule) in masking.rules.iter().enumerate() {
            let index = i + 1;
            let default_name = format!("rule-{index}");
            let name = rule.name.as_deref().unwrap_or(&default_name);
            let at = Some((index, name));
            check(at, "connections", &rule.connections)?;
            check(at, "identities", &rule.identities)?;
            check(at, "groups", &rule.groups)?;
            check(at, "exempt_identities", &rule.exempt_identities)?;
            check(at, "exempt_groups", &rule.exempt_groups)?;
        }
        Ok(())
    }

    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("vigil.db").display()))
    }

    pub fn signing_key_path(&self) -> Result<PathBuf> {
        match &self.audit.signing_key {
            None => Ok(self.data_dir.join("audit-signing-key.pem")),
            Some(s) => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
                _ => bail!("audit.signing_key must be file:PATH (a PKCS#8 PEM Ed25519 key)"),
            },
        }
    }

    pub fn anchor_path(&self) -> PathBuf {
        self.data_dir.join("audit-anchor.json")
    }
}

/// The line (1-based) of `key` in the `[masking]` table (`rule` `None`) or in the `rule`-th
/// (1-based) `[[masking.rules]]` entry, when the file writes them as tables.
fn locate_masking_key(text: &str, rule: Option<usize>, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header = match rule {
        None => lines.iter().position(|l| l.trim() == "[masking]")?,
        Some(n) => {
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim() == "[[masking.rules]]")
                .nth(n.checked_sub(1)?)?
                .0
        }
    };
    for (i, l) in lines.iter().enumerate().skip(header + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            return None;
        }
        let written = t
            .strip_prefix(key)
            .or_else(|| t.strip_prefix(&format!("\"{key}\"")));
        if written.is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return Some(i + 1);
        }
    }
    None
}

/// The declared name closest to a misspelt one, if one is close (at most a third of its
/// letters wrong, and at most 3).
pub fn did_you_mean<'a>(unknown: &str, declared: &[&'a str]) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).clamp(1, 3);
    declared
        .iter()
        .map(|d| (edit_distance(unknown, d), *d))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, d)| d)
}

/// Levenshtein distance over characters (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ` (line N)` of the `[[policies]]` entry named `name`, for error messages.
fn policy_line(text: &str, name: &str) -> String {
    locate_policy_field(text, name, None)
        .map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

/// The line (1-based) of the `[[policies]]` entry named `policy`, or of `field` within it
/// (the last part of a dotted path: `scope.window.timezone` → the `timezone = …` line), for
/// messages. Falls back to the entry's `name` line when the field is not written (a default).
pub fn locate_policy_field(text: &str, policy: &str, field: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let wanted = format!("\"{policy}\"");
    let is_key = |l: &str, key: &str| {
        let l = l.trim_start();
        l.strip_prefix(key)
            .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let name_line = lines.iter().enumerate().position(|(i, l)| {
        is_key(l, "name")
            && l.contains(&wanted)
            // The `name` of a policy: the nearest table header above is [[policies]].
            && lines[..i]
                .iter()
                .rev()
                .find(|h| h.trim_start().starts_with('['))
                .is_some_and(|h| h.trim() == "[[policies]]")
    })?;
    let Some(field) = field else {
        return Some(name_line + 1);
    };
    let key = field.rsplit('.').next().unwrap_or(field);
    // The entry runs from its [[policies]] header to the next header that is not one of its
    // own sub-tables ([policies.scope], [policies.scope.window]).
    let start = lines[..name_line]
        .iter()
        .rposition(|h| h.trim() == "[[policies]]")
        .unwrap_or(name_line);
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') && !t.starts_with("[policies.") {
            break;
        }
        if t.starts_with('[')
            && t.trim_end()
                .trim_end_matches(']')
                .ends_with(&format!(".{key}"))
        {
            return Some(i + 1);
        }
        if is_key(l, key) {
            return Some(i + 1);
        }
    }
    Some(name_line + 1)
}

/// The line and column (1-based) where a TOML error is, if it says.
pub fn toml_error_position(text: &str, e: &toml::de::Error) -> Option<(usize, usize)> {
    let span = e.span()?;
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    Some((line, column))
}

/// A parse error with its line and column but without the quoted source line: that line may
/// be the one where someone pasted a password.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    match toml_error_position(text, e) {
        Some((line, column)) => anyhow::anyhow!("line {line}, column {column}: {}", e.message()),
        None => anyhow::anyhow!("{}", e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("vigil-data"));
        assert!(c.store_url().ends_with("vigil-data/vigil.db"));
        assert_eq!(c.audit.checkpoint_interval, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_line_and_key() {
        let err = Config::parse("[[connections]]\nname = \"a\"\nhots = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("hots"), "{err}");
        let err = Config::parse(
            "[[connections]]\nname=\"a\"\nhost=\"h\"\ndatabase=\"d\"\nuser=\"u\"\npassword=\"hunter2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("env:NAME") && !err.contains("hunter2"),
            "{err}"
        );
    }

    /// A name a masking rule gives must be declared: otherwise the rule (or the exemption)
    /// applies to nobody, and nothing says so.
    #[test]
    fn masking_names_must_be_declared() {
        let base = "[[connections]]\nname = \"ehr\"\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\npassword = \"env:P\"\n\n[[identities]]\nname = \"demo-app\"\ngroups = [\"billing\"]\n\n[[identities]]\nname = \"clinician\"\n\n[masking]\n";
        let rule = |extra: &str| {
            format!("{base}\n[[masking.rules]]\ncolumns = [\"*.mrn\"]\noperator = \"redact\"\n\n[[masking.rules]]\nname = \"ssn\"\ncolumns = [\"*.ssn\"]\noperator = \"redact\"\n{extra}\n")
        };
        let ok = rule("identities = [\"demo-app\"]\ngroups = [\"billing\"]\nconnections = [\"ehr\"]\nexempt_identities = [\"clinician\"]\nexempt_groups = [\"billing\"]");
        Config::parse(&ok).unwrap();
        for (extra, expected) in [
            (
                "identities = [\"demo-ap\"]",
                "masking rule \"ssn\" (rule 2): identities: identity \"demo-ap\" is not declared under [[identities]]; did you mean \"demo-app\"? (line 25)",
            ),
            (
                "groups = [\"biling\"]",
                "masking rule \"ssn\" (rule 2): groups: no identity declared under [[identities]] belongs to group \"biling\"; did you mean \"billing\"? (line 25)",
            ),
            (
                "connections = [\"ehr\", \"ehr2\"]",
                "masking rule \"ssn\" (rule 2): connections: connection \"ehr2\" is not declared under [[connections]]; did you mean \"ehr\"? (line 25)",
            ),
            (
                "exempt_identities = [\"someone-else\"]",
                "masking rule \"ssn\" (rule 2): exempt_identities: identity \"someone-else\" is not declared under [[identities]] (line 25)",
            ),
            (
                "exempt_groups = [\"Billing\"]",
                "masking rule \"ssn\" (rule 2): exempt_groups: no identity declared under [[identities]] belongs to group \"Billing\"; did you mean \"billing\"? (line 25)",
            ),
        ] {
            let err = format!("{:#}", Config::parse(&rule(extra)).unwrap_err());
            assert_eq!(err, expected, "{extra}");
        }
        // An unnamed rule is named as the evidence names it; the [masking] table's own keys.
        let err = format!(
            "{:#}",
            Config::parse(&format!("{base}\n[[masking.rules]]\ncolumns = [\"*.ssn\"]\noperator = \"redact\"\nidentities = [\"x\"]\n")).unwrap_err()
        );
        assert!(
            err.starts_with("masking rule \"rule-1\" (rule 1): identities:"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Config::parse(&base.replace(
                "[masking]\n",
                "[masking]\nexempt_identities = [\"clinican\"]\n"
            ))
            .unwrap_err()
        );
        assert_eq!(
            err,
            "[masking]: exempt_identities: identity \"clinican\" is not declared under [[identities]]; did you mean \"clinician\"? (line 16)"
        );
        // Switched off or not, the names must resolve (switching it on must not surprise).
        let err = Config::parse(&base.replace(
            "[masking]\n",
            "[masking]\nenabled = false\nexempt_groups = [\"nobody\"]\n",
        ));
        assert!(err.is_err());
    }

    #[test]
    fn close_names() {
        let declared = ["demo-app", "demo-analyst", "clinician"];
        assert_eq!(did_you_mean("demo-ap", &declared), Some("demo-app"));
        assert_eq!(
            did_you_mean("demo-analist", &declared),
            Some("demo-analyst")
        );
        assert_eq!(did_you_mean("clincian", &declared), Some("clinician"));
        assert_eq!(did_you_mean("etl", &declared), None);
        assert_eq!(did_you_mean("", &declared), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn blocking_threads_are_bounded_and_at_least_four() {
        assert_eq!(Config::parse("").unwrap().limits.blocking_threads, 32);
        assert_eq!(
            Config::parse("[limits]\nblocking_threads = 4\n")
                .unwrap()
                .limits
                .blocking_threads,
            4
        );
        let err = Config::parse("[limits]\nblocking_threads = 3\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "limits.blocking_threads must be at least 4");
    }

    #[test]
    fn replay_bounds_must_fit_together() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.replay.max_session_bytes, DEFAULT_REPLAY_SESSION_BYTES);
        assert_eq!(c.replay.max_total_bytes, DEFAULT_REPLAY_TOTAL_BYTES);
        assert!(c.replay.compress);
        for (text, complaint) in [
            ("[replay]\nmax_session_bytes = 100\n", "at least 16384"),
            ("[replay]\nmax_total_bytes = 100\n", "at least 16384"),
            (
                "[replay]\nmax_session_bytes = 1000000\nmax_total_bytes = 500000\n",
                "no larger than itself",
            ),
            (
                "[replay]\nmax_session_bytes = 0\nmax_total_bytes = 500000\n",
                "no larger than itself",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(complaint), "{text}: {err}");
        }
        let c = Config::parse("[replay]\nmax_session_bytes = 0\nmax_total_bytes = 0\n").unwrap();
        assert_eq!(
            (c.replay.max_session_bytes, c.replay.max_total_bytes),
            (0, 0)
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vigil.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.connections.len(), 2);
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.oidc_providers.len(), 1);
        let masking = c.masking.as_ref().expect("[masking]");
        vigil_mask::compile(masking, Some(&[7u8; 32])).unwrap();
    }

    #[test]
    fn approval_rules_are_checked_at_startup() {
        let base = "[[connections]]\nname=\"ehr\"\nhost=\"h\"\ndatabase=\"d\"\nuser=\"u\"\n\
            [[identities]]\nname=\"etl\"\nconnections=[\"ehr\"]\n\
            [[identities]]\nname=\"alice\"\nkind=\"human\"\ngroups=[\"dba\"]\n\
            [[policies]]\nname=\"jit\"\nidentities=[\"etl\"]\nconnections=[\"ehr\"]\n\
            [policies.scope]\ncommands=[\"read\"]\n[policies.approval]\n";
        Config::parse(&format!("{base}approver_groups=[\"dba\"]\nmode=\"wait\"\n")).unwrap();
        for (rule, expected) in [
            ("approver_groups=[\"finance\"]\n", "finance"),
            ("approver_groups=[]\n", "at least one group"),
            (
                "approver_groups=[\"dba\"]\nmin_approvals=0\n",
                "min_approvals",
            ),
            ("approver_groups=[\"dba\"]\nmode=\"maybe\"\n", "maybe"),
        ] {
            let err = Config::parse(&format!("{base}{rule}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{rule}: {err}");
        }
    }

    #[test]
    fn statement_review_rules_are_checked_at_startup() {
        let base = "[[connections]]\nname=\"ehr\"\nhost=\"h\"\ndatabase=\"d\"\nuser=\"u\"\n\
            [[identities]]\nname=\"etl\"\nconnections=[\"ehr\"]\n\
            [[identities]]\nname=\"alice\"\nkind=\"human\"\ngroups=[\"dba\", \"leads\"]\n\
            [[policies]]\nname=\"reviewed\"\nidentities=[\"etl\"]\nconnections=[\"ehr\"]\n\
            [policies.scope]\ncommands=[\"read\", \"ddl\"]\n[policies.statement_review]\n\
            statements=[\"ddl\"]\napprover_groups=[\"dba\"]\n";
        Config::parse(&format!(
            "{base}mode=\"wait\"\nwait_timeout=\"2m\"\nreveal_literals_groups=[\"leads\"]\n"
        ))
        .unwrap();
        for (rule, expected) in [
            ("mode=\"later\"\n", "later"),
            ("mode=\"wait\"\nwait_timeout=\"0s\"\n", "wait_timeout"),
            ("reveal_literals_groups=[\"nobody\"]\n", "nobody"),
            (
                "reveal_literal_groups=[\"leads\"]\n",
                "reveal_literal_groups",
            ),
        ] {
            let err = Config::parse(&format!("{base}{rule}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{rule}: {err}");
        }
    }

    #[test]
    fn identities_must_name_declared_connections() {
        let err = Config::parse("[[identities]]\nname = \"etl\"\nconnections = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn retention_defaults_to_six_years_and_holds_need_a_subject_and_a_reason() {
        let policy = Config::parse("").unwrap().retention.policy().unwrap();
        assert_eq!(
            policy.default_us,
            vigil_audit::retention::DEFAULT_RETENTION_US
        );
        let c = Config::parse(
            "[retention]\nstatements = \"400days\"\n[[retention.legal_holds]]\nidentity = \"etl\"\nsince = \"2026-01-01T00:00:00Z\"\nreason = \"matter 17\"\n",
        )
        .unwrap();
        let policy = c.retention.policy().unwrap();
        assert_eq!(policy.by_family["statements"], 400 * 86_400 * 1_000_000);
        assert_eq!(policy.holds[0].identity.as_deref(), Some("etl"));
        for bad in [
            "[[retention.legal_holds]]\nreason = \"x\"\n",
            "[[retention.legal_holds]]\nidentity = \"etl\"\nreason = \" \"\n",
            "[[retention.legal_holds]]\nsince = \"yesterday\"\nreason = \"x\"\n",
            "[retention]\nstatments = \"1d\"\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
