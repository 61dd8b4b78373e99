//! Terminal rendering: progress bars, impact reports, lineage trees.

use std::collections::BTreeMap;
use std::io::{self, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use patchline_core::propagate::{ArtifactMatch, ComponentHit, Impact};
use patchline_core::{Actor, AdvisoryDb, ArtIdx, Catalog, Kind, Record};
use patchline_engine::report::{counts_by_kind, render_row, shown_id, sorted_children};

/// A progress bar on stderr, drawn only on a terminal.
pub fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {percent}% {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// `1 artifact`, `3 artifacts`.
pub fn count(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `2 images, 1 template, 6 instances`.
pub fn kinds_summary(counts: &[u64; 4]) -> String {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {}{}", k.as_str(), if *n == 1 { "" } else { "s" }))
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// `id (kind, tenant)` as `actor` may see it: another tenant's private
/// artifact reads `(private) (kind)`.
fn label(catalog: &Catalog, actor: &Actor, a: ArtIdx) -> String {
    let n = catalog.node(a);
    if catalog.may_see_idx(actor, a) {
        format!("{} ({}, {})", n.id, n.kind, catalog.tenant_id(n.tenant))
    } else {
        format!("{} ({})", shown_id(catalog, actor, a), n.kind)
    }
}

/// The readable impact report.
pub fn print_impact(
    out: &mut impl Write,
    catalog: &Catalog,
    record: &Record,
    // The whole impact, when the counts may be taken from it (no filter).
    whole: Option<&Impact<'_>>,
    rows: &[(ArtIdx, &[ComponentHit])],
    actor: &Actor,
    limit: usize,
) -> io::Result<()> {
    match record {
        Record::Advisory(a) => {
            // YAML feeds (PyPA) often have details but no summary.
            let summary: String = match a.osv.summary.as_deref() {
                Some(s) => s.to_string(),
                None => a
                    .osv
                    .details
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(100)
                    .collect(),
            };
            writeln!(out, "{}  {summary}", a.id)?;
            if a.withdrawn {
                writeln!(out, "withdrawn: affects nothing")?;
            }
            for reason in &a.unsupported {
                writeln!(out, "not evaluated: {reason}")?;
            }
        }
        Record::Failure(f) => {
            writeln!(
                out,
                "{}  failure of {}: {}",
                f.id,
                label(catalog, actor, f.artifact),
                f.summary
            )?;
        }
    }
    writeln!(
        out,
        "severity: {}",
        crate::gate::rating_text(record.rating().as_ref())
    )?;
    let counts = if let (Actor::Admin, Some(impact)) = (actor, whole) {
        counts_by_kind(catalog, impact)
    } else {
        let mut c = [0u64; 4];
        for (a, _) in rows {
            c[catalog.node(*a).kind.code() as usize] += 1;
        }
        c
    };
    writeln!(
        out,
        "affects {}{}: {}",
        count(rows.len() as u64, "artifact"),
        if whole.is_none() {
            " under the filters"
        } else {
            ""
        },
        kinds_summary(&counts)
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    // Where it came from: per introducing artifact, how far it spread.
    let mut origins: BTreeMap<String, (usize, BTreeMap<String, Option<String>>)> = BTreeMap::new();
    for (_, hits) in rows {
        let mut counted = std::collections::BTreeSet::new();
        for h in hits.iter() {
            let entry = origins
                .entry(label(catalog, actor, h.introduced_by))
                .or_default();
            if counted.insert(h.introduced_by) {
                entry.0 += 1;
            }
            let what = match h.component {
                Some(c) => catalog.components().get(c).purl.to_string(),
                None => "(artifact failure)".into(),
            };
            entry.1.insert(what, h.fixed.as_deref().map(str::to_string));
        }
    }
    writeln!(out, "introduced by:")?;
    for (origin, (n, comps)) in &origins {
        writeln!(out, "  {origin}: reaches {}", count(*n as u64, "artifact"))?;
        for (purl, fixed) in comps.iter().take(5) {
            match fixed {
                Some(f) => writeln!(out, "    {purl}  fixed in {f}")?,
                None => writeln!(out, "    {purl}  no fix listed")?,
            }
        }
        if comps.len() > 5 {
            writeln!(out, "    … and {} more components", comps.len() - 5)?;
        }
    }
    writeln!(out, "artifacts:")?;
    let shown = if limit == 0 {
        rows.len()
    } else {
        limit.min(rows.len())
    };
    for (a, hits) in &rows[..shown] {
        let row = render_row(catalog, actor, *a, hits);
        writeln!(
            out,
            "  {:<9} {:<32} {:<12} {}",
            row.kind.as_str(),
            row.artifact,
            row.tenant,
            row.path.join(" > ")
        )?;
    }
    if shown < rows.len() {
        writeln!(
            out,
            "  … and {} more (use --limit 0 or --json)",
            rows.len() - shown
        )?;
    }
    Ok(())
}

/// The lineage as a tree: ancestors on one line, the subtree below.
pub fn print_lineage(
    out: &mut impl Write,
    catalog: &Catalog,
    idx: ArtIdx,
    max_nodes: usize,
) -> io::Result<()> {
    let mut ancestors: Vec<String> = catalog
        .ancestors(idx)
        .map(|a| catalog.node(a).id.to_string())
        .collect();
    if !ancestors.is_empty() {
        ancestors.reverse();
        writeln!(out, "ancestors: {}", ancestors.join(" > "))?;
    }
    let counts = catalog.subtree_counts(idx);
    writeln!(out, "{}", node_line(catalog, idx))?;
    let mut printed = 1usize;
    // Depth-first with explicit prefixes; bounded by max_nodes.
    let mut stack: Vec<(ArtIdx, String, bool)> = Vec::new();
    let children = sorted_children(catalog, idx);
    for (i, &c) in children.iter().enumerate().rev() {
        stack.push((c, String::new(), i + 1 == children.len()));
    }
    while let Some((a, prefix, last)) = stack.pop() {
        if printed >= max_nodes {
            break;
        }
        printed += 1;
        writeln!(
            out,
            "{prefix}{}{}",
            if last { "└── " } else { "├── " },
            node_line(catalog, a)
        )?;
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        let children = sorted_children(catalog, a);
        for (i, &c) in children.iter().enumerate().rev() {
            stack.push((c, child_prefix.clone(), i + 1 == children.len()));
        }
    }
    let total: u64 = counts.iter().sum();
    if (printed as u64) < total + 1 {
        writeln!(
            out,
            "… {} more not shown (--max-nodes)",
            total + 1 - printed as u64
        )?;
    }
    writeln!(out, "descendants: {}", kinds_summary(&counts))?;
    Ok(())
}

fn node_line(catalog: &Catalog, a: ArtIdx) -> String {
    let n = catalog.node(a);
    let inventory = match n.inventory {
        None => String::new(),
        Some(inv) => {
            let obj = catalog.inventories().get(inv);
            match obj.base {
                Some(_) => format!(
                    ", own inventory +{} -{}",
                    obj.added.len(),
                    obj.removed.len()
                ),
                None => format!(", own inventory of {}", obj.added.len()),
            }
        }
    };
    let relation = n.relation.map(|r| format!(" [{r}]")).unwrap_or_default();
    format!(
        "{} ({}, {}, {}{inventory}){relation}",
        n.id,
        n.kind,
        catalog.tenant_id(n.tenant),
        n.visibility.as_str()
    )
}

/// `show`: one artifact.
pub fn print_artifact(
    out: &mut impl Write,
    catalog: &Catalog,
    db: &AdvisoryDb,
    idx: ArtIdx,
    matches: &[ArtifactMatch],
    json: bool,
    filters: Option<serde_json::Value>,
) -> io::Result<()> {
    let n = catalog.node(idx);
    let effective = catalog.effective_components(idx);
    let holder = catalog.inventory_holder(idx);
    // What reading the inventory skipped or cannot evaluate: the holder's
    // (an artifact that inherits shows its source's).
    let inventory_warnings: &[Box<str>] = holder.map(|h| &*catalog.node(h).warnings).unwrap_or(&[]);
    let affected: Vec<_> = matches
        .iter()
        .map(|m| {
            let row = render_row(catalog, &Actor::Admin, idx, &m.hits);
            let record = db.get(m.advisory);
            let mut doc = serde_json::json!({
                "advisory": record.id().as_str(),
                "components": row.components,
                "path": row.path,
            });
            // Unrated: no key, as in `affected`.
            if let Some(rating) = record.rating() {
                doc["severity"] = serde_json::json!(rating);
            }
            doc
        })
        .collect();
    if json {
        let doc = serde_json::json!({
            "id": n.id.as_str(),
            "kind": n.kind,
            "tenant": catalog.tenant_id(n.tenant).as_str(),
            "name": n.name.as_deref(),
            "parent": n.parent.map(|p| catalog.node(p).id.to_string()),
            "relation": n.relation,
            "visibility": n.visibility,
            "labels": n.labels,
            "fixes": n.fixes,
            "supersedes": n.supersedes.map(|p| catalog.node(p).id.to_string()),
            "removed": n.removed,
            "inventory_from": holder.map(|h| catalog.node(h).id.to_string()),
            "components": effective.iter().map(|&c| catalog.components().get(c).purl.to_string()).collect::<Vec<_>>(),
            "inventory_warnings": inventory_warnings,
            "affected_by": affected,
        });
        let mut doc = doc;
        if let Some(filters) = filters {
            doc["filters"] = filters;
        }
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "{}", node_line(catalog, idx))?;
    if n.removed {
        writeln!(out, "removed")?;
    }
    if let Some(p) = n.parent {
        writeln!(out, "parent: {}", label(catalog, &Actor::Admin, p))?;
    }
    if let Some(p) = n.supersedes {
        writeln!(out, "supersedes: {}", label(catalog, &Actor::Admin, p))?;
    }
    let successors = catalog.successors(idx);
    if !successors.is_empty() {
        let mut ids: Vec<&str> = successors
            .iter()
            .map(|&s| catalog.node(s).id.as_str())
            .collect();
        ids.sort_unstable();
        writeln!(out, "superseded by: {}", ids.join(", "))?;
    }
    for (k, v) in &n.labels {
        writeln!(out, "label {k}={v}")?;
    }
    match holder {
        Some(h) if h == idx => {
            writeln!(out, "inventory: {} components (its own)", effective.len())?
        }
        Some(h) => writeln!(
            out,
            "inventory: {} components, inherited from {}",
            effective.len(),
            catalog.node(h).id
        )?,
        None => writeln!(out, "inventory: none")?,
    }
    for w in inventory_warnings {
        writeln!(out, "inventory warning: {w}")?;
    }
    let left_out = filters
        .as_ref()
        .and_then(|f| f["left_out"].as_u64())
        .unwrap_or(0);
    if matches.is_empty() && left_out == 0 {
        writeln!(out, "not affected by any open advisory or failure")?;
    }
    if left_out > 0 {
        let by = filters
            .as_ref()
            .map(|f| {
                let mut by = Vec::new();
                if let Some(l) = f["severity"].as_str() {
                    by.push(format!("--severity {l}"));
                }
                if f["ignore_unfixed"] == true {
                    by.push("--ignore-unfixed".to_string());
                }
                by.join(" and ")
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{} affecting it left out by {by}",
            count(left_out, "record")
        )?;
    }
    for m in matches {
        let row = render_row(catalog, &Actor::Admin, idx, &m.hits);
        let record = db.get(m.advisory);
        writeln!(
            out,
            "affected by {} [{}]  (path {})",
            record.id(),
            crate::gate::rating_text(record.rating().as_ref()),
            row.path.join(" > ")
        )?;
        for c in row.components {
            writeln!(
                out,
                "    {}  introduced by {}{}",
                c.purl,
                c.introduced_by,
                c.fixed
                    .map(|f| format!(", fixed in {f}"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// Ids shown per remedy step in the readable plan.
const STEP_IDS_SHOWN: usize = 8;

/// The readable remedy plan.
pub fn print_remedy(
    out: &mut impl Write,
    doc: &patchline_engine::report::RemedyDoc,
) -> io::Result<()> {
    let whose = match &doc.tenant {
        Some(t) => format!("tenant {t}"),
        None => "every tenant".to_string(),
    };
    if doc.steps.is_empty() {
        writeln!(out, "{}: nothing to remedy for {whose}", doc.advisory)?;
    } else {
        writeln!(
            out,
            "{}: remedy plan of {whose}, {} step{} top-down",
            doc.advisory,
            doc.steps.len(),
            if doc.steps.len() == 1 { "" } else { "s" }
        )?;
    }
    for (i, s) in doc.steps.iter().enumerate() {
        let what = match s.action {
            "relaunch" => format!("relaunch the instances of {}", s.artifact),
            action => format!("{action} {}", s.artifact),
        };
        let how = match (&s.onto, &s.waits_for, &s.superseded_by) {
            (Some(onto), _, _) => format!(" onto {onto}"),
            (None, Some(up), _) => format!(" (waits for a successor of {up})"),
            (None, None, Some(done)) => {
                format!(
                    " (done: {done} supersedes it; retire it once what derives from it has moved)"
                )
            }
            (None, None, None) => " (with the fixed packages)".to_string(),
        };
        let owner = s
            .tenant
            .as_deref()
            .map(|t| format!("[{t}] "))
            .unwrap_or_default();
        let mut ids = s
            .clears
            .iter()
            .take(STEP_IDS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if s.clears.len() > STEP_IDS_SHOWN {
            ids.push_str(&format!(" and {} more", s.clears.len() - STEP_IDS_SHOWN));
        }
        writeln!(
            out,
            "  {}. {owner}{what}{how}: clears {} ({ids})",
            i + 1,
            s.clears.len()
        )?;
    }
    if let Some(c) = &doc.if_successor_of {
        writeln!(
            out,
            "a successor of {} would clear {} artifacts of {} tenants",
            c.artifact, c.clears, c.tenants
        )?;
    }
    if let Some(ranking) = &doc.ranking
        && !ranking.is_empty()
    {
        writeln!(
            out,
            "artifacts whose patched successor would clear the most:"
        )?;
        for c in ranking {
            writeln!(
                out,
                "  {:<32} {:>9} artifacts of {} tenants",
                c.artifact, c.clears, c.tenants
            )?;
        }
    }
    Ok(())
}
