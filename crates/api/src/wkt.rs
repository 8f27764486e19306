//! Well-known types whose proto3 JSON form `pbjson-types` does not get right.
//!
//! [`Timestamp`] is `google.protobuf.Timestamp` with the canonical proto3 JSON form: UTC with a
//! `Z` suffix and 0, 3, 6 or 9 fractional digits, e.g. `"2026-11-22T08:51:53.980Z"`, as
//! grpcurl and every other proto3 JSON implementation print it (`pbjson-types` 0.9 writes
//! `+00:00` instead). Parsing accepts any RFC 3339 offset, as the JSON mapping requires. The
//! other well-known types stay on `pbjson_types` (see `build.rs`).

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `google.protobuf.Timestamp`: an instant as seconds and nanoseconds since the Unix epoch.
///
/// The binary encoding is the standard one; the JSON form is RFC 3339 in UTC
/// (`"1972-01-01T10:00:20.021Z"`). Valid values are 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z with `nanos` in `0..=999_999_999` (also before 1970:
/// `nanos` counts forwards from `seconds`); others fail to serialize.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Non-negative fractions of a second at nanosecond resolution, below 1e9.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ::prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";

    fn type_url() -> String {
        "type.googleapis.com/google.protobuf.Timestamp".to_owned()
    }
}

/// 0001-01-01T00:00:00Z, the first instant proto3 JSON can write.
const MIN_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the last whole second proto3 JSON can write.
const MAX_SECONDS: i64 = 253_402_300_799;
const SECONDS_PER_DAY: i64 = 86_400;

/// A [`Timestamp`] that has no RFC 3339 form, or a string that is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampError(&'static str);

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// The canonical proto3 JSON form: `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`.
    ///
    /// # Errors
    /// When `nanos` is outside `0..=999_999_999` or the instant is outside years 0001 to 9999.
    pub fn to_rfc3339(&self) -> Result<String, TimestampError> {
        if !(0..=999_999_999).contains(&self.nanos) {
            return Err(TimestampError(
                "Timestamp nanos must be between 0 and 999999999",
            ));
        }
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) {
            return Err(TimestampError(
                "Timestamp must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z",
            ));
        }
        let days = self.seconds.div_euclid(SECONDS_PER_DAY);
        let of_day = self.seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let mut out = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        );
        let _ = match self.nanos {
            0 => Ok(()),
            n if n % 1_000_000 == 0 => write!(out, ".{:03}", n / 1_000_000),
            n if n % 1_000 == 0 => write!(out, ".{:06}", n / 1_000),
            n => write!(out, ".{n:09}"),
        };
        out.push('Z');
        Ok(out)
    }
}

/// Parses RFC 3339 (`2026-11-22T08:51:53.98+05:00`, `...Z`): up to 9 fractional digits, any
/// offset; the instant must fall within years 0001 to 9999 in UTC.
impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const SYNTAX: TimestampError =
            TimestampError("Timestamp must be RFC 3339, like 1972-01-01T10:00:20.021Z");
        let mut p = Cursor(s.as_bytes());
        let year = p.digits(4).ok_or(SYNTAX)?;
        p.byte(b'-').ok_or(SYNTAX)?;
        let month = p.digits(2).ok_or(SYNTAX)?;
        p.byte(b'-').ok_or(SYNTAX)?;
        let day = p.digits(2).ok_or(SYNTAX)?;
        p.byte(b'T').or_else(|| p.byte(b't')).ok_or(SYNTAX)?;
        let hour = p.digits(2).ok_or(SYNTAX)?;
        p.byte(b':').ok_or(SYNTAX)?;
        let minute = p.digits(2).ok_or(SYNTAX)?;
        p.byte(b':').ok_or(SYNTAX)?;
        let second = p.digits(2).ok_or(SYNTAX)?;
        let mut nanos = 0;
        if p.byte(b'.').is_some() {
            let mut count = 0;
            while let Some(d) = p.digits(1) {
                count += 1;
                if count > 9 {
                    return Err(TimestampError(
                        "Timestamp has more than 9 fractional digits",
                    ));
                }
                nanos = nanos * 10 + d;
            }
            if count == 0 {
                return Err(SYNTAX);
            }
            nanos *= 10_i64.pow(9 - count);
        }
        let offset = if p.byte(b'Z').or_else(|| p.byte(b'z')).is_some() {
            0
        } else {
            let sign = match p.0.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(SYNTAX),
            };
            p.0 = &p.0[1..];
            let hours = p.digits(2).ok_or(SYNTAX)?;
            p.byte(b':').ok_or(SYNTAX)?;
            let minutes = p.digits(2).ok_or(SYNTAX)?;
            if hours > 23 || minutes > 59 {
                return Err(TimestampError("Timestamp has an invalid UTC offset"));
            }
            sign * (hours * 3600 + minutes * 60)
        };
        if !p.0.is_empty() {
            return Err(SYNTAX);
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TimestampError("Timestamp has an invalid date or time"));
        }
        let seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY
            + hour * 3600
            + minute * 60
            + second
            - offset;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
            return Err(TimestampError(
                "Timestamp must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z",
            ));
        }
        Ok(Self {
            seconds,
            nanos: i32::try_from(nanos).map_err(|_| SYNTAX)?,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TimestampVisitor)
    }
}

