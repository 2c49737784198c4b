//! A raw PostgreSQL frontend for adversarial tests: it sends exactly the messages a case needs,
//! in the order and grouping the case needs (pipelines, no Describe, reused names, Flush instead
//! of Sync…), which no driver does on purpose.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One backend message: its tag and body.
pub type Msg = (u8, Vec<u8>);

pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.push(0);
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql.as_bytes());
    message(b'Q', &b)
}

/// Parse of `sql` under `name` (bytes: names need not be UTF-8), no parameter types.
pub fn parse(name: &[u8], sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql.as_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &b)
}

/// Bind of statement `statement` to portal `portal` with text parameters and result formats
/// (`[]`: all text; `[1]`: all binary; one per column otherwise).
pub fn bind(portal: &[u8], statement: &[u8], params: &[Option<&str>], formats: &[i16]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, statement);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &b)
}

pub fn describe_statement(name: &[u8]) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    message(b'D', &b)
}

pub fn describe_portal(name: &[u8]) -> Vec<u8> {
    let mut b = vec![b'P'];
    cstr(&mut b, name);
    message(b'D', &b)
}

pub fn execute(portal: &[u8], max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &b)
}

pub fn close_statement(name: &[u8]) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    message(b'C', &b)
}

pub fn close_portal(name: &[u8]) -> Vec<u8> {
    let mut b = vec![b'P'];
    cstr(&mut b, name);
    message(b'C', &b)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// An ErrorResponse or NoticeResponse, by field.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
    /// Every field as sent: (type, value).
    pub all: Vec<(u8, String)>,
}

pub fn fields(body: &[u8]) -> Fields {
    let mut f = Fields::default();
    for part in body.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let value = String::from_utf8_lossy(&part[1..]).into_owned();
        match part[0] {
            b'S' => f.severity = value.clone(),
            b'C' => f.code = value.clone(),
            b'M' => f.message = value.clone(),
            b'D' => f.detail = Some(value.clone()),
            b'H' => f.hint = Some(value.clone()),
            b'W' => f.context = Some(value.clone()),
            _ => {}
        }
        f.all.push((part[0], value));
    }
    f
}

/// What the server (through Vigil) answered up to a ReadyForQuery.
#[derive(Debug, Default, Clone)]
pub struct Reply {
    pub messages: Vec<Msg>,
}

impl Reply {
    pub fn errors(&self) -> Vec<Fields> {
        self.messages
            .iter()
            .filter(|(t, _)| *t == b'E')
            .map(|(_, b)| fields(b))
            .collect()
    }

    pub fn notices(&self) -> Vec<Fields> {
        self.messages
            .iter()
            .filter(|(t, _)| *t == b'N')
            .map(|(_, b)| fields(b))
            .collect()
    }

    /// The first error's SQLSTATE, if any.
    pub fn error_code(&self) -> Option<String> {
        self.errors().first().map(|e| e.code.clone())
    }

    /// Every DataRow's values as raw bytes (`None` = NULL).
    pub fn raw_rows(&self) -> Vec<Vec<Option<Vec<u8>>>> {
        self.messages
            .iter()
            .filter(|(t, _)| *t == b'D')
            .map(|(_, body)| {
                let n = i16::from_be_bytes([body[0], body[1]]) as usize;
                let mut at = 2;
                let mut row = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                    at += 4;
                    if len < 0 {
                        row.push(None);
                    } else {
                        row.push(Some(body[at..at + len as usize].to_vec()));
                        at += len as usize;
                    }
                }
                row
            })
            .collect()
    }

    /// Every DataRow's values as text (lossy for binary values).
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        self.raw_rows()
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            })
            .collect()
    }

    /// Every byte the client received, for searching for a value that must not be there.
    pub fn bytes(&self) -> Vec<u8> {
        self.messages
            .iter()
            .flat_map(|(t, b)| std::iter::once(*t).chain(b.iter().copied()))
            .collect()
    }

    pub fn contains(&self, needle: &str) -> bool {
        let hay = self.bytes();
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    pub fn tags(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|(t, _)| *t == b'C')
            .map(|(_, b)| String::from_utf8_lossy(&b[..b.len() - 1]).into_owned())
            .collect()
    }
}

