//! A capture told statement by statement, with result tables as psql prints them (aligned
//! format): what an auditor reads in the terminal.

use crate::file::Capture;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;

/// One statement as the capture shows it: when, what, and what came back.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based, in the order the client sent them.
    pub seq: u64,
    /// Microseconds since the session started, when the client sent it.
    pub t_us: u64,
    pub text: String,
    /// What the client saw, rendered.
    pub output: String,
    /// Rows the client received, and the SHA-256 of their DataRow bodies in order (what the
    /// gateway records as the statement's `result_digest`).
    pub rows: u64,
    pub result_digest: String,
    /// Parameters were bound (an Execute of a statement with parameters).
    pub has_parameters: bool,
    pub failed: bool,
}

/// Reassembles one direction's messages across frames.
#[derive(Default)]
struct Messages {
    buf: Vec<u8>,
}

impl Messages {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<(u8, Vec<u8>)>) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while self.buf.len() >= at + 5 {
            let len = u32::from_be_bytes(self.buf[at + 1..at + 5].try_into().unwrap()) as usize;
            if len < 4 || self.buf.len() < at + 1 + len {
                break;
            }
            out.push((self.buf[at], self.buf[at + 5..at + 1 + len].to_vec()));
            at += 1 + len;
        }
        self.buf.drain(..at);
    }
}

fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A result being received.
#[derive(Clone, Default)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<Option<String>>>,
}

#[derive(Clone)]
struct Column {
    name: String,
    type_oid: u32,
    /// Sent in binary format (the Bind asked for it).
    binary: bool,
}

/// What the client is waiting for, in order.
enum Pending {
    /// A statement (index into the steps); `true`: a simple query.
    Step(usize, bool),
    /// A Describe of a statement (`b'S'`) or portal (`b'P'`) by name: its RowDescription or
    /// NoData.
    Describe(u8, Vec<u8>),
    /// A Sync: its ReadyForQuery.
    Sync,
}

