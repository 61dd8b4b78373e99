//! Digests: a subscription with `"grouping": "digest"` gets no message per
//! change; once a day or a week, at a local time in a time zone its tenant
//! picks, it gets one message with everything new and changed since the
//! last digest (grouped by root cause) and what is still open.
//!
//! The schedule is pure: [`DigestSchedule::next_after`] answers the first
//! due instant after a given one, in the zone's own civil time (a 08:00
//! digest stays at 08:00 across daylight saving changes; a local time a
//! transition skips falls at the first instant after the gap, one it
//! repeats at the first of the two).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// How often a digest falls due.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    Day,
    Week,
}

/// A day of the week, for weekly digests.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Monday => Weekday::Monday,
            Day::Tuesday => Weekday::Tuesday,
            Day::Wednesday => Weekday::Wednesday,
            Day::Thursday => Weekday::Thursday,
            Day::Friday => Weekday::Friday,
            Day::Saturday => Weekday::Saturday,
            Day::Sunday => Weekday::Sunday,
        }
    }
}

/// When a subscription's digest falls due:
/// `{"every": "day"|"week", "at": "HH:MM", "time_zone": IANA name,
/// "weekday"?: "monday"…}` (`weekday` only for a weekly digest, default
/// Monday).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSchedule {
    /// `day` or `week` (kept as text: a wrong value is refused by
    /// [`DigestSchedule::validate`] with the field named).
    #[cfg_attr(feature = "openapi", schema(value_type = Every))]
    pub every: String,
    /// Local time, `HH:MM` (24-hour).
    pub at: String,
    /// An IANA time zone name (`Europe/Paris`, `UTC`, …).
    pub time_zone: String,
    /// `monday` … `sunday` (weekly digests only; Monday by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Day>))]
    pub weekday: Option<String>,
}

/// A digest subscription's schedule and where it stands, as stored with the
/// subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub schedule: DigestSchedule,
    /// The end of the last digest's window (the subscription's creation
    /// before the first).
    pub last_ms: i64,
}

impl DigestSchedule {
    /// Checks the schedule; the message says what is wrong and where.
    pub fn validate(&self) -> Result<(), String> {
        let every = self.every()?;
        self.time()?;
        self.zone()?;
        let day = self.day()?;
        if every == Every::Day && day.is_some() {
            return Err("digest.weekday: only a weekly digest has a weekday".into());
        }
        Ok(())
    }

    /// The schedule with its zone's canonical IANA name (`europe/paris`
    /// reads as `Europe/Paris`), once it is valid.
    pub fn canonical(mut self) -> DigestSchedule {
        if let Ok(tz) = self.zone()
            && let Some(name) = tz.iana_name()
        {
            self.time_zone = name.to_string();
        }
        self
    }

    fn every(&self) -> Result<Every, String> {
        match self.every.as_str() {
            "day" => Ok(Every::Day),
            "week" => Ok(Every::Week),
            other => Err(format!(
                "digest.every: {:?} is not one of day, week",
                other.chars().take(64).collect::<String>()
            )),
        }
    }

    fn day(&self) -> Result<Option<Day>, String> {
        let Some(text) = &self.weekday else {
            return Ok(None);
        };
        let day = match text.as_str() {
            "monday" => Day::Monday,
            "tuesday" => Day::Tuesday,
            "wednesday" => Day::Wednesday,
            "thursday" => Day::Thursday,
            "friday" => Day::Friday,
            "saturday" => Day::Saturday,
            "sunday" => Day::Sunday,
            other => {
                return Err(format!(
                    "digest.weekday: {:?} is not a day of the week (monday … sunday)",
                    other.chars().take(64).collect::<String>()
                ));
            }
        };
        Ok(Some(day))
    }

    fn time(&self) -> Result<Time, String> {
        let bad = || {
            format!(
                "digest.at: {:?} is not a 24-hour HH:MM time",
                self.at.chars().take(64).collect::<String>()
            )
        };
        let (h, m) = self.at.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        Time::new(h, m, 0, 0).map_err(|_| bad())
    }

    fn zone(&self) -> Result<TimeZone, String> {
        if self.time_zone.len() > 64 {
            return Err("digest.time_zone: longer than 64 bytes".into());
        }
        TimeZone::get(&self.time_zone).map_err(|_| {
            format!(
                "digest.time_zone: {:?} is not an IANA time zone name (like Europe/Paris or UTC)",
                self.time_zone.chars().take(64).collect::<String>()
            )
        })
    }

