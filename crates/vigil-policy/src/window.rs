//! Time windows: when a scope may be used. A window is open at an instant when it is within
//! `not_before`/`not_after` and, if given, on one of `weekdays` within `hours`, read in
//! `timezone`.

use serde::{Deserialize, Serialize};
use std::fmt;
use vigil_core::Timestamp;

/// A day of the week, written `mon`…`sun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    fn from_jiff(d: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday as J;
        match d {
            J::Monday => Weekday::Mon,
            J::Tuesday => Weekday::Tue,
            J::Wednesday => Weekday::Wed,
            J::Thursday => Weekday::Thu,
            J::Friday => Weekday::Fri,
            J::Saturday => Weekday::Sat,
            J::Sunday => Weekday::Sun,
        }
    }
}

/// Minutes since midnight, written `HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u16);

impl TimeOfDay {
    fn parse(s: &str) -> Result<Self, String> {
        let (h, m) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
        let h: u16 = h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
        let m: u16 = m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(format!("{s:?} is not a time of day (00:00 to 24:00)"));
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// `HH:MM-HH:MM`, start inclusive, end exclusive. An end before the start wraps midnight
/// (`22:00-06:00`); the hours then belong to the weekday on which they start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl Hours {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("hours {s:?} must be HH:MM-HH:MM"))?;
        let (start, end) = (TimeOfDay::parse(a)?, TimeOfDay::parse(b)?);
        if start == end {
            return Err(format!("hours {s:?} are empty (start equals end)"));
        }
        Ok(Hours { start, end })
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for Hours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Hours::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// When a scope may be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    /// Days on which it is open (all days if empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<Weekday>,
    /// Hours of those days (all day if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Hours>,
    /// IANA zone (`America/New_York`) or `UTC`; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("unknown time zone {0:?} (use an IANA name such as America/New_York, or UTC)")]
    UnknownTimeZone(String),
    #[error("not_after ({not_after}) is before not_before ({not_before})")]
    Inverted {
        not_before: Timestamp,
        not_after: Timestamp,
    },
}

impl Window {
    /// Checks the zone and bounds (so that a bad window fails at startup, not at login).
    pub fn validate(&self) -> Result<(), WindowError> {
        self.zone()?;
        if let (Some(nb), Some(na)) = (self.not_before, self.not_after) {
            if na < nb {
                return Err(WindowError::Inverted {
                    not_before: nb,
                    not_after: na,
                });
            }
        }
        Ok(())
    }

    fn zone(&self) -> Result<jiff::tz::TimeZone, WindowError> {
        match self.timezone.as_deref() {
            None | Some("UTC") => Ok(jiff::tz::TimeZone::UTC),
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|_| WindowError::UnknownTimeZone(name.to_string())),
        }
    }

