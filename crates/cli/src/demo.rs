//! `patchline demo`: the whole story on real package data, embedded in the
//! binary so that it runs anywhere. Three public base images are built from
//! real package databases (Ubuntu 18.04 and Debian 12 dpkg status, Alpine
//! 3.18 apk), two tenants derive, convert, replicate and launch from them,
//! real OSV advisories are published, a failure is published on a base
//! image, and a late instance shows that new artifacts are caught at once.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use patchline_core::advisory::Failure as FailureRecord;
use patchline_core::doc::ArtifactDoc;
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{Actor, Advisory, AdvisoryId, Mode, Record};
use patchline_engine::report::{affected_rows, counts_by_kind};
use patchline_engine::{BatchItem, DirLock, Engine, EngineError};
use patchline_formats::inventory::{Format, Hint, parse};
use patchline_formats::osv;
use serde_json::json;

use crate::CmdResult;
use crate::exit::Failure;
use crate::output::{kinds_summary, print_impact, print_lineage};

const UBUNTU_STATUS: &str = include_str!("../../../testdata/inventories/ubuntu-18.04.dpkg-status");
const DEBIAN_STATUS: &str = include_str!("../../../testdata/inventories/debian-12.dpkg-status");
const ALPINE_INSTALLED: &str =
    include_str!("../../../testdata/inventories/alpine-3.18.apk-installed");

/// The advisories shipped with the demo (file name, bytes), as published.
const ADVISORIES: &[(&str, &str)] = &[
    (
        "USN-3658-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3658-1.json"),
    ),
    (
        "USN-3675-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3675-1.json"),
    ),
    (
        "USN-3684-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3684-1.json"),
    ),
    (
        "USN-3689-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3689-1.json"),
    ),
    (
        "USN-3746-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3746-1.json"),
    ),
    (
        "USN-3829-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3829-1.json"),
    ),
    (
        "USN-3863-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-3863-1.json"),
    ),
    (
        "USN-4001-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4001-1.json"),
    ),
    (
        "USN-4038-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4038-1.json"),
    ),
    (
        "USN-4108-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4108-1.json"),
    ),
    (
        "USN-4168-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4168-1.json"),
    ),
    (
        "USN-4512-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4512-1.json"),
    ),
    (
        "USN-4968-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-4968-1.json"),
    ),
    (
        "USN-5279-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-5279-1.json"),
    ),
    (
        "USN-5355-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-5355-1.json"),
    ),
    (
        "USN-5378-2.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-5378-2.json"),
    ),
    (
        "USN-5672-1.json",
        include_str!("../../../testdata/advisories/ubuntu/USN-5672-1.json"),
    ),
    (
        "UBUNTU-CVE-2016-2781.json",
        include_str!("../../../testdata/advisories/ubuntu/UBUNTU-CVE-2016-2781.json"),
    ),
    (
        "UBUNTU-CVE-2019-12900.json",
        include_str!("../../../testdata/advisories/ubuntu/UBUNTU-CVE-2019-12900.json"),
    ),
    (
        "DSA-3029-1.json",
        include_str!("../../../testdata/advisories/debian/DSA-3029-1.json"),
    ),
    (
        "CVE-2022-27449.json",
        include_str!("../../../testdata/advisories/alpine/CVE-2022-27449.json"),
    ),
    (
        "PYSEC-2020-301.yaml",
        include_str!("../../../testdata/advisories/pypi/PYSEC-2020-301.yaml"),
    ),
    (
        "PYSEC-2021-13.yaml",
        include_str!("../../../testdata/advisories/pypi/PYSEC-2021-13.yaml"),
    ),
    (
        "PYSEC-2022-304.yaml",
        include_str!("../../../testdata/advisories/pypi/PYSEC-2022-304.yaml"),
    ),
    (
        "PYSEC-2022-42969.yaml",
        include_str!("../../../testdata/advisories/pypi/PYSEC-2022-42969.yaml"),
    ),
    (
        "PYSEC-2023-212.yaml",
        include_str!("../../../testdata/advisories/pypi/PYSEC-2023-212.yaml"),
    ),
];

/// Marks a data directory as made by the demo, so that a rerun may wipe it.
const MARKER: &str = "DEMO";

