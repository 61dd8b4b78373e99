//! Advisories and failures as patchline evaluates them: an OSV record
//! compiled into entries (target ecosystem, package name, ranges parsed in
//! the ecosystem's version scheme) evaluated exactly as the OSV schema's
//! `IsVulnerable` pseudocode says, plus artifact-scoped failures. The
//! [`AdvisoryDb`] indexes open entries by package name for the
//! new-artifact check.

use std::collections::HashMap;

use patchline_formats::osv;
use patchline_versions::{Scheme, Version};

use crate::catalog::ArtIdx;
use crate::ecosystem::{PurlType, Target, normalize_name};
use crate::error::AdvisoryError;
use crate::model::AdvisoryId;
use crate::notice::Severity;
use crate::severity::Rating;
use crate::text;
use crate::timestamp::{Instant, parse_rfc3339};

/// Most `affected` entries, ranges, events and versions evaluated per
/// advisory: bounds the work one published record can cause.
pub const AFFECTED_MAX: usize = 10_000;
pub const EVENTS_MAX: usize = 10_000;
pub const VERSIONS_MAX: usize = 100_000;

/// Index of an advisory or failure in the [`AdvisoryDb`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdvIdx(pub u32);

#[derive(Clone, Debug)]
enum Event {
    /// `None` is `"0"`: before every version.
    Introduced(Option<Version>),
    Fixed(Version),
    LastAffected(Version),
}

impl Event {
    fn version(&self) -> Option<&Version> {
        match self {
            Event::Introduced(v) => v.as_ref(),
            Event::Fixed(v) | Event::LastAffected(v) => Some(v),
        }
    }
}

/// One `SEMVER` or `ECOSYSTEM` range, events sorted by version.
#[derive(Clone, Debug)]
struct CompiledRange {
    scheme: Scheme,
    events: Vec<Event>,
    /// `None` inside is `"*"` (infinity); an empty list means no limit.
    limits: Vec<Option<Version>>,
}

/// What a range evaluation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The version that fixes it, when the advisory names one.
    pub fixed: Option<String>,
}

/// One `affected[]` entry that patchline can evaluate.
#[derive(Clone, Debug)]
pub struct Entry {
    pub ecosystem: String,
    pub target: Target,
    /// Normalised package name (source package for distributions).
    pub name: String,
    ranges: Vec<CompiledRange>,
    /// Explicit `versions`: the version when it parses (it keeps its
    /// text), else the text.
    versions: Vec<Listed>,
}

/// A version an entry lists. A parsed version keeps its own text, so the
/// text is not kept twice (listed versions were a large part of a loaded
/// record's memory).
#[derive(Clone, Debug)]
enum Listed {
    Parsed(Version),
    Unparsed(Box<str>),
}

impl Listed {
    fn text(&self) -> &str {
        match self {
            Listed::Parsed(v) => v.as_str(),
            Listed::Unparsed(t) => t,
        }
    }
}

impl Entry {
    /// `IsVulnerable` of the OSV schema for one package version; `None` when
    /// not affected. A version that does not parse in a range's scheme
    /// cannot be inside that range.
    pub fn evaluate(&self, version: &str) -> Option<Hit> {
        let parsed = self.target.scheme.parse(version).ok();
        self.evaluate_parsed(version, parsed.as_ref())
    }

    /// [`Entry::evaluate`] with the version already parsed in the entry's
    /// scheme (components keep theirs): the hot path parses nothing.
    pub fn evaluate_parsed(&self, version: &str, parsed: Option<&Version>) -> Option<Hit> {
        debug_assert!(parsed.is_none_or(|p| p.scheme() == self.target.scheme));
        let mut in_range = None;
        for range in &self.ranges {
            let other;
            let v = if range.scheme == self.target.scheme {
                parsed
            } else {
                other = range.scheme.parse(version).ok();
                other.as_ref()
            };
            let Some(v) = v else { continue };
            if let Some(fixed) = range.contains(v) {
                in_range = Some(fixed);
                break;
            }
        }
        if let Some(fixed) = in_range {
            return Some(Hit { fixed });
        }
        let listed = self.versions.iter().any(|l| {
            l.text() == version || matches!((l, parsed), (Listed::Parsed(a), Some(b)) if a == b)
        });
        listed.then(|| Hit {
            fixed: parsed.and_then(|v| self.next_fix(v)),
        })
    }

