//! `--format sarif` and `--format cyclonedx` of `affected` and `show`:
//! the same findings as the JSON answers, in the formats CI systems and
//! SBOM tools read. SARIF 2.1.0 (one run, one rule per record, one result
//! per affected component of an artifact); CycloneDX 1.6 (`affected`: a
//! vulnerability report — the affected artifacts as `platform`
//! components holding their affected packages; `show`: the artifact's
//! SBOM — its effective inventory — with the records that affect it).
//! Both are checked in tests against the official schemas.

use std::collections::BTreeMap;

use patchline_core::Record;
use patchline_core::notice::Severity;
use patchline_core::severity::{Rating, RatingSource};
use patchline_engine::report::AffectedArtifact;
use serde_json::{Value, json};

const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const TOOL: &str = "patchline";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The summary a record gives (a failure's own, an advisory's summary or
/// the start of its details).
fn summary(record: &Record) -> String {
    match record {
        Record::Advisory(a) => a
            .osv
            .summary
            .clone()
            .or_else(|| {
                a.osv
                    .details
                    .as_deref()
                    .map(|d| d.chars().take(200).collect())
            })
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| a.id.to_string()),
        Record::Failure(f) => f.summary.clone(),
    }
}

/// The whole text of a record for CycloneDX's `description`: its summary
/// and details (each already bounded when the record was read).
fn description(record: &Record) -> String {
    match record {
        Record::Advisory(a) => match (&a.osv.summary, &a.osv.details) {
            (Some(s), Some(d)) if !d.trim().is_empty() => format!("{s}\n\n{d}"),
            (Some(s), _) => s.clone(),
            (None, Some(d)) if !d.trim().is_empty() => d.clone(),
            _ => a.id.to_string(),
        },
        Record::Failure(f) => match &f.details {
            Some(d) => format!("{}\n\n{d}", f.summary),
            None => f.summary.clone(),
        },
    }
}

/// SARIF's level for a rating: errors for high and critical, warnings
/// for medium and unrated, notes for low and none.
fn sarif_level(severity: Option<Severity>) -> &'static str {
    match severity {
        Some(Severity::Critical | Severity::High) => "error",
        Some(Severity::Medium) | None => "warning",
        Some(Severity::Low | Severity::None) => "note",
    }
}

/// The SARIF rule of a record; `security-severity` (a number as text,
/// as code-scanning services read it) when the record has a score.
fn sarif_rule(record: &Record) -> Value {
    let rating = record.rating();
    let mut properties = json!({"tags": ["security", "vulnerability"]});
    if let Some(r) = &rating {
        properties["severity"] = json!(r.level);
        if let Some(score) = r.score {
            properties["security-severity"] = json!(format!("{score:.1}"));
        }
    }
    let mut rule = json!({
        "id": record.id().as_str(),
        "shortDescription": {"text": summary(record)},
        "defaultConfiguration": {"level": sarif_level(record.severity())},
        "properties": properties,
    });
    if let Record::Advisory(a) = record
        && let Some(url) = a
            .osv
            .references
            .iter()
            .map(|r| &r.url)
            .find(|u| u.starts_with("https://"))
    {
        rule["helpUri"] = json!(url);
    }
    rule
}

/// An id as a relative URI reference: unreserved characters and `/`
/// kept, every other byte percent-encoded (`:` too, so that the first
/// segment never reads as a scheme).
fn uri_path(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One SARIF result per affected component of `row` (an artifact failure,
/// which has none: one result for the artifact).
fn sarif_results(record: &Record, rule_index: usize, row: &AffectedArtifact) -> Vec<Value> {
    let location = json!([{
        // Code scanning services want a physical location: the artifact's
        // id as a relative reference (percent-encoded).
        "physicalLocation": {"artifactLocation": {"uri": uri_path(&row.artifact)}},
        "logicalLocations": [{
            "name": row.artifact,
            "fullyQualifiedName": row.path.join(" > "),
            "kind": row.kind.as_str(),
        }]
    }]);
    let result = |text: String, key: String| {
        json!({
            "ruleId": record.id().as_str(),
            "ruleIndex": rule_index,
            "level": sarif_level(record.severity()),
            "message": {"text": text},
            "locations": location,
            "partialFingerprints": {"patchline/v1": key},
        })
    };
    if row.components.is_empty() {
        return vec![result(
            format!("{} is affected by {}", row.artifact, record.id()),
            format!("{}|{}", record.id(), row.artifact),
        )];
    }
    row.components
        .iter()
        .map(|c| {
            let fixed = c
                .fixed
                .as_deref()
                .map(|f| format!("; fixed in {f}"))
                .unwrap_or_else(|| "; no fixed version yet".to_string());
            result(
                format!(
                    "{} is affected by {} through {} (introduced by {}{fixed})",
                    row.artifact,
                    record.id(),
                    c.purl,
                    c.introduced_by
                ),
                format!("{}|{}|{}", record.id(), row.artifact, c.purl),
            )
        })
        .collect()
}

/// A SARIF log of `findings`: each record with its affected rows.
pub fn sarif(findings: &[(&Record, Vec<AffectedArtifact>)]) -> Value {
    let rules: Vec<Value> = findings.iter().map(|(r, _)| sarif_rule(r)).collect();
    let results: Vec<Value> = findings
        .iter()
        .enumerate()
        .flat_map(|(i, (record, rows))| {
            rows.iter()
                .flat_map(move |row| sarif_results(record, i, row))
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL, "version": VERSION, "rules": rules}},
            "results": results,
        }]
    })
}

