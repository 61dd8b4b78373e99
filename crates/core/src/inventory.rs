//! Components and inventories. A component is one package URL, interned once
//! for the whole catalog; what matching needs from it (purl type, version,
//! source package, distribution) is read from the purl when it is interned.
//! An inventory is an immutable set of components, stored as a delta
//! (added, removed) against a base inventory, so that a derived image that
//! changes ten packages costs ten entries.
//!
//! Component identity is the canonical purl: "the same component at the same
//! version" (CONTRACT.md §4.4) means the same canonical purl. Answers show the
//! purl as it was first given (`+` unencoded, say), so that callers find
//! their own strings back.

use std::collections::HashMap;
use std::str::FromStr;

use patchline_formats::purl::Purl;

use patchline_versions::Version;

use crate::ecosystem::{Distro, Family, PurlType, normalize_name};

/// Index of an interned component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(pub u32);

/// Index of an interned (purl type, source package name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// Index of an inventory object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvId(pub u32);

/// Longest delta chain before an inventory is stored whole: bounds the cost
/// of a membership test to this many binary searches.
pub const DELTA_DEPTH_MAX: u16 = 8;

/// One package, as matching sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The purl as first given: what answers show.
    pub purl: Box<str>,
    /// Canonical purl text, the component's identity.
    pub canonical: Box<str>,
    pub purl_type: PurlType,
    /// The version as the ecosystem orders it (rpm: `epoch:version-release`).
    pub version: Box<str>,
    /// The package name advisories of this ecosystem use: the source package
    /// for distributions, the normalised package name elsewhere.
    pub source: SourceId,
    /// Red Hat advisories may name binary or source RPMs: the binary name
    /// is indexed too when it differs from the source.
    pub alt_source: Option<SourceId>,
    /// The source package's version when the purl gives one
    /// (`upstream=bash@5.2.15-2`), else `None` (use `version`).
    pub source_version: Option<Box<str>>,
    pub distro: Option<Distro>,
    /// `match_version` parsed in the purl type's scheme, once.
    pub parsed: Option<Version>,
}

impl Component {
    /// The version advisories are evaluated against (CONTRACT.md §4.2).
    pub fn match_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }
}

/// Why a purl cannot be a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentError(pub String);

/// Interned components and their source-name index.
#[derive(Debug, Default)]
pub struct Components {
    items: Vec<Component>,
    by_purl: HashMap<Box<str>, ComponentId>,
    sources: Vec<(PurlType, Box<str>)>,
    by_source: HashMap<(PurlType, Box<str>), SourceId>,
    /// Components per source id (through `source` or `alt_source`).
    members: Vec<Vec<ComponentId>>,
    /// Bumped when a rollback drops components, whose ids may then be
    /// reused: caches keyed by component id check it.
    epoch: u64,
}

/// Reads what matching needs from a parsed purl.
pub(crate) struct ComponentFacts {
    purl_type: PurlType,
    version: String,
    source: String,
    alt_source: Option<String>,
    source_version: Option<String>,
    distro: Option<Distro>,
}