    /// The smallest `fixed` above `v` in any range of the entry's scheme.
    fn next_fix(&self, v: &Version) -> Option<String> {
        self.ranges
            .iter()
            .filter(|r| r.scheme == self.target.scheme)
            .flat_map(|r| r.events.iter())
            .filter_map(|e| match e {
                Event::Fixed(f) if f > v => Some(f),
                _ => None,
            })
            .min()
            .map(|f| f.as_str().to_string())
    }
}

impl CompiledRange {
    /// `Some(fix)` when `v` is inside the range; the fix is the first
    /// `fixed` event after the introduction that applies.
    fn contains(&self, v: &Version) -> Option<Option<String>> {
        let before_limits = self.limits.is_empty()
            || self.limits.iter().any(|l| match l {
                None => true,
                Some(l) => v < l,
            });
        if !before_limits {
            return None;
        }
        let mut vulnerable = false;
        let mut last_intro = None;
        for (i, e) in self.events.iter().enumerate() {
            match e {
                Event::Introduced(intro) => {
                    if intro.as_ref().is_none_or(|iv| v >= iv) {
                        vulnerable = true;
                        last_intro = Some(i);
                    }
                }
                Event::Fixed(f) => {
                    if v >= f {
                        vulnerable = false;
                    }
                }
                Event::LastAffected(l) => {
                    if v > l {
                        vulnerable = false;
                    }
                }
            }
        }
        if !vulnerable {
            return None;
        }
        let fix = last_intro.and_then(|i| {
            self.events[i + 1..].iter().find_map(|e| match e {
                Event::Fixed(f) => Some(f.as_str().to_string()),
                _ => None,
            })
        });
        Some(fix)
    }
}

/// Truncates the free text of a record (it is copied into notices and
/// events) and drops aliases, upstream and related ids beyond the bounds
/// of [`text`]; answers what it dropped, to be reported with the record.
fn bound_text(record: &mut osv::Advisory) -> Vec<String> {
    text::truncate_opt(&mut record.summary, text::SUMMARY_LEN_MAX);
    text::truncate_opt(&mut record.details, text::DETAILS_LEN_MAX);
    let mut dropped = Vec::new();
    for (field, list) in [
        ("aliases", &mut record.aliases),
        ("upstream", &mut record.upstream),
        ("related", &mut record.related),
    ] {
        let before = list.len();
        list.retain(|a| a.len() <= text::ALIAS_LEN_MAX);
        let long = before - list.len();
        let past = list.len().saturating_sub(text::ALIASES_MAX);
        list.truncate(text::ALIASES_MAX);
        if long + past > 0 {
            dropped.push(format!(
                "{field}: {} ids not kept ({long} longer than {} bytes, {past} past the first {}): they neither find nor merge the record",
                long + past,
                text::ALIAS_LEN_MAX,
                text::ALIASES_MAX
            ));
        }
    }
    dropped
}

/// A compiled OSV advisory.
#[derive(Clone, Debug)]
pub struct Advisory {
    pub id: AdvisoryId,
    pub modified: Instant,
    pub withdrawn: bool,
    pub entries: Vec<Entry>,
    /// Entries (or ranges) that cannot be evaluated, with the reason:
    /// stored and reported, never silently dropped.
    pub unsupported: Vec<String>,
    /// The record's severity (read once, when compiled).
    pub rating: Option<Rating>,
    pub osv: osv::Advisory,
}

impl Advisory {
    /// Compiles an OSV record. Errors are for records that are not valid
    /// OSV; ecosystems patchline cannot evaluate end up in `unsupported`.
    pub fn compile(record: osv::Advisory) -> Result<Advisory, AdvisoryError> {
        Self::compile_checked(record, AdvisoryId::new)
    }

    /// Compiles a record read back from the store, whose id was accepted
    /// when it was published (see [`AdvisoryId::from_stored`]).
    pub fn compile_stored(record: osv::Advisory) -> Result<Advisory, AdvisoryError> {
        Self::compile_checked(record, AdvisoryId::from_stored)
    }

