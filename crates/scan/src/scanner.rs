//! A folder of disk images becomes lineage and inventories: every qcow2 or
//! raw file is an image artifact whose id is its path relative to the
//! folder given to the scan, whose parent is its backing file
//! (`derived_from`), and whose own inventory is what its guest filesystem
//! holds (dpkg, apk). Only headers, allocation tables, filesystem metadata
//! and the package databases are read.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use patchline_core::{ArtifactId, ArtifactSpec, Kind, Relation, TenantId, Visibility};
use patchline_formats::inventory::Hint;
use sha2::{Digest, Sha256};

use crate::chain::{ChainLink, Format, open_chain_within, probe, resolve_within, within};
use crate::fs::read_guest;
use crate::raw::ReadStats;

/// Files looked at in one scan, at most.
pub const FILES_MAX: usize = 100_000;
/// Bytes of the file start hashed into `scan.header_sha256`.
const HEADER_DIGEST_BYTES: u64 = 64 << 10;

/// How the scan registers what it finds.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub tenant: TenantId,
    pub visibility: Visibility,
    /// Folders the scan may read (the API's image roots): files, links and
    /// backing files whose real path lies elsewhere are refused before they
    /// are opened. Empty: no bound (the operator's own CLI).
    pub roots: Vec<PathBuf>,
}

/// One image found, ready for the catalog.
#[derive(Debug, Clone)]
pub struct ScannedImage {
    pub path: PathBuf,
    pub spec: ArtifactSpec,
    pub format: Format,
    /// Bytes of the image's files read to register it (chain included).
    pub bytes_read: u64,
    pub file_size: u64,
    pub warnings: Vec<String>,
}

/// What a scan found: images in an order where parents come first, and the
/// files that could not be read, each with the reason.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    pub images: Vec<ScannedImage>,
    pub errors: Vec<(PathBuf, String)>,
}

impl ScanOutcome {
    pub fn bytes_read(&self) -> u64 {
        self.images.iter().map(|i| i.bytes_read).sum()
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.images.iter().map(|i| i.file_size).sum()
    }
}

fn looks_like_image(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("qcow2" | "qcow" | "img" | "raw"))
        || matches!(probe(path), Ok(Format::Qcow2))
}

/// Files to scan: given files as they are, folders walked (sorted, bounded).
fn collect(
    paths: &[PathBuf],
    bound: &[PathBuf],
    errors: &mut Vec<(PathBuf, String)>,
) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for root in paths {
        if !within(root, bound) {
            errors.push((
                root.clone(),
                "outside the folders this scan may read".into(),
            ));
            continue;
        }
        let Ok(meta) = std::fs::metadata(root) else {
            errors.push((root.clone(), "cannot read it".into()));
            continue;
        };
        if meta.is_file() {
            if !looks_like_image(root) {
                errors.push((
                    root.clone(),
                    "not a disk image (qcow2, or a raw disk named .img or .raw)".into(),
                ));
                continue;
            }
            out.push((folder_of(root), root.clone()));
            continue;
        }
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                errors.push((dir.clone(), "cannot list the folder".into()));
                continue;
            };
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            found.sort();
            for p in found {
                if out.len() >= FILES_MAX {
                    errors.push((
                        root.clone(),
                        format!("more than {FILES_MAX} files; the rest was not scanned"),
                    ));
                    return out;
                }
                if !within(&p, bound) {
                    // A link out of the folder: not followed.
                    errors.push((p, "a link outside the folders this scan may read".into()));
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if looks_like_image(&p) {
                    out.push((root.clone(), p));
                }
            }
        }
    }
    out
}

