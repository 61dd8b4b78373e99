//! The artifact JSON that `POST /v1/artifacts` and `patchline import
//! artifacts` accept: parsing it, translating it (with and without the
//! token's tenant) and applying it to a small catalog whose parents it may
//! name gives an artifact or an error, never a panic.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use patchline_core::doc::ArtifactDoc;
use patchline_core::{
    Actor, ArtifactId, ArtifactSpec, Catalog, Kind, Mode, Outcome, TenantId, Visibility,
};

fn parent(
    id: &str,
    kind: Kind,
    tenant: &str,
    parent: Option<&str>,
    purls: &[&str],
) -> ArtifactSpec {
    ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind,
        tenant: TenantId::new(tenant).unwrap(),
        name: None,
        parent: parent.map(|p| ArtifactId::new(p).unwrap()),
        relation: None,
        visibility: Visibility::Public,
        labels: BTreeMap::new(),
        components: Some(purls.iter().map(|p| p.to_string()).collect()),
        fixes: vec![],
    }
}

/// `base` and `bionic` (images) and `web-tpl` (a template of `base`), so
/// that `parent` references in the input can resolve.
fn catalog() -> Catalog {
    let mut c = Catalog::new();
    for spec in [
        parent(
            "base",
            Kind::Image,
            "acme",
            None,
            &[
                "pkg:pypi/urllib3@1.26.5",
                "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?distro=debian-12",
            ],
        ),
        parent(
            "bionic",
            Kind::Image,
            "canonical",
            None,
            &["pkg:pypi/py@1.11.0"],
        ),
        parent(
            "web-tpl",
            Kind::Template,
            "acme",
            Some("base"),
            &["pkg:pypi/urllib3@1.26.18"],
        ),
    ] {
        c.apply(&spec, Mode::Create, &Actor::Admin).unwrap();
    }
    c
}

fn apply(c: &mut Catalog, spec: &ArtifactSpec, actor: &Actor) {
    let before = c.checkpoint();
    let len = c.len();
    for mode in [Mode::Create, Mode::Upsert] {
        if let Ok(first) = c.apply(spec, mode, actor) {
            // Applying the same spec again changes nothing.
            let again = c.apply(spec, mode, actor);
            assert!(
                matches!(again, Ok(Outcome::Unchanged(i)) if i == first.idx()),
                "{first:?} then {again:?}"
            );
        }
    }
    c.rollback(before);
    assert_eq!(c.len(), len);
}

fuzz_target!(|data: &[u8]| {
    // The server refuses non-UTF-8 bodies; the importer reads lines of text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = ArtifactDoc::parse(text) else {
        return;
    };
    let mut c = catalog();
    let acme = TenantId::new("acme").unwrap();
    // The importer: the document names its tenant; an operator applies it.
    if let Ok(t) = doc.clone().into_spec(None) {
        apply(&mut c, &t.spec, &Actor::Admin);
        let tenant = Actor::Tenant(t.spec.tenant.clone());
        apply(&mut c, &t.spec, &tenant);
    }
    // The server with a tenant's token: the token's tenant wins.
    if let Ok(t) = doc.into_spec(Some(&acme)) {
        apply(&mut c, &t.spec, &Actor::Tenant(acme.clone()));
        apply(&mut c, &t.spec, &Actor::Admin);
    }
});
