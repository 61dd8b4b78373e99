//! Reference clouds over real package data: base images are the fixture
//! package databases (Debian 12 and Ubuntu 18.04 dpkg status, Alpine 3.18
//! apk) with small perturbations; derived images change a few packages
//! (upgrade, removal, addition, downgrade); templates, replicas and
//! instances inherit; advisories target real source packages of the
//! universe with ranges that some variants fall into and others do not.
//!
//! Deterministic for a seed. Inventories are kept as (package, variant)
//! pairs and rendered to purls only when written.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use patchline_formats::inventory::{Format, Hint, parse};
use patchline_formats::purl::Purl;

const DEBIAN: &str = include_str!("../../../testdata/inventories/debian-12.dpkg-status");
const UBUNTU: &str = include_str!("../../../testdata/inventories/ubuntu-18.04.dpkg-status");
const ALPINE: &str = include_str!("../../../testdata/inventories/alpine-3.18.apk-installed");

/// Extra language packages derived images may add (name, version).
const PYPI: &[(&str, &str)] = &[
    ("urllib3", "1.26.5"),
    ("django", "4.1.1"),
    ("requests", "2.25.0"),
    ("jinja2", "2.11.2"),
    ("pyyaml", "5.3.1"),
];

/// The advisory that hits the C library of every base image.
pub const ALL_BASES_ADVISORY: &str = "GEN-ALL-BASES";

/// How big a cloud is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub name: &'static str,
    pub base_images: usize,
    pub images: usize,
    pub templates: usize,
    pub replicas: usize,
    pub instances: usize,
    pub tenants: usize,
    pub advisories: usize,
    /// Instances with an inventory of their own, per thousand.
    pub own_instances_permille: u32,
}

impl Size {
    pub const S: Size = Size {
        name: "S",
        base_images: 20,
        images: 1_000,
        templates: 1_000,
        replicas: 2_000,
        instances: 20_000,
        tenants: 1_000,
        advisories: 200,
        own_instances_permille: 5,
    };
    pub const M: Size = Size {
        name: "M",
        base_images: 50,
        images: 10_000,
        templates: 10_000,
        replicas: 20_000,
        instances: 1_000_000,
        tenants: 10_000,
        advisories: 2_000,
        own_instances_permille: 5,
    };

    pub fn parse(name: &str) -> Option<Size> {
        match name {
            "S" | "s" => Some(Size::S),
            "M" | "m" => Some(Size::M),
            _ => None,
        }
    }
}

/// splitmix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < permille as usize
    }
}

/// One package of a distribution universe.
#[derive(Debug, Clone)]
struct Pkg {
    purl: Purl,
    /// Source package name and the version advisories compare.
    source: String,
    source_version: String,
    /// Never removed (the C library: the all-bases advisory targets it).
    essential: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Distro {
    Debian,
    Ubuntu,
    Alpine,
}

impl Distro {
    fn ecosystem(self) -> &'static str {
        match self {
            Distro::Debian => "Debian:12",
            Distro::Ubuntu => "Ubuntu:18.04:LTS",
            Distro::Alpine => "Alpine:v3.18",
        }
    }
}

/// Version variants of a package in an inventory. Suffixes are chosen so
/// that, in dpkg and apk order, `~old1` < V < `+b1` < `+fix1` < `+pl1`:
/// an advisory fixed in `V+fix1` affects every variant but the upgrade.
const VARIANTS: [&str; 4] = ["", "+b1", "+pl1", "~old1"];
const UPGRADE: u8 = 2;
const DOWNGRADE: u8 = 3;

fn with_variant(version: &str, variant: u8, distro: Distro) -> String {
    let suffix = VARIANTS[variant as usize];
    if suffix.is_empty() {
        return version.to_string();
    }
    match distro {
        // apk has no `~` or `+`: use its suffix grammar (`_pre` < none < `_p`).
        Distro::Alpine => {
            let (v, r) = version.split_once("-r").unwrap_or((version, "0"));
            match variant {
                1 => format!("{v}_p1-r{r}"),
                2 => format!("{v}_p9-r{r}"),
                _ => format!("{v}_pre1-r{r}"),
            }
        }
        _ => format!("{version}{suffix}"),
    }
}

/// The apk variant a fix sits at: above `+b1` (`_p1`), below `+pl1` (`_p9`).
fn fix_version(version: &str, distro: Distro) -> String {
    match distro {
        Distro::Alpine => {
            let (v, r) = version.split_once("-r").unwrap_or((version, "0"));
            format!("{v}_p5-r{r}")
        }
        _ => format!("{version}+fix1"),
    }
}