    fn compile_checked(
        mut record: osv::Advisory,
        make_id: fn(String) -> Result<AdvisoryId, crate::CatalogError>,
    ) -> Result<Advisory, AdvisoryError> {
        let dropped = bound_text(&mut record);
        let id = make_id(record.id.clone()).map_err(|e| AdvisoryError::Invalid {
            id: record.id.chars().take(80).collect(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| AdvisoryError::Invalid {
            id: id.to_string(),
            message,
        };
        let modified = parse_rfc3339(&record.modified).ok_or_else(|| {
            invalid(format!(
                "modified {:?} is not an RFC 3339 timestamp",
                record.modified
            ))
        })?;
        if record.affected.len() > AFFECTED_MAX {
            return Err(invalid(format!(
                "{} affected entries; at most {AFFECTED_MAX} are evaluated",
                record.affected.len()
            )));
        }
        let mut entries = Vec::new();
        let mut unsupported = dropped;
        for (i, affected) in record.affected.iter().enumerate() {
            let Some(package) = &affected.package else {
                unsupported.push(format!("affected[{i}]: no package"));
                continue;
            };
            let target = match Target::parse(&package.ecosystem) {
                Ok(t) => t,
                Err(reason) => {
                    unsupported.push(format!("affected[{i}] ({}): {reason}", package.name));
                    continue;
                }
            };
            let mut ranges = Vec::new();
            let mut events_total = 0usize;
            for (j, range) in affected.ranges.iter().enumerate() {
                events_total += range.events.len();
                if events_total > EVENTS_MAX {
                    return Err(invalid(format!(
                        "affected[{i}]: more than {EVENTS_MAX} events"
                    )));
                }
                let scheme = match range.ty {
                    osv::RangeType::Semver => Scheme::Semver,
                    osv::RangeType::Ecosystem => target.scheme,
                    // Git ranges need the repository; the `versions` list
                    // carries what they mean for released versions.
                    osv::RangeType::Git => continue,
                };
                match compile_range(scheme, &range.events) {
                    Ok(r) => ranges.push(r),
                    Err(reason) => unsupported.push(format!(
                        "affected[{i}].ranges[{j}] ({} {}): {reason}",
                        package.ecosystem, package.name
                    )),
                }
            }
            if affected.versions.len() > VERSIONS_MAX {
                return Err(invalid(format!(
                    "affected[{i}]: more than {VERSIONS_MAX} versions"
                )));
            }
            let versions = affected
                .versions
                .iter()
                .map(|v| match target.scheme.parse(v) {
                    Ok(parsed) => Listed::Parsed(parsed),
                    Err(_) => Listed::Unparsed(v.as_str().into()),
                })
                .collect();
            entries.push(Entry {
                ecosystem: package.ecosystem.clone(),
                name: normalize_name(target.purl_type, &package.name),
                target,
                ranges,
                versions,
            });
        }
        Ok(Advisory {
            id,
            modified,
            withdrawn: record.withdrawn.is_some(),
            entries,
            unsupported,
            rating: crate::severity::rate(&record),
            osv: record,
        })
    }

    /// Is the advisory evaluated at all?
    pub fn is_open(&self) -> bool {
        !self.withdrawn
    }

    /// The record's severity and its source, by the precedence of
    /// [`crate::severity`] (CVSS v4, v3, a distribution's priority, CVSS
    /// v2, words).
    pub fn rating(&self) -> Option<&Rating> {
        self.rating.as_ref()
    }

    /// The level of [`Advisory::rating`].
    pub fn severity(&self) -> Option<Severity> {
        self.rating.as_ref().map(|r| r.level)
    }
}

fn compile_range(scheme: Scheme, events: &[osv::Event]) -> Result<CompiledRange, String> {
    let parse = |v: &str| {
        if v.len() > text::VERSION_LEN_MAX {
            return Err(format!(
                "an event version is longer than {} bytes",
                text::VERSION_LEN_MAX
            ));
        }
        scheme
            .parse(v)
            .map_err(|e| format!("event version {v:?}: {e}"))
    };
    let mut out = Vec::with_capacity(events.len());
    let mut limits = Vec::new();
    for e in events {
        match e {
            osv::Event::Introduced(v) if v == "0" => out.push(Event::Introduced(None)),
            osv::Event::Introduced(v) => out.push(Event::Introduced(Some(parse(v)?))),
            osv::Event::Fixed(v) => out.push(Event::Fixed(parse(v)?)),
            osv::Event::LastAffected(v) => out.push(Event::LastAffected(parse(v)?)),
            osv::Event::Limit(v) if v.contains('*') => limits.push(None),
            osv::Event::Limit(v) => limits.push(Some(parse(v)?)),
        }
    }
    if !out.iter().any(|e| matches!(e, Event::Introduced(_))) {
        return Err("no introduced event".into());
    }
    // The schema's `sorted(events)` read as a stable sort by version: at
    // equal versions the events keep the order the record lists them in,
    // as osv.dev's Python evaluation does (`introduced 0, fixed V,
    // introduced V, fixed W` affects V; `introduced V, fixed V` does not).
    // `introduced 0` is below every version.
    out.sort_by(|a, b| match (a.version(), b.version()) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    });
    Ok(CompiledRange {
        scheme,
        events: out,
        limits,
    })
}

/// A failure of one artifact, published by its owner; it propagates to every
/// descendant that does not declare it fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub id: AdvisoryId,
    pub artifact: ArtIdx,
    pub summary: String,
    pub details: Option<String>,
    pub severity: Option<String>,
    pub modified: Instant,
    pub modified_text: String,
    pub withdrawn: bool,
}

impl Failure {
    /// The failure with its free text cut to the bounds of [`text`].
    pub fn bounded(mut self) -> Failure {
        text::truncate(&mut self.summary, text::SUMMARY_LEN_MAX);
        text::truncate_opt(&mut self.details, text::DETAILS_LEN_MAX);
        text::truncate_opt(&mut self.severity, text::SEVERITY_LEN_MAX);
        self
    }
}

/// An advisory or a failure.
#[derive(Clone, Debug)]
pub enum Record {
    Advisory(Advisory),
    Failure(Failure),
}

impl Record {
    pub fn id(&self) -> &AdvisoryId {
        match self {
            Record::Advisory(a) => &a.id,
            Record::Failure(f) => &f.id,
        }
    }

