//! Ecosystems: what an OSV `affected[].package.ecosystem` string selects
//! (purl type, distribution, release, version scheme), and what a component's
//! purl says about the same things. CONTRACT.md §4.2 is the contract.

use std::fmt;

use patchline_versions::Scheme;

/// The purl types patchline evaluates, plus everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PurlType {
    Deb,
    Apk,
    Rpm,
    Pypi,
    Npm,
    Cargo,
    Golang,
    Maven,
    Gem,
    Nuget,
    Composer,
    Hex,
    Swift,
    Bitnami,
    Pub,
    Hackage,
    Cran,
    Other,
}

impl PurlType {
    /// The version scheme of this type's packages.
    pub fn scheme(self) -> Option<Scheme> {
        match self {
            PurlType::Deb => Some(Scheme::Dpkg),
            PurlType::Apk => Some(Scheme::Apk),
            PurlType::Rpm => Some(Scheme::Rpm),
            PurlType::Pypi => Some(Scheme::Pep440),
            PurlType::Npm
            | PurlType::Cargo
            | PurlType::Golang
            | PurlType::Hex
            | PurlType::Swift
            | PurlType::Bitnami => Some(Scheme::Semver),
            PurlType::Maven => Some(Scheme::Maven),
            PurlType::Gem => Some(Scheme::RubyGems),
            PurlType::Nuget => Some(Scheme::NuGet),
            PurlType::Composer => Some(Scheme::Packagist),
            PurlType::Pub => Some(Scheme::Pub),
            PurlType::Hackage => Some(Scheme::Hackage),
            PurlType::Cran => Some(Scheme::Cran),
            PurlType::Other => None,
        }
    }

    pub fn parse(ty: &str) -> PurlType {
        match ty {
            "deb" => PurlType::Deb,
            "apk" => PurlType::Apk,
            "rpm" => PurlType::Rpm,
            "pypi" => PurlType::Pypi,
            "npm" => PurlType::Npm,
            "cargo" => PurlType::Cargo,
            "golang" => PurlType::Golang,
            "maven" => PurlType::Maven,
            "gem" => PurlType::Gem,
            "nuget" => PurlType::Nuget,
            "composer" => PurlType::Composer,
            "hex" => PurlType::Hex,
            "swift" => PurlType::Swift,
            "bitnami" => PurlType::Bitnami,
            "pub" => PurlType::Pub,
            "hackage" => PurlType::Hackage,
            "cran" => PurlType::Cran,
            _ => PurlType::Other,
        }
    }
}

/// A Linux distribution family, as far as matching needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Debian,
    Ubuntu,
    Alpine,
    RedHat,
    Rocky,
    Alma,
    CentOs,
    /// apk distributions without releases (rolling).
    Wolfi,
    Chainguard,
    MinimOs,
    /// rpm distributions.
    Suse,
    OpenSuse,
    Photon,
    Mageia,
    OpenEuler,
    AzureLinux,
    Other,
}

impl Family {
    /// From an os-release `ID` or a purl namespace (the part before the
    /// first `-` of a `distro` qualifier).
    fn from_id(id: &str) -> Family {
        match id.to_ascii_lowercase().as_str() {
            "debian" => Family::Debian,
            "ubuntu" => Family::Ubuntu,
            "alpine" => Family::Alpine,
            "rhel" | "redhat" | "red hat" => Family::RedHat,
            "rocky" | "rocky linux" => Family::Rocky,
            "almalinux" | "alma" => Family::Alma,
            "centos" => Family::CentOs,
            "wolfi" => Family::Wolfi,
            "chainguard" => Family::Chainguard,
            "minimos" => Family::MinimOs,
            "photon" => Family::Photon,
            "mageia" => Family::Mageia,
            "openeuler" => Family::OpenEuler,
            // CBL-Mariner is Azure Linux's former name (Azure Linux 2.0);
            // trivy calls it `cbl-mariner`.
            "azurelinux" | "mariner" | "cbl-mariner" => Family::AzureLinux,
            // os-release: `opensuse-leap`, `opensuse-tumbleweed`,
            // `opensuse-leap-micro`; trivy: `opensuse.leap`, ….
            id if id.starts_with("opensuse") => Family::OpenSuse,
            // SUSE Linux Enterprise: `sles`, `sled`, `sles_sap`, `sle_hpc`,
            // `sle-micro` (os-release), `slem`, `suse.linux.enterprise.…`
            // (trivy).
            id if id.starts_with("sle") || id.starts_with("suse") => Family::Suse,
            _ => Family::Other,
        }
    }