struct Universe {
    distros: Vec<(Distro, Vec<Pkg>)>,
}

impl Universe {
    fn load() -> anyhow::Result<Universe> {
        let mut distros = Vec::new();
        for (distro, format, text, hint) in [
            (Distro::Debian, Format::DpkgStatus, DEBIAN, "debian-12"),
            (Distro::Ubuntu, Format::DpkgStatus, UBUNTU, "ubuntu-18.04"),
            (Distro::Alpine, Format::ApkInstalled, ALPINE, "alpine-3.18"),
        ] {
            let inv = parse(
                format,
                text.as_bytes(),
                &Hint {
                    distro: Some(hint.into()),
                },
            )?;
            let pkgs = inv
                .components
                .into_iter()
                .map(|purl| {
                    let version = purl.version.clone().unwrap_or_default();
                    let (source, source_version) = match purl.qualifier("upstream") {
                        Some(up) => match up.split_once('@') {
                            Some((n, v)) => (n.to_string(), v.to_string()),
                            None => (up.to_string(), version.clone()),
                        },
                        None => (purl.name.clone(), version.clone()),
                    };
                    let essential = matches!(source.as_str(), "glibc" | "musl");
                    Pkg {
                        purl,
                        source,
                        source_version,
                        essential,
                    }
                })
                .collect();
            distros.push((distro, pkgs));
        }
        Ok(Universe { distros })
    }

    fn render(&self, d: usize, pkg: u16, variant: u8, out: &mut String) {
        let (distro, pkgs) = &self.distros[d];
        if pkg as usize >= pkgs.len() {
            let (name, version) = PYPI[(pkg as usize - pkgs.len()) % PYPI.len()];
            let _ = write!(out, "pkg:pypi/{name}@{version}");
            return;
        }
        let p = &pkgs[pkg as usize];
        let mut purl = p.purl.clone();
        if let Some(v) = &purl.version {
            purl.version = Some(with_variant(v, variant, *distro));
        }
        if let Some(up) = purl.qualifier("upstream").map(str::to_string)
            && let Some((n, v)) = up.split_once('@')
        {
            purl.qualifiers.insert(
                "upstream".into(),
                format!("{n}@{}", with_variant(v, variant, *distro)),
            );
        }
        let _ = write!(out, "{purl}");
    }
}

/// An inventory: sorted (package, variant) pairs of one distribution.
#[derive(Debug, Clone)]
struct Inv {
    distro: usize,
    pkgs: Vec<(u16, u8)>,
}

/// What was written, for the benchmark to find.
#[derive(Debug, Clone)]
pub struct Written {
    pub images_file: PathBuf,
    pub instances_file: PathBuf,
    pub advisories_dir: PathBuf,
    /// The advisory that hits the C library of every base image.
    pub all_bases_advisory: String,
}

fn tenant(i: usize) -> String {
    format!("tenant-{i:05}")
}

