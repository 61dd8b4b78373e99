//! How severe a record is: one [`Rating`] per record, read from what the
//! record states, in a fixed precedence.
//!
//! | rank | source | read from | scored by |
//! |---|---|---|---|
//! | 1 | `cvss_v4` | `severity[]` (record or affected entry) of type `CVSS_V4` | the `cvss` crate (CVSS v4.0 specification, with its lookup tables) |
//! | 2 | `cvss_v3` | type `CVSS_V3` (`CVSS:3.0/` and `CVSS:3.1/` vectors) | the `cvss` crate (base score) |
//! | 3 | `ubuntu` | type `Ubuntu` (Ubuntu's priority: negligible, low, medium, high, critical) | the word |
//! | 3 | `debian` | `affected[].ecosystem_specific.urgency` of `Debian` records (unimportant, low, medium, high) | the word |
//! | 4 | `cvss_v2` | type `CVSS_V2` | the `cvss` crate (base score) |
//! | 5 | `word` | `database_specific.severity` (record or affected entry) and `ecosystem_specific.severity`, as GitHub and others write it | the word |
//!
//! The first rank the record has decides; within a rank the highest level
//! wins (a record rated by a distribution for several releases takes the
//! highest of them). A vector that does not parse, a word no table knows
//! (`untriaged`, Debian's `not yet assigned` and `end-of-life`) gives no
//! rating at that rank. A record with no rating at all is *unrated*
//! (`unknown` where a level is printed).

use patchline_formats::osv;
use serde::Serialize;

use crate::notice::Severity;

/// Where a [`Rating`] comes from, in precedence order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RatingSource {
    CvssV4,
    CvssV3,
    Ubuntu,
    Debian,
    CvssV2,
    Word,
}

impl RatingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RatingSource::CvssV4 => "cvss_v4",
            RatingSource::CvssV3 => "cvss_v3",
            RatingSource::Ubuntu => "ubuntu",
            RatingSource::Debian => "debian",
            RatingSource::CvssV2 => "cvss_v2",
            RatingSource::Word => "word",
        }
    }

    /// Lower ranks win.
    fn rank(self) -> u8 {
        match self {
            RatingSource::CvssV4 => 1,
            RatingSource::CvssV3 => 2,
            RatingSource::Ubuntu | RatingSource::Debian => 3,
            RatingSource::CvssV2 => 4,
            RatingSource::Word => 5,
        }
    }
}

/// A record's severity and what it was read from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rating {
    pub level: Severity,
    /// The CVSS base score (CVSS sources only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub source: RatingSource,
    /// The vector or word as the record gives it.
    pub vector: String,
}

/// The CVSS base score of a vector (`CVSS:4.0/…`, `CVSS:3.1/…`,
/// `CVSS:3.0/…`, or a v2 vector `AV:N/AC:L/Au:N/…`) and its version's
/// source; `None` when the vector does not parse.
pub fn cvss_score(vector: &str) -> Option<(f64, RatingSource)> {
    let vector = vector.trim();
    // A v2 vector as NVD prints it: in parentheses.
    let vector = vector
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(vector);
    // The crate scores a v3 vector with base metrics missing as if they
    // were zero (`CVSS:3.1/AV:N` reads 0.0); the specification makes all
    // eight mandatory, as it does v4's and v2's (which the crate checks).
    if vector.starts_with("CVSS:3.") {
        let present: Vec<&str> = vector
            .split('/')
            .skip(1)
            .filter_map(|m| m.split_once(':').map(|(k, _)| k))
            .collect();
        if !V3_BASE.iter().all(|k| present.contains(k)) {
            return None;
        }
    }
    let v: cvss::Cvss = vector.parse().ok()?;
    let source = match v {
        cvss::Cvss::CvssV40(_) => RatingSource::CvssV4,
        cvss::Cvss::CvssV30(_) | cvss::Cvss::CvssV31(_) => RatingSource::CvssV3,
        cvss::Cvss::CvssV20(_) => RatingSource::CvssV2,
        _ => return None,
    };
    let score = v.score();
    score.is_finite().then_some((score, source))
}

