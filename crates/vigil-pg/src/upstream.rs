//! Connecting and logging in to the upstream server with the vaulted credentials.
//!
//! The client never takes part: Vigil answers the server's authentication requests itself
//! (SCRAM-SHA-256, md5, cleartext, or none for trust), so the real password never leaves Vigil.

use crate::codec::{next_frame, put_cstr, put_message};
use crate::config::{Target, UpstreamTlsMode};
use crate::messages::error_response::field;
use crate::messages::startup::{encode_cancel_request, encode_ssl_request, encode_startup};
use crate::messages::tag::{backend, frontend};
use crate::messages::{Authentication, BackendKeyData, ParameterStatus};
use crate::proxy::ReportedSettings;
use crate::stream::Stream;
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest message accepted from the upstream server during login.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the upstream server: {0}")]
    Connect(io::Error),
    #[error("TLS handshake with the upstream server failed: {0}")]
    Tls(io::Error),
    #[error("the upstream server does not accept TLS, which this connection requires")]
    TlsRefused,
    #[error("the upstream server refused the login: {message} (SQLSTATE {code})")]
    Rejected { code: String, message: String },
    #[error(
        "the upstream server asks for authentication method {0}, which Vigil does not support"
    )]
    UnsupportedAuth(String),
    #[error("the upstream server asks for a password, but the connection has none configured")]
    NoPassword,
    #[error("unexpected reply from the upstream server: {0}")]
    Protocol(String),
    #[error("I/O error talking to the upstream server: {0}")]
    Io(#[from] io::Error),
}

/// A logged-in upstream connection, ready for queries.
pub struct Upstream {
    pub stream: Stream,
    /// The server's ParameterStatus messages, encoded, to replay to the client.
    pub parameter_status: Vec<u8>,
    pub key: BackendKeyData,
    /// The settings that decide how the server lexes statements, as it reported them.
    pub(crate) settings: ReportedSettings,
}

/// Opens a TCP (and, per the target's mode, TLS) connection to the target.
async fn open(target: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<Stream, UpstreamError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(UpstreamError::Connect)?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls.filter(|_| target.tls != UpstreamTlsMode::Disable) else {
        return Ok(Stream::Plain(tcp));
    };
    let mut tcp = tcp;
    let mut req = Vec::with_capacity(8);
    encode_ssl_request(&mut req);
    tcp.write_all(&req).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| UpstreamError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Ok(Stream::ClientTls(Box::new(stream)))
        }
        b'N' if target.tls == UpstreamTlsMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(UpstreamError::TlsRefused),
        other => Err(UpstreamError::Protocol(format!(
            "answer 0x{other:02x} to SSLRequest"
        ))),
    }
}

/// Connects and logs in. `client_params` are the client's startup parameters to pass on
/// (everything but `user` and `database`, which come from the target).
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    client_params: &[(&str, &str)],
) -> Result<Upstream, UpstreamError> {
    let mut stream = open(target, tls).await?;
    let mut out = Vec::with_capacity(256);
    let mut params: Vec<(&str, &str)> =
        vec![("user", &target.user), ("database", &target.database)];
    params.extend_from_slice(client_params);
    encode_startup(&mut out, &params);
    stream.write_all(&out).await?;

    let mut buf = BytesMut::with_capacity(4096);
    let mut scram: Option<ScramSha256> = None;
    let mut parameter_status = Vec::new();
    let mut key = None;
    let mut settings = ReportedSettings::default();
    loop {
        let (tag, body) = read_message(&mut stream, &mut buf).await?;
        match tag {
            backend::AUTHENTICATION => {
                out.clear();
                match Authentication::decode(&body)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?
                {
                    Authentication::Ok => continue,
                    Authentication::CleartextPassword => {
                        let pw = password(target)?;
                        put_message(&mut out, frontend::PASSWORD, |b| put_cstr(b, pw.as_bytes()));
                    }
                    Authentication::Md5Password { salt } => {
                        let pw = password(target)?;
                        let hashed = postgres_protocol::authentication::md5_hash(
                            target.user.as_bytes(),
                            pw.as_bytes(),
                            salt,
                        );
                        put_message(&mut out, frontend::PASSWORD, |b| {
                            put_cstr(b, hashed.as_bytes())
                        });
                    }
                    Authentication::Sasl { mechanisms } => {
                        if !mechanisms.iter().any(|m| *m == b"SCRAM-SHA-256") {
                            let offered: Vec<_> = mechanisms
                                .iter()
                                .map(|m| String::from_utf8_lossy(m).into_owned())
                                .collect();
                            return Err(UpstreamError::UnsupportedAuth(offered.join(", ")));
                        }
                        let pw = password(target)?;
                        let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                        put_message(&mut out, frontend::PASSWORD, |b| {
                            put_cstr(b, b"SCRAM-SHA-256");
                            b.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                            b.extend_from_slice(s.message());
                        });
                        scram = Some(s);
                    }
                    Authentication::SaslContinue { data } => {
                        let s = scram.as_mut().ok_or_else(|| {
                            UpstreamError::Protocol("SASL continue without SASL start".into())
                        })?;
                        s.update(data)
                            .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                        put_message(&mut out, frontend::PASSWORD, |b| {
                            b.extend_from_slice(s.message())
                        });
                    }
                    Authentication::SaslFinal { data } => {
                        let mut s = scram.take().ok_or_else(|| {
                            UpstreamError::Protocol("SASL final without SASL start".into())
                        })?;
                        // Verifies the server's signature: the server proves it knows the password too.
                        s.finish(data).map_err(|e| {
                            UpstreamError::Protocol(format!("SCRAM server signature: {e}"))
                        })?;
                        continue;
                    }
                    Authentication::Other(code) => {
                        return Err(UpstreamError::UnsupportedAuth(format!("code {code}")))
                    }
                }
                stream.write_all(&out).await?;
            }
            backend::PARAMETER_STATUS => {
                let p = ParameterStatus::decode(&body)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                settings.update(p.name, p.value);
                p.encode(&mut parameter_status);
            }
            backend::BACKEND_KEY_DATA => {
                key = Some(
                    BackendKeyData::decode(&body)
                        .map_err(|e| UpstreamError::Protocol(e.to_string()))?,
                );
            }
            backend::ERROR_RESPONSE => {
                let text = |f| {
                    field(&body, f)
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                return Err(UpstreamError::Rejected {
                    code: text(b'C'),
                    message: text(b'M'),
                });
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            backend::READY_FOR_QUERY => {
                let key = key.ok_or_else(|| {
                    UpstreamError::Protocol("no BackendKeyData before ReadyForQuery".into())
                })?;
                if !buf.is_empty() {
                    return Err(UpstreamError::Protocol("data after ReadyForQuery".into()));
                }
                return Ok(Upstream {
                    stream,
                    parameter_status,
                    key,
                    settings,
                });
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "message {} during login",
                    crate::codec::TagName(other)
                )))
            }
        }
    }
}