/// Writes a cloud of `size` into `dir`.
pub fn generate(size: Size, seed: u64, dir: &Path) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let universe = Universe::load()?;
    let mut rng = Rng::new(seed);
    let images_file = dir.join(format!("cloud-{}-images.jsonl", size.name));
    let instances_file = dir.join(format!("cloud-{}-instances.jsonl", size.name));
    let advisories_dir = dir.join(format!("advisories-{}", size.name));
    std::fs::create_dir_all(&advisories_dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&images_file)?);
    let mut line = String::with_capacity(1 << 16);

    // Images: effective inventories kept compactly.
    let mut invs: Vec<Inv> = Vec::with_capacity(size.images);
    let mut image_tenant: Vec<usize> = Vec::with_capacity(size.images);
    for i in 0..size.images {
        let id = format!("img-{i:06}");
        let (inv, parent, owner, public) = if i < size.base_images {
            let d = match rng.below(10) {
                0..=5 => 0,
                6..=8 => 1,
                _ => 2,
            };
            let n = universe.distros[d].1.len();
            let pkgs = (0..n as u16)
                .map(|p| (p, if rng.chance(30) { 1 } else { 0 }))
                .collect();
            (Inv { distro: d, pkgs }, None, rng.below(5), true)
        } else {
            // Parents skew towards recent images, which makes chains.
            let parent = if rng.chance(300) {
                rng.below(size.base_images)
            } else {
                i - 1 - rng.below((i - 1).min(200) + 1).min(i - 1)
            };
            let mut inv = invs[parent].clone();
            let changes = 1 + rng.below(8);
            mutate(&mut inv, &universe, &mut rng, changes);
            let owner = if rng.chance(500) {
                image_tenant[parent]
            } else {
                5 + rng.below(size.tenants - 5)
            };
            (inv, Some(parent), owner, rng.chance(100))
        };
        line.clear();
        let _ = write!(
            line,
            "{{\"id\":\"{id}\",\"kind\":\"image\",\"tenant\":\"{}\"",
            tenant(owner)
        );
        if let Some(p) = parent {
            let _ = write!(line, ",\"parent\":\"img-{p:06}\"");
        }
        if public {
            line.push_str(",\"visibility\":\"public\"");
        }
        push_components(&mut line, &universe, &inv);
        line.push_str("}\n");
        out.write_all(line.as_bytes())?;
        invs.push(inv);
        image_tenant.push(owner);
    }
    // Templates and replicas inherit. `source_image[x]` is the image whose
    // inventory x inherits.
    let mut tpl_image = Vec::with_capacity(size.templates);
    let mut tpl_tenant = Vec::with_capacity(size.templates);
    for t in 0..size.templates {
        let img = rng.below(size.images);
        let owner = if rng.chance(700) {
            image_tenant[img]
        } else {
            rng.below(size.tenants)
        };
        // A tenant may only derive from its own or public images; the bench
        // imports as the operator, but keeps the cloud plausible.
        writeln!(
            out,
            "{{\"id\":\"tpl-{t:06}\",\"kind\":\"template\",\"tenant\":\"{}\",\"parent\":\"img-{img:06}\",\"labels\":{{\"purpose\":\"web\"}}}}",
            tenant(owner)
        )?;
        tpl_image.push(img);
        tpl_tenant.push(owner);
    }
    let mut rep_image = Vec::with_capacity(size.replicas);
    let mut rep_tenant = Vec::with_capacity(size.replicas);
    for r in 0..size.replicas {
        let (parent, img, owner) = if r == 0 || rng.chance(700) {
            let t = rng.below(size.templates);
            (format!("tpl-{t:06}"), tpl_image[t], tpl_tenant[t])
        } else {
            let p = rng.below(r);
            (format!("rep-{p:06}"), rep_image[p], rep_tenant[p])
        };
        let region = ["eu-west", "us-east", "ap-south"][rng.below(3)];
        writeln!(
            out,
            "{{\"id\":\"rep-{r:06}\",\"kind\":\"replica\",\"tenant\":\"{}\",\"parent\":\"{parent}\",\"labels\":{{\"region\":\"{region}\"}}}}",
            tenant(owner)
        )?;
        rep_image.push(img);
        rep_tenant.push(owner);
    }
    out.flush()?;
    drop(out);

    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&instances_file)?);
    for v in 0..size.instances {
        let (parent, img, owner) = match rng.below(10) {
            0..=1 => {
                let i = rng.below(size.images);
                (format!("img-{i:06}"), i, image_tenant[i])
            }
            2..=4 => {
                let t = rng.below(size.templates);
                (format!("tpl-{t:06}"), tpl_image[t], tpl_tenant[t])
            }
            _ => {
                let r = rng.below(size.replicas);
                (format!("rep-{r:06}"), rep_image[r], rep_tenant[r])
            }
        };
        line.clear();
        let _ = write!(
            line,
            "{{\"id\":\"vm-{v:07}\",\"kind\":\"instance\",\"tenant\":\"{}\",\"parent\":\"{parent}\"",
            tenant(owner)
        );
        if rng.chance(size.own_instances_permille) {
            // A patched instance: its own inventory, one or two upgrades.
            let mut inv = invs[img].clone();
            for _ in 0..1 + rng.below(2) {
                let k = rng.below(inv.pkgs.len());
                inv.pkgs[k].1 = UPGRADE;
            }
            push_components(&mut line, &universe, &inv);
        }
        line.push_str("}\n");
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    drop(out);

    let all_bases = write_advisories(&universe, size, &mut rng, &advisories_dir)?;
    Ok(Written {
        images_file,
        instances_file,
        advisories_dir,
        all_bases_advisory: all_bases,
    })
}

/// Appends `,"components":[...]` with the inventory's purls.
fn push_components(line: &mut String, universe: &Universe, inv: &Inv) {
    line.push_str(",\"components\":[");
    for (k, &(pkg, variant)) in inv.pkgs.iter().enumerate() {
        if k > 0 {
            line.push(',');
        }
        line.push('"');
        universe.render(inv.distro, pkg, variant, line);
        line.push('"');
    }
    line.push(']');
}