/// A random RFC 4122 version 4 UUID, as CycloneDX's `serialNumber` wants.
fn serial_number() -> String {
    format!("urn:uuid:{}", patchline_server::routes::vex::uuid4())
}

/// CycloneDX's rating of a record.
fn cdx_ratings(rating: Option<&Rating>) -> Vec<Value> {
    let Some(r) = rating else {
        return vec![json!({"severity": "unknown"})];
    };
    let severity = match r.level {
        Severity::None => "none",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    };
    let method = match r.source {
        RatingSource::CvssV4 => Some("CVSSv4"),
        RatingSource::CvssV3 if r.vector.starts_with("CVSS:3.1/") => Some("CVSSv31"),
        RatingSource::CvssV3 => Some("CVSSv3"),
        RatingSource::CvssV2 => Some("CVSSv2"),
        _ => None,
    };
    let mut out = json!({"severity": severity});
    if let Some(m) = method {
        out["method"] = json!(m);
        if r.vector.starts_with("CVSS:") || r.source == RatingSource::CvssV2 {
            out["vector"] = json!(r.vector);
        }
    } else {
        out["method"] = json!("other");
    }
    if let Some(score) = r.score {
        out["score"] = json!(score);
    }
    if matches!(r.source, RatingSource::Ubuntu | RatingSource::Debian) {
        out["source"] = json!({"name": r.source.as_str()});
    }
    vec![out]
}

/// A library component of a purl (name and version from the purl).
fn cdx_library(purl: &str, bom_ref: &str) -> Value {
    let parsed: Option<patchline_formats::purl::Purl> = purl.parse().ok();
    let (name, version) = match &parsed {
        Some(p) => (
            match &p.namespace {
                Some(ns) if p.ty != "deb" && p.ty != "apk" && p.ty != "rpm" => {
                    format!("{ns}/{}", p.name)
                }
                _ => p.name.clone(),
            },
            p.version.clone(),
        ),
        None => (purl.to_string(), None),
    };
    let mut c = json!({"type": "library", "bom-ref": bom_ref, "name": name, "purl": purl});
    if let Some(v) = version {
        c["version"] = json!(v);
    }
    c
}

/// The vulnerability entry of a record affecting `refs`, with the fixed
/// versions seen as the recommendation.
fn cdx_vulnerability(record: &Record, refs: Vec<String>, fixed: &[String]) -> Value {
    let mut v = json!({
        "bom-ref": format!("vulnerability:{}", record.id()),
        "id": record.id().as_str(),
        "ratings": cdx_ratings(record.rating().as_ref()),
        "description": description(record),
        "affects": refs.into_iter().map(|r| json!({"ref": r})).collect::<Vec<_>>(),
    });
    if let Record::Advisory(a) = record {
        let aliases: Vec<&String> = a.osv.aliases.iter().chain(&a.osv.upstream).collect();
        if !aliases.is_empty() {
            v["references"] = json!(
                aliases
                    .iter()
                    .map(|x| json!({"id": x, "source": {"name": "OSV alias"}}))
                    .collect::<Vec<_>>()
            );
        }
    }
    if !fixed.is_empty() {
        v["recommendation"] = json!(format!("upgrade to {}", fixed.join(", ")));
    }
    v
}

fn cdx_document(
    metadata_component: Option<Value>,
    components: Vec<Value>,
    vulns: Vec<Value>,
) -> Value {
    let mut metadata = json!({
        "timestamp": patchline_core::timestamp::format_unix_ms(patchline_engine::now_ms()),
        "tools": {"components": [{"type": "application", "name": TOOL, "version": VERSION}]},
    });
    if let Some(c) = metadata_component {
        metadata["component"] = c;
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "vulnerabilities": vulns,
    })
}

