//! The commands: read input, call the engine, print for a person or a
//! script.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use patchline_core::advisory::Failure as FailureRecord;
use patchline_core::doc::{bounded, screen_inventory};
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    Actor, Advisory, AdvisoryId, ArtIdx, ComponentHit, Kind, Mode, Published, Record, TenantId,
    Visibility,
};
use patchline_engine::report::{affected_rows, counts_by_kind, render_row};
use patchline_engine::{BatchItem, BatchReport, Engine};
use patchline_formats::inventory::{Format, Hint, detect, parse as parse_inventory};
use patchline_formats::osv;

use crate::CmdResult;
use crate::exit::Failure;
use crate::feed;
use crate::gate::{self, Gate};
use crate::output::{self, kinds_summary, progress_bar};
use crate::{OutFormat, export};

/// Largest advisory or inventory file read.
pub const FILE_LEN_MAX: u64 = 256 << 20;
/// Warnings printed per import before they are only counted.
const WARNINGS_SHOWN_MAX: usize = 20;

/// The engine for a command that writes: creates the catalog if needed
/// and holds the directory's lock (exit 5 while `serve` runs).
fn open_engine(data_dir: &Path) -> Result<Engine, Failure> {
    Engine::open(data_dir).map_err(Failure::from)
}

/// The engine for a bulk import of records: its store keeps the small
/// page cache it loaded with (BENCHMARKS.md, "Feeds").
fn open_import_engine(data_dir: &Path) -> Result<Engine, Failure> {
    let engine = open_engine(data_dir)?;
    engine
        .store()
        .use_bulk_cache()
        .map_err(|e| Failure::from(patchline_engine::EngineError::Store(e)))?;
    Ok(engine)
}

/// The engine for a command that changes what must already be there
/// (`remove`, `fail`, `import inventory`): like a read, a mistyped
/// `--data-dir` is exit 6 and creates nothing.
fn open_changer(data_dir: &Path) -> Result<Engine, Failure> {
    if !data_dir.join(patchline_store::DB_FILE).is_file() {
        return Err(Failure::from(patchline_engine::EngineError::Store(
            patchline_store::StoreError::NoCatalog(data_dir.display().to_string()),
        )));
    }
    open_engine(data_dir)
}

/// The engine for a command that only reads: the catalog must exist (a
/// mistyped `--data-dir` is exit 6, not an empty answer); beside a running
/// server it is opened read-only.
fn open_reader(data_dir: &Path) -> Result<Engine, Failure> {
    Engine::open_existing(data_dir).map_err(Failure::from)
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::rejected)?;
    if meta.len() > FILE_LEN_MAX {
        return Err(Failure::rejected(anyhow::anyhow!(
            "{}: {} bytes is more than the {} bytes accepted",
            path.display(),
            meta.len(),
            FILE_LEN_MAX
        )));
    }
    std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::rejected)
}