/// The result format codes of a Bind: none (all text), one (for all columns) or one a column.
fn result_formats(rest: &[u8]) -> Vec<bool> {
    let u16_at = |at: usize| {
        rest.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    };
    // Parameter format codes, then the parameters (length-prefixed), then result formats.
    let Some(nfmt) = u16_at(0) else {
        return Vec::new();
    };
    let mut at = 2 + nfmt * 2;
    let Some(nparams) = u16_at(at) else {
        return Vec::new();
    };
    at += 2;
    for _ in 0..nparams {
        let Some(len) = rest.get(at..at + 4) else {
            return Vec::new();
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4 + len.max(0) as usize;
    }
    let Some(nresults) = u16_at(at) else {
        return Vec::new();
    };
    (0..nresults)
        .map(|i| u16_at(at + 2 + i * 2) == Some(1))
        .collect()
}

/// A described result with the Bind's result formats applied.
fn with_formats(mut table: Table, formats: &[bool]) -> Table {
    for (i, c) in table.columns.iter_mut().enumerate() {
        c.binary = match formats {
            [] => false,
            [all] => *all,
            each => each.get(i).copied().unwrap_or(false),
        };
    }
    table
}

/// Types psql aligns right.
fn right_aligned(type_oid: u32) -> bool {
    matches!(
        type_oid,
        20 | 21 | 23 | 26 | 28 | 29 | 700 | 701 | 790 | 1700
    )
}

/// The steps of a capture, in order.
pub fn steps(capture: &Capture) -> Vec<Step> {
    use sha2::Digest;
    let mut client = Messages::default();
    let mut server = Messages::default();
    let mut with_params = false;
    let mut steps: Vec<Step> = Vec::new();
    // Statements waiting for their results, in order: index into `steps`, and whether it is a
    // simple query (its results end at ReadyForQuery; an Execute's at its completion).
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut prepared: HashMap<Vec<u8>, String> = HashMap::new();
    let mut portals: HashMap<Vec<u8>, String> = HashMap::new();
    // What Describe said of statements and portals, and what each Bind asked (the statement,
    // the result formats): an Execute's rows arrive without a RowDescription when the client
    // described the statement earlier (drivers prepare, then bind and execute).
    let mut statement_results: HashMap<Vec<u8>, Table> = HashMap::new();
    let mut portal_results: HashMap<Vec<u8>, Table> = HashMap::new();
    let mut portal_binds: HashMap<Vec<u8>, (Vec<u8>, Vec<bool>)> = HashMap::new();
    let mut step_results: Vec<Option<Table>> = Vec::new();
    let mut table: Option<Table> = None;
    let mut digests: Vec<sha2::Sha256> = Vec::new();
    let mut bound: HashMap<Vec<u8>, bool> = HashMap::new();
    let mut messages = Vec::new();
    for frame in &capture.frames {
        messages.clear();
        if frame.from_client {
            client.push(&frame.bytes, &mut messages);
            for (tag, body) in &messages {
                let statement = match tag {
                    b'Q' => Some((text(cstr(body).0), true)),
                    b'P' => {
                        let (name, rest) = cstr(body);
                        prepared.insert(name.to_vec(), text(cstr(rest).0));
                        None
                    }
                    b'B' => {
                        let (portal, rest) = cstr(body);
                        let (stmt, rest) = cstr(rest);
                        let t = prepared.get(stmt).cloned().unwrap_or_default();
                        portals.insert(portal.to_vec(), t);
                        bound.insert(portal.to_vec(), bind_has_parameters(rest));
                        portal_binds.insert(portal.to_vec(), (stmt.to_vec(), result_formats(rest)));
                        portal_results.remove(portal);
                        None
                    }
                    b'D' => {
                        let (kind, rest) = body.split_first().unwrap_or((&b'S', &[]));
                        pending.push_back(Pending::Describe(*kind, cstr(rest).0.to_vec()));
                        None
                    }
                    b'E' => {
                        let portal = cstr(body).0;
                        with_params = bound.get(portal).copied().unwrap_or(false);
                        let described = portal_results.get(portal).cloned().or_else(|| {
                            let (stmt, formats) = portal_binds.get(portal)?;
                            statement_results
                                .get(stmt)
                                .map(|t| with_formats(t.clone(), formats))
                        });
                        step_results.push(described);
                        Some((portals.get(portal).cloned().unwrap_or_default(), false))
                    }
                    b'F' => Some(("-- function call".to_string(), true)),
                    b'S' => {
                        pending.push_back(Pending::Sync);
                        None
                    }
                    _ => None,
                };
                if let Some((t, simple)) = statement {
                    if simple {
                        step_results.push(None);
                    }
                    steps.push(Step {
                        seq: steps.len() as u64 + 1,
                        t_us: frame.t_us,
                        text: t,
                        output: String::new(),
                        rows: 0,
                        result_digest: String::new(),
                        has_parameters: std::mem::take(&mut with_params),
                        failed: false,
                    });
                    digests.push(sha2::Sha256::new());
                    pending.push_back(Pending::Step(steps.len() - 1, simple));
                }
            }
            continue;
        }
        server.push(&frame.bytes, &mut messages);
        for (tag, body) in &messages {
            // Describe answers are bookkeeping, not output.
            if let Some(Pending::Describe(kind, name)) = pending.front() {
                match tag {
                    b'T' | b'n' => {
                        if *tag == b'T' {
                            let described = read_description(body);
                            if *kind == b'P' {
                                // Formats are known for a portal: its Bind said them.
                                let formats = portal_binds
                                    .get(name)
                                    .map(|b| b.1.clone())
                                    .unwrap_or_default();
                                let described = with_formats(described, &formats);
                                portal_results.insert(name.clone(), described.clone());
                                table = Some(described);
                            } else {
                                statement_results.insert(name.clone(), described);
                            }
                        }
                        pending.pop_front();
                        continue;
                    }
                    b't' => continue,
                    _ => {}
                }
            }
            if *tag == b'Z' {
                // ReadyForQuery answers a Sync (what the server skipped after an error ends
                // there) or ends a simple query.
                while matches!(
                    pending.front(),
                    Some(Pending::Step(_, false) | Pending::Describe(..))
                ) {
                    pending.pop_front();
                }
                pending.pop_front();
                table = None;
                continue;
            }
            let current = match pending.front() {
                Some(Pending::Step(i, simple)) => Some((*i, *simple)),
                _ => None,
            };
            // Messages between statements (notifications) go with the last one.
            let Some(i) = current.map(|(i, _)| i).or(steps.len().checked_sub(1)) else {
                continue;
            };
            let extended = matches!(current, Some((_, false)));
            if *tag == b'D' && current.is_some() {
                digests[i].update(body);
                steps[i].rows += 1;
            }
            if *tag == b'E' && current.is_some() {
                steps[i].failed = true;
            }
            let output = &mut steps[i].output;
            match tag {
                b'T' => table = Some(read_description(body)),
                b'D' => {
                    if table.is_none() && current.is_some() {
                        table = step_results.get_mut(i).and_then(Option::take);
                    }
                    if let Some(t) = &mut table {
                        let row = read_row(body, &t.columns);
                        t.rows.push(row);
                    }
                }
                b'C' => {
                    match table.take() {
                        Some(t) => print_table(&t, output),
                        None => {
                            output.push_str(&text(cstr(body).0));
                            output.push('\n');
                        }
                    }
                    if extended {
                        pending.pop_front();
                    }
                }
                b'E' | b'N' => {
                    let (severity, message, detail) = read_error(body);
                    let _ = writeln!(output, "{severity}:  {message}");
                    if let Some(d) = detail {
                        let _ = writeln!(output, "DETAIL:  {d}");
                    }
                    if *tag == b'E' {
                        table = None;
                        if extended {
                            pending.pop_front();
                        }
                    }
                }
                b'A' => {
                    let pid = body
                        .get(..4)
                        .map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap_or([0; 4])));
                    let (channel, rest) = cstr(body.get(4..).unwrap_or(&[]));
                    let (payload, _) = cstr(rest);
                    let _ = writeln!(
                        output,
                        "Asynchronous notification \"{}\" with payload \"{}\" received from server process with PID {pid}.",
                        text(channel),
                        text(payload)
                    );
                }
                b'I' | b's' if extended => {
                    pending.pop_front();
                }
                _ => {}
            }
        }
    }
    for (step, digest) in steps.iter_mut().zip(digests) {
        step.result_digest = hex::encode(digest.finalize());
    }
    steps
}

