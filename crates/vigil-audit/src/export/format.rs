//! Writing rows as JSON, JSON lines or CSV, and reading them back (for verification and tests).
//!
//! - JSON: one array of objects; JSON lines: one object per line. Keys in column order, every
//!   column present (`null` when absent).
//! - CSV (RFC 4180, via the `csv` crate): one header row of column names, then one record per
//!   row. An absent value is an empty cell; lists and JSON values are their compact JSON text;
//!   times are ISO-8601 UTC with microseconds.
//! - CSV text cells that a spreadsheet would take for a formula (starting with `=`, `+`, `-`,
//!   `@`, tab or carriage return) get a leading `'`, as does text that starts with `'` itself,
//!   so reading back strips exactly one. Text in the trail can come from clients (an
//!   `application_name`, a justification): an export must not run it in the auditor's
//!   spreadsheet.

use super::columns::{Artifact, Column, ColumnType, Revision};
use super::Row;
use crate::AuditError;
use serde_json::Value;
use std::io::{BufRead, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Jsonl,
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8; header=present",
        }
    }
}

fn io(e: impl std::fmt::Display) -> AuditError {
    AuditError::Export(format!("cannot write the export: {e}"))
}

/// Writes rows of one artifact to `W` as they come.
pub struct RowWriter<W: Write> {
    columns: &'static [Column],
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Json { out: W, first: bool },
    Jsonl { out: W },
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> RowWriter<W> {
    /// Starts the output (`[` or the CSV header).
    pub fn new(format: Format, artifact: Artifact, out: W) -> Result<Self, AuditError> {
        Self::at(format, artifact, Revision::CURRENT, out)
    }

    /// Starts the output of rows of `artifact` as `revision` defines it.
    pub fn at(
        format: Format,
        artifact: Artifact,
        revision: Revision,
        mut out: W,
    ) -> Result<Self, AuditError> {
        let columns = artifact.columns_at(revision);
        let inner = match format {
            Format::Json => {
                out.write_all(b"[").map_err(io)?;
                Inner::Json { out, first: true }
            }
            Format::Jsonl => Inner::Jsonl { out },
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                w.write_record(columns.iter().map(|c| c.name)).map_err(io)?;
                Inner::Csv(Box::new(w))
            }
        };
        Ok(RowWriter { columns, inner })
    }

    pub fn write(&mut self, row: &Row) -> Result<(), AuditError> {
        match &mut self.inner {
            Inner::Json { out, first } => {
                out.write_all(if *first { b"\n" } else { b",\n" })
                    .map_err(io)?;
                *first = false;
                write_object(out, self.columns, row)
            }
            Inner::Jsonl { out } => {
                write_object(out, self.columns, row)?;
                out.write_all(b"\n").map_err(io)
            }
            Inner::Csv(w) => w
                .write_record(self.columns.iter().zip(row).map(|(c, v)| csv_cell(c.ty, v)))
                .map_err(io),
        }
    }

    /// Ends the output and flushes; returns the writer.
    pub fn finish(self) -> Result<W, AuditError> {
        match self.inner {
            Inner::Json { mut out, first } => {
                out.write_all(if first { b"]\n" } else { b"\n]\n" })
                    .map_err(io)?;
                out.flush().map_err(io)?;
                Ok(out)
            }
            Inner::Jsonl { mut out } => {
                out.flush().map_err(io)?;
                Ok(out)
            }
            Inner::Csv(w) => w.into_inner().map_err(io),
        }
    }
}

fn write_object<W: Write>(out: &mut W, columns: &[Column], row: &Row) -> Result<(), AuditError> {
    out.write_all(b"{").map_err(io)?;
    for (i, (column, value)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        serde_json::to_writer(&mut *out, column.name).map_err(io)?;
        out.write_all(b":").map_err(io)?;
        serde_json::to_writer(&mut *out, value).map_err(io)?;
    }
    out.write_all(b"}").map_err(io)
}

/// Characters that make a spreadsheet read a cell as a formula.
fn needs_guard(text: &str) -> bool {
    text.starts_with(['=', '+', '-', '@', '\t', '\r', '\''])
}

fn csv_cell(ty: ColumnType, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) if ty == ColumnType::Text && needs_guard(s) => format!("'{s}"),
        // A JSON column keeps its JSON text, quotes included, so that it reads back typed.
        other if ty == ColumnType::Json => other.to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Reads one CSV record back into typed values (the inverse of the writer).
pub fn parse_csv_row(artifact: Artifact, record: &csv::StringRecord) -> Result<Row, String> {
    csv_row(artifact.columns(), record)
}

