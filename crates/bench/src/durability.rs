//! What `synchronous = FULL` costs: a 2xx means the change is fsynced, so
//! every write the API acknowledges pays an fsync of the WAL. Measured on
//! the engine's own commits (one artifact, one transaction, as
//! `POST /v1/artifacts` does), FULL against NORMAL on the same machine in
//! the same run.

use std::path::Path;
use std::time::Instant;

use patchline_core::doc::ArtifactDoc;
use patchline_core::{Actor, Mode};
use patchline_engine::{BatchItem, Engine};

/// Artifacts created, one commit each, per measurement.
const COMMITS: usize = 2000;

fn commits_per_s(dir: &Path, synchronous: &str) -> anyhow::Result<f64> {
    std::fs::remove_dir_all(dir).ok();
    let mut engine = Engine::open(dir)?;
    engine
        .store()
        .connection()
        .execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
    let purl = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12";
    let started = Instant::now();
    for i in 0..COMMITS {
        let doc = ArtifactDoc::parse(&format!(
            r#"{{"id":"vm-{i}","kind":"image","tenant":"t","components":["{purl}"]}}"#
        ))?;
        let spec = doc.into_spec(None)?.spec;
        let item = BatchItem {
            location: String::new(),
            spec,
        };
        engine.apply_batch([Ok(item)], Mode::Create, &Actor::Admin, &mut |_| {})?;
    }
    Ok(COMMITS as f64 / started.elapsed().as_secs_f64())
}

/// Rows: (measure, result, note).
pub fn run(dir: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let normal = commits_per_s(&dir.join("normal"), "NORMAL")?;
    let full = commits_per_s(&dir.join("full"), "FULL")?;
    // Once more each, interleaved, so that a disk's mood does not pick the winner.
    let normal = normal.max(commits_per_s(&dir.join("normal"), "NORMAL")?);
    let full = full.max(commits_per_s(&dir.join("full"), "FULL")?);
    std::fs::remove_dir_all(dir).ok();
    Ok(vec![
        (
            "single-artifact commits, synchronous = FULL (the default)".into(),
            format!("{full:.0}/s"),
            format!("{COMMITS} commits, each fsynced before it returns"),
        ),
        (
            "the same with synchronous = NORMAL".into(),
            format!("{normal:.0}/s"),
            format!(
                "FULL runs at {:.2}× NORMAL: {:.2} ms more per acknowledged write",
                full / normal,
                (1000.0 / full - 1000.0 / normal).max(0.0)
            ),
        ),
    ])
}