/// Whether a Bind body (after its portal and statement names) binds any parameter.
fn bind_has_parameters(rest: &[u8]) -> bool {
    let Some(nfmt) = rest
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return false;
    };
    rest.get(2 + nfmt * 2..4 + nfmt * 2)
        .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) > 0)
}

fn read_description(body: &[u8]) -> Table {
    let n = body
        .get(..2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize);
    let mut rest = body.get(2..).unwrap_or(&[]);
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        let (name, r) = cstr(rest);
        let type_oid = r
            .get(6..10)
            .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])));
        columns.push(Column {
            name: text(name),
            type_oid,
            binary: false,
        });
        rest = r.get(18..).unwrap_or(&[]);
    }
    Table {
        columns,
        rows: Vec::new(),
    }
}

fn read_row(body: &[u8], columns: &[Column]) -> Vec<Option<String>> {
    let n = body
        .get(..2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize);
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(len) = body.get(at..at + 4) else {
            break;
        };
        let len = i32::from_be_bytes(len.try_into().unwrap_or([0; 4]));
        at += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = (at + len as usize).min(body.len());
        let value = &body[at..end];
        out.push(Some(match columns.get(out.len()) {
            Some(c) if c.binary => binary_value(c.type_oid, value),
            _ => text(value),
        }));
        at = end;
    }
    out
}