/// Whether two paths name the same file (links resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The folder of a file named on its own (`.` for a bare name), so that
/// `base.qcow2` and `./base.qcow2` give the same id.
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether a raw file starts like a disk: a partition table (MBR, GPT,
/// LVM) or a filesystem (ext2/3/4, XFS, btrfs) where each puts its magic.
fn raw_disk_signature(path: &Path, stats: &ReadStats) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::new();
    if file.take(0x10048).read_to_end(&mut head).is_err() {
        return false;
    }
    stats.add(head.len() as u64);
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    at(510, &[0x55, 0xaa])
        || at(512, b"EFI PART")
        || at(512, b"LABELONE")
        || at(1080, &[0x53, 0xef])
        || at(0, b"XFSB")
        || at(0x10040, b"_BHRfS_M")
}

/// The artifact id of a file: its path relative to the scan root that holds
/// it, else its canonical absolute path.
fn artifact_id(path: &Path, roots: &[PathBuf]) -> String {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    for root in roots {
        let root = root.canonicalize().unwrap_or_else(|_| root.clone());
        if let Ok(rel) = canonical.strip_prefix(&root) {
            let text = rel.to_string_lossy().replace('\\', "/");
            if !text.is_empty() {
                return text;
            }
        }
    }
    canonical.to_string_lossy().into_owned()
}

fn header_digest(path: &Path, stats: &ReadStats) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    (&mut file)
        .take(HEADER_DIGEST_BYTES)
        .read_to_end(&mut buf)
        .ok()?;
    stats.add(buf.len() as u64);
    let digest = Sha256::digest(&buf);
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// The purls of a guest's package databases, with its distribution.
fn guest_components(
    guest: &crate::fs::Guest,
    warnings: &mut Vec<String>,
) -> Option<(Vec<String>, Option<String>)> {
    let distro = guest
        .os_release
        .as_deref()
        .and_then(|t| patchline_formats::os_release::parse(t).ok())
        .and_then(|o| o.distro());
    let hint = Hint {
        distro: distro.clone(),
    };
    let mut purls = Vec::new();
    let mut found = false;
    if let Some(status) = &guest.dpkg_status {
        found = true;
        match patchline_formats::dpkg::parse_status(status, &hint) {
            Ok(inv) => purls.extend(inv.components.iter().map(ToString::to_string)),
            Err(e) => warnings.push(format!("/var/lib/dpkg/status: {e}")),
        }
    }
    for (name, text) in &guest.dpkg_status_d {
        found = true;
        match patchline_formats::dpkg::parse_status(text, &hint) {
            Ok(inv) => purls.extend(inv.components.iter().map(ToString::to_string)),
            Err(e) => warnings.push(format!("/var/lib/dpkg/status.d/{name}: {e}")),
        }
    }
    if let Some(installed) = &guest.apk_installed {
        found = true;
        match patchline_formats::apk::parse_installed(installed, &hint) {
            Ok(inv) => purls.extend(inv.components.iter().map(ToString::to_string)),
            Err(e) => warnings.push(format!("/lib/apk/db/installed: {e}")),
        }
    }
    if guest.rpm_db.is_some() {
        warnings.push("an rpm database is present but not read".into());
    }
    found.then_some((purls, distro))
}

/// Scans files and folders. Each image is read on its own: an unreadable
/// one is reported and the others go on.
pub fn scan(paths: &[PathBuf], options: &ScanOptions) -> ScanOutcome {
    scan_with_progress(paths, options, &mut |_, _| {})
}

