//! Backing chains: from an image to its backing file, and on to the base,
//! the way QEMU follows them.
//!
//! - A relative backing file name is relative to the folder of the overlay
//!   that names it (QEMU's `path_combine`: the overlay's path up to its last
//!   `/`, then the name; nothing is normalised). Absolute names are used as
//!   they are. The paths in [`ChainLink::path`] are therefore the
//!   `filename`s that `qemu-img info --backing-chain` prints.
//! - The backing format is the backing format header extension when there
//!   is one (`qcow2`; `raw` or `file` read the file as raw bytes, even a
//!   file that holds a qcow2 image, as QEMU does). Without one the file is
//!   probed: the qcow2 magic makes it qcow2, the magic of another image
//!   format (QED, VMDK, VHDX, VDI, VPC, LUKS) is refused as unsupported, and
//!   anything else is read as raw — as QEMU 10 still does when opening such
//!   an overlay (it only refuses to *create* one). One exception, for both
//!   the first file and backing files: a file named `*.qcow2` (or `.qcow`)
//!   that lacks the qcow2 magic is an error ([`ScanError::NotQcow2`]), not
//!   a raw disk, because it is far likelier a broken image than a raw one.
//! - The same file (by canonical path) met twice is a loop
//!   ([`ScanError::BackingLoop`]); a backing file that does not exist is
//!   [`ScanError::BackingMissing`], naming the overlay and the file; chains
//!   deeper than [`MAX_CHAIN_DEPTH`] are refused.
//! - `json:` and network (`proto://`) backing names are refused as
//!   unsupported.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::ReadAt;
use crate::error::ScanError;
use crate::qcow2::{self, Qcow2Image, Qcow2Info};
use crate::raw::{DiskFile, RawImage, ReadStats};

/// Files followed at most from an image to its base.
pub const MAX_CHAIN_DEPTH: usize = 256;

/// The formats of chain members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Qcow2,
    Raw,
}

impl fmt::Display for Format {
    /// The name `qemu-img` uses (`qcow2`, `raw`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        })
    }
}

/// One file of a backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The path as QEMU opens it: the given path for the first link, the
    /// overlay's folder joined with the backing name for the others.
    pub path: PathBuf,
    pub format: Format,
    /// The virtual disk size (for raw: the file size).
    pub virtual_size: u64,
    /// The file's length (apparent size).
    pub file_size: u64,
    /// The bytes its file occupies on disk (allocated blocks, what
    /// `qemu-img info` calls `actual-size`).
    pub allocated_size: u64,
    /// The qcow2 header, for qcow2 links.
    pub info: Option<Qcow2Info>,
}

impl ChainLink {
    /// The backing file name this link's header stores, if any.
    pub fn backing_name(&self) -> Option<&str> {
        self.info.as_ref().and_then(|i| i.backing_file.as_deref())
    }
}

/// The bytes the chain's files occupy on disk: the "M" of "read N bytes
/// of M on disk" (N being [`ReadStats::bytes_read`]).
pub fn disk_usage(links: &[ChainLink]) -> u64 {
    links.iter().map(|l| l.allocated_size).sum()
}

/// Follows the chain from the image at `path` to its base: the first link
/// is `path` itself, the last one has no backing file. Reads only headers.
pub fn resolve(path: impl AsRef<Path>) -> Result<Vec<ChainLink>, ScanError> {
    resolve_with_stats(path, &ReadStats::new())
}

/// [`resolve`], counting what it reads in `stats`.
pub fn resolve_with_stats(
    path: impl AsRef<Path>,
    stats: &ReadStats,
) -> Result<Vec<ChainLink>, ScanError> {
    resolve_within(path, stats, &[])
}

/// [`resolve_with_stats`], refusing (before opening it) any file of the
/// chain whose real path is not under one of `roots` (none: no bound).
pub fn resolve_within(
    path: impl AsRef<Path>,
    stats: &ReadStats,
    roots: &[PathBuf],
) -> Result<Vec<ChainLink>, ScanError> {
    Ok(walk(path.as_ref(), stats, roots)?
        .into_iter()
        .map(|(link, _)| link)
        .collect())
}

