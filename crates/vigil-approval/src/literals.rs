//! Held statements' texts with their literals, by request id, for reviewers whose role may see
//! them (`reveal_literals_groups`). In this process's memory only: never stored, recorded,
//! logged or sent to webhooks; dropped once the statement ran or its request ended; a restart
//! forgets them.

use std::collections::HashMap;
use std::sync::Mutex;
use vigil_core::Timestamp;

/// At most this many texts are kept (the oldest go first), each cut at this many bytes.
const MAX_KEPT_TEXTS: usize = 1000;
const MAX_KEPT_TEXT: usize = 64 * 1024;

/// A held statement's text with its literals, kept until `until`.
struct KeptText {
    text: String,
    until: Timestamp,
}

#[derive(Default)]
pub(crate) struct KeptTexts(Mutex<HashMap<String, KeptText>>);

impl KeptTexts {
    /// Keeps `text` for `request_id` until `until` (the first text kept for a request stays).
    pub(crate) fn keep(&self, request_id: &str, mut text: String, until: Timestamp) {
        let mut kept = self.0.lock().unwrap();
        if kept.contains_key(request_id) {
            return;
        }
        let now = Timestamp::now();
        kept.retain(|_, k| k.until > now);
        if kept.len() >= MAX_KEPT_TEXTS {
            if let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, k)| k.until)
                .map(|(id, _)| id.clone())
            {
                kept.remove(&oldest);
            }
        }
        if text.len() > MAX_KEPT_TEXT {
            let mut cut = MAX_KEPT_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" …[cut]");
        }
        kept.insert(request_id.to_string(), KeptText { text, until });
    }

    pub(crate) fn forget(&self, request_id: &str) {
        self.0.lock().unwrap().remove(request_id);
    }

    /// The text kept for `request_id`, while it is kept.
    pub(crate) fn get(&self, request_id: &str) -> Option<String> {
        let now = Timestamp::now();
        self.0
            .lock()
            .unwrap()
            .get(request_id)
            .filter(|k| k.until > now)
            .map(|k| k.text.clone())
    }

    /// Drops the texts whose statement can no longer run.
    pub(crate) fn prune(&self) {
        let now = Timestamp::now();
        self.0.lock().unwrap().retain(|_, k| k.until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_an_hour() -> Timestamp {
        Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000)
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary_and_the_first_text_stays() {
        let kept = KeptTexts::default();
        let long = "é".repeat(MAX_KEPT_TEXT); // two bytes each
        kept.keep("r1", long, in_an_hour());
        let text = kept.get("r1").unwrap();
        assert!(text.ends_with(" …[cut]"));
        assert!(text.len() <= MAX_KEPT_TEXT + " …[cut]".len());
        kept.keep("r1", "other".into(), in_an_hour());
        assert_ne!(kept.get("r1").unwrap(), "other");
        kept.forget("r1");
        assert_eq!(kept.get("r1"), None);
    }

    #[test]
    fn lapsed_texts_are_not_shown_and_the_oldest_go_first() {
        let kept = KeptTexts::default();
        kept.keep("old", "x".into(), Timestamp::from_micros(1));
        assert_eq!(kept.get("old"), None, "lapsed");
        for i in 0..MAX_KEPT_TEXTS + 1 {
            let until = Timestamp::from_micros(in_an_hour().as_micros() + i as i64);
            kept.keep(&format!("r{i}"), "x".into(), until);
        }
        assert_eq!(kept.get("r0"), None, "the oldest went first");
        assert!(kept.get(&format!("r{MAX_KEPT_TEXTS}")).is_some());
    }
}