/// The base metrics every CVSS v3 vector must give.
const V3_BASE: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];

/// A score written as a bare number (`"9.8"`), as some feeds put it in a
/// `CVSS_V3` entry: read as that version's score when it is one (0–10).
fn bare_score(text: &str) -> Option<f64> {
    let x: f64 = text.trim().parse().ok()?;
    ((0.0..=10.0).contains(&x)).then_some((x * 10.0).round() / 10.0)
}

/// Debian's urgency words (the tracker marks some with `*`: `low**`).
fn debian_urgency(word: &str) -> Option<Severity> {
    match word
        .trim()
        .trim_end_matches('*')
        .to_ascii_lowercase()
        .as_str()
    {
        "unimportant" => Some(Severity::None),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        _ => None,
    }
}

/// The rating of an OSV record (module documentation: the precedence).
pub fn rate(record: &osv::Advisory) -> Option<Rating> {
    let mut found: Vec<Rating> = Vec::new();
    let mut severity_entry = |s: &osv::Severity| {
        let ty = s.ty.as_str();
        let rating = match ty {
            "CVSS_V4" | "CVSS_V3" | "CVSS_V2" => cvss_score(&s.score)
                .or_else(|| {
                    let source = match ty {
                        "CVSS_V4" => RatingSource::CvssV4,
                        "CVSS_V3" => RatingSource::CvssV3,
                        _ => RatingSource::CvssV2,
                    };
                    Some((bare_score(&s.score)?, source))
                })
                .map(|(score, source)| Rating {
                    level: Severity::from_score(score),
                    score: Some(score),
                    source,
                    vector: s.score.trim().to_string(),
                }),
            "Ubuntu" => Severity::parse_word(&s.score).map(|level| Rating {
                level,
                score: None,
                source: RatingSource::Ubuntu,
                vector: s.score.trim().to_string(),
            }),
            _ => None,
        };
        found.extend(rating);
    };
    record.severity.iter().for_each(&mut severity_entry);
    for a in &record.affected {
        a.severity.iter().for_each(&mut severity_entry);
    }
    let field = |v: &Option<osv::Extra>, key: &str| -> Option<String> { v.as_ref()?.get_str(key) };
    for a in &record.affected {
        if a.package
            .as_ref()
            .is_some_and(|p| p.ecosystem.starts_with("Debian"))
            && let Some(word) = field(&a.ecosystem_specific, "urgency")
            && let Some(level) = debian_urgency(&word)
        {
            found.push(Rating {
                level,
                score: None,
                source: RatingSource::Debian,
                vector: word,
            });
        }
    }
    let words = std::iter::once(field(&record.database_specific, "severity"))
        .chain(
            record
                .affected
                .iter()
                .map(|a| field(&a.database_specific, "severity")),
        )
        .chain(
            record
                .affected
                .iter()
                .map(|a| field(&a.ecosystem_specific, "severity")),
        )
        .flatten();
    for word in words {
        if let Some(level) = Severity::parse_word(&word) {
            found.push(Rating {
                level,
                score: None,
                source: RatingSource::Word,
                vector: word,
            });
        }
    }
    let best_rank = found.iter().map(|r| r.source.rank()).min()?;
    found
        .into_iter()
        .filter(|r| r.source.rank() == best_rank)
        .max_by(|x, y| {
            x.level.cmp(&y.level).then(
                x.score
                    .unwrap_or(0.0)
                    .partial_cmp(&y.score.unwrap_or(0.0))
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real records (`testdata/severity`, sources and licences in its
    /// SOURCES.md); the scores are the reference library's.
    #[test]
    fn real_records_are_rated_as_their_fields_say() {
        let read = |name: &str| {
            let path = format!(
                "{}/../../testdata/severity/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&path).expect("fixture");
            osv::parse_json(&bytes).expect("a real record parses")
        };
        let rate_file = |name: &str| rate(&read(name));
        let r = rate_file("GHSA-7vhh-gfjc-x8rm.json").expect("rated");
        assert_eq!(
            (r.source, r.score, r.level),
            (RatingSource::CvssV4, Some(8.6), Severity::High)
        );
        assert!(r.vector.starts_with("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:P"));
        let r = rate_file("GHSA-8259-2x72-2gvc.json").expect("rated");
        assert_eq!(
            (r.source, r.score, r.level),
            (RatingSource::CvssV4, Some(5.1), Severity::Medium)
        );
        // Debian's records: urgency `not yet assigned` for every release
        // and a CVSS v3 vector, which rates them ...
        for (name, score) in [
            ("DEBIAN-CVE-2023-4527.json", 6.5),
            ("DEBIAN-CVE-2024-21096.json", 4.9),
        ] {
            let r = rate_file(name).expect("rated");
            assert_eq!(
                (r.source, r.score, r.level),
                (RatingSource::CvssV3, Some(score), Severity::Medium),
                "{name}"
            );
            // ... while the urgency alone rates nothing: without the
            // vector the record is unrated, not rated from that word.
            let mut record = read(name);
            assert!(record.affected.iter().any(|a| {
                a.ecosystem_specific
                    .as_ref()
                    .and_then(|e| e.get_str("urgency"))
                    .as_deref()
                    == Some("not yet assigned")
            }));
            record.severity.clear();
            assert_eq!(rate(&record), None, "{name}");
        }
    }

    /// Vectors and scores from Red Hat's CVSS reference library's test
    /// files (github.com/RedHatProductSecurity/cvss, `tests/vectors_simple4`
    /// and `tests/vectors_simple31`, LGPL-3.0; the `cvss` crate is tested
    /// against all of them), and FIRST's v2 example.
    #[test]
    fn cvss_scores_match_the_reference_vectors() {
        let v4 = [
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:H/VA:L/SC:N/SI:H/SA:L",
                9.2,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:N/SC:N/SI:L/SA:N",
                6.9,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:A/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N",
                5.1,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:P/PR:H/UI:P/VC:L/VI:H/VA:H/SC:N/SI:L/SA:N",
                5.9,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:P/PR:H/UI:A/VC:N/VI:L/VA:L/SC:L/SI:N/SA:N",
                1.8,
            ),
            (
                "CVSS:4.0/AV:N/AC:H/AT:N/PR:H/UI:A/VC:N/VI:N/VA:N/SC:N/SI:H/SA:N",
                4.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:H/AT:P/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:L/SA:N",
                9.5,
            ),
        ];
        let v3 = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:L/A:L", 9.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N", 3.5),
            ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:L/I:N/A:N", 4.1),
            ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:N/A:N", 4.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            // The same metrics in a 3.0 vector.
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ];
        for (v, want) in v4 {
            assert_eq!(cvss_score(v), Some((want, RatingSource::CvssV4)), "{v}");
        }
        for (v, want) in v3 {
            assert_eq!(cvss_score(v), Some((want, RatingSource::CvssV3)), "{v}");
        }
        assert_eq!(
            cvss_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"),
            Some((7.5, RatingSource::CvssV2))
        );
        assert_eq!(
            cvss_score("(AV:N/AC:L/Au:N/C:P/I:P/A:P)"),
            Some((7.5, RatingSource::CvssV2)),
            "v2 in parentheses, as NVD prints it"
        );
        // Found from outside: the crate scored v3 vectors missing base
        // metrics as if they were zero.
        for bad in [
            "CVSS:3.1/AV:N",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U",
            "CVSS:3.1/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:4.0/AV:N",
            "CVSS:3.1/AV:X",
            "",
            "high",
        ] {
            assert_eq!(cvss_score(bad), None, "{bad}");
        }
        assert_eq!(Severity::from_score(9.8), Severity::Critical);
        assert_eq!(Severity::parse_word("MODERATE"), Some(Severity::Medium));
    }

    fn record(json: serde_json::Value) -> osv::Advisory {
        osv::parse_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn precedence_v4_then_v3_then_distribution_then_v2_then_words() {
        let base = |severity: serde_json::Value, eco_specific: serde_json::Value| {
            record(serde_json::json!({
                "id": "T-1", "modified": "2024-01-01T00:00:00Z",
                "severity": severity,
                "database_specific": {"severity": "CRITICAL"},
                "affected": [{"package": {"ecosystem": "Debian:12", "name": "p"},
                              "ecosystem_specific": eco_specific,
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]
            }))
        };
        let v4 = "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N";
        let v3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
        let r = rate(&base(
            serde_json::json!([{"type": "CVSS_V3", "score": v3}, {"type": "CVSS_V4", "score": v4}]),
            serde_json::json!({"urgency": "high"}),
        ))
        .unwrap();
        assert_eq!(
            (r.level, r.score, r.source),
            (Severity::Medium, Some(6.8), RatingSource::CvssV4),
            "v4 wins over a higher v3"
        );
        let r = rate(&base(
            serde_json::json!([{"type": "CVSS_V3", "score": v3}]),
            serde_json::json!({"urgency": "low"}),
        ))
        .unwrap();
        assert_eq!(
            (r.level, r.source),
            (Severity::Critical, RatingSource::CvssV3)
        );
        let r = rate(&base(
            serde_json::json!([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]),
            serde_json::json!({"urgency": "low**"}),
        ))
        .unwrap();
        assert_eq!(
            (r.level, r.source, r.vector.as_str()),
            (Severity::Low, RatingSource::Debian, "low**"),
            "a distribution's urgency wins over CVSS v2 and words"
        );
        let r = rate(&base(
            serde_json::json!([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]),
            serde_json::json!({"urgency": "not yet assigned"}),
        ))
        .unwrap();
        assert_eq!((r.level, r.source), (Severity::High, RatingSource::CvssV2));
        let r = rate(&base(
            serde_json::json!([]),
            serde_json::json!({"urgency": "end-of-life"}),
        ))
        .unwrap();
        assert_eq!(
            (r.level, r.source),
            (Severity::Critical, RatingSource::Word)
        );
        let none = record(serde_json::json!({
            "id": "T-2", "modified": "2024-01-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/garbage"}, {"type": "Ubuntu", "score": "untriaged"}]
        }));
        assert_eq!(rate(&none), None, "nothing readable: unrated");
        let fall = record(serde_json::json!({
            "id": "T-4", "modified": "2024-01-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}, {"type": "Ubuntu", "score": "critical"}]
        }));
        let r = rate(&fall).unwrap();
        assert_eq!(
            (r.level, r.source),
            (Severity::Critical, RatingSource::Ubuntu),
            "an incomplete vector is no rating: the next source decides"
        );
        let bare = record(serde_json::json!({
            "id": "T-5", "modified": "2024-01-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": " 9.8 "}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "p"}, "ecosystem_specific": {"urgency": "High"}}]
        }));
        let r = rate(&bare).unwrap();
        assert_eq!(
            (r.level, r.score, r.source, r.vector.as_str()),
            (Severity::Critical, Some(9.8), RatingSource::CvssV3, "9.8")
        );
    }

    #[test]
    fn a_distribution_rating_for_several_releases_takes_the_highest() {
        let r = rate(&record(serde_json::json!({
            "id": "T-3", "modified": "2024-01-01T00:00:00Z",
            "affected": [
                {"package": {"ecosystem": "Debian:11", "name": "p"}, "ecosystem_specific": {"urgency": "unimportant"}},
                {"package": {"ecosystem": "Debian:12", "name": "p"}, "ecosystem_specific": {"urgency": "medium"}},
                {"package": {"ecosystem": "Debian:13", "name": "p"}, "ecosystem_specific": {"urgency": "not yet assigned"}}
            ]
        })))
        .unwrap();
        assert_eq!(
            (r.level, r.source),
            (Severity::Medium, RatingSource::Debian)
        );
    }
}