    pub fn modified(&self) -> Instant {
        match self {
            Record::Advisory(a) => a.modified,
            Record::Failure(f) => f.modified,
        }
    }

    pub fn is_open(&self) -> bool {
        match self {
            Record::Advisory(a) => !a.withdrawn,
            Record::Failure(f) => !f.withdrawn,
        }
    }

    /// How severe the record is: an advisory's [`Rating`], a failure's
    /// level word as its publisher gave it (source `word`).
    pub fn rating(&self) -> Option<Rating> {
        match self {
            Record::Advisory(a) => a.rating.clone(),
            Record::Failure(f) => {
                let word = f.severity.as_deref()?;
                Some(Rating {
                    level: Severity::parse_word(word)?,
                    score: None,
                    source: crate::severity::RatingSource::Word,
                    vector: word.to_string(),
                })
            }
        }
    }

    /// The level of [`Record::rating`].
    pub fn severity(&self) -> Option<Severity> {
        match self {
            Record::Advisory(a) => a.severity(),
            Record::Failure(f) => f.severity.as_deref().and_then(Severity::parse_word),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Record::Advisory(_) => "advisory",
            Record::Failure(_) => "failure",
        }
    }
}

/// What publishing a record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    New(AdvIdx),
    /// A newer `modified`: the record was replaced and must be re-evaluated.
    Updated(AdvIdx),
    /// Same `modified`: nothing to do.
    Unchanged(AdvIdx),
    /// An older `modified` than the stored one: ignored.
    Stale(AdvIdx),
}

impl Published {
    pub fn idx(self) -> AdvIdx {
        match self {
            Published::New(i)
            | Published::Updated(i)
            | Published::Unchanged(i)
            | Published::Stale(i) => i,
        }
    }

    pub fn changed(self) -> bool {
        matches!(self, Published::New(_) | Published::Updated(_))
    }
}

/// Every advisory and failure, with the index of open advisory entries by
/// package name and of open failures by artifact.
#[derive(Debug, Default)]
pub struct AdvisoryDb {
    records: Vec<Record>,
    by_id: HashMap<AdvisoryId, AdvIdx>,
    /// Normalised package name -> (purl type, advisory, entry index).
    by_name: HashMap<Box<str>, Vec<(PurlType, AdvIdx, u32)>>,
    /// Artifact -> open failures published on it.
    by_artifact: HashMap<ArtIdx, Vec<AdvIdx>>,
    /// Hash of a name in ASCII lower case (an advisory's id, alias or
    /// upstream id) -> the advisories with that name (the hash only
    /// narrows: a lookup compares the names).
    by_alias: HashMap<u64, Vec<AdvIdx>>,
    /// Bumped whenever what matches can change (caches key on it).
    generation: u64,
}