pub(crate) fn facts(purl: &Purl) -> Result<ComponentFacts, ComponentError> {
    let purl_type = PurlType::parse(&purl.ty);
    let Some(raw_version) = purl.version.as_deref().filter(|v| !v.is_empty()) else {
        return Err(ComponentError("a component needs a version".into()));
    };
    let mut version = raw_version.to_string();
    let name = purl.name.as_str();
    let namespace = purl.namespace.as_deref();
    let source_package = purl.source_package();
    let mut alt_source = None;
    let mut source_version = None;
    let source = match purl_type {
        PurlType::Deb | PurlType::Apk => match source_package {
            Some((n, v)) => {
                source_version = v.map(str::to_string);
                n.to_string()
            }
            None => name.to_string(),
        },
        PurlType::Rpm => {
            if let Some(epoch) = purl
                .qualifier("epoch")
                .filter(|e| !e.is_empty() && *e != "0")
                && !version.contains(':')
            {
                version = format!("{epoch}:{version}");
            }
            let source = source_package
                .map(|(n, _)| rpm_source_name(n))
                .unwrap_or(name)
                .to_string();
            if source != name {
                alt_source = Some(name.to_string());
            }
            source
        }
        PurlType::Npm => match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        },
        PurlType::Golang => match namespace {
            Some(ns) => format!("{ns}/{name}"),
            // The Go toolchain and standard library: osv-scalibr names it
            // `go` (from a binary's build info) or `stdlib` (from go.mod);
            // OSV's Go records name it `stdlib`, with SemVer versions.
            None if name == "go" || name == "stdlib" => {
                version = go_toolchain_version(&version);
                "stdlib".to_string()
            }
            None => name.to_string(),
        },
        // OSV names a Maven package `group:artifact`, a Composer package
        // `vendor/name`, a Swift package by its source URL without the
        // scheme (`github.com/apple/swift-nio`); a Hex package in an
        // organisation's private repository (`pkg:hex/acme/foo`) is not the
        // public package of that name, so it keeps its namespace.
        PurlType::Maven => match namespace {
            Some(ns) => format!("{ns}:{name}"),
            None => name.to_string(),
        },
        PurlType::Composer | PurlType::Swift | PurlType::Hex => match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        },
        PurlType::Pypi
        | PurlType::Cargo
        | PurlType::Gem
        | PurlType::Nuget
        | PurlType::Bitnami
        | PurlType::Pub
        | PurlType::Hackage
        | PurlType::Cran
        | PurlType::Other => name.to_string(),
    };
    let distro = purl_distro(purl, purl_type, namespace);
    Ok(ComponentFacts {
        purl_type,
        version,
        source: normalize_name(purl_type, &source),
        alt_source: alt_source.map(|s| normalize_name(purl_type, &s)),
        source_version,
        distro,
    })
}

/// Whether a purl can be a component. `Err`: it cannot (too long, no
/// version). `Ok(Some(note))`: it can, but its version does not parse in its
/// ecosystem's ordering, so no range can contain it (only records that list
/// that exact version match it): the note says so. `Ok(None)`: fine.
pub fn check_component(purl: &Purl) -> Result<Option<String>, ComponentError> {
    let canonical = purl.to_string();
    if canonical.len() > crate::text::PURL_LEN_MAX {
        return Err(ComponentError(format!(
            "a purl may have at most {} bytes",
            crate::text::PURL_LEN_MAX
        )));
    }
    let facts = facts(purl)?;
    let Some(scheme) = facts.purl_type.scheme() else {
        return Ok(None);
    };
    let version = facts.source_version.as_deref().unwrap_or(&facts.version);
    Ok(scheme.parse(version).err().map(|e| {
        format!("{e}: no advisory range can contain it, only records that list this exact version")
    }))
}

/// The distribution of an OS package: its `distro` qualifier, else its
/// namespace. A qualifier that names no distribution by itself is read
/// with the namespace: osv-scalibr writes os-release's `VERSION_ID` alone
/// (`pkg:apk/alpine/…?distro=3.22.0`, `pkg:deb/ubuntu/…?distro=20.04`,
/// `pkg:deb/debian/…?distro=12`), trivy too for apk (`distro=3.23.3`), and
/// Alpine's own `v3.18` or Debian's `sid` need the namespace as well.
fn purl_distro(purl: &Purl, purl_type: PurlType, namespace: Option<&str>) -> Option<Distro> {
    let os_type = matches!(purl_type, PurlType::Deb | PurlType::Apk | PurlType::Rpm);
    let qualifier = purl
        .qualifier("distro")
        .map(str::trim)
        .filter(|d| !d.is_empty());
    match qualifier {
        Some(d) => {
            let distro = Distro::parse(d);
            if distro.family != Family::Other || !os_type {
                return Some(distro);
            }
            match namespace.map(|ns| Distro::parse(&format!("{ns}-{d}"))) {
                Some(with_ns) if with_ns.family != Family::Other => Some(with_ns),
                _ => Some(distro),
            }
        }
        None if os_type => namespace.map(Distro::parse),
        None => None,
    }
}

/// A Go toolchain version as OSV's `stdlib` records write it: `go1.21.3`
/// is `1.21.3`, and Go's pre-release tags `go1.21rc2`/`go1.21beta1` are
/// `1.21.0-rc.2`/`1.21.0-beta.1` (golang.org/x/vuln's conversion).
fn go_toolchain_version(version: &str) -> String {
    let v = version.strip_prefix("go").unwrap_or(version);
    for tag in ["rc", "beta", "alpha"] {
        if let Some((release, n)) = v.split_once(tag)
            && !release.is_empty()
            && release.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            let release = match release.matches('.').count() {
                0 => format!("{release}.0.0"),
                1 => format!("{release}.0"),
                _ => release.to_string(),
            };
            return if n.is_empty() {
                format!("{release}-{tag}")
            } else {
                format!("{release}-{tag}.{n}")
            };
        }
    }
    v.to_string()
}

