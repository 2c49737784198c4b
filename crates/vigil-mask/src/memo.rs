//! A per-thread memo of keyed pseudonyms (`hmac` and `fake` operators).
//!
//! A keyed pseudonym costs at least two SHA-256 compressions, and PHI columns repeat
//! themselves (first names, cities, diagnosis codes): a small direct-mapped table per worker
//! thread answers repeats with a hash and a comparison. Entries are keyed by the operator's
//! unique id, so pseudonyms of different keys, domains or configurations never mix; an
//! operator compiled again (new configuration) gets a new id and its old entries are simply
//! never found. The table lives in the gateway's memory only, like the values passing through.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Values longer than this are not memoised (identifiers and names are shorter).
const MAX_VALUE: usize = 48;
/// Pseudonyms longer than this are not memoised.
const MAX_OUTPUT: usize = 96;
/// Slots per thread (a power of two).
const SLOTS: usize = 1024;

/// A new operator id (never 0: 0 marks an empty slot).
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Slot {
    id: u64,
    tag: u32,
    value_len: u8,
    output_len: u8,
    value: [u8; MAX_VALUE],
    output: [u8; MAX_OUTPUT],
}

const EMPTY: Slot = Slot {
    id: 0,
    tag: 0,
    value_len: 0,
    output_len: 0,
    value: [0; MAX_VALUE],
    output: [0; MAX_OUTPUT],
};

thread_local! {
    static TABLE: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

fn slot_of(id: u64, tag: u32, value: &[u8]) -> usize {
    // FNV-1a over the value, mixed with the operator: spreads short strings well enough for a
    // direct-mapped table, and is cheap next to the HMAC it saves.
    let mut h: u64 =
        0xcbf2_9ce4_8422_2325 ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(tag);
    for &b in value {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 29)) as usize & (SLOTS - 1)
}

/// Appends the pseudonym of `value` under operator `id` (and `tag`: the entity) to `out`,
/// from the memo or from `compute` (which appends it to `out`); `compute`'s error is returned
/// as is and nothing is remembered.
pub(crate) fn pseudonym<E>(
    id: u64,
    tag: u32,
    value: &[u8],
    out: &mut Vec<u8>,
    compute: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    if value.len() > MAX_VALUE {
        return compute(out);
    }
    let at = slot_of(id, tag, value);
    let hit = TABLE.with(|t| {
        let t = t.borrow();
        let s = t.get(at)?;
        (s.id == id && s.tag == tag && &s.value[..usize::from(s.value_len)] == value).then(|| {
            out.extend_from_slice(&s.output[..usize::from(s.output_len)]);
        })
    });
    if hit.is_some() {
        return Ok(());
    }
    let start = out.len();
    compute(out)?;
    let output = &out[start..];
    if output.len() <= MAX_OUTPUT {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            if t.is_empty() {
                t.resize_with(SLOTS, || EMPTY);
            }
            let s = &mut t[at];
            s.id = id;
            s.tag = tag;
            s.value_len = value.len() as u8;
            s.value[..value.len()].copy_from_slice(value);
            s.output_len = output.len() as u8;
            s.output[..output.len()].copy_from_slice(output);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, value: &[u8], calls: &mut u32) -> Vec<u8> {
        let mut out = b">".to_vec();
        pseudonym::<()>(id, 0, value, &mut out, |o| {
            *calls += 1;
            o.extend_from_slice(format!("{id}:{}", value.len()).as_bytes());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn repeats_are_answered_from_the_memo_and_operators_never_mix() {
        let (a, b) = (next_id(), next_id());
        let mut calls = 0;
        assert_eq!(run(a, b"Mary", &mut calls), format!(">{a}:4").into_bytes());
        assert_eq!(run(a, b"Mary", &mut calls), format!(">{a}:4").into_bytes());
        assert_eq!(calls, 1);
        assert_eq!(run(b, b"Mary", &mut calls), format!(">{b}:4").into_bytes());
        assert_eq!(calls, 2);
        // Long values are computed every time.
        let long = [b'x'; MAX_VALUE + 1];
        run(a, &long, &mut calls);
        run(a, &long, &mut calls);
        assert_eq!(calls, 4);
    }

    #[test]
    fn errors_are_not_remembered() {
        let id = next_id();
        let mut out = Vec::new();
        assert!(pseudonym(id, 0, b"v", &mut out, |_| Err(())).is_err());
        let mut calls = 0;
        run(id, b"v", &mut calls);
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_collision_replaces_the_slot_and_stays_correct() {
        let id = next_id();
        let mut calls = 0;
        for round in 0..2 {
            for i in 0..(3 * SLOTS) {
                let v = format!("value-{i}");
                let mut out = Vec::new();
                pseudonym::<()>(id, 0, v.as_bytes(), &mut out, |o| {
                    calls += 1;
                    o.extend_from_slice(v.to_uppercase().as_bytes());
                    Ok(())
                })
                .unwrap();
                assert_eq!(out, v.to_uppercase().into_bytes(), "round {round}");
            }
        }
        assert!(
            calls > 3 * SLOTS,
            "more values than slots: some are computed again"
        );
    }
}