/// Resolves the chain of `path` and opens it as one stacked reader of the
/// virtual disk of `path`.
pub fn open_chain(path: impl AsRef<Path>) -> Result<(Box<dyn ReadAt>, Vec<ChainLink>), ScanError> {
    open_chain_with_stats(path, &ReadStats::new())
}

/// [`open_chain`], counting in `stats` every byte read from the chain's
/// files, while resolving and later through the reader.
pub fn open_chain_with_stats(
    path: impl AsRef<Path>,
    stats: &ReadStats,
) -> Result<(Box<dyn ReadAt>, Vec<ChainLink>), ScanError> {
    open_chain_within(path, stats, &[])
}

/// [`open_chain_with_stats`] bounded to `roots` (see [`resolve_within`]).
pub fn open_chain_within(
    path: impl AsRef<Path>,
    stats: &ReadStats,
    roots: &[PathBuf],
) -> Result<(Box<dyn ReadAt>, Vec<ChainLink>), ScanError> {
    let parts = walk(path.as_ref(), stats, roots)?;
    let mut links = Vec::with_capacity(parts.len());
    let mut files = Vec::with_capacity(parts.len());
    for (link, file) in parts {
        files.push((link.format, link.info.clone(), file));
        links.push(link);
    }
    let mut reader: Option<Box<dyn ReadAt>> = None;
    for (format, info, file) in files.into_iter().rev() {
        reader = Some(match (format, info) {
            (Format::Qcow2, Some(info)) => {
                Box::new(Qcow2Image::from_parts(file, info, reader.take())?)
            }
            _ => Box::new(RawImage::from_file(file)),
        });
    }
    let reader = reader.expect("a chain has at least one link");
    Ok((reader, links))
}

/// What the file at `path` is, by its magic (see the module documentation
/// for the rules).
pub fn probe(path: impl AsRef<Path>) -> Result<Format, ScanError> {
    let file = DiskFile::open(path.as_ref(), &ReadStats::new())?;
    probe_file(&file)
}

fn has_qcow2_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("qcow2") || e.eq_ignore_ascii_case("qcow"))
}

fn probe_file(file: &DiskFile) -> Result<Format, ScanError> {
    let path = file.path();
    let head = file.read_up_to(0, 72).map_err(|e| ScanError::io(path, e))?;
    if head.starts_with(&qcow2::MAGIC) {
        return Ok(Format::Qcow2);
    }
    let other = if head.starts_with(b"QED\0") {
        Some("QED")
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        Some("VMDK")
    } else if head.starts_with(b"vhdxfile") {
        Some("VHDX")
    } else if head.starts_with(b"conectix") {
        Some("VPC/VHD")
    } else if head.starts_with(b"LUKS\xba\xbe") {
        Some("LUKS")
    } else if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        Some("VDI")
    } else {
        None
    };
    if let Some(fmt) = other {
        return Err(ScanError::unsupported(
            path,
            format!("a {fmt} image; only qcow2 and raw images are read"),
        ));
    }
    if has_qcow2_name(path) {
        let reason = if head.len() < 4 {
            format!(
                "the file is {} bytes long, too short for a qcow2 header",
                file.len()
            )
        } else {
            format!(
                "bad magic {:02x?} (a qcow2 image starts with \"QFI\\xfb\")",
                &head[..4]
            )
        };
        return Err(ScanError::NotQcow2 {
            path: path.to_path_buf(),
            reason,
        });
    }
    Ok(Format::Raw)
}

/// QEMU's `path_combine`: a relative `name` is relative to the folder of
/// `overlay`.
fn backing_path(overlay: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    if name.is_absolute() {
        return name.to_path_buf();
    }
    match overlay.parent() {
        Some(dir) => dir.join(name),
        None => name.to_path_buf(),
    }
}