    /// The product line an id names within its family, which the release
    /// then carries (`opensuse-leap` + `15.5` is `leap 15.5`): openSUSE
    /// Leap, Leap Micro and Tumbleweed, SUSE Linux Enterprise Micro.
    fn product(self, id: &str) -> Option<&'static str> {
        let id = id.to_ascii_lowercase();
        match self {
            Family::OpenSuse if id.contains("leap") && id.contains("micro") => Some("leap micro"),
            Family::OpenSuse if id.contains("leap") => Some("leap"),
            Family::OpenSuse if id.contains("tumbleweed") => Some("tumbleweed"),
            Family::Suse if id.contains("micro") || id == "slem" => Some("micro"),
            _ => None,
        }
    }
}

/// Distribution ids that hold a `-` themselves, longest first: a `distro`
/// value starting with one of them is that id and a release.
const HYPHENATED_IDS: &[&str] = &[
    "opensuse-leap-micro",
    "opensuse-tumbleweed",
    "opensuse-leap",
    "cbl-mariner",
    "sle-micro",
];

/// A component's distribution and release, normalised so that it compares
/// with an OSV ecosystem's release: Debian by major number (`12`), Ubuntu by
/// `YY.MM`, Alpine by `MAJOR.MINOR`, the Red Hat family by major number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Distro {
    pub family: Family,
    pub release: Option<Box<str>>,
}

impl Distro {
    /// Reads a purl `distro` qualifier or an os-release pair as
    /// `ID-VERSION` (`debian-12`, `debian-12.5`, `ubuntu-18.04`,
    /// `alpine-3.17.2`, `centos-7.6.1810`, `debian-bookworm`,
    /// `opensuse-leap-15.5`, trivy's `opensuse.leap-15.5`).
    pub fn parse(text: &str) -> Distro {
        let lower = text.to_ascii_lowercase();
        let hyphenated = HYPHENATED_IDS.iter().find(|id| {
            lower.starts_with(**id) && matches!(lower.as_bytes().get(id.len()), None | Some(b'-'))
        });
        let (id, version) = match (hyphenated, text.split_once('-')) {
            (Some(id), _) => (&text[..id.len()], text.get(id.len() + 1..)),
            (None, Some((id, version))) => (id, Some(version)),
            (None, None) => (text, None),
        };
        let family = Family::from_id(id);
        if let Some(product) = family.product(id) {
            // The id names the product line; the release goes with it.
            let release = match version.filter(|v| !v.is_empty()) {
                Some(v) => normalize_release(family, &format!("{product} {v}")),
                // Tumbleweed is one rolling release; Leap alone is none.
                None => (product == "tumbleweed").then(|| product.to_string()),
            };
            return Distro {
                family,
                release: release.map(Into::into),
            };
        }
        if family == Family::Other && version.is_none() {
            // A bare codename (`distro=bionic`, as Ubuntu's own purls have).
            for (family, table) in [
                (Family::Debian, DEBIAN_CODENAMES),
                (Family::Ubuntu, UBUNTU_CODENAMES),
            ] {
                if let Some((_, number)) = table.iter().find(|(name, _)| *name == lower) {
                    return Distro {
                        family,
                        release: Some((*number).into()),
                    };
                }
            }
        }
        let release = version
            .and_then(|v| normalize_release(family, v))
            .map(Into::into);
        Distro { family, release }
    }
}

fn major(version: &str) -> Option<String> {
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    (!major.is_empty())
        .then(|| major.trim_start_matches('0').to_string())
        .map(|m| if m.is_empty() { "0".to_string() } else { m })
}

fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let a = parts.next()?.trim_start_matches('v');
    let b = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    (digits(a) && digits(b)).then(|| format!("{a}.{b}"))
}

const DEBIAN_CODENAMES: &[(&str, &str)] = &[
    ("buzz", "1"),
    ("rex", "1"),
    ("bo", "1"),
    ("hamm", "2"),
    ("slink", "2"),
    ("potato", "2"),
    ("woody", "3"),
    ("sarge", "3"),
    ("etch", "4"),
    ("lenny", "5"),
    ("squeeze", "6"),
    ("wheezy", "7"),
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
];

