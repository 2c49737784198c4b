//! Statement text is read the way the server reads it, whatever the session's settings, so that
//! no literal reaches the audit trail in clear: `client_encoding` (in SJIS, BIG5, GBK, UHC and
//! GB18030 a character's second byte can be a backslash), `standard_conforming_strings`, and
//! changes to either made by a statement whose ReadyForQuery has not arrived yet.
//!
//! A raw protocol client sends exactly the bytes and the pipelining each case needs.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

/// A minimal frontend: startup, cleartext password (Vigil asks for the token so), messages.
struct Raw {
    stream: TcpStream,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.push(0);
    v
}

fn query(sql: &[u8]) -> Vec<u8> {
    message(b'Q', &cstr(sql))
}

/// Parse, Bind and Execute of `sql` as the unnamed statement and portal, no parameters.
fn parse_bind_execute(sql: &[u8]) -> Vec<u8> {
    let mut parse = cstr(b"");
    parse.extend_from_slice(&cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = cstr(b"");
    bind.extend_from_slice(&cstr(b""));
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = cstr(b"");
    execute.extend_from_slice(&0i32.to_be_bytes());
    [
        message(b'P', &parse),
        message(b'B', &bind),
        message(b'E', &execute),
    ]
    .concat()
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

impl Raw {
    fn connect(port: u16, user: &str, database: &str, password: &str) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", database)] {
            body.extend_from_slice(&cstr(k.as_bytes()));
            body.extend_from_slice(&cstr(v.as_bytes()));
        }
        body.push(0);
        let mut startup = (body.len() as i32 + 4).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        stream.write_all(&startup).unwrap();
        let mut raw = Raw { stream };
        let (tag, body) = raw.next();
        assert_eq!(
            (tag, &body[..]),
            (b'R', &3i32.to_be_bytes()[..]),
            "cleartext request"
        );
        raw.send(&message(b'p', &cstr(password.as_bytes())));
        raw.until_ready(1);
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn next(&mut self) -> (u8, Vec<u8>) {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header).unwrap();
        let len = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize - 4;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        (header[0], body)
    }

    /// Messages up to and including the `n`th ReadyForQuery.
    fn until_ready(&mut self, n: usize) -> Vec<(u8, Vec<u8>)> {
        let mut seen = Vec::new();
        let mut ready = 0;
        while ready < n {
            let m = self.next();
            assert_ne!(m.0, b'E', "error: {}", String::from_utf8_lossy(&m.1));
            ready += usize::from(m.0 == b'Z');
            seen.push(m);
        }
        seen
    }
}

/// The first column of each DataRow.
fn first_values(messages: &[(u8, Vec<u8>)]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'D')
        .map(|(_, body)| {
            let len = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
            body[6..6 + len].to_vec()
        })
        .collect()
}

struct Setup {
    _pg: PgCluster,
    cfg: VigilConfig,
    vigil: Vigil,
    token: String,
}

fn setup() -> Setup {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    Setup {
        _pg: pg,
        cfg,
        vigil,
        token,
    }
}

impl Setup {
    fn client(&self) -> Raw {
        Raw::connect(self.vigil.port, "etl", "ehr", &self.token)
    }

    /// The recorded texts of `n` statements, once they are all in the store.
    fn texts(&self, n: usize) -> Vec<serde_json::Value> {
        let store = self.cfg.store_path();
        eventually("statement records", || {
            let started = records_of(&store, "StatementStarted");
            let finished = records_of(&store, "StatementFinished");
            (started.len() >= n && finished.len() >= n).then_some(started)
        })
    }
}

/// No record of the whole trail holds `secret`.
fn assert_nowhere(setup: &Setup, secret: &str) {
    for record in audit_records(&setup.cfg.store_path()) {
        assert!(
            !record.to_string().contains(secret),
            "a literal reached the audit trail: {record}"
        );
    }
}

#[test]
fn a_backslash_inside_an_sjis_character_hides_no_literal() {
    let s = setup();
    let mut c = s.client();
    c.send(&query(b"SET client_encoding = 'SJIS'"));
    c.until_ready(1);
    // 0x83 0x5c is one character (katakana so); read byte by byte it would be a backslash
    // escaping the quote, and the second literal's content would be taken for SQL.
    c.send(&query(b"SELECT E'\x83\\', 'secret-sjis-1'"));
    let answer = c.until_ready(1);
    assert_eq!(first_values(&answer), [b"\x83\\".to_vec()]);

    // Also when the encoding changes in the same batch: the statement after the SET waits
    // for the SET's ReadyForQuery (and its ParameterStatus) before it is read.
    let mut c = s.client();
    c.send(
        &[
            query(b"SET client_encoding = 'BIG5'"),
            query(b"SELECT E'\xa5\\', 'secret-big5-2'"),
        ]
        .concat(),
    );
    let answer = c.until_ready(2);
    assert_eq!(first_values(&answer), [b"\xa5\\".to_vec()]);

    let texts = s.texts(4);
    let texts: Vec<&str> = texts.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts.iter().filter(|t| **t == "SELECT $1, $2").count(),
        2,
        "{texts:?}"
    );
    assert_nowhere(&s, "secret");
}