    /// Whether the window is open at `at`. A window whose zone cannot be read is closed.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.open_until(at).is_some()
    }

    /// If the window is open at `at`, when it closes next (`None` inside `Some` = never).
    pub fn open_until(&self, at: Timestamp) -> Option<Option<Timestamp>> {
        if self.not_before.is_some_and(|nb| at < nb) || self.not_after.is_some_and(|na| at >= na) {
            return None;
        }
        let zone = self.zone().ok()?;
        let mut closes = self.not_after;
        if !self.weekdays.is_empty() || self.hours.is_some() {
            let ts = jiff::Timestamp::from_microsecond(at.as_micros()).ok()?;
            let local = ts.to_zoned(zone.clone());
            let minute = (local.hour() as u16) * 60 + local.minute() as u16;
            let today = Weekday::from_jiff(local.weekday());
            let day_ok = |d: Weekday| self.weekdays.is_empty() || self.weekdays.contains(&d);
            let span_end_minutes: Option<i64> = match self.hours {
                None => {
                    if !day_ok(today) {
                        return None;
                    }
                    // Open until the end of this run of allowed days.
                    let mut days = 1i64;
                    let mut d = local.date();
                    while days < 8 {
                        d = d.tomorrow().ok()?;
                        if !day_ok(Weekday::from_jiff(d.weekday())) {
                            break;
                        }
                        days += 1;
                    }
                    if days >= 8 {
                        None
                    } else {
                        Some(days * 1440 - minute as i64)
                    }
                }
                Some(h) if h.start < h.end => {
                    if !day_ok(today) || minute < h.start.0 || minute >= h.end.0 {
                        return None;
                    }
                    Some((h.end.0 - minute) as i64)
                }
                Some(h) => {
                    // Wraps midnight: either the evening part of an allowed day, or the
                    // morning part following an allowed day.
                    if minute >= h.start.0 && day_ok(today) {
                        Some(1440 - minute as i64 + h.end.0 as i64)
                    } else if minute < h.end.0 {
                        let yesterday = local.date().yesterday().ok()?;
                        if !day_ok(Weekday::from_jiff(yesterday.weekday())) {
                            return None;
                        }
                        Some((h.end.0 - minute) as i64)
                    } else {
                        return None;
                    }
                }
            };
            if let Some(m) = span_end_minutes {
                // Whole minutes from the start of the current minute, read as local wall
                // time: good to the minute, DST shifts aside.
                let start_of_minute = at.as_micros()
                    - (local.second() as i64 * 1_000_000)
                    - (local.subsec_nanosecond() as i64 / 1_000);
                let end = Timestamp::from_micros(start_of_minute + m * 60_000_000);
                closes = Some(closes.map_or(end, |c| c.min(end)));
            }
        }
        Some(closes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn absolute_bounds() {
        let w = Window {
            not_before: Some(t("2026-11-01T00:00:00Z")),
            not_after: Some(t("2026-12-01T00:00:00Z")),
            ..Default::default()
        };
        assert!(!w.is_open(t("2026-10-31T23:59:59Z")));
        assert_eq!(
            w.open_until(t("2026-11-28T10:00:00Z")),
            Some(Some(t("2026-12-01T00:00:00Z")))
        );
        assert!(!w.is_open(t("2026-12-01T00:00:00Z")));
    }

    #[test]
    fn office_hours_in_a_zone() {
        let w = Window {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            hours: Some(Hours::parse("08:00-18:00").unwrap()),
            timezone: Some("America/New_York".into()),
            ..Default::default()
        };
        w.validate().unwrap();
        // Friday 2026-11-27 15:30 UTC = 10:30 EST: open until 18:00 EST = 23:00 UTC.
        assert_eq!(
            w.open_until(t("2026-11-27T15:30:20Z")),
            Some(Some(t("2026-11-27T23:00:00Z")))
        );
        // 12:00 UTC = 07:00 EST: closed.
        assert!(!w.is_open(t("2026-11-27T12:00:00Z")));
        // Saturday: closed.
        assert!(!w.is_open(t("2026-11-28T15:30:00Z")));
    }

    #[test]
    fn overnight_hours_belong_to_the_day_they_start() {
        let w = Window {
            weekdays: vec![Weekday::Fri],
            hours: Some(Hours::parse("22:00-06:00").unwrap()),
            ..Default::default()
        };
        assert!(w.is_open(t("2026-11-27T23:00:00Z"))); // Friday night
        assert_eq!(
            w.open_until(t("2026-11-28T05:00:00Z")),
            Some(Some(t("2026-11-28T06:00:00Z")))
        ); // Saturday morning
        assert!(!w.is_open(t("2026-11-28T23:00:00Z"))); // Saturday night
    }

    #[test]
    fn bad_windows_are_refused() {
        let w = Window {
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(w.validate().is_err());
        assert!(Hours::parse("9-17").is_err());
        assert!(Hours::parse("10:00-10:00").is_err());
        assert!(Hours::parse("25:00-26:00").is_err());
    }

    #[test]
    fn always_open_without_constraints() {
        assert_eq!(
            Window::default().open_until(t("2026-11-28T10:00:00Z")),
            Some(None)
        );
    }
}