const UBUNTU_CODENAMES: &[(&str, &str)] = &[
    ("warty", "4.10"),
    ("hoary", "5.04"),
    ("breezy", "5.10"),
    ("dapper", "6.06"),
    ("edgy", "6.10"),
    ("feisty", "7.04"),
    ("gutsy", "7.10"),
    ("hardy", "8.04"),
    ("intrepid", "8.10"),
    ("jaunty", "9.04"),
    ("karmic", "9.10"),
    ("lucid", "10.04"),
    ("maverick", "10.10"),
    ("natty", "11.04"),
    ("oneiric", "11.10"),
    ("precise", "12.04"),
    ("quantal", "12.10"),
    ("raring", "13.04"),
    ("saucy", "13.10"),
    ("trusty", "14.04"),
    ("utopic", "14.10"),
    ("vivid", "15.04"),
    ("wily", "15.10"),
    ("xenial", "16.04"),
    ("yakkety", "16.10"),
    ("zesty", "17.04"),
    ("artful", "17.10"),
    ("bionic", "18.04"),
    ("cosmic", "18.10"),
    ("disco", "19.04"),
    ("eoan", "19.10"),
    ("focal", "20.04"),
    ("groovy", "20.10"),
    ("hirsute", "21.04"),
    ("impish", "21.10"),
    ("jammy", "22.04"),
    ("kinetic", "22.10"),
    ("lunar", "23.04"),
    ("mantic", "23.10"),
    ("noble", "24.04"),
    ("oracular", "24.10"),
    ("plucky", "25.04"),
    ("questing", "25.10"),
];

fn normalize_release(family: Family, version: &str) -> Option<String> {
    let version = version.trim();
    if version.is_empty() {
        return None;
    }
    let lookup = |table: &[(&str, &str)]| {
        table
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(version))
            .map(|(_, number)| (*number).to_string())
    };
    match family {
        Family::Debian => lookup(DEBIAN_CODENAMES)
            .or_else(|| major(version))
            .or_else(|| {
                // `sid` and other series without a number compare by name.
                Some(version.to_ascii_lowercase())
            }),
        Family::Ubuntu => lookup(UBUNTU_CODENAMES).or_else(|| major_minor(version)),
        Family::Alpine => {
            major_minor(version).or_else(|| (version == "edge").then(|| "edge".to_string()))
        }
        Family::RedHat | Family::Rocky | Family::Alma | Family::CentOs => major(version),
        Family::Photon | Family::Mageia | Family::AzureLinux => major(version),
        Family::Suse => suse_release(version),
        Family::OpenSuse => opensuse_release(version),
        // openEuler releases differ by service pack (`24.03-LTS-SP1`): the
        // whole text, as osv-scalibr writes it from os-release.
        Family::OpenEuler => Some(version.to_ascii_lowercase().replace(' ', "-")),
        // Rolling distributions: their records name no release.
        Family::Wolfi | Family::Chainguard | Family::MinimOs => None,
        Family::Other => Some(version.to_string()),
    }
}