#[test]
fn prepared_text_is_read_again_after_standard_conforming_strings_changes() {
    let s = setup();
    let mut c = s.client();
    // With standard_conforming_strings on, the backslash is a character and `secret` is SQL
    // (the server rejects the text). With it off, the text is one literal.
    let text: &[u8] = b"SELECT 'a\\', secret-scs-1'";
    c.send(&[parse_bind_execute(text), sync()].concat());
    let mut failed = false;
    loop {
        let (tag, _) = c.next();
        failed |= tag == b'E';
        if tag == b'Z' {
            break;
        }
    }
    assert!(
        failed,
        "the text is not valid with standard_conforming_strings on"
    );

    c.send(&query(b"SET standard_conforming_strings = off"));
    c.until_ready(1);
    c.send(&[parse_bind_execute(text), sync()].concat());
    let answer = c.until_ready(1);
    assert_eq!(first_values(&answer), [b"a', secret-scs-1".to_vec()]);

    let started = s.texts(2);
    let texts: Vec<&str> = started
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    // Read with the setting on, `secret-scs-` was SQL to the server too (and the text does not
    // parse, so Vigil refused it); read with it off, it is inside the literal, and must not be
    // taken from the first reading.
    assert_eq!(
        texts,
        ["SET standard_conforming_strings = off", "SELECT $1"]
    );
    let denied = records_of(&s.cfg.store_path(), "PolicyDenied");
    assert_eq!(denied[0]["text"], "SELECT $1, secret-scs-$2 $3");
    assert_eq!(denied[0]["rule"], "unparseable");
}

#[test]
fn a_setting_changed_by_a_statement_in_flight_is_not_guessed() {
    let s = setup();
    let text: &[u8] = b"SELECT 'a\\', secret-flight'";

    // Simple queries pipelined: the second waits for the first's ReadyForQuery, then is
    // analysed with the new setting.
    let mut c = s.client();
    c.send(&[query(b"SET standard_conforming_strings = off"), query(text)].concat());
    let answer = c.until_ready(2);
    assert_eq!(first_values(&answer), [b"a', secret-flight".to_vec()]);

    // Extended protocol, same segment: no ReadyForQuery comes between them, so the text,
    // which reads differently with the setting on and off, cannot be read for certain: it
    // is refused (and recorded without its text), and the server skips to the Sync.
    let mut c = s.client();
    c.send(
        &[
            parse_bind_execute(b"SET standard_conforming_strings = off"),
            parse_bind_execute(text),
            sync(),
        ]
        .concat(),
    );
    let mut refused = false;
    loop {
        let (tag, body) = c.next();
        if tag == b'E' {
            refused = String::from_utf8_lossy(&body).contains("reads differently");
        }
        assert_ne!(tag, b'D', "the unreadable statement must not run");
        if tag == b'Z' {
            break;
        }
    }
    assert!(refused);

    // Same pipeline, but a Sync between them: the second waits for the first's
    // ReadyForQuery and is analysed.
    let mut c = s.client();
    c.send(
        &[
            parse_bind_execute(b"SET standard_conforming_strings = off"),
            sync(),
            parse_bind_execute(text),
            sync(),
        ]
        .concat(),
    );
    let answer = c.until_ready(2);
    assert_eq!(first_values(&answer), [b"a', secret-flight".to_vec()]);

    // Texts without a backslash read the same whatever the settings: no waiting, no loss.
    let mut c = s.client();
    c.send(
        &[
            parse_bind_execute(b"SET standard_conforming_strings = off"),
            parse_bind_execute(b"SELECT 'plain'"),
            sync(),
        ]
        .concat(),
    );
    c.until_ready(1);

    let started = s.texts(7);
    let texts: Vec<&str> = started
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "SET standard_conforming_strings = off",
            "SELECT $1",
            "SET standard_conforming_strings = off",
            "SET standard_conforming_strings = off",
            "SELECT $1",
            "SET standard_conforming_strings = off",
            "SELECT $1",
        ]
    );
    let denied = records_of(&s.cfg.store_path(), "PolicyDenied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["text"], "$1");
    assert_eq!(denied[0]["rule"], "unreadable");
    assert_nowhere(&s, "secret");
}