    /// The first instant after `after_ms` (Unix milliseconds) at which the
    /// digest falls due; `None` for an invalid schedule.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.validate().ok()?;
        let (time, tz) = (self.time().ok()?, self.zone().ok()?);
        let after = jiff::Timestamp::from_millisecond(after_ms).ok()?;
        let mut date = after.to_zoned(tz.clone()).date();
        let wanted = match self.every().ok()? {
            Every::Day => None,
            Every::Week => Some(self.day().ok()?.unwrap_or(Day::Monday).weekday()),
        };
        // The due instant is on today's date or one of the next seven.
        for _ in 0..9 {
            if wanted.is_none_or(|w| date.weekday() == w) {
                let at = date
                    .to_datetime(time)
                    .to_zoned(tz.clone())
                    .ok()?
                    .timestamp();
                let ms = at.as_millisecond();
                if ms > after_ms {
                    return Some(ms);
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn schedule(every: Every, at: &str, tz: &str, weekday: Option<Day>) -> DigestSchedule {
        DigestSchedule {
            every: serde_json::to_value(every)
                .unwrap()
                .as_str()
                .unwrap()
                .into(),
            at: at.into(),
            time_zone: tz.into(),
            weekday: weekday.map(|d| serde_json::to_value(d).unwrap().as_str().unwrap().into()),
        }
    }

    #[test]
    fn daily_at_a_local_time_across_daylight_saving() {
        let s = schedule(Every::Day, "08:00", "Europe/Paris", None);
        s.validate().unwrap();
        // Winter: 08:00 in Paris is 07:00 UTC.
        assert_eq!(
            s.next_after(ms("2026-01-10T06:00:00Z")),
            Some(ms("2026-01-10T07:00:00Z"))
        );
        // Due now means the next one: strictly after.
        assert_eq!(
            s.next_after(ms("2026-01-10T07:00:00Z")),
            Some(ms("2026-01-11T07:00:00Z"))
        );
        // The spring change (29 March 2026): 08:00 is 06:00 UTC from then.
        assert_eq!(
            s.next_after(ms("2026-03-28T07:30:00Z")),
            Some(ms("2026-03-29T06:00:00Z"))
        );
        // A time the change skips (02:30 on 29 March) falls after the gap.
        let gap = schedule(Every::Day, "02:30", "Europe/Paris", None);
        assert_eq!(
            gap.next_after(ms("2026-03-28T12:00:00Z")),
            Some(ms("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn weekly_on_its_weekday() {
        // 2026-11-28 is a Saturday.
        let s = schedule(Every::Week, "09:30", "America/New_York", Some(Day::Monday));
        s.validate().unwrap();
        assert_eq!(
            s.next_after(ms("2026-11-28T12:00:00Z")),
            Some(ms("2026-11-30T14:30:00Z"))
        );
        let default = schedule(Every::Week, "09:30", "UTC", None);
        assert_eq!(
            default.next_after(ms("2026-11-30T09:30:00Z")),
            Some(ms("2026-12-07T09:30:00Z")),
            "Monday by default, a week later when due now"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (s, needle) in [
            (schedule(Every::Day, "8:00", "UTC", None), "digest.at"),
            (schedule(Every::Day, "24:00", "UTC", None), "digest.at"),
            (schedule(Every::Day, "08:60", "UTC", None), "digest.at"),
            (
                schedule(Every::Day, "08:00", "Mars/Olympus", None),
                "digest.time_zone",
            ),
            (
                schedule(Every::Day, "08:00", "UTC", Some(Day::Friday)),
                "digest.weekday",
            ),
        ] {
            let err = s.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(s.next_after(0).is_none());
        }
        let mut s = schedule(Every::Week, "08:00", "UTC", None);
        s.weekday = Some("funday".into());
        assert!(s.validate().unwrap_err().starts_with("digest.weekday:"));
        s.weekday = None;
        s.every = "month".into();
        assert!(s.validate().unwrap_err().starts_with("digest.every:"));
        let lower = schedule(Every::Day, "08:00", "europe/paris", None).canonical();
        assert_eq!(lower.time_zone, "Europe/Paris");
        let json = r#"{"every":"day","at":"08:00","time_zone":"UTC","hour":8}"#;
        assert!(
            serde_json::from_str::<DigestSchedule>(json).is_err(),
            "unknown keys refused"
        );
    }
}
