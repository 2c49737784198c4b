//! The replay captures of a bundle: which sessions' captures it carries (`--replay
//! all|none|sample:N`), and the check that each is the capture its session's `SessionEnded`
//! record names.
//!
//! Which captures belong is decided from the chain alone, the same way when the bundle is made
//! (from the store) and when it is verified (from `chain/records.jsonl`): the sessions whose
//! `SessionStarted` is in the period (the anchors of the sessions artifact) and whose
//! `SessionEnded`, in the segment, holds a `replay_sha256`. A sample is drawn by ranking those
//! sessions by SHA-256(sealing checkpoint hash ‖ session id): nobody could know the draw before
//! the bundle was sealed, and a verifier draws it again, so a capture removed from a sample is
//! caught like one removed from `all`.

use crate::export::{RecordSource, ScanRange};
use crate::AuditError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use vigil_core::{Event, Record, Timestamp};

/// Which captures a bundle carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every capture of the period.
    All,
    /// None (the manifest still says how many the period has).
    None,
    /// A sample of this many, drawn from the sealing checkpoint's hash.
    Sample(u64),
}

impl std::str::FromStr for ReplaySelection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(ReplaySelection::All),
            "none" => Ok(ReplaySelection::None),
            _ => s
                .strip_prefix("sample:")
                .and_then(|n| n.parse().ok())
                .map(ReplaySelection::Sample)
                .ok_or_else(|| format!("{s:?}: use all, none or sample:N (N a number)")),
        }
    }
}

impl std::fmt::Display for ReplaySelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplaySelection::All => f.write_str("all"),
            ReplaySelection::None => f.write_str("none"),
            ReplaySelection::Sample(n) => write!(f, "sample:{n}"),
        }
    }
}

/// The `replay` section of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayManifest {
    /// `all`, `none` or `sample:N`.
    pub selection: String,
    /// Sessions of the period whose end record names a capture: what the selection drew from.
    pub recorded: u64,
    /// The captures in the bundle (each also in `files`), in end-record order.
    pub captures: Vec<BundledCapture>,
    /// Captures the selection called for that could not be bundled, and why.
    pub unavailable: Vec<UnavailableCapture>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledCapture {
    pub session_id: String,
    /// `replay/<session id>.jsonl`; encrypted at rest, the file as stored:
    /// `replay/<session id>.jsonl.age` or `.jsonl.gz.age`.
    pub path: String,
    /// SHA-256 of the capture's content: the `replay_sha256` of the end record (the file's
    /// own digest when it is not encrypted).
    pub sha256: String,
    /// SHA-256 of the encrypted file as bundled: the `replay_file_sha256` of the end record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// Seq of the session's `SessionEnded` record.
    pub ended_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableCapture {
    pub session_id: String,
    pub ended_seq: u64,
    /// What the end record names.
    pub recorded_sha256: String,
    /// Why it is not in the bundle (no file; a file that does not match).
    pub reason: String,
}

/// A capture the chain names: a session of the period and its end record's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordedCapture {
    pub session_id: String,
    pub ended_seq: u64,
    pub sha256: String,
    /// The digest of the file as stored, for a capture encrypted at rest.
    pub file_sha256: Option<String>,
}

pub(crate) fn bundle_path(session_id: &str) -> String {
    format!("replay/{session_id}.jsonl")
}

/// Where a bundle carries an encrypted capture: under its stored name, as it is.
pub(crate) fn sealed_bundle_paths(session_id: &str) -> [String; 2] {
    [
        format!("replay/{session_id}.jsonl.age"),
        format!("replay/{session_id}.jsonl.gz.age"),
    ]
}

/// The captures the chain names for sessions started in `[since, until)`, in end-record order.
pub(crate) fn recorded_captures(
    source: &dyn RecordSource,
    scan: ScanRange,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<Vec<RecordedCapture>, AuditError> {
    #[derive(Deserialize)]
    struct Envelope {
        session_id: Option<String>,
    }
    let mut in_period: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    source.visit(scan, &["SessionStarted", "SessionEnded"], &mut |row| {
        let Some(session_id) = serde_json::from_slice::<Envelope>(&row.body)
            .ok()
            .and_then(|e| e.session_id)
        else {
            return Ok(true);
        };
        if row.kind == "SessionStarted" {
            // The anchors of the sessions artifact: the same bounds, the same time filter.
            let anchor = row.seq < scan.anchors_before
                && since.is_none_or(|t| row.at_us >= t.as_micros())
                && until.is_none_or(|t| row.at_us < t.as_micros());
            if anchor {
                in_period.insert(session_id);
            }
        } else if in_period.remove(&session_id) {
            let record: Record =
                serde_json::from_slice(&row.body).map_err(|e| AuditError::Decode {
                    seq: row.seq,
                    reason: e.to_string(),
                })?;
            if let Event::SessionEnded(ended) = record.event {
                if let Some(sha256) = ended.replay_sha256 {
                    out.push(RecordedCapture {
                        session_id,
                        ended_seq: row.seq,
                        sha256,
                        file_sha256: ended.replay_file_sha256,
                    });
                }
            }
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The captures `selection` calls for among `recorded`, in end-record order.
pub(crate) fn select(
    selection: ReplaySelection,
    recorded: &[RecordedCapture],
    sealing_hash: &str,
) -> Vec<RecordedCapture> {
    match selection {
        ReplaySelection::All => recorded.to_vec(),
        ReplaySelection::None => Vec::new(),
        ReplaySelection::Sample(n) => {
            let mut ranked: Vec<([u8; 32], &RecordedCapture)> = recorded
                .iter()
                .map(|c| {
                    let mut h = Sha256::new();
                    h.update(sealing_hash.as_bytes());
                    h.update(c.session_id.as_bytes());
                    (h.finalize().into(), c)
                })
                .collect();
            ranked.sort_by_key(|(rank, _)| *rank);
            ranked.truncate(usize::try_from(n).unwrap_or(usize::MAX));
            let mut chosen: Vec<RecordedCapture> =
                ranked.into_iter().map(|(_, c)| c.clone()).collect();
            chosen.sort_by_key(|c| c.ended_seq);
            chosen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(i: u64) -> RecordedCapture {
        RecordedCapture {
            session_id: format!("s{i}"),
            ended_seq: i,
            sha256: "00".repeat(32),
            file_sha256: None,
        }
    }

    #[test]
    fn selections_parse_and_print_alike() {
        for s in ["all", "none", "sample:5"] {
            assert_eq!(s.parse::<ReplaySelection>().unwrap().to_string(), s);
        }
        for bad in ["some", "sample:", "sample:x", "sample:-1"] {
            assert!(bad.parse::<ReplaySelection>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sample_is_drawn_from_the_sealing_hash_and_kept_in_chain_order() {
        let recorded: Vec<_> = (1..=20).map(capture).collect();
        let a = select(ReplaySelection::Sample(5), &recorded, "aa");
        assert_eq!(a.len(), 5);
        assert!(a.windows(2).all(|w| w[0].ended_seq < w[1].ended_seq));
        assert_eq!(a, select(ReplaySelection::Sample(5), &recorded, "aa"));
        assert_ne!(a, select(ReplaySelection::Sample(5), &recorded, "bb"));
        assert_eq!(
            select(ReplaySelection::Sample(50), &recorded, "aa"),
            recorded
        );
        assert!(select(ReplaySelection::None, &recorded, "aa").is_empty());
    }
}