/// Words of a release text, lower-cased, `-` and `_` read as spaces.
fn release_words(text: &str) -> Vec<String> {
    text.to_ascii_lowercase()
        .split([' ', '-', '_'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// SUSE Linux Enterprise: `15 SP5` (OSV products: `Linux Enterprise Server
/// 15 SP5`, `… Module for Basesystem 15 SP5`) and os-release's `15.5` are
/// `15.5`; `15` stays `15`; SLE Micro (`Linux Enterprise Micro 5.5`,
/// `sle-micro-5.5`) is `micro 5.5`, another product line.
fn suse_release(text: &str) -> Option<String> {
    let words = release_words(text);
    let at = words
        .iter()
        .rposition(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let number = &words[at];
    if !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let sp = words
        .get(at + 1)
        .and_then(|w| w.strip_prefix("sp"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let version = match sp {
        Some("0") | None => number.clone(),
        Some(n) => format!("{number}.{n}"),
    };
    Some(if words.iter().any(|w| w == "micro") {
        format!("micro {version}")
    } else {
        version
    })
}

/// openSUSE: `Leap 15.5` (OSV) and `leap-15.5` (os-release `ID` plus
/// `VERSION_ID`) are `leap 15.5`, Leap Micro likewise; Tumbleweed is one
/// rolling release whatever its snapshot date. `leap` alone names no
/// release.
fn opensuse_release(text: &str) -> Option<String> {
    let words = release_words(text);
    let number = |w: Option<&String>| {
        w.filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .cloned()
    };
    match words.first().map(String::as_str) {
        Some("tumbleweed") => Some("tumbleweed".to_string()),
        Some("leap") if words.get(1).is_some_and(|w| w == "micro") => {
            number(words.get(2)).map(|n| format!("leap micro {n}"))
        }
        Some("leap") => number(words.get(1)).map(|n| format!("leap {n}")),
        _ => None,
    }
}

/// Support streams of SUSE products that a standard installation does not
/// receive (long-term and extended support): like Ubuntu Pro, their fixes
/// are not matched against standard installations.
fn suse_stream(text: &str) -> Stream {
    let paid = ["ltss", "espos", "bcl", "teradata"];
    if release_words(text)
        .iter()
        .any(|w| paid.contains(&w.as_str()))
    {
        Stream::Pro
    } else {
        Stream::Standard
    }
}

/// The OSV ecosystems patchline evaluates (the names of the schema's list).
pub const SUPPORTED: &[&str] = &[
    "Debian",
    "Ubuntu",
    "Alpine",
    "Wolfi",
    "Chainguard",
    "MinimOS",
    "Red Hat",
    "Rocky Linux",
    "AlmaLinux",
    "SUSE",
    "openSUSE",
    "Photon OS",
    "Mageia",
    "openEuler",
    "Azure Linux",
    "PyPI",
    "npm",
    "crates.io",
    "Go",
    "Maven",
    "RubyGems",
    "NuGet",
    "Packagist",
    "Hex",
    "Pub",
    "Hackage",
    "CRAN",
    "SwiftURL",
    "Bitnami",
];

/// Which Ubuntu stream an advisory entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Standard,
    /// Ubuntu Pro (ESM) and other paid streams: fixes that a standard
    /// installation does not receive, so they are not matched against it.
    Pro,
}

/// What an OSV ecosystem string selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub purl_type: PurlType,
    /// For distributions: the family, and the release when the ecosystem
    /// names one (`Debian:12` -> `12`; `Debian` -> none, every release).
    pub family: Option<Family>,
    pub release: Option<String>,
    pub stream: Stream,
    pub scheme: Scheme,
}

/// Why an ecosystem cannot be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Target {
    /// Parses `Debian:12`, `Ubuntu:18.04:LTS`, `Ubuntu:Pro:18.04:LTS`,
    /// `Alpine:v3.19`, `Wolfi`, `Chainguard`, `MinimOS`, `Red
    /// Hat:enterprise_linux:8::appstream`, `Rocky Linux:9`, `AlmaLinux:8`,
    /// `SUSE:Linux Enterprise Server 15 SP5`, `openSUSE:Leap 15.5`,
    /// `openSUSE:Tumbleweed`, `Photon OS:5.0`, `Mageia:9`,
    /// `openEuler:24.03-LTS-SP1`, `Azure Linux:3.0`, and the language
    /// ecosystems of [`SUPPORTED`] without a registry suffix.
    pub fn parse(ecosystem: &str) -> Result<Target, Unsupported> {
        let (base, rest) = match ecosystem.split_once(':') {
            Some((base, rest)) => (base, Some(rest)),
            None => (ecosystem, None),
        };
        let distro = |purl_type, family, scheme, release: Option<String>, stream| Target {
            purl_type,
            family: Some(family),
            release,
            stream,
            scheme,
        };
        let language = |purl_type, scheme| -> Result<Target, Unsupported> {
            if rest.is_some() {
                // `Maven:https://…`-style suffixes name other registries.
                return Err(Unsupported(format!(
                    "ecosystem {ecosystem:?}: registries other than the default are not evaluated"
                )));
            }
            Ok(Target {
                purl_type,
                family: None,
                release: None,
                stream: Stream::Standard,
                scheme,
            })
        };
        match base {
            "Debian" => {
                let release = match rest {
                    None => None,
                    Some(r) => Some(normalize_release(Family::Debian, r).ok_or_else(|| {
                        Unsupported(format!("ecosystem {ecosystem:?}: unknown Debian release"))
                    })?),
                };
                Ok(distro(
                    PurlType::Deb,
                    Family::Debian,
                    Scheme::Dpkg,
                    release,
                    Stream::Standard,
                ))
            }
            "Ubuntu" => {
                let mut stream = Stream::Standard;
                let mut release = None;
                for part in rest.unwrap_or("").split(':').filter(|p| !p.is_empty()) {
                    if let Some(r) = major_minor(part) {
                        release = Some(r);
                    } else if part.eq_ignore_ascii_case("LTS") {
                    } else {
                        // Pro, FIPS, FIPS-updates, Realtime...: streams a
                        // standard installation does not get.
                        stream = Stream::Pro;
                    }
                }
                Ok(distro(
                    PurlType::Deb,
                    Family::Ubuntu,
                    Scheme::Dpkg,
                    release,
                    stream,
                ))
            }
            "Alpine" => {
                let release = match rest {
                    None => None,
                    Some(r) => Some(normalize_release(Family::Alpine, r).ok_or_else(|| {
                        Unsupported(format!("ecosystem {ecosystem:?}: unknown Alpine release"))
                    })?),
                };
                Ok(distro(
                    PurlType::Apk,
                    Family::Alpine,
                    Scheme::Apk,
                    release,
                    Stream::Standard,
                ))
            }
            "Red Hat" | "Rocky Linux" | "AlmaLinux" => {
                let family = Family::from_id(base);
                // Red Hat appends a CPE (`enterprise_linux:8::appstream`):
                // its first numeric part is the major release.
                let release = rest.and_then(|r| {
                    r.split(':').find_map(|part| {
                        part.chars()
                            .next()
                            .filter(char::is_ascii_digit)
                            .and_then(|_| major(part))
                    })
                });
                Ok(distro(
                    PurlType::Rpm,
                    family,
                    Scheme::Rpm,
                    release,
                    Stream::Standard,
                ))
            }
            "Wolfi" | "Chainguard" | "MinimOS" => {
                if rest.is_some() {
                    return Err(Unsupported(format!(
                        "ecosystem {ecosystem:?}: {base} has no releases"
                    )));
                }
                Ok(distro(
                    PurlType::Apk,
                    Family::from_id(base),
                    Scheme::Apk,
                    None,
                    Stream::Standard,
                ))
            }
            "SUSE" | "openSUSE" | "Photon OS" | "Mageia" | "openEuler" | "Azure Linux" => {
                let family = match base {
                    "SUSE" => Family::Suse,
                    "openSUSE" => Family::OpenSuse,
                    "Photon OS" => Family::Photon,
                    "Mageia" => Family::Mageia,
                    "openEuler" => Family::OpenEuler,
                    _ => Family::AzureLinux,
                };
                let release = match rest {
                    None => None,
                    Some(r) => Some(normalize_release(family, r).ok_or_else(|| {
                        Unsupported(format!("ecosystem {ecosystem:?}: unknown {base} release"))
                    })?),
                };
                let stream = match (family, rest) {
                    (Family::Suse, Some(r)) => suse_stream(r),
                    _ => Stream::Standard,
                };
                Ok(distro(PurlType::Rpm, family, Scheme::Rpm, release, stream))
            }
            "PyPI" => language(PurlType::Pypi, Scheme::Pep440),
            "npm" => language(PurlType::Npm, Scheme::Semver),
            "crates.io" => language(PurlType::Cargo, Scheme::Semver),
            "Go" => language(PurlType::Golang, Scheme::Semver),
            "Maven" => language(PurlType::Maven, Scheme::Maven),
            "RubyGems" => language(PurlType::Gem, Scheme::RubyGems),
            "NuGet" => language(PurlType::Nuget, Scheme::NuGet),
            "Packagist" => language(PurlType::Composer, Scheme::Packagist),
            // osv.dev and osv-scalibr order these three with SemVer.
            "Hex" => language(PurlType::Hex, Scheme::Semver),
            "SwiftURL" => language(PurlType::Swift, Scheme::Semver),
            "Bitnami" => language(PurlType::Bitnami, Scheme::Semver),
            "Pub" => language(PurlType::Pub, Scheme::Pub),
            "Hackage" => language(PurlType::Hackage, Scheme::Hackage),
            "CRAN" => language(PurlType::Cran, Scheme::Cran),
            _ => Err(Unsupported(format!(
                "ecosystem {ecosystem:?} is not evaluated by patchline (supported: {})",
                SUPPORTED.join(", ")
            ))),
        }
    }

    /// Does a component of this distribution belong to the target? A
    /// component whose release is unknown matches every release of its
    /// family, as OSV scanners query `Debian` without a release then.
    pub fn matches_distro(&self, distro: Option<&Distro>) -> bool {
        let Some(family) = self.family else {
            return true;
        };
        if self.stream == Stream::Pro {
            return false;
        }
        let Some(distro) = distro else {
            // A deb purl always has a namespace; an unknown distribution
            // only happens for purls without one, matched by type alone.
            return true;
        };
        if distro.family != family {
            return false;
        }
        match (&self.release, &distro.release) {
            // os-release's VERSION_ID of openEuler names no service pack
            // (`24.03` for `24.03-LTS-SP1`): like an unknown release, it
            // matches every release of that version.
            (Some(want), Some(have)) if family == Family::OpenEuler && !have.contains('-') => {
                want.split('-').next() == Some(&**have)
            }
            (Some(want), Some(have)) => **have == **want,
            _ => true,
        }
    }
}

/// Normalises a package name the way its ecosystem compares names.
pub fn normalize_name(purl_type: PurlType, name: &str) -> String {
    match purl_type {
        PurlType::Pypi => {
            // PEP 503: lowercase, runs of `-`, `_`, `.` become one `-`.
            let mut out = String::with_capacity(name.len());
            let mut in_sep = false;
            for c in name.chars() {
                if matches!(c, '-' | '_' | '.') {
                    if !in_sep {
                        out.push('-');
                    }
                    in_sep = true;
                } else {
                    out.extend(c.to_lowercase());
                    in_sep = false;
                }
            }
            out
        }
        // Case-insensitive names: Debian, Alpine (and the apk
        // distributions), NuGet, Composer, Hex, Bitnami, Pub (the purl spec
        // lower-cases the last five).
        PurlType::Deb | PurlType::Apk => name.to_ascii_lowercase(),
        PurlType::Nuget
        | PurlType::Composer
        | PurlType::Hex
        | PurlType::Bitnami
        | PurlType::Pub => name.to_lowercase(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_parse() {
        let t = Target::parse("Ubuntu:18.04:LTS").unwrap();
        assert_eq!(
            (t.family, t.release.as_deref(), t.stream),
            (Some(Family::Ubuntu), Some("18.04"), Stream::Standard)
        );
        let t = Target::parse("Ubuntu:Pro:18.04:LTS").unwrap();
        assert_eq!(
            (t.release.as_deref(), t.stream),
            (Some("18.04"), Stream::Pro)
        );
        let t = Target::parse("Ubuntu:22.04").unwrap();
        assert_eq!(t.release.as_deref(), Some("22.04"));
        let t = Target::parse("Debian:12").unwrap();
        assert_eq!(t.release.as_deref(), Some("12"));
        let t = Target::parse("Debian").unwrap();
        assert_eq!(t.release, None);
        let t = Target::parse("Alpine:v3.19").unwrap();
        assert_eq!(t.release.as_deref(), Some("3.19"));
        let t = Target::parse("Red Hat:enterprise_linux:8::appstream").unwrap();
        assert_eq!(t.release.as_deref(), Some("8"));
        assert!(Target::parse("PyPI").is_ok());
        // Ecosystems patchline cannot order stay reported as such.
        for unsupported in ["Bioconductor", "GHC", "Linux", "Android", "GIT", "OSS-Fuzz"] {
            let err = Target::parse(unsupported).unwrap_err();
            assert!(err.0.contains("not evaluated"), "{err}");
        }
        assert!(Target::parse("Maven:https://repo.example/maven2").is_err());
        assert!(Target::parse("Wolfi:1").is_err());
    }

    /// An ecosystem string and what it selects: purl type, family, release,
    /// scheme.
    type Selects = (
        &'static str,
        PurlType,
        Option<Family>,
        Option<&'static str>,
        Scheme,
    );

    /// Every ecosystem string of the schema's list patchline evaluates, with
    /// what it selects.
    #[test]
    fn every_supported_ecosystem_parses() {
        let cases: &[Selects] = &[
            ("Maven", PurlType::Maven, None, None, Scheme::Maven),
            ("RubyGems", PurlType::Gem, None, None, Scheme::RubyGems),
            ("NuGet", PurlType::Nuget, None, None, Scheme::NuGet),
            (
                "Packagist",
                PurlType::Composer,
                None,
                None,
                Scheme::Packagist,
            ),
            ("Hex", PurlType::Hex, None, None, Scheme::Semver),
            ("SwiftURL", PurlType::Swift, None, None, Scheme::Semver),
            ("Bitnami", PurlType::Bitnami, None, None, Scheme::Semver),
            ("Pub", PurlType::Pub, None, None, Scheme::Pub),
            ("Hackage", PurlType::Hackage, None, None, Scheme::Hackage),
            ("CRAN", PurlType::Cran, None, None, Scheme::Cran),
            (
                "Wolfi",
                PurlType::Apk,
                Some(Family::Wolfi),
                None,
                Scheme::Apk,
            ),
            (
                "Chainguard",
                PurlType::Apk,
                Some(Family::Chainguard),
                None,
                Scheme::Apk,
            ),
            (
                "MinimOS",
                PurlType::Apk,
                Some(Family::MinimOs),
                None,
                Scheme::Apk,
            ),
            (
                "SUSE:Linux Enterprise Server 15 SP5",
                PurlType::Rpm,
                Some(Family::Suse),
                Some("15.5"),
                Scheme::Rpm,
            ),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
                PurlType::Rpm,
                Some(Family::Suse),
                Some("15.5"),
                Scheme::Rpm,
            ),
            (
                "SUSE:Linux Enterprise Server 15",
                PurlType::Rpm,
                Some(Family::Suse),
                Some("15"),
                Scheme::Rpm,
            ),
            (
                "SUSE:Linux Enterprise Micro 5.5",
                PurlType::Rpm,
                Some(Family::Suse),
                Some("micro 5.5"),
                Scheme::Rpm,
            ),
            ("SUSE", PurlType::Rpm, Some(Family::Suse), None, Scheme::Rpm),
            (
                "openSUSE:Leap 15.5",
                PurlType::Rpm,
                Some(Family::OpenSuse),
                Some("leap 15.5"),
                Scheme::Rpm,
            ),
            (
                "openSUSE:Leap Micro 5.5",
                PurlType::Rpm,
                Some(Family::OpenSuse),
                Some("leap micro 5.5"),
                Scheme::Rpm,
            ),
            (
                "openSUSE:Tumbleweed",
                PurlType::Rpm,
                Some(Family::OpenSuse),
                Some("tumbleweed"),
                Scheme::Rpm,
            ),
            (
                "Photon OS:5.0",
                PurlType::Rpm,
                Some(Family::Photon),
                Some("5"),
                Scheme::Rpm,
            ),
            (
                "Mageia:9",
                PurlType::Rpm,
                Some(Family::Mageia),
                Some("9"),
                Scheme::Rpm,
            ),
            (
                "openEuler:24.03-LTS-SP1",
                PurlType::Rpm,
                Some(Family::OpenEuler),
                Some("24.03-lts-sp1"),
                Scheme::Rpm,
            ),
            (
                "Azure Linux:3.0",
                PurlType::Rpm,
                Some(Family::AzureLinux),
                Some("3"),
                Scheme::Rpm,
            ),
            (
                "Azure Linux:2",
                PurlType::Rpm,
                Some(Family::AzureLinux),
                Some("2"),
                Scheme::Rpm,
            ),
        ];
        for &(ecosystem, purl_type, family, release, scheme) in cases {
            let t = Target::parse(ecosystem).unwrap_or_else(|e| panic!("{ecosystem}: {e}"));
            assert_eq!(
                (
                    t.purl_type,
                    t.family,
                    t.release.as_deref(),
                    t.scheme,
                    t.stream
                ),
                (purl_type, family, release, scheme, Stream::Standard),
                "{ecosystem}"
            );
        }
        for name in SUPPORTED {
            assert!(Target::parse(name).is_ok(), "{name}");
        }
        // Long-term support streams are not matched against standard
        // installations, as Ubuntu Pro is not.
        let t =
            Target::parse("SUSE:Linux Enterprise Server LTSS Extended Security 12 SP5").unwrap();
        assert_eq!(
            (t.release.as_deref(), t.stream),
            (Some("12.5"), Stream::Pro)
        );
        assert!(!t.matches_distro(Some(&Distro::parse("sles-12.5"))));
        for bad in [
            "SUSE:Linux Enterprise",
            "openSUSE:Leap",
            "Mageia:cauldron",
            "Photon OS:abc",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(err.0.contains("unknown"), "{bad}: {err}");
        }
    }

    #[test]
    fn rpm_and_apk_distributions_match_their_releases() {
        let matches = |ecosystem: &str, distro: &str| {
            Target::parse(ecosystem)
                .unwrap()
                .matches_distro(Some(&Distro::parse(distro)))
        };
        let yes = [
            ("SUSE:Linux Enterprise Server 15 SP5", "sles-15.5"),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
                "sles_sap-15.5",
            ),
            ("SUSE:Linux Enterprise Server 15", "sles-15"),
            ("SUSE:Linux Enterprise Micro 5.5", "sle-micro-5.5"),
            ("SUSE", "sles-12.5"),
            ("openSUSE:Leap 15.5", "opensuse-leap-15.5"),
            ("openSUSE:Tumbleweed", "opensuse-tumbleweed-20240101"),
            ("openSUSE:Leap 15.5", "opensuse-leap"),
            ("Photon OS:5.0", "photon-5.0"),
            ("Mageia:9", "mageia-9"),
            ("openEuler:24.03-LTS-SP1", "openEuler-24.03-LTS-SP1"),
            // VERSION_ID alone (syft) names no service pack.
            ("openEuler:24.03-LTS-SP1", "openeuler-24.03"),
            ("openEuler:24.03-LTS", "openeuler-24.03"),
            ("Azure Linux:3.0", "azurelinux-3.0"),
            ("Azure Linux:2", "mariner-2.0"),
            ("openSUSE:Leap 15.5", "opensuse.leap-15.5"),
            ("openSUSE:Tumbleweed", "opensuse.tumbleweed"),
            ("openSUSE:Tumbleweed", "opensuse-tumbleweed"),
            ("openSUSE:Leap Micro 5.5", "opensuse-leap-micro-5.5"),
            ("SUSE:Linux Enterprise Micro 5.5", "slem-5.5"),
            (
                "SUSE:Linux Enterprise Server 15 SP5",
                "suse.linux.enterprise.server-15.5",
            ),
            ("Azure Linux:2", "cbl-mariner-2.0"),
            ("Wolfi", "wolfi-20230201"),
            ("Chainguard", "chainguard"),
            ("MinimOS", "minimos"),
        ];
        for (ecosystem, distro) in yes {
            assert!(matches(ecosystem, distro), "{ecosystem} / {distro}");
        }
        let no = [
            ("SUSE:Linux Enterprise Server 15 SP5", "sles-15.4"),
            ("SUSE:Linux Enterprise Server 15 SP5", "opensuse-leap-15.5"),
            ("SUSE:Linux Enterprise Micro 5.5", "sles-15.5"),
            ("openSUSE:Leap 15.5", "opensuse-leap-15.4"),
            ("openSUSE:Leap 15.5", "opensuse-tumbleweed-20240101"),
            ("openSUSE:Leap 15.5", "opensuse-leap-micro-15.5"),
            ("openSUSE:Leap 15.5", "opensuse.leap-15.4"),
            ("SUSE:Linux Enterprise Server 15 SP5", "slem-15.5"),
            ("Photon OS:5.0", "photon-4.0"),
            ("Mageia:9", "mageia-8"),
            ("openEuler:24.03-LTS-SP1", "openeuler-24.03-LTS"),
            ("openEuler:24.03-LTS-SP1", "openeuler-22.03"),
            ("Azure Linux:3.0", "mariner-2.0"),
            ("Red Hat:enterprise_linux:9::baseos", "azurelinux-3.0"),
            ("Wolfi", "chainguard"),
            ("Chainguard", "wolfi"),
            ("Alpine", "wolfi"),
            ("Wolfi", "alpine-3.19"),
        ];
        for (ecosystem, distro) in no {
            assert!(!matches(ecosystem, distro), "{ecosystem} / {distro}");
        }
    }

    #[test]
    fn language_names_normalise() {
        assert_eq!(
            normalize_name(PurlType::Nuget, "Newtonsoft.Json"),
            "newtonsoft.json"
        );
        assert_eq!(
            normalize_name(PurlType::Composer, "Symfony/HTTP-Kernel"),
            "symfony/http-kernel"
        );
        assert_eq!(normalize_name(PurlType::Hex, "Plug"), "plug");
        assert_eq!(
            normalize_name(PurlType::Maven, "org.apache.logging.log4j:log4j-core"),
            "org.apache.logging.log4j:log4j-core"
        );
        assert_eq!(normalize_name(PurlType::Gem, "Rack"), "Rack");
    }

    #[test]
    fn distros_normalise() {
        assert_eq!(Distro::parse("debian-12.5").release.as_deref(), Some("12"));
        assert_eq!(
            Distro::parse("debian-bookworm").release.as_deref(),
            Some("12")
        );
        assert_eq!(
            Distro::parse("ubuntu-18.04").release.as_deref(),
            Some("18.04")
        );
        assert_eq!(
            Distro::parse("alpine-3.17.2").release.as_deref(),
            Some("3.17")
        );
        assert_eq!(
            Distro::parse("centos-7.6.1810").release.as_deref(),
            Some("7")
        );
        assert_eq!(
            Distro::parse("bionic"),
            Distro {
                family: Family::Ubuntu,
                release: Some("18.04".into())
            }
        );
        let d12 = Distro::parse("debian-12");
        let t = Target::parse("Debian:12").unwrap();
        assert!(t.matches_distro(Some(&d12)));
        assert!(
            !Target::parse("Debian:11")
                .unwrap()
                .matches_distro(Some(&d12))
        );
        assert!(Target::parse("Debian").unwrap().matches_distro(Some(&d12)));
        assert!(
            !Target::parse("Ubuntu:18.04:LTS")
                .unwrap()
                .matches_distro(Some(&d12))
        );
        let u = Distro::parse("ubuntu-18.04");
        assert!(
            !Target::parse("Ubuntu:Pro:18.04:LTS")
                .unwrap()
                .matches_distro(Some(&u))
        );
        assert!(
            !Target::parse("Ubuntu:20.04:LTS")
                .unwrap()
                .matches_distro(Some(&u))
        );
    }

    #[test]
    fn pypi_names_normalise() {
        assert_eq!(
            normalize_name(PurlType::Pypi, "Flask_Caching"),
            "flask-caching"
        );
        assert_eq!(normalize_name(PurlType::Pypi, "a.-_b"), "a-b");
    }
}
