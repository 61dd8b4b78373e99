//! The impacts the engine keeps between questions (`impact_shared`) follow
//! every change of the catalog and of the records: a kept impact is never
//! answered after an artifact, a re-inventory, a removal or a republished
//! record changed it.

use patchline_core::{Actor, Advisory, Mode, TenantId};
use patchline_engine::{BatchItem, Engine};

fn advisory(modified: &str, fixed: &str) -> Advisory {
    let text = format!(
        r#"{{"id": "PYSEC-T-1", "modified": "{modified}",
            "affected": [{{"package": {{"ecosystem": "PyPI", "name": "urllib3"}},
              "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]}}]}}"#
    );
    Advisory::compile(patchline_formats::osv::parse_json(text.as_bytes()).unwrap()).unwrap()
}

fn item(text: &str) -> BatchItem {
    let spec = patchline_core::doc::ArtifactDoc::parse(text)
        .unwrap()
        .into_spec(Some(&TenantId::new("acme").unwrap()))
        .unwrap()
        .spec;
    BatchItem {
        location: spec.id.to_string(),
        spec,
    }
}

fn apply(e: &mut Engine, lines: &[&str], mode: Mode) {
    e.apply_batch(
        lines.iter().map(|l| Ok(item(l))),
        mode,
        &Actor::Admin,
        &mut |_| {},
    )
    .unwrap();
}

fn ids(e: &mut Engine, adv: patchline_core::AdvIdx) -> Vec<String> {
    let impact = e.impact_shared(adv);
    let mut v: Vec<String> = impact
        .iter()
        .map(|(a, _)| e.catalog().node(a).id.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn kept_impacts_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::open(&dir.path().join("data")).unwrap();
    apply(
        &mut e,
        &[r#"{"id": "base", "kind": "image", "components": ["pkg:pypi/urllib3@1.26.5"]}"#],
        Mode::Create,
    );
    e.publish_advisories(vec![(
        String::new(),
        advisory("2024-01-01T00:00:00Z", "1.26.18"),
    )])
    .unwrap();
    let adv = e.lookup_record("PYSEC-T-1").unwrap();
    assert_eq!(ids(&mut e, adv), ["base"]);
    assert!(
        std::sync::Arc::ptr_eq(&e.impact_shared(adv), &e.impact_shared(adv)),
        "kept"
    );
    // A new artifact.
    apply(
        &mut e,
        &[r#"{"id": "vm", "kind": "instance", "parent": "base"}"#],
        Mode::Create,
    );
    assert_eq!(ids(&mut e, adv), ["base", "vm"]);
    // A re-inventory that masks the instance.
    apply(
        &mut e,
        &[
            r#"{"id": "vm", "kind": "instance", "parent": "base", "components": ["pkg:pypi/urllib3@1.26.18"]}"#,
        ],
        Mode::Upsert,
    );
    assert_eq!(ids(&mut e, adv), ["base"]);
    // A republished record that no longer affects the base's version.
    e.publish_advisories(vec![(
        String::new(),
        advisory("2024-02-01T00:00:00Z", "1.26.0"),
    )])
    .unwrap();
    assert!(ids(&mut e, adv).is_empty());
}