fn purls(format: Format, text: &str, distro: &str) -> anyhow::Result<Vec<String>> {
    let inventory = parse(
        format,
        text.as_bytes(),
        &Hint {
            distro: Some(distro.into()),
        },
    )?;
    Ok(inventory
        .components
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// The base inventory with some packages replaced or added.
fn edit(base: &[String], replace: &[(&str, &str)], add: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = base
        .iter()
        .map(|p| {
            for (from, to) in replace {
                if p.starts_with(from) {
                    return p.replacen(from, to, 1);
                }
            }
            p.clone()
        })
        .collect();
    out.extend(add.iter().map(|s| s.to_string()));
    out
}

/// What the marker records: the catalog's size when the demo finished, so
/// that a rerun can tell a directory someone has written to since.
fn marker_text(engine: &Engine) -> String {
    format!(
        "made by `patchline demo`\nartifacts={}\nrecords={}\n",
        engine.catalog().len(),
        engine.db().len()
    )
}

/// Takes the data directory's lock before touching anything (a directory
/// that `serve` holds is left alone: exit 5), refuses a catalog the demo
/// did not make (and never marks one) or one changed since the demo made
/// it, and starts afresh unless `keep`.
fn prepare_dir(data_dir: &Path, keep: bool) -> Result<DirLock, Failure> {
    let mut lock = DirLock::acquire(data_dir)?;
    let db = data_dir.join(patchline_store::DB_FILE);
    let marker = data_dir.join(MARKER);
    if db.exists() && !marker.exists() {
        return Err(Failure::rejected(anyhow::anyhow!(
            "{} already holds a catalog that the demo did not make; nothing was changed (pass another --data-dir)",
            data_dir.display()
        )));
    }
    if db.exists() {
        let engine = Engine::open_locked(data_dir, lock, patchline_store::SecretKeys::none())?;
        let recorded = std::fs::read_to_string(&marker).unwrap_or_default();
        let now = marker_text(&engine);
        lock = engine
            .into_lock()
            .ok_or_else(|| anyhow::anyhow!("the data directory's lock was lost"))?;
        // An unfinished run of the demo (it failed half-way) is its own.
        let unfinished = recorded.lines().nth(1) == Some("unfinished");
        if recorded != now && !unfinished {
            return Err(Failure::rejected(anyhow::anyhow!(
                "{} was changed since the demo made it (the demo left {}; it now holds {}); nothing was changed — pass another --data-dir, or remove it yourself",
                data_dir.display(),
                recorded.lines().skip(1).collect::<Vec<_>>().join(", "),
                now.lines().skip(1).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if !keep {
        for suffix in ["", "-wal", "-shm"] {
            let p = data_dir.join(format!("{}{suffix}", patchline_store::DB_FILE));
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    }
    write_marker_text(data_dir, "made by `patchline demo`\nunfinished\n")?;
    Ok(lock)
}

/// Writes the marker (0600) with the catalog's size now.
fn write_marker(data_dir: &Path, engine: &Engine) -> anyhow::Result<()> {
    write_marker_text(data_dir, &marker_text(engine))
}

fn write_marker_text(data_dir: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let marker = data_dir.join(MARKER);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&marker)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", marker.display()))
}

fn batch(
    engine: &mut Engine,
    docs: Vec<serde_json::Value>,
) -> Result<patchline_engine::BatchReport, Failure> {
    let items: Vec<Result<BatchItem, EngineError>> = docs
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let doc: ArtifactDoc =
                serde_json::from_value(v).map_err(|e| EngineError::Rejected {
                    location: Some(format!("demo artifact {i}")),
                    error: patchline_core::CatalogError::Invalid(e.to_string()),
                })?;
            let t = doc.into_spec(None).map_err(|error| EngineError::Rejected {
                location: Some(format!("demo artifact {i}")),
                error,
            })?;
            Ok(BatchItem {
                location: format!("demo artifact {i}"),
                spec: t.spec,
            })
        })
        .collect();
    Ok(engine.apply_batch(items, Mode::Create, &Actor::Admin, &mut |_| {})?)
}

/// The patch notices the successor caused, one line each, as their
/// tenants read them.
fn print_patch_notices(
    out: &mut impl Write,
    data_dir: &Path,
    engine: &Engine<patchline_store::sqlite::SqliteStore>,
) -> anyhow::Result<()> {
    use patchline_store::NoticeReader as _;
    let mut reader = patchline_store::service::SqliteReader::open(data_dir)?;
    let rows = reader.patches_after(None, 0, 100)?;
    writeln!(
        out,
        "   Patch notices sent with it (one per tenant, record and root cause; webhooks carry them as dev.patchline.patch):"
    )?;
    let view = engine.view();
    let names = view.names();
    for row in &rows {
        let reader = patchline_delivery::Reader::Tenant(row.tenant);
        let Some(p) = patchline_delivery::PatchNotice::render(row, &names, reader) else {
            continue;
        };
        let next = p.plan.first().map_or(String::new(), |s| {
            let onto = s
                .onto
                .as_deref()
                .map_or(String::new(), |o| format!(" onto {o}"));
            format!("; first step: {} {}{onto}", s.action, s.artifact)
        });
        writeln!(
            out,
            "   to {}: {} fixes {} for {} of your artifacts (came in through {}){next}",
            p.tenant, p.successor, p.advisory, p.clears_total, p.introduced_by
        )?;
    }
    Ok(())
}

/// Each tenant's notices grouped by root cause, as a grouped subscription
/// receives them: one line per group.
fn print_grouped_notices(
    out: &mut impl Write,
    data_dir: &Path,
    engine: &Engine,
) -> anyhow::Result<()> {
    use patchline_store::NoticeReader as _;
    let mut reader = patchline_store::service::SqliteReader::open(data_dir)?;
    let view = engine.view();
    let names = view.names();
    writeln!(
        out,
        "\n   Notices, grouped by root cause (record, where it came in, the step) as subscriptions receive them by default:"
    )?;
    for (i, tenant) in engine.catalog().tenants().iter().enumerate() {
        let t = patchline_core::TenantIdx(i as u32);
        let rows = reader.notices_after(t, 0, 1000)?;
        let mine: Vec<_> = rows.into_iter().filter(|n| n.tenant == t).collect();
        if mine.is_empty() {
            continue;
        }
        let who = patchline_delivery::Reader::Tenant(t);
        let docs = patchline_delivery::NoticeDoc::render_all(&mine, &names, who);
        let entries = patchline_delivery::grouped::group(
            &mine,
            docs,
            &names,
            who,
            &std::collections::HashMap::new(),
        );
        writeln!(
            out,
            "   {tenant}: {} notices, {} grouped",
            mine.len(),
            entries.len()
        )?;
        const SHOWN: usize = 4;
        for e in entries.iter().take(SHOWN) {
            if let patchline_delivery::Entry::Grouped(g) = e {
                let n = g.artifacts.len() + g.artifacts_omitted;
                writeln!(
                    out,
                    "     {} reached {n} of its artifacts through {}; {} {}",
                    g.advisory, g.introduced_by, g.action, g.artifact
                )?;
            }
        }
        if entries.len() > SHOWN {
            writeln!(out, "     … and {} more", entries.len() - SHOWN)?;
        }
    }
    Ok(())
}

pub fn run(data_dir: &Path, keep: bool) -> CmdResult {
    let lock = prepare_dir(data_dir, keep)?;
    let mut engine = Engine::open_locked(data_dir, lock, patchline_store::SecretKeys::none())?;
    // Notices are recorded as the service records them (no subscription:
    // nothing is sent), so that step 5 shows the patch notices.
    engine.enable_notices();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());

    // 1. Public base images from real package databases.
    let ubuntu = purls(Format::DpkgStatus, UBUNTU_STATUS, "ubuntu-18.04")?;
    let debian = purls(Format::DpkgStatus, DEBIAN_STATUS, "debian-12")?;
    let alpine = purls(Format::ApkInstalled, ALPINE_INSTALLED, "alpine-3.18")?;
    // acme rebuilt its web image with bzip2 patched (masks USN-4038-1 for
    // its whole subtree) and added urllib3 1.26.5 (PYSEC-2023-212 starts
    // there); globex's app image adds Django 4.1.1 (PYSEC-2022-304).
    let acme_web = edit(
        &ubuntu,
        &[
            (
                "pkg:deb/ubuntu/bzip2@1.0.6-8.1?",
                "pkg:deb/ubuntu/bzip2@1.0.6-8.1ubuntu0.1?",
            ),
            (
                "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?",
                "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1ubuntu0.1?",
            ),
        ],
        &["pkg:pypi/urllib3@1.26.5"],
    );
    let globex_app = edit(
        &debian,
        &[],
        &["pkg:pypi/django@4.1.1", "pkg:pypi/urllib3@2.0.7"],
    );
    let mut docs = vec![
        json!({"id": "ubuntu-18.04", "kind": "image", "tenant": "canonical", "visibility": "public",
               "name": "Ubuntu 18.04 LTS cloud image", "components": ubuntu}),
        json!({"id": "debian-12", "kind": "image", "tenant": "debian", "visibility": "public",
               "name": "Debian 12 generic cloud image", "components": debian}),
        json!({"id": "alpine-3.18", "kind": "image", "tenant": "alpine", "visibility": "public",
               "components": alpine}),
        json!({"id": "acme-web", "kind": "image", "tenant": "acme", "parent": "ubuntu-18.04",
               "labels": {"purpose": "web"}, "components": acme_web, "fixes": ["FAIL-CLOUDINIT-1"]}),
        json!({"id": "acme-web-tpl", "kind": "template", "tenant": "acme", "parent": "acme-web"}),
        json!({"id": "acme-web-eu", "kind": "replica", "tenant": "acme", "parent": "acme-web-tpl", "labels": {"region": "eu-west"}}),
        json!({"id": "acme-web-us", "kind": "replica", "tenant": "acme", "parent": "acme-web-tpl", "labels": {"region": "us-east"}}),
        json!({"id": "acme-batch", "kind": "instance", "tenant": "acme", "parent": "ubuntu-18.04"}),
        json!({"id": "globex-app", "kind": "image", "tenant": "globex", "parent": "debian-12", "components": globex_app}),
        json!({"id": "globex-app-tpl", "kind": "template", "tenant": "globex", "parent": "globex-app"}),
        json!({"id": "globex-edge-1", "kind": "instance", "tenant": "globex", "parent": "alpine-3.18"}),
    ];
    for region in ["eu", "us"] {
        for i in 1..=3 {
            docs.push(json!({"id": format!("acme-web-{region}-vm{i}"), "kind": "instance", "tenant": "acme",
                             "parent": format!("acme-web-{region}")}));
        }
    }
    for i in 1..=2 {
        docs.push(json!({"id": format!("globex-app-vm{i}"), "kind": "instance", "tenant": "globex", "parent": "globex-app-tpl"}));
    }
    let report = batch(&mut engine, docs)?;
    writeln!(
        out,
        "== 1. Catalog: {} artifacts from real package databases",
        report.created
    )?;
    writeln!(
        out,
        "   ubuntu-18.04 ({} packages), debian-12 ({}), alpine-3.18 ({}); tenants acme and globex derive, convert, replicate, launch\n",
        ubuntu.len(),
        debian.len(),
        alpine.len()
    )?;
    print_lineage(
        &mut out,
        engine.catalog(),
        engine
            .catalog()
            .lookup("ubuntu-18.04")
            .ok_or_else(|| anyhow::anyhow!("demo catalog"))?,
        40,
    )?;

    // 2. Real advisories.
    let mut advisories = Vec::new();
    for (name, text) in ADVISORIES {
        let record =
            osv::parse_auto(name, text.as_bytes()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        advisories.push((
            name.to_string(),
            Advisory::compile(record).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
        ));
    }
    let published = engine.publish_advisories(advisories)?;
    writeln!(
        out,
        "\n== 2. Published {} real OSV advisories (Ubuntu, Debian, Alpine, PyPI)",
        published.outcomes.len()
    )?;

    // 3. A failure of one image, fixed in acme's rebuild.
    let ubuntu_idx = engine
        .catalog()
        .lookup("ubuntu-18.04")
        .ok_or_else(|| anyhow::anyhow!("demo catalog"))?;
    let modified = "2024-06-01T00:00:00Z";
    engine.publish_failure(
        FailureRecord {
            id: AdvisoryId::new("FAIL-CLOUDINIT-1").map_err(anyhow::Error::from)?,
            artifact: ubuntu_idx,
            summary: "cloud-init datasource list lets a rogue metadata server inject users".into(),
            details: None,
            severity: Some("high".into()),
            modified: parse_rfc3339(modified).ok_or_else(|| anyhow::anyhow!("timestamp"))?,
            modified_text: modified.into(),
            withdrawn: false,
        },
        &Actor::Admin,
    )?;
    writeln!(
        out,
        "   and the failure FAIL-CLOUDINIT-1 on ubuntu-18.04 (acme-web declares it fixed)\n"
    )?;

    // 4. Impact of everything.
    engine.prepare();
    writeln!(out, "== 3. Impact")?;
    let mut rows = Vec::new();
    for (idx, record) in engine.db().iter() {
        let impact = engine.impact(idx);
        let counts = counts_by_kind(engine.catalog(), &impact);
        let total: u64 = counts.iter().sum();
        let note = match record {
            Record::Advisory(a) if a.withdrawn => "withdrawn".to_string(),
            Record::Advisory(a) if total == 0 && !a.unsupported.is_empty() => {
                "not evaluated for some entries".to_string()
            }
            _ => kinds_summary(&counts),
        };
        rows.push((record.id().to_string(), total, note));
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (id, total, note) in &rows {
        writeln!(out, "   {id:<24} {total:>3} affected  {note}")?;
    }

    for id in ["USN-4038-1", "PYSEC-2023-212", "FAIL-CLOUDINIT-1"] {
        let adv = engine.lookup_record(id)?;
        let impact = engine.impact(adv);
        let rows = affected_rows(engine.catalog(), &impact, &Actor::Admin);
        writeln!(out)?;
        print_impact(
            &mut out,
            engine.catalog(),
            engine.db().get(adv),
            Some(&impact),
            &rows,
            &Actor::Admin,
            20,
        )?;
    }
    writeln!(
        out,
        "\n   USN-4038-1 stops at acme-web: it upgraded bzip2, so its template, replicas and instances are clean (masking);"
    )?;
    writeln!(
        out,
        "   PYSEC-2023-212 starts at acme-web, which added urllib3 1.26.5 (introduced_by); globex-app's urllib3 2.0.7 is fixed."
    )?;
    print_grouped_notices(&mut out, data_dir, &engine)?;

    // 5. A late instance is caught at once.
    let late = batch(
        &mut engine,
        vec![
            json!({"id": "globex-late-vm", "kind": "instance", "tenant": "globex", "parent": "ubuntu-18.04"}),
        ],
    )?;
    writeln!(
        out,
        "\n== 4. globex launches globex-late-vm from ubuntu-18.04 after all this: {} open advisories and failures match it at once",
        late.affected_pairs
    )?;
    let late_idx = engine
        .catalog()
        .lookup("globex-late-vm")
        .ok_or_else(|| anyhow::anyhow!("demo catalog"))?;
    let matches =
        patchline_core::propagate::check_artifact(engine.catalog(), engine.db(), late_idx);
    let ids: Vec<&str> = matches
        .iter()
        .map(|m| engine.db().get(m.advisory).id().as_str())
        .collect();
    writeln!(out, "   {}", ids.join(", "))?;

    // 6. The patch, not only the alarm: canonical publishes the patched
    // successor of its base, and each tenant learns where to patch.
    let fixed_bzip2 = [
        (
            "pkg:deb/ubuntu/bzip2@1.0.6-8.1?",
            "pkg:deb/ubuntu/bzip2@1.0.6-8.1ubuntu0.1?",
        ),
        (
            "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?",
            "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1ubuntu0.1?",
        ),
    ];
    batch(
        &mut engine,
        vec![
            json!({"id": "ubuntu-18.04-v2", "kind": "image", "tenant": "canonical",
                    "visibility": "public", "name": "Ubuntu 18.04 LTS cloud image, bzip2 fixed",
                    "supersedes": "ubuntu-18.04", "components": edit(&ubuntu, &fixed_bzip2, &[])}),
        ],
    )?;
    writeln!(
        out,
        "\n== 5. canonical publishes ubuntu-18.04-v2, the successor of ubuntu-18.04 with bzip2 fixed: where each tenant patches USN-4038-1"
    )?;
    let usn = engine.lookup_record("USN-4038-1")?;
    let impact = engine.impact_shared(usn);
    let ask = patchline_engine::report::RemedyAsk {
        actor: &Actor::Admin,
        tenant: None,
        ranking: Some(patchline_engine::report::RankingScope::Visible),
        if_successor_of: None,
    };
    let doc =
        patchline_engine::report::remedy_doc(engine.catalog(), engine.db().get(usn), &impact, &ask);
    crate::output::print_remedy(&mut out, &doc)?;
    print_patch_notices(&mut out, data_dir, &engine)?;
    write_marker(data_dir, &engine)?;
    writeln!(
        out,
        "\nThe data stays in {}: try `patchline --data-dir {} affected USN-4038-1 --json`, `lineage debian-12` or `remedy USN-4038-1 --tenant acme`.",
        data_dir.display(),
        data_dir.display()
    )?;
    writeln!(
        out,
        "Rerunning the demo starts afresh; it refuses once anything else was written there."
    )?;
    out.flush()?;
    Ok(())
}