/// A connection speaking the protocol by hand.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Logs in (cleartext password: Vigil asks for the token so) with `application_name`.
    pub fn connect(port: u16, user: &str, token: &str, application_name: &str) -> RawClient {
        Self::connect_with(
            port,
            &[
                ("user", user),
                ("database", "ehr"),
                ("application_name", application_name),
            ],
            token,
        )
        .unwrap_or_else(|e| panic!("login refused: {e:?}"))
    }

    /// Logs in with these startup parameters; `Err` with the refusal's fields.
    pub fn connect_with(
        port: u16,
        params: &[(&str, &str)],
        token: &str,
    ) -> Result<RawClient, Box<Fields>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in params {
            cstr(&mut body, k.as_bytes());
            cstr(&mut body, v.as_bytes());
        }
        body.push(0);
        let mut startup = (body.len() as i32 + 4).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        stream.write_all(&startup).unwrap();
        let mut raw = RawClient { stream };
        loop {
            let (tag, body) = raw.next();
            match tag {
                b'R' if body[..4] == 3i32.to_be_bytes() => {
                    let mut b = Vec::new();
                    cstr(&mut b, token.as_bytes());
                    raw.send(&message(b'p', &b));
                }
                b'E' => return Err(Box::new(fields(&body))),
                b'Z' => return Ok(raw),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn next(&mut self) -> Msg {
        let mut header = [0u8; 5];
        self.stream
            .read_exact(&mut header)
            .expect("the gateway answered in time");
        let len = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize - 4;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        (header[0], body)
    }

    /// Writes `bytes` (a pipeline) without ever blocking on the gateway, looking for its answer
    /// between writes, as a driver that pipelines does (asyncpg's `executemany`). Returns how
    /// much of `bytes` was written when the first byte of an answer could be read: `None` if
    /// none could before the last byte went out.
    pub fn write_watching(&mut self, bytes: &[u8]) -> Option<usize> {
        self.stream.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut written, mut answered_at) = (0, None);
        while written < bytes.len() {
            if answered_at.is_none() {
                match self.stream.peek(&mut [0u8; 1]) {
                    Ok(0) => panic!("the gateway closed the connection"),
                    Ok(_) => answered_at = Some(written),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("reading the gateway: {e}"),
                }
            }
            let chunk = &bytes[written..bytes.len().min(written + 64 * 1024)];
            match self.stream.write(chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the gateway stopped reading");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("writing to the gateway: {e}"),
            }
        }
        self.stream.set_nonblocking(false).unwrap();
        answered_at
    }

    /// Messages up to and including the next ReadyForQuery.
    pub fn ready(&mut self) -> Reply {
        let mut reply = Reply::default();
        loop {
            let m = self.next();
            let done = m.0 == b'Z';
            reply.messages.push(m);
            if done {
                return reply;
            }
        }
    }

    /// Sends `bytes` and reads `n` ReadyForQuery-terminated replies.
    pub fn round(&mut self, bytes: &[u8], n: usize) -> Vec<Reply> {
        self.send(bytes);
        (0..n).map(|_| self.ready()).collect()
    }

    /// A simple query and its reply.
    pub fn simple(&mut self, sql: &str) -> Reply {
        self.round(&query(sql), 1).pop().unwrap()
    }

    /// Messages until one with `tag` (included); for Flush-driven exchanges.
    pub fn until(&mut self, tag: u8) -> Reply {
        let mut reply = Reply::default();
        loop {
            let m = self.next();
            let done = m.0 == tag;
            reply.messages.push(m);
            if done {
                return reply;
            }
        }
    }
}