/// `bash-4.2.46-34.el7.src.rpm` -> `bash`: a source RPM file name is
/// `NAME-VERSION-RELEASE.src.rpm`.
fn rpm_source_name(upstream: &str) -> &str {
    let stem = upstream
        .strip_suffix(".src.rpm")
        .or_else(|| upstream.strip_suffix(".nosrc.rpm"));
    match stem {
        Some(stem) => {
            let mut parts = stem.rsplitn(3, '-');
            let (_release, _version, name) = (parts.next(), parts.next(), parts.next());
            name.filter(|n| !n.is_empty()).unwrap_or(stem)
        }
        None => upstream,
    }
}

impl Components {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, id: ComponentId) -> &Component {
        &self.items[id.0 as usize]
    }

    /// Changes when component ids may have been reused.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn find(&self, purl: &str) -> Option<ComponentId> {
        self.by_purl.get(purl).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ComponentId, &Component)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, c)| (ComponentId(i as u32), c))
    }

    /// Parses, canonicalises and interns a purl; the text is kept for display.
    pub fn intern(&mut self, text: &str) -> Result<ComponentId, ComponentError> {
        if let Some(&id) = self.by_purl.get(text) {
            return Ok(id);
        }
        let purl = Purl::from_str(text).map_err(|e| ComponentError(e.to_string()))?;
        self.intern_with_display(&purl, text)
    }

    pub fn intern_purl(&mut self, purl: &Purl) -> Result<ComponentId, ComponentError> {
        let canonical = purl.to_string();
        self.intern_with_display(purl, &canonical)
    }

    fn intern_with_display(
        &mut self,
        purl: &Purl,
        display: &str,
    ) -> Result<ComponentId, ComponentError> {
        let canonical = purl.to_string();
        if let Some(&id) = self.by_purl.get(canonical.as_str()) {
            // Another spelling of a known component: remember it too.
            self.by_purl.insert(display.into(), id);
            return Ok(id);
        }
        let facts = facts(purl)?;
        let id = ComponentId(
            u32::try_from(self.items.len())
                .map_err(|_| ComponentError("too many components".into()))?,
        );
        let source = self.source_id(facts.purl_type, &facts.source);
        let alt_source = facts
            .alt_source
            .as_deref()
            .map(|s| self.source_id(facts.purl_type, s));
        self.members[source.0 as usize].push(id);
        if let Some(alt) = alt_source {
            self.members[alt.0 as usize].push(id);
        }
        let parsed = facts.purl_type.scheme().and_then(|scheme| {
            scheme
                .parse(facts.source_version.as_deref().unwrap_or(&facts.version))
                .ok()
        });
        self.items.push(Component {
            parsed,
            purl: display.into(),
            canonical: canonical.clone().into_boxed_str(),
            purl_type: facts.purl_type,
            version: facts.version.into_boxed_str(),
            source,
            alt_source,
            source_version: facts.source_version.map(String::into_boxed_str),
            distro: facts.distro,
        });
        self.by_purl.insert(display.into(), id);
        self.by_purl.insert(canonical.into_boxed_str(), id);
        Ok(id)
    }

    fn source_id(&mut self, ty: PurlType, name: &str) -> SourceId {
        let key = (ty, Box::<str>::from(name));
        if let Some(&id) = self.by_source.get(&key) {
            return id;
        }
        let id = SourceId(self.sources.len() as u32);
        self.sources.push(key.clone());
        self.by_source.insert(key, id);
        self.members.push(Vec::new());
        id
    }

    /// Components whose source (or binary name, for rpm) is `name` in an
    /// ecosystem of purl type `ty`; `name` must be normalised.
    pub fn by_source(&self, ty: PurlType, name: &str) -> &[ComponentId] {
        // A borrowed-key lookup would need a custom Borrow impl; the
        // allocation is per advisory entry, not per component.
        match self.by_source.get(&(ty, Box::<str>::from(name))) {
            Some(id) => &self.members[id.0 as usize],
            None => &[],
        }
    }

    pub fn source_name(&self, id: SourceId) -> &str {
        &self.sources[id.0 as usize].1
    }

    /// Forgets every component interned after the first `len`.
    pub(crate) fn truncate(&mut self, len: usize) {
        if self.items.len() > len {
            // Other spellings may point at the dropped components too; a
            // rollback is rare enough for a full pass.
            self.by_purl.retain(|_, id| (id.0 as usize) < len);
            self.epoch += 1;
        }
        while self.items.len() > len {
            let Some(c) = self.items.pop() else { break };
            let id = ComponentId(self.items.len() as u32);
            for source in std::iter::once(c.source).chain(c.alt_source) {
                let members = &mut self.members[source.0 as usize];
                if members.last() == Some(&id) {
                    members.pop();
                }
            }
        }
        // Sources interned for the forgotten components stay: they are
        // names, harmless when no component refers to them.
    }
}