fn csv_row(columns: &[Column], record: &csv::StringRecord) -> Result<Row, String> {
    if record.len() != columns.len() {
        return Err(format!(
            "{} cells where {} columns are expected",
            record.len(),
            columns.len()
        ));
    }
    columns
        .iter()
        .zip(record.iter())
        .map(|(column, cell)| {
            if cell.is_empty() {
                return Ok(Value::Null);
            }
            let bad = |what: &str| format!("column {}: {cell:?} is not {what}", column.name);
            Ok(match column.ty {
                ColumnType::Text => Value::String(match cell.strip_prefix('\'') {
                    Some(rest) if needs_guard(rest) => rest.to_string(),
                    _ => cell.to_string(),
                }),
                ColumnType::Time => Value::String(cell.to_string()),
                ColumnType::Integer => {
                    if let Ok(n) = cell.parse::<u64>() {
                        Value::from(n)
                    } else {
                        Value::from(cell.parse::<i64>().map_err(|_| bad("an integer"))?)
                    }
                }
                ColumnType::Bool => match cell {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(bad("true or false")),
                },
                ColumnType::List | ColumnType::Json => {
                    serde_json::from_str(cell).map_err(|_| bad("JSON"))?
                }
            })
        })
        .collect()
}

/// Reads an export back as rows, checking its shape (header, keys in order). Errors name the
/// line.
pub fn read_rows<R: BufRead>(
    format: Format,
    artifact: Artifact,
    input: R,
    visit: &mut dyn FnMut(usize, Row) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    read_rows_at(format, artifact, Revision::CURRENT, input, visit)
}

/// [`read_rows`] of rows made with `revision`'s definition of the artifact.
pub fn read_rows_at<R: BufRead>(
    format: Format,
    artifact: Artifact,
    revision: Revision,
    input: R,
    visit: &mut dyn FnMut(usize, Row) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let columns = artifact.columns_at(revision);
    let bad = |line: usize, what: String| {
        AuditError::Export(format!(
            "{artifact}.{} line {line}: {what}",
            format.as_str()
        ))
    };
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(input);
            let mut records = reader.records();
            let header = records
                .next()
                .ok_or_else(|| bad(1, "no header row".into()))?
                .map_err(|e| bad(1, e.to_string()))?;
            let expected: Vec<&str> = columns.iter().map(|c| c.name).collect();
            if header.iter().collect::<Vec<_>>() != expected {
                return Err(bad(
                    1,
                    "the header row is not the artifact's columns".into(),
                ));
            }
            for (i, record) in records.enumerate() {
                let line = i + 2;
                let record = record.map_err(|e| bad(line, e.to_string()))?;
                visit(line, csv_row(columns, &record).map_err(|e| bad(line, e))?)?;
            }
        }
        Format::Jsonl => {
            for (i, line) in input.lines().enumerate() {
                let n = i + 1;
                let line = line.map_err(|e| bad(n, e.to_string()))?;
                visit(n, object_row(columns, &line).map_err(|e| bad(n, e))?)?;
            }
        }
        Format::Json => {
            let value: Value = serde_json::from_reader(input).map_err(|e| bad(0, e.to_string()))?;
            let Value::Array(items) = value else {
                return Err(bad(1, "not a JSON array".into()));
            };
            for (i, item) in items.into_iter().enumerate() {
                visit(
                    i + 1,
                    object_values(columns, item).map_err(|e| bad(i + 1, e))?,
                )?;
            }
        }
    }
    Ok(())
}

fn object_row(columns: &[Column], line: &str) -> Result<Row, String> {
    // Key order matters (it is part of the format), so read the object as ordered pairs.
    let pairs: Vec<(String, Value)> = serde_json::from_str::<OrderedObject>(line)
        .map_err(|e| format!("not a JSON object: {e}"))?
        .0;
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<&str> = columns.iter().map(|c| c.name).collect();
    if names != expected {
        return Err("its keys are not the artifact's columns in order".into());
    }
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}

fn object_values(columns: &[Column], item: Value) -> Result<Row, String> {
    let Value::Object(mut map) = item else {
        return Err("not a JSON object".into());
    };
    if map.len() != columns.len() {
        return Err("its keys are not the artifact's columns".into());
    }
    columns
        .iter()
        .map(|c| {
            map.remove(c.name)
                .ok_or_else(|| format!("column {} is missing", c.name))
        })
        .collect()
}

/// A JSON object read as its key/value pairs in the order written.
struct OrderedObject(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_text_that_looks_like_a_formula_is_guarded_and_reads_back() {
        let artifact = Artifact::Approvals;
        let mut row: Row = vec![Value::Null; artifact.columns().len()];
        let texts = [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "'quoted",
            "''=x",
            "plain, with \"quotes\"\nand a line",
        ];
        let mut out = Vec::new();
        {
            let mut w = RowWriter::new(Format::Csv, artifact, &mut out).unwrap();
            for t in texts {
                row[artifact.index_of("justification")] = Value::from(t);
                w.write(&row).unwrap();
            }
            w.finish().unwrap();
        }
        let text = String::from_utf8(out.clone()).unwrap();
        for line in text.lines().skip(1) {
            for cell in line.split(',') {
                assert!(!cell.starts_with(['=', '+', '@']), "{line}");
            }
        }
        let mut back = Vec::new();
        read_rows(Format::Csv, artifact, &out[..], &mut |_, r| {
            back.push(r[artifact.index_of("justification")].clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(back, texts.map(Value::from));
    }
}