/// Applies `changes` random edits: upgrade (masks), removal (masks),
/// addition (introduces), downgrade (reintroduces a vulnerable version).
fn mutate(inv: &mut Inv, universe: &Universe, rng: &mut Rng, changes: usize) {
    let n_universe = universe.distros[inv.distro].1.len();
    for _ in 0..changes {
        match rng.below(10) {
            0..=3 if !inv.pkgs.is_empty() => {
                let k = rng.below(inv.pkgs.len());
                inv.pkgs[k].1 = UPGRADE;
            }
            4..=5 if !inv.pkgs.is_empty() => {
                let k = rng.below(inv.pkgs.len());
                let pkg = inv.pkgs[k].0 as usize;
                if pkg < n_universe && !universe.distros[inv.distro].1[pkg].essential {
                    inv.pkgs.remove(k);
                }
            }
            6..=7 => {
                // Add a universe package the image lacks, or a PyPI package.
                let pkg = if rng.chance(500) {
                    (n_universe + rng.below(PYPI.len())) as u16
                } else {
                    rng.below(n_universe) as u16
                };
                if let Err(pos) = inv.pkgs.binary_search_by_key(&pkg, |p| p.0) {
                    inv.pkgs.insert(pos, (pkg, 0));
                }
            }
            _ if !inv.pkgs.is_empty() => {
                let k = rng.below(inv.pkgs.len());
                if (inv.pkgs[k].0 as usize) < n_universe {
                    inv.pkgs[k].1 = DOWNGRADE;
                }
            }
            _ => {}
        }
    }
}

fn write_advisories(
    universe: &Universe,
    size: Size,
    rng: &mut Rng,
    dir: &Path,
) -> anyhow::Result<String> {
    let modified = "2026-01-15T00:00:00Z";
    // The C library of every base: fixed above every variant.
    let mut affected = Vec::new();
    for (distro, pkgs) in &universe.distros {
        if let Some(p) = pkgs.iter().find(|p| p.essential) {
            affected.push(serde_json::json!({
                "package": {"ecosystem": distro.ecosystem(), "name": p.source},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": format!("{}+zz", p.source_version).replace("-r", "_p99-r").replace("+zz_p99", "_p99")}]}]
            }));
        }
    }
    // Alpine has no `+`: give musl a fix far above (`_p99`).
    for a in &mut affected {
        if a["package"]["ecosystem"] == "Alpine:v3.18" {
            let v = a["ranges"][0]["events"][1]["fixed"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let fixed = match v.split_once("+zz") {
                Some((base, _)) => {
                    let (ver, r) = base.split_once("-r").unwrap_or((base, "0"));
                    format!("{ver}_p99-r{r}")
                }
                None => v,
            };
            a["ranges"][0]["events"][1]["fixed"] = fixed.into();
        }
    }
    let id = ALL_BASES_ADVISORY.to_string();
    let doc = serde_json::json!({
        "schema_version": "1.6.0", "id": id, "modified": modified,
        "summary": "C library flaw present in every base image", "affected": affected
    });
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&doc)?,
    )?;

    for i in 1..size.advisories {
        let d = match rng.below(10) {
            0..=6 => 0,
            7..=8 => 1,
            _ => 2,
        };
        let (distro, pkgs) = &universe.distros[d];
        let p = &pkgs[rng.below(pkgs.len())];
        let v = &p.source_version;
        let (events, versions) = match rng.below(20) {
            0..=13 => (
                serde_json::json!([{"introduced": "0"}, {"fixed": fix_version(v, *distro)}]),
                vec![],
            ),
            14..=16 => (
                serde_json::json!([{"introduced": "0"}, {"last_affected": v}]),
                vec![],
            ),
            17..=18 => (
                serde_json::json!([{"introduced": "0"}, {"fixed": with_variant(v, DOWNGRADE, *distro)}]),
                vec![],
            ),
            _ => (
                serde_json::json!([{"introduced": fix_version(v, *distro)}]),
                vec![v.clone()],
            ),
        };
        let id = format!("GEN-{i:05}");
        let doc = serde_json::json!({
            "schema_version": "1.6.0", "id": id, "modified": modified,
            "summary": format!("generated advisory on {} {}", distro.ecosystem(), p.source),
            "affected": [{
                "package": {"ecosystem": distro.ecosystem(), "name": p.source},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": versions,
            }]
        });
        std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(&doc)?)?;
    }
    Ok(id)
}