/// One immutable inventory: `base` minus `removed` plus `added`, both
/// sorted by component id; `base == None` means `added` is the whole set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvObj {
    pub base: Option<InvId>,
    pub added: Box<[ComponentId]>,
    pub removed: Box<[ComponentId]>,
    /// Length of the delta chain down to a whole inventory.
    pub depth: u16,
}

/// All inventory objects, with the indexes propagation walks.
#[derive(Debug, Default)]
pub struct Inventories {
    objs: Vec<InvObj>,
    /// Delta objects built on each object.
    children: Vec<Vec<InvId>>,
    /// Objects whose `added` holds each component, indexed by component id.
    containing: Vec<Vec<InvId>>,
}

impl Inventories {
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    pub fn get(&self, id: InvId) -> &InvObj {
        &self.objs[id.0 as usize]
    }

    pub fn children(&self, id: InvId) -> &[InvId] {
        &self.children[id.0 as usize]
    }

    /// Inventory objects that list `c` in their `added` set.
    pub fn containing(&self, c: ComponentId) -> &[InvId] {
        self.containing
            .get(c.0 as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Does inventory `inv` hold component `c`?
    pub fn contains(&self, mut inv: InvId, c: ComponentId) -> bool {
        loop {
            let obj = self.get(inv);
            if obj.added.binary_search(&c).is_ok() {
                return true;
            }
            if obj.removed.binary_search(&c).is_ok() {
                return false;
            }
            match obj.base {
                Some(base) => inv = base,
                None => return false,
            }
        }
    }

    /// The whole set of `inv`, sorted by component id.
    pub fn materialize(&self, inv: InvId) -> Vec<ComponentId> {
        let obj = self.get(inv);
        let Some(base) = obj.base else {
            return obj.added.to_vec();
        };
        let base_set = self.materialize(base);
        let mut out = Vec::with_capacity(base_set.len() + obj.added.len());
        let mut added = obj.added.iter().peekable();
        for c in base_set {
            if obj.removed.binary_search(&c).is_ok() {
                continue;
            }
            while let Some(&&a) = added.peek() {
                if a < c {
                    out.push(a);
                    added.next();
                } else {
                    break;
                }
            }
            if added.peek() == Some(&&c) {
                added.next();
            }
            out.push(c);
        }
        out.extend(added.copied());
        out
    }

    /// Stores `set` (sorted, deduplicated) as a delta against `base`, or
    /// whole when the chain would be too deep or the delta no smaller.
    pub fn create(&mut self, base: Option<InvId>, set: &[ComponentId]) -> InvId {
        debug_assert!(set.windows(2).all(|w| w[0] < w[1]));
        let delta = base.and_then(|b| {
            let depth = self.get(b).depth;
            if depth >= DELTA_DEPTH_MAX {
                return None;
            }
            let base_set = self.materialize(b);
            let (added, removed) = diff(&base_set, set);
            (added.len() + removed.len() < set.len().max(1)).then_some((
                b,
                added,
                removed,
                depth + 1,
            ))
        });
        let obj = match delta {
            Some((b, added, removed, depth)) => InvObj {
                base: Some(b),
                added: added.into(),
                removed: removed.into(),
                depth,
            },
            None => InvObj {
                base: None,
                added: set.into(),
                removed: Box::new([]),
                depth: 0,
            },
        };
        self.push(obj)
    }

    /// Adds an object as stored (loading from the database).
    pub fn push(&mut self, obj: InvObj) -> InvId {
        let id = InvId(self.objs.len() as u32);
        if let Some(b) = obj.base {
            self.children[b.0 as usize].push(id);
        }
        for &c in obj.added.iter() {
            let i = c.0 as usize;
            if self.containing.len() <= i {
                self.containing.resize_with(i + 1, Vec::new);
            }
            self.containing[i].push(id);
        }
        self.objs.push(obj);
        self.children.push(Vec::new());
        id
    }

    /// Forgets every object created after the first `len`.
    pub(crate) fn truncate(&mut self, len: usize) {
        while self.objs.len() > len {
            let Some(obj) = self.objs.pop() else { break };
            self.children.pop();
            let id = InvId(self.objs.len() as u32);
            if let Some(b) = obj.base {
                let siblings = &mut self.children[b.0 as usize];
                if siblings.last() == Some(&id) {
                    siblings.pop();
                }
            }
            for c in obj.added.iter() {
                if let Some(list) = self.containing.get_mut(c.0 as usize)
                    && list.last() == Some(&id)
                {
                    list.pop();
                }
            }
        }
    }
}

/// `(set - base, base - set)` of two sorted sets.
fn diff(base: &[ComponentId], set: &[ComponentId]) -> (Vec<ComponentId>, Vec<ComponentId>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < set.len() {
        match (base.get(i), set.get(j)) {
            (Some(b), Some(s)) if b == s => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(s)) if b < s => {
                removed.push(*b);
                i += 1;
            }
            (Some(_), Some(s)) => {
                added.push(*s);
                j += 1;
            }
            (Some(b), None) => {
                removed.push(*b);
                i += 1;
            }
            (None, Some(s)) => {
                added.push(*s);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<ComponentId> {
        v.iter().map(|&i| ComponentId(i)).collect()
    }

    #[test]
    fn deltas_materialize_back() {
        let mut inv = Inventories::default();
        let base = inv.create(None, &ids(&[1, 2, 3, 4, 5, 6, 7, 8]));
        let child = inv.create(Some(base), &ids(&[1, 2, 3, 4, 5, 6, 7, 9]));
        assert_eq!(inv.get(child).added.as_ref(), ids(&[9]).as_slice());
        assert_eq!(inv.get(child).removed.as_ref(), ids(&[8]).as_slice());
        assert_eq!(inv.materialize(child), ids(&[1, 2, 3, 4, 5, 6, 7, 9]));
        assert!(inv.contains(child, ComponentId(9)));
        assert!(!inv.contains(child, ComponentId(8)));
        assert!(inv.contains(child, ComponentId(1)));
        // A set that shares nothing is stored whole.
        let other = inv.create(Some(base), &ids(&[20, 21]));
        assert_eq!(inv.get(other).base, None);
        inv.truncate(2);
        assert_eq!(inv.children(base), &[child]);
        assert!(inv.containing(ComponentId(20)).is_empty());
    }

    #[test]
    fn chains_are_bounded() {
        let mut inv = Inventories::default();
        let mut set: Vec<u32> = (0..100).collect();
        let mut cur = inv.create(None, &ids(&set));
        for step in 0..(DELTA_DEPTH_MAX as u32 * 3) {
            set.push(1000 + step);
            cur = inv.create(Some(cur), &ids(&set));
            assert!(inv.get(cur).depth <= DELTA_DEPTH_MAX);
            assert_eq!(inv.materialize(cur), ids(&set));
        }
    }

    #[test]
    fn purl_facts() {
        let mut c = Components::default();
        let id = c
            .intern("pkg:deb/ubuntu/bsdutils@1:2.31.1-0.4ubuntu3.1?arch=amd64&upstream=util-linux%402.31.1-0.4ubuntu3.1&distro=ubuntu-18.04")
            .unwrap();
        let comp = c.get(id);
        assert_eq!(c.source_name(comp.source), "util-linux");
        assert_eq!(comp.match_version(), "2.31.1-0.4ubuntu3.1");
        assert_eq!(c.by_source(PurlType::Deb, "util-linux"), &[id]);
        let id = c
            .intern("pkg:rpm/centos/bash@4.2.46-31.el7?arch=x86_64&epoch=1&upstream=bash-4.2.46-31.el7.src.rpm&distro=centos-7.6.1810")
            .unwrap();
        assert_eq!(&*c.get(id).version, "1:4.2.46-31.el7");
        assert_eq!(c.source_name(c.get(id).source), "bash");
        assert!(c.intern("pkg:deb/debian/foo").is_err());
        assert!(c.intern("not a purl").is_err());
    }
}