impl From<pbjson_types::Timestamp> for Timestamp {
    fn from(t: pbjson_types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<Timestamp> for pbjson_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

/// A byte cursor over the text being parsed.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// Consumes exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let digits = self.0.get(..n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[n..];
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    /// Consumes `b`.
    fn byte(&mut self, b: u8) -> Option<()> {
        let rest = self.0.strip_prefix(&[b])?;
        self.0 = rest;
        Some(())
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of days since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    fn json(t: Timestamp) -> String {
        serde_json::to_string(&t).unwrap()
    }

    fn parse(s: &str) -> Result<Timestamp, serde_json::Error> {
        serde_json::from_str(&serde_json::to_string(s).unwrap())
    }

    #[test]
    fn writes_z_and_0_3_6_or_9_fractional_digits() {
        // 2026-11-22T08:51:53Z
        let s = 1_795_337_513;
        assert_eq!(json(ts(s, 0)), r#""2026-11-22T08:51:53Z""#);
        assert_eq!(json(ts(s, 980_000_000)), r#""2026-11-22T08:51:53.980Z""#);
        assert_eq!(json(ts(s, 1_000_000)), r#""2026-11-22T08:51:53.001Z""#);
        assert_eq!(json(ts(s, 980_100_000)), r#""2026-11-22T08:51:53.980100Z""#);
        assert_eq!(json(ts(s, 1_000)), r#""2026-11-22T08:51:53.000001Z""#);
        assert_eq!(
            json(ts(s, 980_100_001)),
            r#""2026-11-22T08:51:53.980100001Z""#
        );
        assert_eq!(json(ts(s, 1)), r#""2026-11-22T08:51:53.000000001Z""#);
    }

    #[test]
    fn writes_the_epoch_the_limits_and_instants_before_1970() {
        assert_eq!(json(ts(0, 0)), r#""1970-01-01T00:00:00Z""#);
        assert_eq!(json(ts(-1, 0)), r#""1969-12-31T23:59:59Z""#);
        // nanos count forwards: -1 s + 0.5 s is half a second before the epoch.
        assert_eq!(json(ts(-1, 500_000_000)), r#""1969-12-31T23:59:59.500Z""#);
        assert_eq!(json(ts(-14_182_940, 0)), r#""1969-07-20T20:17:40Z""#);
        assert_eq!(json(ts(951_782_400, 0)), r#""2000-02-29T00:00:00Z""#);
        assert_eq!(json(ts(MIN_SECONDS, 0)), r#""0001-01-01T00:00:00Z""#);
        assert_eq!(
            json(ts(MAX_SECONDS, 999_999_999)),
            r#""9999-12-31T23:59:59.999999999Z""#
        );
    }

    #[test]
    fn refuses_to_write_out_of_range_values() {
        for t in [
            ts(0, -1),
            ts(0, 1_000_000_000),
            ts(MIN_SECONDS - 1, 0),
            ts(MAX_SECONDS + 1, 0),
            ts(i64::MIN, 0),
            ts(i64::MAX, 0),
        ] {
            assert!(serde_json::to_string(&t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn round_trips() {
        for t in [
            ts(0, 0),
            ts(-1, 1),
            ts(1_795_337_513, 980_000_000),
            ts(1_795_337_513, 123_456_000),
            ts(1_795_337_513, 123_456_789),
            ts(MIN_SECONDS, 0),
            ts(MAX_SECONDS, 999_999_999),
            ts(-62_000_000_000, 7),
            ts(250_000_000_000, 7_000),
        ] {
            assert_eq!(parse(&t.to_rfc3339().unwrap()).unwrap(), t);
        }
        // Every day boundary of four centuries, leap days included, against the parser.
        for day in (-146_097 * 2..146_097 * 2).step_by(7) {
            let t = ts(day * SECONDS_PER_DAY + 3_723, 0);
            assert_eq!(parse(&t.to_rfc3339().unwrap()).unwrap(), t);
        }
    }

    #[test]
    fn parses_any_offset_and_fraction() {
        let utc = ts(1_795_337_513, 980_000_000);
        assert_eq!(parse("2026-11-22T08:51:53.980Z").unwrap(), utc);
        assert_eq!(parse("2026-11-22T08:51:53.98+00:00").unwrap(), utc);
        assert_eq!(parse("2026-11-22T13:51:53.980+05:00").unwrap(), utc);
        assert_eq!(parse("2026-11-22T03:21:53.980000-05:30").unwrap(), utc);
        assert_eq!(parse("2026-11-22t08:51:53.980000000z").unwrap(), utc);
        assert_eq!(parse("2026-11-23T04:51:53.98+20:00").unwrap(), utc);
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap(), ts(0, 0));
        assert_eq!(parse("1970-01-01T00:00:00.000000001Z").unwrap(), ts(0, 1));
        assert_eq!(
            parse("1969-12-31T23:59:59.5Z").unwrap(),
            ts(-1, 500_000_000)
        );
        assert_eq!(
            parse("2016-11-08T21:07:09+05:00").unwrap(),
            ts(1_478_621_229, 0)
        );
        // In range once the offset is applied.
        assert_eq!(
            parse("0000-12-31T23:00:00-01:00").unwrap(),
            ts(MIN_SECONDS, 0)
        );
        assert_eq!(
            parse("10000-01-01T00:00:00Z").map_err(|_| ()),
            Err(()),
            "five-digit years are not RFC 3339"
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "now",
            "2026-11-22",
            "2026-11-22T08:51:53",
            "2026-11-22 08:51:53Z",
            "2026-11-22T08:51Z",
            "2026-11-22T08:51:53.Z",
            "2026-11-22T08:51:53.1234567891Z",
            "2026-11-22T08:51:53ZZ",
            "2026-11-22T08:51:53+0500",
            "2026-11-22T08:51:53+05",
            "2026-11-22T08:51:53+24:00",
            "2026-11-22T08:51:53+05:60",
            "2026-1-22T08:51:53Z",
            "+2026-11-22T08:51:53Z",
            "2026-11-22T08:51:53Z ",
            " 2026-11-22T08:51:53Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T08:60:00Z",
            "2016-12-31T23:59:60Z",
            "２026-11-22T08:51:53Z",
        ] {
            assert!(parse(s).is_err(), "{s:?} parsed");
        }
        assert!(parse("2000-02-29T00:00:00Z").is_ok());
        assert!(serde_json::from_str::<Timestamp>("1795337513").is_err());
        assert!(serde_json::from_str::<Timestamp>(r#"{"seconds": 1}"#).is_err());
    }

    #[test]
    fn rejects_years_outside_0001_to_9999() {
        for s in [
            "0000-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert!(parse(s).is_err(), "{s:?} parsed");
        }
        assert_eq!(parse("0001-01-01T00:00:00Z").unwrap(), ts(MIN_SECONDS, 0));
        assert_eq!(
            parse("9999-12-31T23:59:59.999999999Z").unwrap(),
            ts(MAX_SECONDS, 999_999_999)
        );
    }

    #[test]
    fn is_a_google_protobuf_timestamp_on_the_wire() {
        use prost::{Message, Name};
        let t = ts(1_795_337_513, 980_000_000);
        let pbjson = pbjson_types::Timestamp::from(t);
        assert_eq!(t.encode_to_vec(), pbjson.encode_to_vec());
        assert_eq!(
            Timestamp::decode(pbjson.encode_to_vec().as_slice()).unwrap(),
            t
        );
        assert_eq!(Timestamp::from(pbjson), t);
        assert_eq!(Timestamp::full_name(), "google.protobuf.Timestamp");
        assert_eq!(
            Timestamp::type_url(),
            "type.googleapis.com/google.protobuf.Timestamp"
        );
    }
}