fn fixed_of(rows: &[AffectedArtifact]) -> Vec<String> {
    let mut fixed: Vec<String> = rows
        .iter()
        .flat_map(|r| r.components.iter().filter_map(|c| c.fixed.clone()))
        .collect();
    fixed.sort();
    fixed.dedup();
    fixed
}

/// `affected ID --format cyclonedx` (or an alias: every record naming
/// it): the affected artifacts (`platform` components, their affected
/// packages inside, each once however many records affect it) and each
/// record as a vulnerability affecting those packages (the artifact
/// itself for a failure).
pub fn cyclonedx_affected(findings: &[(&Record, Vec<AffectedArtifact>)]) -> Value {
    // artifact -> (its component, the purls inside already listed)
    let mut artifacts: BTreeMap<String, (Value, BTreeMap<String, Value>)> = BTreeMap::new();
    let mut vulns = Vec::new();
    for (record, rows) in findings {
        let mut refs = Vec::new();
        for row in rows {
            let artifact_ref = format!("artifact:{}", row.artifact);
            let (_, inner) = artifacts.entry(row.artifact.clone()).or_insert_with(|| {
                (
                    json!({
                        "type": "platform",
                        "bom-ref": artifact_ref,
                        "name": row.artifact,
                        "properties": [
                            {"name": "patchline:kind", "value": row.kind.as_str()},
                            {"name": "patchline:tenant", "value": row.tenant},
                            {"name": "patchline:path", "value": row.path.join(" > ")},
                        ],
                    }),
                    BTreeMap::new(),
                )
            });
            if row.components.is_empty() {
                refs.push(artifact_ref.clone());
            }
            for c in &row.components {
                let r = format!("{artifact_ref}|{}", c.purl);
                inner
                    .entry(r.clone())
                    .or_insert_with(|| cdx_library(&c.purl, &r));
                refs.push(r);
            }
        }
        refs.sort();
        refs.dedup();
        vulns.push(cdx_vulnerability(record, refs, &fixed_of(rows)));
    }
    let components = artifacts
        .into_values()
        .map(|(mut c, inner)| {
            if !inner.is_empty() {
                c["components"] = json!(inner.into_values().collect::<Vec<_>>());
            }
            c
        })
        .collect();
    cdx_document(None, components, vulns)
}

/// `show ID --format cyclonedx`: the artifact's SBOM — its effective
/// inventory as library components — and the records affecting it.
pub fn cyclonedx_sbom(
    artifact: &AffectedArtifact,
    purls: &[String],
    findings: &[(&Record, Vec<AffectedArtifact>)],
) -> Value {
    let subject = json!({
        "type": "platform",
        "bom-ref": format!("artifact:{}", artifact.artifact),
        "name": artifact.artifact,
        "properties": [
            {"name": "patchline:kind", "value": artifact.kind.as_str()},
            {"name": "patchline:tenant", "value": artifact.tenant},
        ],
    });
    // One component per purl; its bom-ref is the purl itself.
    let mut by_purl: BTreeMap<&str, Value> = BTreeMap::new();
    for p in purls {
        by_purl.entry(p).or_insert_with(|| cdx_library(p, p));
    }
    let vulns = findings
        .iter()
        .map(|(record, rows)| {
            let mut refs: Vec<String> = rows
                .iter()
                .flat_map(|r| r.components.iter().map(|c| c.purl.clone()))
                .filter(|p| by_purl.contains_key(p.as_str()))
                .collect();
            refs.sort();
            refs.dedup();
            if refs.is_empty() {
                refs.push(format!("artifact:{}", artifact.artifact));
            }
            cdx_vulnerability(record, refs, &fixed_of(rows))
        })
        .collect();
    cdx_document(Some(subject), by_purl.into_values().collect(), vulns)
}

/// States the filters and what they left out in a SARIF or CycloneDX
/// document (a run's `properties`, the BOM's `metadata.properties`), so
/// that an empty document under a filter never reads as "not affected".
pub fn note_filters(doc: &mut Value, filters: &Value) {
    if doc.get("runs").is_some() {
        doc["runs"][0]["properties"] = json!({"patchline:filters": filters});
    } else {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "none".to_string(),
            other => other.to_string(),
        };
        doc["metadata"]["properties"] = json!([
            {"name": "patchline:filter:severity", "value": text(&filters["severity"])},
            {"name": "patchline:filter:ignore_unfixed", "value": text(&filters["ignore_unfixed"])},
            {"name": "patchline:filter:left_out", "value": text(&filters["left_out"])},
        ]);
    }
}