fn password(target: &Target) -> Result<&str, UpstreamError> {
    target
        .password
        .as_ref()
        .map(|p| p.expose())
        .ok_or(UpstreamError::NoPassword)
}

async fn read_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<(u8, Vec<u8>), UpstreamError> {
    read_message_limited(stream, buf, MAX_LOGIN_MESSAGE).await
}

async fn read_message_limited(
    stream: &mut Stream,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(u8, Vec<u8>), UpstreamError> {
    loop {
        if let Some(frame) =
            next_frame(buf, limit).map_err(|e| UpstreamError::Protocol(e.to_string()))?
        {
            let out = (frame.tag, frame.body.to_vec());
            let len = frame.len;
            let _ = buf.split_to(len);
            return Ok(out);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(UpstreamError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream server closed the connection during login",
            )));
        }
    }
}

/// Sends a CancelRequest for `key` to the target's server.
pub async fn send_cancel(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    key: BackendKeyData,
) -> Result<(), UpstreamError> {
    // Over TLS when the target needs it: the server accepts a cancel after SSL negotiation.
    let tls = tls.filter(|_| {
        !matches!(
            target.tls,
            UpstreamTlsMode::Disable | UpstreamTlsMode::Prefer
        )
    });
    let mut stream = open(target, tls).await?;
    let mut out = Vec::with_capacity(16);
    encode_cancel_request(&mut out, key.process_id, key.secret_key);
    stream.write_all(&out).await?;
    stream.flush().await?;
    // The server closes the connection once it has read the request.
    let mut sink = [0u8; 1];
    let _ = stream.read(&mut sink).await;
    Ok(())
}

/// Runs `sql` (simple protocol) on a logged-in connection that is idle, for Vigil's own use
/// before the client is let in; returns each result set's rows as text.
pub(crate) async fn simple_query(
    stream: &mut Stream,
    sql: &str,
) -> Result<crate::catalog::ResultSets, UpstreamError> {
    let mut out = Vec::with_capacity(sql.len() + 6);
    put_message(&mut out, frontend::QUERY, |b| put_cstr(b, sql.as_bytes()));
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut sets = Vec::new();
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let (tag, body) = read_message_limited(stream, &mut buf, 1 << 30).await?;
        match tag {
            backend::DATA_ROW => rows.push(
                crate::messages::data_row::text_fields(&body)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?,
            ),
            backend::COMMAND_COMPLETE => sets.push(std::mem::take(&mut rows)),
            backend::ERROR_RESPONSE => {
                let text = field(&body, b'M')
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let code = field(&body, b'C')
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                error = Some(UpstreamError::Rejected {
                    code,
                    message: text,
                });
            }
            backend::READY_FOR_QUERY => {
                return match error {
                    Some(e) => Err(e),
                    None => Ok(sets),
                };
            }
            _ => {}
        }
    }
}