/// A binary-format value as PostgreSQL prints it in text, for the common types; others as
/// bytea's hex form (`\x…`).
fn binary_value(type_oid: u32, v: &[u8]) -> String {
    let hex = || {
        let mut s = String::from("\\x");
        for b in v {
            let _ = write!(s, "{b:02x}");
        }
        s
    };
    match (type_oid, v.len()) {
        (16, 1) => if v[0] != 0 { "t" } else { "f" }.to_string(),
        (21, 2) => i16::from_be_bytes([v[0], v[1]]).to_string(),
        (23, 4) => i32::from_be_bytes([v[0], v[1], v[2], v[3]]).to_string(),
        (26, 4) => u32::from_be_bytes([v[0], v[1], v[2], v[3]]).to_string(),
        (20, 8) => i64::from_be_bytes(v.try_into().unwrap_or([0; 8])).to_string(),
        (700, 4) => f32::from_be_bytes([v[0], v[1], v[2], v[3]]).to_string(),
        (701, 8) => f64::from_be_bytes(v.try_into().unwrap_or([0; 8])).to_string(),
        // text, varchar, name, bpchar, json, unknown: the bytes are the text.
        (25 | 1043 | 19 | 1042 | 114 | 705, _) => text(v),
        (2950, 16) => {
            let h: String = v.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
        _ => hex(),
    }
}

fn read_error(body: &[u8]) -> (String, String, Option<String>) {
    let (mut severity, mut message, mut detail) = (String::new(), String::new(), None);
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let (value, r) = cstr(tail);
        match code {
            b'S' => severity = text(value),
            b'M' => message = text(value),
            b'D' => detail = Some(text(value)),
            _ => {}
        }
        rest = r;
    }
    (severity, message, detail)
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// psql's aligned format (border 1): centred headers, a rule, rows, and the row count.
pub fn print_table(t: &Table, out: &mut String) {
    let cols = t.columns.len();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| width(&c.name)).collect();
    for row in &t.rows {
        for (i, v) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(v.as_deref().map_or(0, width));
        }
    }
    let last = cols.saturating_sub(1);
    // Header.
    for (i, column) in t.columns.iter().enumerate() {
        let name = &column.name;
        let pad = widths[i] - width(name);
        let before = pad / 2;
        let after = pad - before;
        out.push(if i == 0 { ' ' } else { '|' });
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&" ".repeat(before));
        out.push_str(name);
        out.push_str(&" ".repeat(after));
        out.push(' ');
    }
    out.push('\n');
    // Rule.
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push('+');
        }
        out.push_str(&"-".repeat(w + 2));
    }
    out.push('\n');
    // Rows.
    for row in &t.rows {
        let mut line = String::new();
        for (i, column) in t.columns.iter().enumerate() {
            let right = right_aligned(column.type_oid);
            let v = row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let pad = widths[i] - width(v);
            line.push(if i == 0 { ' ' } else { '|' });
            if i > 0 {
                line.push(' ');
            }
            if right {
                line.push_str(&" ".repeat(pad));
                line.push_str(v);
                line.push(' ');
            } else {
                line.push_str(v);
                if i < last {
                    line.push_str(&" ".repeat(pad));
                    line.push(' ');
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    let n = t.rows.len();
    let _ = writeln!(out, "({n} {})", if n == 1 { "row" } else { "rows" });
    out.push('\n');
}

/// The whole capture as text: a line per statement (its number, time and text), then what the
/// client saw.
pub fn render(capture: &Capture, from_seq: u64) -> String {
    let mut out = String::new();
    for step in steps(capture) {
        if step.seq < from_seq {
            continue;
        }
        render_step(&step, &mut out);
    }
    out
}

pub fn render_step(step: &Step, out: &mut String) {
    let _ = writeln!(
        out,
        "-- [{}] +{}.{:06}s",
        step.seq,
        step.t_us / 1_000_000,
        step.t_us % 1_000_000
    );
    let _ = writeln!(out, "{}", step.text.trim_end());
    out.push_str(&step.output);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_print_as_postgres_prints_them_in_text() {
        assert_eq!(binary_value(23, &5i32.to_be_bytes()), "5");
        assert_eq!(binary_value(20, &(-7i64).to_be_bytes()), "-7");
        assert_eq!(binary_value(701, &72.5f64.to_be_bytes()), "72.5");
        assert_eq!(binary_value(701, &70f64.to_be_bytes()), "70");
        assert_eq!(binary_value(16, &[1]), "t");
        assert_eq!(binary_value(25, b"lab"), "lab");
        assert_eq!(
            binary_value(2950, &[0x12; 16]),
            "12121212-1212-1212-1212-121212121212"
        );
        // Unknown types, and values of the wrong size, as bytea's hex form.
        assert_eq!(binary_value(1082, &[0, 1]), "\\x0001");
        assert_eq!(binary_value(23, &[1, 2]), "\\x0102");
    }

    #[test]
    fn a_binds_result_formats_are_read_past_its_parameters() {
        // One text parameter format, two parameters ("ab", NULL), result formats [1].
        let mut rest = vec![0, 1, 0, 0, 0, 2];
        rest.extend_from_slice(&2i32.to_be_bytes());
        rest.extend_from_slice(b"ab");
        rest.extend_from_slice(&(-1i32).to_be_bytes());
        rest.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(result_formats(&rest), vec![true]);
        assert!(bind_has_parameters(&rest));
        assert_eq!(result_formats(&[0, 0, 0, 0, 0, 0]), Vec::<bool>::new());
    }
}