/// `import artifacts FILE.jsonl`.
pub fn import_artifacts(data_dir: &Path, file: &Path, update: bool, strict: bool) -> CmdResult {
    let started = Instant::now();
    let handle = File::open(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(Failure::rejected)?;
    let total = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let mut engine = open_engine(data_dir)?;
    let bar = progress_bar(total, "importing artifacts");
    let reader = BufReader::with_capacity(1 << 20, handle);
    let name = file.display().to_string();
    let mut warnings = Vec::new();
    let items = patchline_engine::jsonl::artifacts_with(
        reader,
        &name,
        strict,
        |w| warnings.push(w),
        |bytes| bar.set_position(bytes),
    );
    let mode = if update { Mode::Upsert } else { Mode::Create };
    let result = engine.apply_batch(items, mode, &Actor::Admin, &mut |_| {});
    bar.finish_and_clear();
    print_warnings(&warnings);
    let report = result.map_err(|e| Failure::from(e).with_note("nothing was imported"))?;
    let secs = started.elapsed().as_secs_f64();
    let total_items = report.created + report.updated + report.unchanged;
    println!(
        "{}: {} created, {} updated, {} unchanged in {:.2} s ({:.0} artifacts/s)",
        file.display(),
        report.created,
        report.updated,
        report.unchanged,
        secs,
        total_items as f64 / secs.max(1e-9)
    );
    print_batch_matches(&engine, &report);
    Ok(())
}

fn print_warnings(warnings: &[String]) {
    for w in warnings.iter().take(WARNINGS_SHOWN_MAX) {
        eprintln!("warning: {w}");
    }
    if warnings.len() > WARNINGS_SHOWN_MAX {
        eprintln!(
            "warning: … and {} more warnings",
            warnings.len() - WARNINGS_SHOWN_MAX
        );
    }
}

fn print_batch_matches(engine: &Engine, report: &BatchReport) {
    if report.affected_pairs == 0 {
        return;
    }
    let mut per_record: BTreeMap<String, usize> = BTreeMap::new();
    for m in &report.examples {
        *per_record
            .entry(engine.db().get(m.advisory).id().to_string())
            .or_default() += 1;
    }
    println!(
        "{} (artifact, advisory) pairs among the new or changed artifacts are affected by open advisories or failures{}:",
        report.affected_pairs,
        if report.examples.len() < report.affected_pairs {
            " (first ones shown)"
        } else {
            ""
        }
    );
    for (id, n) in per_record.iter().take(20) {
        println!("  {id}: {}", output::count(*n as u64, "artifact"));
    }
    if per_record.len() > 20 {
        println!("  … and {} more advisories", per_record.len() - 20);
    }
}

/// Records published per transaction by `import advisories`: an export of
/// 100,000 records is stored in steps, never held whole (a re-run skips
/// what an interrupted one stored, as unchanged).
pub const IMPORT_CHUNK: usize = 2_000;

/// `import advisories PATH...`: OSV files, folders, osv.dev exports
/// (`all.zip`) and folders of them. Each record is accepted or rejected on
/// its own; a JSON record whose `modified` equals the stored one is
/// skipped before it is read whole (an incremental re-import); the
/// accepted ones are stored in transactions of [`IMPORT_CHUNK`].
pub fn import_advisories(data_dir: &Path, paths: &[PathBuf]) -> CmdResult {
    let mut sources = feed::sources(paths)?;
    // What is stored, read without loading the records: a re-import that
    // changes nothing never loads them (the engine opens at the first
    // record to publish). Without a catalog, the engine makes one now.
    let stored: HashMap<String, patchline_core::timestamp::Instant> =
        match patchline_store::sqlite::SqliteStore::open_read_only(data_dir) {
            Ok(store) => store
                .advisory_modified()
                .map_err(|e| Failure::from(patchline_engine::EngineError::Store(e)))?
                .into_iter()
                .filter_map(|(id, m)| Some((id, parse_rfc3339(&m)?)))
                .collect(),
            Err(_) => HashMap::new(),
        };
    let mut engine: Option<Engine> = if stored.is_empty() {
        Some(open_import_engine(data_dir)?)
    } else {
        None
    };
    let total: usize = sources
        .iter()
        .map(|s| s.as_ref().map_or(1, feed::Source::len))
        .sum();
    let bar = progress_bar(total as u64, "reading advisories");
    let (mut rejected, mut skipped) = (0usize, 0usize);
    let mut chunk: Vec<(String, Advisory)> = Vec::new();
    let mut published: Vec<(String, Published)> = Vec::new();
    let flush = |engine: &mut Engine,
                 chunk: &mut Vec<(String, Advisory)>,
                 published: &mut Vec<(String, Published)>|
     -> Result<(), Failure> {
        if chunk.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = chunk.iter().map(|(n, _)| n.clone()).collect();
        let report = engine.publish_advisories(std::mem::take(chunk))?;
        published.extend(names.into_iter().zip(report.outcomes));
        Ok(())
    };
    for source in &mut sources {
        // A path that cannot be read, a zip that cannot be opened: its
        // own rejection; the other sources are read.
        let source = match source {
            Ok(source) => source,
            Err(f) => {
                bar.inc(1);
                bar.suspend(|| eprintln!("error: {:#}", f.error));
                rejected += 1;
                continue;
            }
        };
        let mut failed: Option<Failure> = None;
        feed::for_each_record(source, |name, bytes| {
            bar.inc(1);
            if failed.is_some() {
                return;
            }
            let parsed = bytes.and_then(|bytes| {
                // Incremental: the same `modified` as the stored record
                // is nothing to do.
                if let Some(head) = feed::head(&bytes) {
                    let same = match &engine {
                        Some(e) => e.db().lookup(&head.id).map(|i| e.db().get(i).modified()),
                        None => stored.get(&head.id).copied(),
                    };
                    if same.is_some_and(|s| parse_rfc3339(&head.modified) == Some(s)) {
                        return Ok(None);
                    }
                }
                let record = osv::parse_auto(&name, &bytes).map_err(Failure::rejected)?;
                let adv = Advisory::compile(record).map_err(Failure::rejected)?;
                if adv.modified.as_unix_ms()
                    > patchline_engine::now_ms() + patchline_engine::MODIFIED_SKEW_MAX_MS
                {
                    return Err(Failure::rejected(anyhow::anyhow!(
                        "{}: modified {} is in the future",
                        adv.id,
                        adv.osv.modified
                    )));
                }
                Ok(Some(adv))
            });
            match parsed {
                Ok(Some(adv)) => {
                    chunk.push((name, adv));
                    if engine.is_none() {
                        match open_import_engine(data_dir) {
                            Ok(e) => engine = Some(e),
                            Err(f) => {
                                failed = Some(f);
                                return;
                            }
                        }
                    }
                    if chunk.len() >= IMPORT_CHUNK
                        && let Some(e) = engine.as_mut()
                        && let Err(f) = flush(e, &mut chunk, &mut published)
                    {
                        failed = Some(f);
                    }
                }
                Ok(None) => skipped += 1,
                Err(f) => {
                    bar.suspend(|| eprintln!("error: {name}: {:#}", f.error));
                    rejected += 1;
                }
            }
        });
        if let Some(f) = failed {
            return Err(f);
        }
    }
    if let Some(e) = engine.as_mut() {
        flush(e, &mut chunk, &mut published)?;
    }
    bar.finish_and_clear();
    let (mut new, mut updated, mut unchanged, mut stale) = (0, 0, skipped, 0);
    for (_, o) in &published {
        match o {
            Published::New(_) => new += 1,
            Published::Updated(_) => updated += 1,
            Published::Unchanged(_) => unchanged += 1,
            Published::Stale(_) => stale += 1,
        }
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    writeln!(
        out,
        "{} advisories: {new} new, {updated} updated, {unchanged} unchanged, {stale} older than the stored version{}",
        published.len() + skipped,
        if rejected > 0 {
            format!(", {rejected} rejected")
        } else {
            String::new()
        }
    )?;
    if let Some(engine) = engine.as_mut() {
        engine.prepare();
    }
    let mut shown = 0;
    for (path, outcome) in &published {
        // Something was published: the engine is open.
        let Some(engine) = engine.as_mut() else {
            break;
        };
        let idx = outcome.idx();
        let Record::Advisory(adv) = engine.db().get(idx) else {
            continue;
        };
        for reason in &adv.unsupported {
            eprintln!("note: {path}: {}: not evaluated: {reason}", adv.id);
        }
        if !outcome.changed() {
            continue;
        }
        if adv.withdrawn {
            writeln!(out, "  {}: withdrawn, affects nothing", adv.id)?;
            continue;
        }
        let impact = engine.impact(idx);
        let n = impact.artifact_count();
        if n > 0 && shown < 50 {
            shown += 1;
            writeln!(
                out,
                "  {}: {} affected ({})",
                adv.id,
                n,
                kinds_summary(&counts_by_kind(engine.catalog(), &impact))
            )?;
        }
    }
    out.flush()?;
    if rejected > 0 && published.is_empty() && skipped == 0 {
        return Err(Failure::rejected(anyhow::anyhow!(
            "all {rejected} records were rejected: nothing was imported"
        )));
    }
    if rejected > 0 {
        return Err(Failure::partial(anyhow::anyhow!(
            "{rejected} of {total} records were rejected (the others were imported)"
        )));
    }
    Ok(())
}

/// `import inventory ARTIFACT FILE`: the artifact's own inventory becomes
/// the file's content.
pub fn import_inventory(
    data_dir: &Path,
    artifact: &str,
    file: &Path,
    format: Option<&str>,
    distro: Option<String>,
    strict: bool,
) -> CmdResult {
    let bytes = read_input(file)?;
    let format = match format {
        Some(f) => f
            .parse::<Format>()
            .map_err(|e| Failure::rejected(anyhow::anyhow!("{e}")))?,
        None => detect(&bytes).ok_or_else(|| {
            Failure::rejected(anyhow::anyhow!(
                "{}: cannot tell the format; pass --format (cyclonedx-json, cyclonedx-xml, spdx-json, dpkg-status, apk-installed, purls)",
                file.display()
            ))
        })?,
    };
    let hint = Hint {
        distro: distro.clone(),
    };
    let inventory = parse_inventory(format, &bytes, &hint)
        .map_err(|e| Failure::rejected(anyhow::anyhow!("{}: {e}", file.display())))?;
    let screened = screen_inventory(inventory, distro.as_deref(), strict).map_err(|e| {
        Failure::rejected(anyhow::anyhow!("{}: {e}", file.display())).with_note(if strict {
            "nothing was imported (--strict: the first component that cannot be read rejects the file)"
        } else {
            "nothing was imported"
        })
    })?;
    let skipped = screened.skipped;
    // Kept with the artifact, and shown now.
    let kept = bounded(screened.warnings);
    print_warnings(
        &kept
            .iter()
            .map(|w| format!("{}: {w}", file.display()))
            .collect::<Vec<_>>(),
    );
    let mut engine = open_changer(data_dir)?;
    let idx = engine
        .catalog()
        .lookup(artifact)
        .filter(|&i| !engine.catalog().node(i).removed)
        .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {artifact}")))?;
    let mut spec = engine.catalog().spec_of(idx);
    let purls = screened.purls;
    let count = purls.len();
    spec.components = Some(purls);
    spec.warnings = kept;
    let item = BatchItem {
        location: file.display().to_string(),
        spec,
    };
    let report = engine.apply_batch([Ok(item)], Mode::Upsert, &Actor::Admin, &mut |_| {})?;
    let node = engine.catalog().node(idx);
    let delta = node
        .inventory
        .map(|inv| engine.catalog().inventories().get(inv))
        .map(|obj| match obj.base {
            Some(_) => format!(
                "stored as +{} -{} against its parent's",
                obj.added.len(),
                obj.removed.len()
            ),
            None => "stored whole".to_string(),
        })
        .unwrap_or_default();
    let skipped = match skipped {
        0 => String::new(),
        n => format!(" ({n} skipped, see the warnings)"),
    };
    println!(
        "{artifact}: {count} components from {}{skipped} ({}), {delta}{}",
        file.display(),
        format.name(),
        if report.unchanged > 0 {
            "; unchanged"
        } else {
            ""
        }
    );
    print_batch_matches(&engine, &report);
    Ok(())
}

/// The actor of `--tenant T` (the admin without it); an unknown tenant is
/// exit 4, never an empty answer.
fn tenant_actor(engine: &Engine, tenant: Option<&str>) -> Result<Actor, Failure> {
    match tenant {
        None => Ok(Actor::Admin),
        Some(t) => {
            if engine.catalog().tenant_idx(t).is_none() {
                return Err(Failure::not_found(anyhow::anyhow!("unknown tenant {t}")));
            }
            Ok(Actor::Tenant(TenantId::new(t).map_err(Failure::rejected)?))
        }
    }
}

/// `affected ID [--json]`.
pub fn affected(
    data_dir: &Path,
    id: &str,
    format: OutFormat,
    tenant: Option<&str>,
    limit: usize,
    gate: Gate,
) -> CmdResult {
    let mut engine = open_reader(data_dir)?;
    let actor = tenant_actor(&engine, tenant)?;
    // A tenant sees the records the API would show it (a failure of
    // another tenant's private artifact is unknown to it).
    let adv = match engine.lookup_record_for(id, &actor) {
        Ok(adv) => adv,
        Err(patchline_engine::EngineError::Alias { .. }) => {
            let advs = engine.db().naming(id);
            if format == OutFormat::Table {
                // Each record's own report, one after the other.
                let ids: Vec<String> = advs
                    .iter()
                    .map(|&a| engine.db().get(a).id().to_string())
                    .collect();
                drop(engine);
                return affected_alias_reports(data_dir, id, &ids, tenant, limit, gate);
            }
            return affected_alias(&mut engine, &actor, id, &advs, format, gate);
        }
        Err(e) => return Err(e.into()),
    };
    engine.prepare();
    let catalog = engine.catalog();
    let record = engine.db().get(adv);
    let impact = engine.impact(adv);
    let all = affected_rows(catalog, &impact, &actor);
    let kept_record = gate.keeps(record.severity());
    let hits = kept_hits(&gate, record, &all);
    let rows: Vec<(ArtIdx, &[ComponentHit])> = hits.iter().map(|(a, h)| (*a, &**h)).collect();
    let left_out = all.len() - rows.len();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    if matches!(format, OutFormat::Sarif | OutFormat::Cyclonedx) {
        let rendered: Vec<_> = rows
            .iter()
            .map(|(a, hits)| render_row(catalog, &actor, *a, hits))
            .collect();
        let doc = if format == OutFormat::Sarif {
            export::sarif(&[(record, rendered)])
        } else {
            export::cyclonedx_affected(&[(record, rendered)])
        };
        write_export(&mut out, doc, &gate, left_out, "affected artifacts")?;
    } else if format == OutFormat::Json {
        // Streamed: a million rows never sit in memory as one document.
        let filters = gate.filters().then(|| gate.doc(left_out));
        patchline_engine::report::write_affected(
            &mut out,
            catalog,
            record,
            &rows,
            &actor,
            None,
            filters.as_ref(),
        )?;
        out.write_all(b"\n")?;
    } else {
        output::print_impact(
            &mut out,
            catalog,
            record,
            (!gate.filters()).then_some(&impact),
            &rows,
            &actor,
            limit,
        )?;
        if left_out > 0 {
            writeln!(
                out,
                "{left_out} affected artifacts left out by {}",
                if kept_record {
                    "--ignore-unfixed (no fixed version yet)".to_string()
                } else {
                    format!(
                        "--severity {}: {} is rated {}",
                        gate.severity.map(gate::Level::as_str).unwrap_or_default(),
                        record.id(),
                        gate::rating_text(record.rating().as_ref())
                    )
                }
            )?;
        }
    }
    out.flush()?;
    if !rows.is_empty() && gate.fails(record.severity()) {
        return Err(Failure::findings(anyhow::anyhow!(
            "{} affects {} artifacts and is rated {}: at or above --fail-on {}",
            record.id(),
            rows.len(),
            gate::rating_text(record.rating().as_ref()),
            gate.fail_on.map(gate::Level::as_str).unwrap_or_default()
        )));
    }
    Ok(())
}

/// What the filters keep of a record's rows: nothing when `--severity`
/// leaves the record out, else per artifact the hits `--ignore-unfixed`
/// keeps (artifacts left with none are left out).
fn kept_hits<'a>(
    gate: &Gate,
    record: &Record,
    all: &[(ArtIdx, &'a [ComponentHit])],
) -> Vec<(ArtIdx, std::borrow::Cow<'a, [ComponentHit]>)> {
    if !gate.keeps(record.severity()) {
        return Vec::new();
    }
    all.iter()
        .map(|&(a, h)| (a, gate.hits(h)))
        .filter(|(_, h)| !h.is_empty())
        .collect()
}

/// `affected ALIAS --format json|sarif|cyclonedx`: every record naming
/// the alias, after the filters; `--fail-on` looks at all of them.
fn affected_alias(
    engine: &mut Engine,
    actor: &Actor,
    alias: &str,
    advs: &[patchline_core::AdvIdx],
    format: OutFormat,
    gate: Gate,
) -> CmdResult {
    engine.prepare();
    let mut findings = Vec::new();
    let mut failing = Vec::new();
    let mut left_out = 0usize;
    for &adv in advs {
        let impact = engine.impact(adv);
        let catalog = engine.catalog();
        let record = engine.db().get(adv);
        let all = affected_rows(catalog, &impact, actor);
        let hits = kept_hits(&gate, record, &all);
        left_out += all.len() - hits.len();
        if !hits.is_empty() && gate.fails(record.severity()) {
            failing.push(record.id().to_string());
        }
        let rendered: Vec<_> = hits
            .iter()
            .map(|(a, h)| render_row(catalog, actor, *a, h))
            .collect();
        findings.push((adv, rendered));
    }
    let db = engine.db();
    let findings: Vec<(&Record, Vec<_>)> = findings
        .into_iter()
        .map(|(a, rows)| (db.get(a), rows))
        .collect();
    let ids: Vec<&str> = findings.iter().map(|(r, _)| r.id().as_str()).collect();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match format {
        OutFormat::Sarif => write_export(
            &mut out,
            export::sarif(&findings),
            &gate,
            left_out,
            "affected artifacts",
        )?,
        OutFormat::Cyclonedx => write_export(
            &mut out,
            export::cyclonedx_affected(&findings),
            &gate,
            left_out,
            "affected artifacts",
        )?,
        _ => {
            let mut doc = serde_json::json!({"alias": alias, "records": ids});
            if gate.filters() {
                doc["filters"] = gate.doc(left_out);
            }
            serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    gate_failure(alias, &gate, &failing)
}

/// Writes a SARIF or CycloneDX document, stating the filters in it and
/// on standard error how many `what` they left out.
fn write_export(
    out: &mut impl Write,
    mut doc: serde_json::Value,
    gate: &Gate,
    left_out: usize,
    what: &str,
) -> CmdResult {
    if gate.filters() {
        export::note_filters(&mut doc, &gate.doc(left_out));
    }
    if left_out > 0 {
        eprintln!("note: {left_out} {what} left out by the filters");
    }
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(anyhow::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Exit 8 when records at or above `--fail-on` were found.
fn gate_failure(what: &str, gate: &Gate, failing: &[String]) -> CmdResult {
    if failing.is_empty() {
        return Ok(());
    }
    Err(Failure::findings(anyhow::anyhow!(
        "records of {what} at or above --fail-on {}: {}",
        gate.fail_on.map(gate::Level::as_str).unwrap_or_default(),
        failing.join(", ")
    )))
}

/// `affected ALIAS` (readable): each record's own report in turn.
fn affected_alias_reports(
    data_dir: &Path,
    alias: &str,
    records: &[String],
    tenant: Option<&str>,
    limit: usize,
    gate: Gate,
) -> CmdResult {
    println!(
        "{alias} is no record id; it is an alias of {} record{}: {}",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        records.join(", ")
    );
    let mut failing = Vec::new();
    for id in records {
        println!();
        match affected(data_dir, id, OutFormat::Table, tenant, limit, gate) {
            Ok(()) => {}
            Err(f) if f.code == crate::exit::FINDINGS => failing.push(id.clone()),
            Err(f) => return Err(f),
        }
    }
    gate_failure(alias, &gate, &failing)
}

/// `remedy ID [--tenant T] [--if-successor-of A] [--json]`.
pub fn remedy(
    data_dir: &Path,
    id: &str,
    tenant: Option<&str>,
    if_successor_of: Option<&str>,
    json: bool,
) -> CmdResult {
    let mut engine = open_reader(data_dir)?;
    let actor = tenant_actor(&engine, tenant)?;
    let adv = engine.lookup_record(id)?;
    let successor_of = match if_successor_of {
        None => None,
        // As the tenant named sees it; removed artifacts are unknown.
        Some(a) => Some(
            engine
                .catalog()
                .visible(a, &actor)
                .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {a}")))?,
        ),
    };
    engine.prepare();
    let catalog = engine.catalog();
    let record = engine.db().get(adv);
    let impact = engine.impact(adv);
    let ask = patchline_engine::report::RemedyAsk {
        actor: &actor,
        tenant: tenant.and_then(|t| catalog.tenant_idx(t)),
        ranking: tenant
            .is_none()
            .then_some(patchline_engine::report::RankingScope::Visible),
        if_successor_of: successor_of,
    };
    let doc = patchline_engine::report::remedy_doc(catalog, record, &impact, &ask);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
        out.write_all(b"\n")?;
    } else {
        output::print_remedy(&mut out, &doc)?;
    }
    out.flush()?;
    Ok(())
}

/// `exposure [ID] [--limit N] [--json]`.
pub fn exposure(data_dir: &Path, id: Option<&str>, limit: usize, json: bool) -> CmdResult {
    let engine = open_reader(data_dir)?;
    let catalog = engine.catalog();
    let docs: Vec<patchline_engine::report::ExposureDoc> = match id {
        Some(id) => {
            let idx = catalog
                .visible(id, &Actor::Admin)
                .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {id}")))?;
            vec![patchline_engine::report::exposure_doc(
                catalog,
                &Actor::Admin,
                idx,
            )]
        }
        None => {
            let mut all: Vec<_> = catalog
                .nodes()
                .filter(|(_, n)| {
                    !n.removed && n.kind == Kind::Image && n.visibility == Visibility::Public
                })
                .map(|(i, _)| patchline_engine::report::exposure_doc(catalog, &Actor::Admin, i))
                .collect();
            all.sort_by(|x, y| {
                y.exposed
                    .cmp(&x.exposed)
                    .then_with(|| x.artifact.cmp(&y.artifact))
            });
            if limit > 0 {
                all.truncate(limit);
            }
            all
        }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        match id {
            Some(_) => serde_json::to_writer_pretty(&mut out, &docs[0]),
            None => serde_json::to_writer_pretty(&mut out, &docs),
        }
        .map_err(anyhow::Error::from)?;
        out.write_all(b"\n")?;
    } else {
        if docs.is_empty() {
            writeln!(out, "no public images")?;
        }
        for d in &docs {
            let k = d.by_kind;
            let n = |count: u64, word: &str| {
                format!("{count} {word}{}", if count == 1 { "" } else { "s" })
            };
            writeln!(
                out,
                "{}: {} of {} below it ({}, {}, {}, {})",
                d.artifact,
                n(d.exposed, "artifact"),
                n(d.tenants, "tenant"),
                n(k.image, "image"),
                n(k.template, "template"),
                n(k.replica, "replica"),
                n(k.instance, "instance")
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `lineage ID`.
pub fn lineage(data_dir: &Path, id: &str, max_nodes: usize, json: bool) -> CmdResult {
    let engine = open_reader(data_dir)?;
    let catalog = engine.catalog();
    let idx = catalog
        .lookup(id)
        .filter(|&i| !catalog.node(i).removed)
        .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {id}")))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        let ancestors: Vec<String> = catalog
            .ancestors(idx)
            .map(|a| catalog.node(a).id.to_string())
            .collect();
        let counts = catalog.subtree_counts(idx);
        let doc = serde_json::json!({
            "artifact": id,
            "ancestors": ancestors,
            "descendants": Kind::ALL.iter().zip(counts).map(|(k, n)| (k.as_str().to_string(), n)).collect::<BTreeMap<_, _>>(),
            "tree": patchline_engine::report::lineage_tree(catalog, idx, &Actor::Admin, max_nodes),
        });
        serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
        writeln!(out)?;
    } else {
        output::print_lineage(&mut out, catalog, idx, max_nodes)?;
    }
    out.flush()?;
    Ok(())
}

/// `show ID`.
pub fn show(data_dir: &Path, id: &str, format: OutFormat, gate: Gate) -> CmdResult {
    let engine = open_reader(data_dir)?;
    let catalog = engine.catalog();
    let idx = catalog
        .lookup(id)
        .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {id}")))?;
    let all = patchline_core::propagate::check_artifact(catalog, engine.db(), idx);
    let found = all.len();
    let matches: Vec<_> = all
        .into_iter()
        .filter(|m| gate.keeps(engine.db().get(m.advisory).severity()))
        .map(|mut m| {
            m.hits = gate.hits(&m.hits).into_owned();
            m
        })
        .filter(|m| !m.hits.is_empty())
        .collect();
    let left_out = found - matches.len();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if matches!(format, OutFormat::Sarif | OutFormat::Cyclonedx) {
        let findings: Vec<_> = matches
            .iter()
            .map(|m| {
                (
                    engine.db().get(m.advisory),
                    vec![render_row(catalog, &Actor::Admin, idx, &m.hits)],
                )
            })
            .collect();
        let doc = if format == OutFormat::Sarif {
            export::sarif(&findings)
        } else {
            let purls: Vec<String> = catalog
                .effective_components(idx)
                .iter()
                .map(|&c| catalog.components().get(c).purl.to_string())
                .collect();
            export::cyclonedx_sbom(
                &render_row(catalog, &Actor::Admin, idx, &[]),
                &purls,
                &findings,
            )
        };
        write_export(
            &mut out,
            doc,
            &gate,
            left_out,
            &format!("records affecting {id}"),
        )?;
    } else {
        output::print_artifact(
            &mut out,
            catalog,
            engine.db(),
            idx,
            &matches,
            format == OutFormat::Json,
            gate.filters().then(|| gate.doc(left_out)),
        )?;
    }
    out.flush()?;
    let failing: Vec<&str> = matches
        .iter()
        .map(|m| engine.db().get(m.advisory))
        .filter(|r| gate.fails(r.severity()))
        .map(|r| r.id().as_str())
        .collect();
    if !failing.is_empty() {
        return Err(Failure::findings(anyhow::anyhow!(
            "{id} is affected by {} records at or above --fail-on {}: {}",
            failing.len(),
            gate.fail_on.map(gate::Level::as_str).unwrap_or_default(),
            failing.join(", ")
        )));
    }
    Ok(())
}

/// `report`: every open record with its reach.
pub fn report(data_dir: &Path, json: bool, gate: Gate) -> CmdResult {
    let mut engine = open_reader(data_dir)?;
    engine.prepare();
    let started = Instant::now();
    let mut rows = Vec::new();
    let (mut left_out, mut failing) = (0usize, Vec::new());
    let ids: Vec<_> = engine.db().iter().map(|(i, _)| i).collect();
    for adv in ids {
        let record = engine.db().get(adv);
        if !record.is_open() {
            continue;
        }
        let impact = engine.impact(adv);
        if impact.groups.is_empty() {
            continue;
        }
        if !gate.keeps(record.severity()) {
            left_out += 1;
            continue;
        }
        let catalog = engine.catalog();
        // The groups --ignore-unfixed keeps, with the hits it keeps.
        let groups: Vec<(&[ArtIdx], std::borrow::Cow<'_, [ComponentHit]>)> = impact
            .groups
            .iter()
            .map(|g| (&*g.members, gate.hits(&g.hits)))
            .filter(|(_, h)| !h.is_empty())
            .collect();
        let mut counts = [0u64; 4];
        let mut tenants = Vec::new();
        for (members, _) in &groups {
            for &a in members.iter() {
                counts[catalog.node(a).kind.code() as usize] += 1;
                tenants.push(catalog.node(a).tenant);
            }
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            left_out += 1;
            continue;
        }
        tenants.sort_unstable();
        tenants.dedup();
        let origins: std::collections::BTreeSet<String> = groups
            .iter()
            .flat_map(|(_, hits)| {
                hits.iter()
                    .map(|h| catalog.node(h.introduced_by).id.to_string())
            })
            .collect();
        let rating = record.rating();
        if gate.fails(record.severity()) {
            failing.push(record.id().to_string());
        }
        rows.push((
            record.id().to_string(),
            total,
            counts,
            tenants.len(),
            origins,
            rating,
        ));
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(id, total, counts, tenants, origins, rating)| {
                let mut row = serde_json::json!({
                    "advisory": id,
                    "affected": total,
                    "by_kind": Kind::ALL.iter().zip(counts).map(|(k, n)| (k.as_str().to_string(), *n)).collect::<BTreeMap<_, _>>(),
                    "tenants": tenants,
                    "introduced_by": origins,
                });
                // Unrated: no key, as in `affected`.
                if let Some(rating) = rating {
                    row["severity"] = serde_json::json!(rating);
                }
                row
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} open records affect the catalog ({} artifacts){}; evaluated in {:.0} ms",
            rows.len(),
            engine.catalog().len(),
            if left_out > 0 {
                format!(", {left_out} more left out by the filters")
            } else {
                String::new()
            },
            started.elapsed().as_secs_f64() * 1e3
        )?;
        for (id, total, counts, tenants, origins, rating) in &rows {
            let mut origins: Vec<&String> = origins.iter().collect();
            let more = origins.len().saturating_sub(3);
            origins.truncate(3);
            writeln!(
                out,
                "  {id:<24} {:<8} {total:>8} affected  ({}; {tenants} tenants)  introduced by {}{}",
                rating
                    .as_ref()
                    .map(|r| r.level.as_str())
                    .unwrap_or("unknown"),
                kinds_summary(counts),
                origins
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if more > 0 {
                    format!(" +{more}")
                } else {
                    String::new()
                }
            )?;
        }
    }
    out.flush()?;
    if left_out > 0 {
        // On standard error: the JSON answer stays the list it always was.
        eprintln!(
            "note: {left_out} open records that affect the catalog left out by {}",
            match (gate.severity, gate.ignore_unfixed) {
                (Some(l), true) => format!("--severity {} and --ignore-unfixed", l.as_str()),
                (Some(l), false) => format!("--severity {}", l.as_str()),
                _ => "--ignore-unfixed".to_string(),
            }
        );
    }
    if !failing.is_empty() {
        failing.sort();
        let more = failing.len().saturating_sub(10);
        failing.truncate(10);
        return Err(Failure::findings(anyhow::anyhow!(
            "{} records at or above --fail-on {} affect the catalog: {}{}",
            failing.len() + more,
            gate.fail_on.map(gate::Level::as_str).unwrap_or_default(),
            failing.join(", "),
            if more > 0 {
                format!(" +{more}")
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

/// `fail ARTIFACT --id ID --summary S`.
pub fn fail(
    data_dir: &Path,
    artifact: &str,
    id: &str,
    summary: &str,
    severity: Option<String>,
) -> CmdResult {
    let mut engine = open_changer(data_dir)?;
    let idx = engine
        .catalog()
        .lookup(artifact)
        .filter(|&i| !engine.catalog().node(i).removed)
        .ok_or_else(|| Failure::not_found(anyhow::anyhow!("unknown artifact {artifact}")))?;
    let modified_text = patchline_core::timestamp::format_unix_ms(patchline_engine::now_ms());
    let failure = FailureRecord {
        id: AdvisoryId::new(id).map_err(Failure::rejected)?,
        artifact: idx,
        summary: summary.to_string(),
        details: None,
        severity,
        modified: parse_rfc3339(&modified_text)
            .ok_or_else(|| anyhow::anyhow!("clock gives an invalid time"))?,
        modified_text,
        withdrawn: false,
    };
    let outcome = engine.publish_failure(failure, &Actor::Admin)?;
    engine.prepare();
    let impact = engine.impact(outcome.idx());
    let what = match outcome {
        Published::New(_) => "published",
        Published::Updated(_) => "updated",
        Published::Unchanged(_) => "unchanged",
        Published::Stale(_) => "older than the stored version; ignored",
    };
    println!(
        "failure {id} on {artifact} {what}: affects {}",
        kinds_summary(&counts_by_kind(engine.catalog(), &impact))
    );
    Ok(())
}

/// `remove ID...`.
pub fn remove(data_dir: &Path, ids: &[String]) -> CmdResult {
    let mut engine = open_changer(data_dir)?;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let n = engine.remove(&refs, &Actor::Admin)?;
    println!("removed {n} artifact{}", if n == 1 { "" } else { "s" });
    Ok(())
}

impl Failure {
    pub fn with_note(mut self, note: &str) -> Failure {
        self.error = self.error.context(note.to_string());
        self
    }
}

/// `scan PATH...`: every image registered on its own (a bad one is reported
/// and the others go on); rescanning changes only what changed.
pub fn scan(data_dir: &Path, paths: &[PathBuf], tenant: &str, visibility: Visibility) -> CmdResult {
    let tenant = TenantId::new(tenant).map_err(Failure::rejected)?;
    let started = Instant::now();
    let options = patchline_scan::scanner::ScanOptions {
        tenant,
        visibility,
        roots: Vec::new(),
    };
    let bar = progress_bar(0, "scanning images");
    let outcome =
        patchline_scan::scanner::scan_with_progress(paths, &options, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        });
    bar.finish_and_clear();
    let mut engine = open_engine(data_dir)?;
    let (mut created, mut updated, mut unchanged, mut failed) = (0, 0, 0, outcome.errors.len());
    for (path, error) in &outcome.errors {
        eprintln!("error: {}: {error}", path.display());
    }
    for image in &outcome.images {
        for w in &image.warnings {
            eprintln!("warning: {}: {w}", image.path.display());
        }
        let item = BatchItem {
            location: image.path.display().to_string(),
            spec: image.spec.clone(),
        };
        match engine.apply_batch([Ok(item)], Mode::Upsert, &Actor::Admin, &mut |_| {}) {
            Ok(r) => {
                created += r.created;
                updated += r.updated;
                unchanged += r.unchanged;
                let what = if r.created > 0 {
                    "created"
                } else if r.updated > 0 {
                    "updated"
                } else {
                    "unchanged"
                };
                let inventory = match &image.spec.components {
                    Some(c) => format!("{} packages", c.len()),
                    None => "no inventory of its own".into(),
                };
                let parent = image
                    .spec
                    .parent
                    .as_ref()
                    .map(|p| format!(", derived from {p}"))
                    .unwrap_or_default();
                println!(
                    "{} ({}{parent}): {inventory}, {what}",
                    image.spec.id, image.format
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e}", image.path.display());
            }
        }
    }
    let on_disk = outcome.bytes_on_disk().max(1);
    println!(
        "{} images: {created} created, {updated} updated, {unchanged} unchanged, {failed} failed; read {} of {} bytes on disk ({:.2} %) in {:.2} s",
        outcome.images.len(),
        outcome.bytes_read(),
        outcome.bytes_on_disk(),
        outcome.bytes_read() as f64 * 100.0 / on_disk as f64,
        started.elapsed().as_secs_f64()
    );
    if failed > 0 && created + updated + unchanged == 0 {
        return Err(Failure::rejected(anyhow::anyhow!(
            "no image could be scanned: nothing was registered"
        )));
    }
    if failed > 0 {
        return Err(Failure::partial(anyhow::anyhow!(
            "{failed} images could not be scanned (the others were registered)"
        )));
    }
    Ok(())
}