fn declared_format(overlay: &Path, backing: &Path, fmt: &str) -> Result<Format, ScanError> {
    match fmt {
        "qcow2" => Ok(Format::Qcow2),
        "raw" | "file" => Ok(Format::Raw),
        other => Err(ScanError::unsupported(
            overlay,
            format!(
                "its backing file {} has format {other:?}; only qcow2 and raw are read",
                backing.display()
            ),
        )),
    }
}

/// Whether the real path of `path` (links resolved) lies under one of
/// `roots` (already canonical); no roots: anything goes.
pub fn within(path: &Path, roots: &[PathBuf]) -> bool {
    roots.is_empty()
        || std::fs::canonicalize(path).is_ok_and(|real| roots.iter().any(|r| real.starts_with(r)))
}

fn walk(
    path: &Path,
    stats: &ReadStats,
    roots: &[PathBuf],
) -> Result<Vec<(ChainLink, DiskFile)>, ScanError> {
    let mut links: Vec<(ChainLink, DiskFile)> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut current = path.to_path_buf();
    let mut declared: Option<Format> = None;
    loop {
        let overlay = links.last().map(|(link, _)| link.path.clone());
        if links.len() >= MAX_CHAIN_DEPTH {
            return Err(ScanError::unsupported(
                path,
                format!("its backing chain is longer than {MAX_CHAIN_DEPTH} files"),
            ));
        }
        if !within(&current, roots) && current.exists() {
            return Err(ScanError::unsupported(
                overlay.as_deref().unwrap_or(&current),
                format!(
                    "{} is outside the folders this scan may read",
                    if overlay.is_some() {
                        "its backing file"
                    } else {
                        "it"
                    }
                ),
            ));
        }
        let file = match DiskFile::open(&current, stats) {
            Ok(file) => file,
            Err(ScanError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && overlay.is_some() =>
            {
                return Err(ScanError::BackingMissing {
                    path: overlay.expect("checked"),
                    backing: current,
                });
            }
            Err(e) => return Err(e),
        };
        let canonical = std::fs::canonicalize(&current).map_err(|e| ScanError::io(&current, e))?;
        if !seen.insert(canonical) {
            return Err(ScanError::BackingLoop {
                path: overlay.unwrap_or_else(|| current.clone()),
                backing: current,
            });
        }
        let format = match declared {
            Some(format) => format,
            None => probe_file(&file)?,
        };
        let (info, virtual_size) = match format {
            Format::Qcow2 => {
                let info = qcow2::parse_header(&file)?;
                let size = info.virtual_size;
                (Some(info), size)
            }
            Format::Raw => (None, file.len()),
        };
        let next = match info.as_ref().and_then(|i| i.backing_file.as_deref()) {
            None => None,
            Some(name) => {
                if name.starts_with("json:") || name.contains("://") {
                    return Err(ScanError::unsupported(
                        &current,
                        format!("backing file {name:?} is not a local file name"),
                    ));
                }
                let backing = backing_path(&current, name);
                let fmt = info.as_ref().and_then(|i| i.backing_format.as_deref());
                declared = fmt
                    .map(|fmt| declared_format(&current, &backing, fmt))
                    .transpose()?;
                Some(backing)
            }
        };
        links.push((
            ChainLink {
                path: current.clone(),
                format,
                virtual_size,
                file_size: file.len(),
                allocated_size: file.allocated(),
                info,
            },
            file,
        ));
        match next {
            Some(next) => current = next,
            None => return Ok(links),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_backing_paths_combine_like_qemu() {
        assert_eq!(
            backing_path(Path::new("top.qcow2"), "base.qcow2"),
            Path::new("base.qcow2")
        );
        assert_eq!(
            backing_path(Path::new("a/b/top.qcow2"), "../base.qcow2"),
            Path::new("a/b/../base.qcow2")
        );
        assert_eq!(
            backing_path(Path::new("a/top.qcow2"), "/images/base.qcow2"),
            Path::new("/images/base.qcow2")
        );
    }
}