/// [`scan`], calling `progress(done, total)` as images are read.
pub fn scan_with_progress(
    paths: &[PathBuf],
    options: &ScanOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> ScanOutcome {
    let mut outcome = ScanOutcome::default();
    let bound: Vec<PathBuf> = options
        .roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    if !options.roots.is_empty() && bound.is_empty() {
        outcome
            .errors
            .push((PathBuf::new(), "no image root can be read".into()));
        return outcome;
    }
    let files = collect(paths, &bound, &mut outcome.errors);
    let roots: Vec<PathBuf> = paths
        .iter()
        .map(|p| if p.is_file() { folder_of(p) } else { p.clone() })
        .collect();
    // Every chain member once, keyed by canonical path, with its parent.
    let mut links: BTreeMap<String, (ChainLink, Option<String>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (_, file) in &files {
        let stats = ReadStats::new();
        let chain = match resolve_within(file, &stats, &bound) {
            Ok(c) => c,
            Err(e) => {
                outcome.errors.push((file.clone(), e.to_string()));
                continue;
            }
        };
        // Base first, so that parents are registered before children.
        for (i, link) in chain.iter().enumerate().rev() {
            let id = artifact_id(&link.path, &roots);
            let parent = chain.get(i + 1).map(|p| artifact_id(&p.path, &roots));
            match links.entry(id.clone()) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    order.push(id);
                    slot.insert((link.clone(), parent));
                }
                // Two different files, one id (`a/disk.img` and
                // `b/disk.img` named on their own): never merge them.
                std::collections::btree_map::Entry::Occupied(taken)
                    if !same_file(&taken.get().0.path, &link.path) =>
                {
                    outcome.errors.push((
                        link.path.clone(),
                        format!(
                            "would be artifact {id}, which {} already is in this scan; scan their common folder instead",
                            taken.get().0.path.display()
                        ),
                    ));
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
            }
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let total = order.len();
    for (done, id) in order.into_iter().enumerate() {
        progress(done, total);
        let Some((link, parent)) = links.get(&id).cloned() else {
            continue;
        };
        if seen.contains_key(&id) {
            continue;
        }
        seen.insert(id.clone(), outcome.images.len());
        let stats = ReadStats::new();
        if link.format == Format::Raw && !raw_disk_signature(&link.path, &stats) {
            outcome.errors.push((
                link.path.clone(),
                "not a disk image: no partition table or filesystem where raw disks have them"
                    .into(),
            ));
            continue;
        }
        let mut warnings = Vec::new();
        let components = match open_chain_within(&link.path, &stats, &bound) {
            Ok((disk, _)) => match read_guest(disk.as_ref()) {
                Ok(guest) => guest_components(&guest, &mut warnings),
                Err(e) => {
                    warnings.push(format!("no readable guest filesystem: {e}"));
                    None
                }
            },
            Err(e) => {
                outcome.errors.push((link.path.clone(), e.to_string()));
                continue;
            }
        };
        let mut labels = BTreeMap::new();
        labels.insert("scan.format".to_string(), link.format.to_string());
        labels.insert(
            "scan.virtual_size".to_string(),
            link.virtual_size.to_string(),
        );
        labels.insert("scan.file_size".to_string(), link.file_size.to_string());
        if let Some(d) = header_digest(&link.path, &stats) {
            labels.insert("scan.header_sha256".to_string(), d);
        }
        let (components, distro) = match components {
            Some((c, d)) => (Some(c), d),
            None => (None, None),
        };
        if let Some(d) = distro {
            labels.insert("scan.distro".to_string(), d);
        }
        let spec = match ArtifactId::new(id.clone()) {
            Ok(artifact) => ArtifactSpec {
                id: artifact,
                kind: Kind::Image,
                tenant: options.tenant.clone(),
                name: link
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                parent: parent.and_then(|p| ArtifactId::new(p).ok()),
                relation: link
                    .info
                    .as_ref()
                    .and_then(|i| i.backing_file.as_ref())
                    .map(|_| Relation::DerivedFrom),
                visibility: options.visibility,
                labels,
                components,
                supersedes: None,
                fixes: Vec::new(),
                warnings: Vec::new(),
            },
            Err(e) => {
                outcome.errors.push((link.path.clone(), e.to_string()));
                continue;
            }
        };
        outcome.images.push(ScannedImage {
            path: link.path.clone(),
            spec,
            format: link.format,
            bytes_read: stats.bytes_read(),
            file_size: link.file_size,
            warnings,
        });
    }
    outcome
}
