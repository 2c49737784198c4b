//! UTC timestamps with microsecond precision, the one clock of the audit trail.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Microseconds since the Unix epoch, UTC. Serialised as RFC 3339 with six fractional digits
/// (`2026-11-28T10:41:01.123456Z`) so that exports are readable and sort as text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000) as i64)
    }

    pub fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Microseconds elapsed from `earlier` to `self` (0 if the clock went backwards).
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0).max(0) as u64
    }

    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339, UTC, exactly six fractional digits.
    pub fn to_rfc3339(self) -> String {
        let dt = self.to_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            dt.month() as u8,
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        )
    }

    /// Parses RFC 3339 (any offset, any precision down to microseconds).
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        let dt = OffsetDateTime::parse(s, &Rfc3339)?;
        Ok(Timestamp((dt.unix_timestamp_nanos() / 1_000) as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_microseconds() {
        let t = Timestamp::from_micros(1_795_862_461_123_456);
        let s = t.to_rfc3339();
        assert_eq!(s, "2026-11-28T10:41:01.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
    }

    #[test]
    fn parses_other_offsets() {
        let t = Timestamp::parse_rfc3339("2026-11-28T11:41:01+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T10:41:01.000000Z");
    }
}