impl AdvisoryDb {
    pub fn new() -> AdvisoryDb {
        AdvisoryDb::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, idx: AdvIdx) -> &Record {
        &self.records[idx.0 as usize]
    }

    /// Changes whenever a record is added or replaced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn lookup(&self, id: &str) -> Option<AdvIdx> {
        self.by_id.get(id).copied()
    }

    /// The advisories that name `alias` in their `aliases` or `upstream`
    /// (`CVE-2023-45803` names PYSEC-2023-212, its GHSA, the USNs and DSAs
    /// of it; ASCII case ignored: `cve-2023-45803` too), sorted by id.
    pub fn naming(&self, alias: &str) -> Vec<AdvIdx> {
        let mut found: Vec<AdvIdx> = self
            .with_name(alias)
            .filter(|&i| match self.get(i) {
                Record::Advisory(a) => a
                    .osv
                    .aliases
                    .iter()
                    .chain(&a.osv.upstream)
                    .any(|x| x.eq_ignore_ascii_case(alias)),
                Record::Failure(_) => false,
            })
            .collect();
        found.sort_by(|x, y| self.get(*x).id().cmp(self.get(*y).id()));
        found.dedup();
        found
    }

    /// The other advisories that agree with advisory `adv`: those sharing
    /// one of its names (id, alias or upstream id, ASCII case ignored) —
    /// PYSEC-2023-212 and GHSA-g4mx-q9vg-27p4 both alias CVE-2023-45803; a
    /// record whose id is another's alias agrees with it too. Sorted by
    /// index, `adv` left out; empty for a failure.
    pub fn agreeing(&self, adv: AdvIdx) -> Vec<AdvIdx> {
        let Some(Record::Advisory(a)) = self.records.get(adv.0 as usize) else {
            return Vec::new();
        };
        // The candidates under any of its names' hashes, each once, then
        // each checked once against the set of its names: linear in the
        // names and the candidates (checking every candidate against every
        // name was their product, and many records sharing hundreds of
        // aliases made one write take minutes).
        let mut found: Vec<AdvIdx> = advisory_names(a)
            .flat_map(|name| self.with_name(name))
            .filter(|&other| other != adv)
            .collect();
        found.sort_unstable();
        found.dedup();
        let mine: std::collections::HashSet<String> =
            advisory_names(a).map(str::to_ascii_lowercase).collect();
        found.retain(|&other| match self.get(other) {
            Record::Advisory(b) => {
                advisory_names(b).any(|x| mine.contains(&x.to_ascii_lowercase()))
            }
            Record::Failure(_) => false,
        });
        found
    }

    /// The advisories indexed under `name`'s hash (to be checked by name).
    fn with_name(&self, name: &str) -> impl Iterator<Item = AdvIdx> + '_ {
        self.by_alias
            .get(&name_hash(name))
            .into_iter()
            .flatten()
            .copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (AdvIdx, &Record)> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, r)| (AdvIdx(i as u32), r))
    }

    /// Stores a record, or replaces the stored one with the same id when the
    /// new one is more recently modified (CONTRACT.md §4.5).
    pub fn publish(&mut self, record: Record) -> Result<Published, AdvisoryError> {
        if let Some(idx) = self.lookup(record.id().as_str()) {
            let old = self.get(idx);
            if std::mem::discriminant(old) != std::mem::discriminant(&record) {
                return Err(AdvisoryError::IdTaken {
                    id: record.id().to_string(),
                    other: old.kind(),
                });
            }
            if let (Record::Failure(a), Record::Failure(b)) = (old, &record)
                && a.artifact != b.artifact
            {
                return Err(AdvisoryError::IdTaken {
                    id: record.id().to_string(),
                    other: "failure of another artifact",
                });
            }
            return Ok(match record.modified().cmp(&old.modified()) {
                std::cmp::Ordering::Greater => {
                    self.unindex(idx);
                    self.records[idx.0 as usize] = record;
                    self.index(idx);
                    self.generation += 1;
                    Published::Updated(idx)
                }
                std::cmp::Ordering::Equal => Published::Unchanged(idx),
                std::cmp::Ordering::Less => Published::Stale(idx),
            });
        }
        let idx = AdvIdx(self.records.len() as u32);
        self.by_id.insert(record.id().clone(), idx);
        self.records.push(record);
        self.index(idx);
        self.generation += 1;
        Ok(Published::New(idx))
    }

    /// Puts a stored record at its index as another node committed it (a
    /// follower catching up): replaces the record there (same id) or
    /// appends it. `Err` names what does not fit; the caller reloads.
    pub fn restore(&mut self, idx: AdvIdx, record: Record) -> Result<(), String> {
        let i = idx.0 as usize;
        if i < self.records.len() {
            if self.records[i].id() != record.id() {
                return Err(format!(
                    "record {} at the index of {}",
                    record.id(),
                    self.records[i].id()
                ));
            }
            self.unindex(idx);
            self.records[i] = record;
        } else if i == self.records.len() {
            if self.by_id.contains_key(record.id()) {
                return Err(format!("record {} twice", record.id()));
            }
            self.by_id.insert(record.id().clone(), idx);
            self.records.push(record);
        } else {
            return Err(format!("record index {i} past the end"));
        }
        self.index(idx);
        self.generation += 1;
        Ok(())
    }

    fn index(&mut self, idx: AdvIdx) {
        if let Record::Advisory(a) = &self.records[idx.0 as usize] {
            for name in advisory_names(a) {
                let list = self.by_alias.entry(name_hash(name)).or_default();
                if list.last() != Some(&idx) && !list.contains(&idx) {
                    list.push(idx);
                }
            }
        }
        match &self.records[idx.0 as usize] {
            Record::Advisory(a) if a.is_open() => {
                for (e, entry) in a.entries.iter().enumerate() {
                    self.by_name
                        .entry(entry.name.as_str().into())
                        .or_default()
                        .push((entry.target.purl_type, idx, e as u32));
                }
            }
            Record::Failure(f) if !f.withdrawn => {
                self.by_artifact.entry(f.artifact).or_default().push(idx);
            }
            _ => {}
        }
    }

    fn unindex(&mut self, idx: AdvIdx) {
        match &self.records[idx.0 as usize] {
            Record::Advisory(a) => {
                for name in advisory_names(a) {
                    let key = name_hash(name);
                    if let Some(list) = self.by_alias.get_mut(&key) {
                        list.retain(|&i| i != idx);
                        if list.is_empty() {
                            self.by_alias.remove(&key);
                        }
                    }
                }
                for entry in &a.entries {
                    if let Some(list) = self.by_name.get_mut(entry.name.as_str()) {
                        list.retain(|&(_, i, _)| i != idx);
                    }
                }
            }
            Record::Failure(f) => {
                if let Some(list) = self.by_artifact.get_mut(&f.artifact) {
                    list.retain(|&i| i != idx);
                }
            }
        }
    }

    /// Open advisory entries naming package `name` in ecosystems of `ty`.
    pub fn entries_for(
        &self,
        ty: PurlType,
        name: &str,
    ) -> impl Iterator<Item = (AdvIdx, &Entry)> + '_ {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(move |(t, _, _)| *t == ty)
            .filter_map(move |&(_, idx, e)| match self.get(idx) {
                Record::Advisory(a) => a.entries.get(e as usize).map(|entry| (idx, entry)),
                Record::Failure(_) => None,
            })
    }

    /// Open failures published on `artifact`.
    pub fn failures_on(&self, artifact: ArtIdx) -> &[AdvIdx] {
        self.by_artifact
            .get(&artifact)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// An advisory's names: its id, aliases and upstream ids (blank ones
/// left out: they name nothing).
fn advisory_names(a: &Advisory) -> impl Iterator<Item = &str> {
    std::iter::once(a.id.as_str())
        .chain(a.osv.aliases.iter().map(String::as_str))
        .chain(a.osv.upstream.iter().map(String::as_str))
        .filter(|n| !n.trim().is_empty())
}

/// A name's hash in ASCII lower case (the key of `AdvisoryDb::by_alias`).
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for b in name.bytes() {
        b.to_ascii_lowercase().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Advisory {
        let record = osv::parse_json(json.as_bytes()).unwrap();
        Advisory::compile(record).unwrap()
    }

    /// Records that share a name agree (any case, id against alias or
    /// upstream id); a record republished without the name stops agreeing;
    /// `naming` reads the same index.
    #[test]
    fn records_agree_through_a_shared_name() {
        let rec = |id: &str, modified: &str, aliases: &str, upstream: &str| {
            Record::Advisory(entry(&format!(
                r#"{{"id":"{id}","modified":"{modified}","aliases":[{aliases}],"upstream":[{upstream}],"affected":[]}}"#
            )))
        };
        let mut db = AdvisoryDb::new();
        for r in [
            rec("GHSA-1", "2024-01-01T00:00:00Z", r#""CVE-2023-1""#, ""),
            rec("PYSEC-1", "2024-01-01T00:00:00Z", r#""cve-2023-1""#, ""),
            rec("UBUNTU-X", "2024-01-01T00:00:00Z", "", r#""ghsa-1""#),
            rec("OTHER-1", "2024-01-01T00:00:00Z", r#""CVE-2023-2""#, ""),
        ] {
            db.publish(r).unwrap();
        }
        fn ids(db: &AdvisoryDb, list: Vec<AdvIdx>) -> Vec<String> {
            list.into_iter()
                .map(|i| db.get(i).id().to_string())
                .collect()
        }
        let ghsa = db.lookup("GHSA-1").unwrap();
        assert_eq!(ids(&db, db.agreeing(ghsa)), ["PYSEC-1", "UBUNTU-X"]);
        assert_eq!(
            ids(&db, db.agreeing(db.lookup("UBUNTU-X").unwrap())),
            ["GHSA-1"]
        );
        assert_eq!(
            ids(&db, db.agreeing(db.lookup("OTHER-1").unwrap())),
            Vec::<String>::new()
        );
        assert_eq!(ids(&db, db.naming("Cve-2023-1")), ["GHSA-1", "PYSEC-1"]);
        assert_eq!(
            ids(&db, db.naming("GHSA-1")),
            ["UBUNTU-X"],
            "an upstream id"
        );
        assert_eq!(ids(&db, db.naming("CVE-2023-3")), Vec::<String>::new());
        // PYSEC-1 drops the alias: it no longer agrees, nor is found by it.
        db.publish(rec(
            "PYSEC-1",
            "2024-02-01T00:00:00Z",
            r#""CVE-2023-9""#,
            "",
        ))
        .unwrap();
        assert_eq!(ids(&db, db.agreeing(ghsa)), ["UBUNTU-X"]);
        assert_eq!(ids(&db, db.naming("CVE-2023-1")), ["GHSA-1"]);
        assert_eq!(ids(&db, db.naming("cve-2023-9")), ["PYSEC-1"]);
    }

    /// Aliases, upstream and related ids past the bounds are not kept, and
    /// the record says so; blank names name nothing.
    #[test]
    fn ids_past_the_bounds_are_reported() {
        let many: Vec<String> = (0..300).map(|i| format!("\"CVE-2099-{i}\"")).collect();
        let long = format!("\"{}\"", "x".repeat(300));
        let a = entry(&format!(
            r#"{{"id":"T-1","modified":"2024-01-01T00:00:00Z","aliases":[{}],"upstream":[{long}, " "],"affected":[]}}"#,
            many.join(",")
        ));
        assert_eq!(a.osv.aliases.len(), text::ALIASES_MAX);
        assert_eq!(a.osv.upstream, [" "]);
        assert_eq!(a.unsupported.len(), 2, "{:?}", a.unsupported);
        assert!(
            a.unsupported[0].starts_with("aliases: 44 ids not kept"),
            "{:?}",
            a.unsupported
        );
        assert!(
            a.unsupported[1].starts_with("upstream: 1 ids not kept"),
            "{:?}",
            a.unsupported
        );
        let mut db = AdvisoryDb::new();
        db.publish(Record::Advisory(a)).unwrap();
        let b = entry(
            r#"{"id":"T-2","modified":"2024-01-01T00:00:00Z","upstream":[" "],"affected":[]}"#,
        );
        db.publish(Record::Advisory(b)).unwrap();
        assert_eq!(
            db.agreeing(db.lookup("T-2").unwrap()),
            vec![],
            "a blank name is no name"
        );
    }

    fn doc(ecosystem: &str, events: &str, versions: &str) -> String {
        format!(
            r#"{{"id":"T-1","modified":"2024-01-01T00:00:00Z","affected":[{{"package":{{"ecosystem":"{ecosystem}","name":"p"}},"ranges":[{{"type":"ECOSYSTEM","events":[{events}]}}],"versions":[{versions}]}}]}}"#
        )
    }

    #[test]
    fn osv_evaluation_rules() {
        let a = entry(&doc(
            "Debian:12",
            r#"{"introduced":"0"},{"fixed":"1.2-1"}"#,
            "",
        ));
        let e = &a.entries[0];
        assert_eq!(
            e.evaluate("1.1-1"),
            Some(Hit {
                fixed: Some("1.2-1".into())
            })
        );
        assert_eq!(e.evaluate("1.2-1"), None);
        assert_eq!(e.evaluate("1:1.0-1"), None, "epoch makes it newer");
        assert!(e.evaluate("1.2-1~deb12u1").is_some(), "tilde sorts first");

        // Two pairs out of order, as in PYSEC-2023-212.
        let a = entry(&doc(
            "PyPI",
            r#"{"introduced":"2.0.0"},{"fixed":"2.0.7"},{"introduced":"0"},{"fixed":"1.26.18"}"#,
            "",
        ));
        let e = &a.entries[0];
        assert!(e.evaluate("1.26.17").is_some());
        assert!(e.evaluate("1.26.18").is_none());
        assert_eq!(e.evaluate("2.0.6").unwrap().fixed.as_deref(), Some("2.0.7"));
        assert!(e.evaluate("2.0.7").is_none());

        // last_affected includes the version itself.
        let a = entry(&doc(
            "PyPI",
            r#"{"introduced":"0"},{"last_affected":"1.11.0"}"#,
            "",
        ));
        assert!(a.entries[0].evaluate("1.11.0").is_some());
        assert!(a.entries[0].evaluate("1.11.1").is_none());
        assert_eq!(a.entries[0].evaluate("1.0").unwrap().fixed, None);

        // Limits bound the range; "*" is infinity.
        let a = entry(&doc("PyPI", r#"{"introduced":"1.0"},{"limit":"2.0"}"#, ""));
        assert!(a.entries[0].evaluate("1.5").is_some());
        assert!(a.entries[0].evaluate("2.0").is_none());
        let a = entry(&doc("PyPI", r#"{"introduced":"1.0"},{"limit":"*"}"#, ""));
        assert!(a.entries[0].evaluate("9.0").is_some());

        // Explicit versions count even outside every range.
        let a = entry(&doc("PyPI", r#"{"introduced":"5.0"}"#, r#""1.0""#));
        assert!(a.entries[0].evaluate("1.0").is_some());
        assert!(
            a.entries[0].evaluate("1.0.0").is_some(),
            "equal under PEP 440"
        );
        assert!(a.entries[0].evaluate("1.1").is_none());
    }

    #[test]
    fn unsupported_ecosystems_are_reported() {
        let a = entry(&doc("Android", r#"{"introduced":"0"}"#, ""));
        assert!(a.entries.is_empty());
        assert_eq!(a.unsupported.len(), 1);
        assert!(a.unsupported[0].contains("Android"), "{:?}", a.unsupported);
    }

    #[test]
    fn republishing_follows_modified() {
        let mut db = AdvisoryDb::new();
        let a = entry(&doc("PyPI", r#"{"introduced":"0"}"#, ""));
        assert!(matches!(
            db.publish(Record::Advisory(a.clone())),
            Ok(Published::New(_))
        ));
        assert!(matches!(
            db.publish(Record::Advisory(a.clone())),
            Ok(Published::Unchanged(_))
        ));
        let mut newer = a.clone();
        newer.modified = Instant(newer.modified.0 + 1);
        assert!(matches!(
            db.publish(Record::Advisory(newer)),
            Ok(Published::Updated(_))
        ));
        assert!(matches!(
            db.publish(Record::Advisory(a)),
            Ok(Published::Stale(_))
        ));
        assert_eq!(db.entries_for(PurlType::Pypi, "p").count(), 1);
    }
}
