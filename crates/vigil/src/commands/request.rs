//! `vigil request create|list|show|approve|deny|revoke`: just-in-time approval from the command
//! line. The CLI is a client of the running gateway's HTTP API, so that decisions take effect
//! (and wake waiting connections, and notify webhooks) exactly as through the API.
//!
//! Who the approver is: the bearer token says. A human's own OIDC access token
//! (`VIGIL_APPROVER_TOKEN` or `--token`) proves the approver; the admin token
//! (`VIGIL_API_TOKEN`) must name the human it acts for with `--as NAME`, and the record says
//! the decision came through the admin token.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// The gateway's HTTP API, e.g. http://127.0.0.1:9480.
    #[arg(long, env = "VIGIL_API_URL")]
    pub api_url: String,
    /// Bearer token: a human approver's OIDC token (or a machine's own token, to ask).
    #[arg(long, env = "VIGIL_APPROVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The admin token (used when --token is not given; decisions then need --as).
    #[arg(long, env = "VIGIL_API_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Ask for access ahead of connecting.
    Create {
        /// With the admin token: the identity asking (otherwise the token's identity).
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: String,
        /// The approval-required policy whose scope you ask for (default: the first that binds
        /// the identity on the connection).
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// How long the grant should last, e.g. 30m (capped by the rule's max_duration).
        #[arg(long)]
        duration: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List requests, newest first.
    List {
        /// pending, approved, denied, expired, revoked
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One request: what was asked, by whom, and every decision. A held statement's text
    /// shows its literals only to a human approver whose group may see them, with their own
    /// token (VIGIL_APPROVER_TOKEN); everyone else sees the literal-free text.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a request (a rationale is required).
    Approve(Decide),
    /// Deny a request.
    Deny(Decide),
    /// Revoke the grant an approved request issued: its sessions end.
    Revoke(Decide),
}

#[derive(Args)]
pub struct Decide {
    id: String,
    /// The rationale, recorded with the decision.
    #[arg(long)]
    reason: String,
    /// With the admin token: the human identity you act for.
    #[arg(long = "as")]
    acting_as: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

fn call(api: &ApiArgs, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    let token = api
        .token
        .as_deref()
        .or(api.admin_token.as_deref())
        .context("no token: set VIGIL_APPROVER_TOKEN (a human's OIDC token) or VIGIL_API_TOKEN (the admin token, with --as)")?;
    let url = format!("{}{path}", api.api_url.trim_end_matches('/'));
    crate::serve::runtime(vigil_pg::Limits::default().blocking_threads)?.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Vigil API at {}", api.api_url))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = value["error"].as_str().unwrap_or("no detail");
            bail!("{why} (HTTP {})", status.as_u16());
        }
        Ok(value)
    })
}

fn print_request(r: &Value) {
    let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
    println!("request     {}", s("id"));
    println!("status      {}", s("status"));
    println!("identity    {}", s("identity"));
    println!("connection  {}", s("connection"));
    match r["subject"].as_object().and_then(|o| o.iter().next()) {
        Some((kind, v)) => {
            let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
            println!("subject     {kind} (policy {})", field("policy"));
            match kind.as_str() {
                "statement" => {
                    println!("statement   {}", field("text"));
                    match r["literals"].as_str() {
                        Some("shown") => println!("literals    {}", field("text_with_literals")),
                        Some("withheld") => {
                            println!("literals    withheld (your role may not see them)")
                        }
                        Some(_) => println!("literals    not kept (the gateway keeps them in memory only, and only for reviewers who may see them)"),
                        None => {}
                    }
                }
                "scope" => {
                    println!("asked by    session {}", field("session_id"));
                    println!("statement   {}", field("text"));
                }
                _ => {}
            }
        }
        None => println!("subject     {}", r["subject"]),
    }
    if let Some(a) = r["statement_approval"].as_object() {
        match a.get("used_at").and_then(|u| u.as_str()) {
            Some(at) => println!(
                "approval    used {at} (session {})",
                a.get("used_session")
                    .and_then(|u| u.as_str())
                    .unwrap_or("-")
            ),
            None => println!(
                "approval    not used yet (lapses {})",
                a.get("expires_at").and_then(|u| u.as_str()).unwrap_or("-")
            ),
        }
    }
    println!("duration    {}", s("duration"));
    println!("reason      {}", s("reason"));
    println!("client      {}", s("client_addr"));
    println!("created     {}", s("created_at"));
    println!("expires     {}", s("expires_at"));
    println!("grant       {}", s("grant_id"));
    for d in r["decisions"].as_array().into_iter().flatten() {
        println!(
            "decision    {} {} by {} ({}): {}",
            d["at"].as_str().unwrap_or("-"),
            if d["approve"].as_bool() == Some(true) {
                "approve"
            } else {
                "deny"
            },
            d["approver"].as_str().unwrap_or("-"),
            d["approver_kind"].as_str().unwrap_or("-"),
            d["rationale"].as_str().unwrap_or("")
        );
    }
}

pub fn run(cmd: RequestCommand) -> Result<()> {
    let decide = |d: Decide, action: &str| -> Result<()> {
        let r = call(
            &d.api,
            reqwest::Method::POST,
            &format!("/api/v1/access-requests/{}/{action}", d.id),
            Some(json!({ "reason": d.reason, "as": d.acting_as })),
        )?;
        print_request(&r);
        Ok(())
    };
    match cmd {
        RequestCommand::Create {
            identity,
            connection,
            policy,
            reason,
            duration,
            api,
        } => {
            let r = call(
                &api,
                reqwest::Method::POST,
                "/api/v1/access-requests",
                Some(
                    json!({"identity": identity, "connection": connection, "policy": policy, "reason": reason, "duration": duration}),
                ),
            )?;
            print_request(&r);
        }
        RequestCommand::List {
            status,
            identity,
            json,
            api,
        } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if let Some(i) = identity {
                query.push(format!("identity={i}"));
            }
            let r = call(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/access-requests?{}", query.join("&")),
                None,
            )?;
            for req in r["access_requests"].as_array().into_iter().flatten() {
                if json {
                    println!("{req}");
                } else {
                    let s = |k: &str| req[k].as_str().unwrap_or("-").to_string();
                    println!(
                        "{}  {:<8}  {:<16} {:<12} {}",
                        s("id"),
                        s("status"),
                        s("identity"),
                        s("connection"),
                        s("created_at")
                    );
                }
            }
        }
        RequestCommand::Show { id, api } => {
            let r = call(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/access-requests/{id}"),
                None,
            )?;
            print_request(&r);
        }
        RequestCommand::Approve(d) => decide(d, "approve")?,
        RequestCommand::Deny(d) => decide(d, "deny")?,
        RequestCommand::Revoke(d) => decide(d, "revoke")?,
    }
    Ok(())
}
