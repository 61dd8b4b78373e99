//! Retry schedule of a delivery: fixed delays with proportional jitter, no
//! hidden randomness so that workers can be tested with injected values.

use std::time::Duration;

/// Why a schedule string was refused; names the offending entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetryError {
    #[error("retry schedule is empty")]
    Empty,
    #[error("bad retry delay {0:?}: expected a number with unit ms, s, m, h or d (e.g. 5s, 30m)")]
    BadEntry(String),
    #[error("retry delay {0:?} is too long")]
    TooLong(String),
}

/// `delays_ms[i]` is the wait before attempt `i + 1`, counted from the
/// previous attempt (from the enqueueing for `i = 0`). Its length is the
/// number of attempts; after the last one the delivery is dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub delays_ms: Vec<u64>,
    /// Each delay is stretched or shrunk by up to this fraction (0.2 =
    /// ±20 %), so endpoints that failed together are not retried in lockstep.
    pub jitter: f64,
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// The Standard Webhooks example schedule, first attempt immediately. The
/// spec's table goes on with 14 h, 20 h and 24 h; patchline stops after two
/// 10 h waits (about 32 h in all), and tenants can replay from the notice
/// feed after that.
impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            delays_ms: vec![
                0,
                5 * SECOND,
                5 * MINUTE,
                30 * MINUTE,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ],
            jitter: 0.2,
        }
    }
}

impl Schedule {
    /// Total number of attempts (the first one included).
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays_ms.len()).unwrap_or(u32::MAX)
    }

    /// Wait before the next attempt after `attempts_done` attempts, or `None`
    /// when the schedule is exhausted (dead letter). `random_unit` in
    /// `[0, 1]` picks the jitter: 0 → `-jitter`, 0.5 → none, 1 → `+jitter`;
    /// values outside (or NaN) are clamped, so callers cannot produce a
    /// negative or absurd delay.
    #[must_use]
    pub fn next_delay(&self, attempts_done: u32, random_unit: f64) -> Option<Duration> {
        let base = *self.delays_ms.get(usize::try_from(attempts_done).ok()?)?;
        let u = if random_unit.is_nan() {
            0.5
        } else {
            random_unit.clamp(0.0, 1.0)
        };
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let factor = 1.0 + jitter * (2.0 * u - 1.0);
        // f64 holds every delay up to 2^53 ms (285 000 years) exactly; the
        // `as` conversion saturates, it cannot wrap.
        let ms = (base as f64 * factor).round() as u64;
        Some(Duration::from_millis(ms))
    }

    /// Parses a comma-separated list such as `0,5s,5m,30m,2h` (jitter 0.2).
    /// Units: `ms`, `s`, `m`, `h`, `d`; a bare number means seconds. The list
    /// is taken literally: its first entry is the wait before the first
    /// attempt, normally `0`.
    pub fn parse(s: &str) -> Result<Schedule, RetryError> {
        if s.trim().is_empty() {
            return Err(RetryError::Empty);
        }
        let delays_ms = s
            .split(',')
            .map(|e| parse_delay(e.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Schedule {
            delays_ms,
            jitter: Schedule::default().jitter,
        })
    }
}

fn parse_delay(entry: &str) -> Result<u64, RetryError> {
    let bad = || RetryError::BadEntry(entry.to_owned());
    let split = entry
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(entry.len());
    let (num, unit) = entry.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num
        .parse()
        .map_err(|_| RetryError::TooLong(entry.to_owned()))?;
    let scale = match unit {
        "ms" => 1,
        "" | "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => 24 * HOUR,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| RetryError::TooLong(entry.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_documented_schedule() {
        let s = Schedule::default();
        let secs: Vec<u64> = s.delays_ms.iter().map(|d| d / 1000).collect();
        assert_eq!(secs, [0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(s.jitter, 0.2);
        assert_eq!(s.max_attempts(), 8);
    }

    #[test]
    fn next_delay_walks_the_list_then_gives_up() {
        let s = Schedule::default();
        assert_eq!(s.next_delay(0, 0.5), Some(Duration::ZERO));
        assert_eq!(s.next_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.next_delay(2, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(s.next_delay(7, 0.5), Some(Duration::from_secs(36000)));
        assert_eq!(s.next_delay(8, 0.5), None);
        assert_eq!(s.next_delay(u32::MAX, 0.5), None);
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let s = Schedule::default();
        assert_eq!(s.next_delay(1, 0.0), Some(Duration::from_millis(4000)));
        assert_eq!(s.next_delay(1, 1.0), Some(Duration::from_millis(6000)));
        assert_eq!(s.next_delay(1, 0.75), Some(Duration::from_millis(5500)));
        assert_eq!(s.next_delay(1, 0.75), s.next_delay(1, 0.75));
        // Out-of-range randomness is clamped, NaN means "no jitter".
        assert_eq!(s.next_delay(1, -3.0), Some(Duration::from_millis(4000)));
        assert_eq!(s.next_delay(1, 9.0), Some(Duration::from_millis(6000)));
        assert_eq!(s.next_delay(1, f64::NAN), Some(Duration::from_millis(5000)));
        // Zero stays zero.
        assert_eq!(s.next_delay(0, 1.0), Some(Duration::ZERO));
        // A silly jitter cannot make delays negative.
        let wild = Schedule {
            delays_ms: vec![1000],
            jitter: 5.0,
        };
        assert_eq!(wild.next_delay(0, 0.0), Some(Duration::ZERO));
        assert_eq!(wild.next_delay(0, 1.0), Some(Duration::from_millis(2000)));
        let huge = Schedule {
            delays_ms: vec![u64::MAX],
            jitter: 0.2,
        };
        assert!(huge.next_delay(0, 1.0).is_some());
    }

    #[test]
    fn parse_units_and_errors() {
        let s = Schedule::parse("5s,5m,30m").unwrap();
        assert_eq!(s.delays_ms, [5_000, 300_000, 1_800_000]);
        assert_eq!(s.jitter, 0.2);
        let s = Schedule::parse(" 0 , 250ms,2h,1d,7").unwrap();
        assert_eq!(s.delays_ms, [0, 250, 7_200_000, 86_400_000, 7_000]);
        assert_eq!(Schedule::parse(""), Err(RetryError::Empty));
        assert_eq!(
            Schedule::parse("5s,,5m"),
            Err(RetryError::BadEntry(String::new()))
        );
        assert_eq!(
            Schedule::parse("5s,5x"),
            Err(RetryError::BadEntry("5x".into()))
        );
        assert_eq!(
            Schedule::parse("-5s"),
            Err(RetryError::BadEntry("-5s".into()))
        );
        assert_eq!(
            Schedule::parse("1.5h"),
            Err(RetryError::BadEntry("1.5h".into()))
        );
        assert_eq!(Schedule::parse("m"), Err(RetryError::BadEntry("m".into())));
        assert!(matches!(
            Schedule::parse("99999999999999999999d"),
            Err(RetryError::TooLong(_))
        ));
        assert!(matches!(
            Schedule::parse("999999999999999d"),
            Err(RetryError::TooLong(_))
        ));
        let err = Schedule::parse("5s,oops").unwrap_err().to_string();
        assert!(err.contains("oops"), "{err}");
    }
}
