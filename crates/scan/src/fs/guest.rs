//! The guest files patchline needs, from the root filesystem of a disk.

use super::ext4::{Ext4, FileKind};
use super::partition::{Partition, read_partitions};
use super::{Counting, FsError, read_exact_at};
use crate::ReadAt;

/// Guest files larger than this are refused (a large dpkg status is a few
/// MiB).
pub const MAX_GUEST_FILE: u64 = 64 << 20;
/// At most this many files are read from `/var/lib/dpkg/status.d`.
const MAX_STATUS_D_FILES: usize = 10_000;

const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "/var/lib/dpkg/status.d";
const APK_INSTALLED: &str = "/lib/apk/db/installed";
/// rpm databases, newest layout first, with what `rpm_db` then says.
const RPM_DBS: [(&str, &str); 6] = [
    (
        "/usr/lib/sysimage/rpm/rpmdb.sqlite",
        "rpm database (sqlite, /usr/lib/sysimage/rpm/rpmdb.sqlite) present; not read",
    ),
    (
        "/var/lib/rpm/rpmdb.sqlite",
        "rpm database (sqlite, /var/lib/rpm/rpmdb.sqlite) present; not read",
    ),
    (
        "/usr/lib/sysimage/rpm/Packages.db",
        "rpm database (ndb, /usr/lib/sysimage/rpm/Packages.db) present; not read",
    ),
    (
        "/var/lib/rpm/Packages.db",
        "rpm database (ndb, /var/lib/rpm/Packages.db) present; not read",
    ),
    (
        "/usr/lib/sysimage/rpm/Packages",
        "rpm database (Berkeley DB, /usr/lib/sysimage/rpm/Packages) present; not read",
    ),
    (
        "/var/lib/rpm/Packages",
        "rpm database (Berkeley DB, /var/lib/rpm/Packages) present; not read",
    ),
];

/// What the guest's root filesystem says about its operating system and
/// installed packages. Texts are decoded lossily as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The root filesystem's partition number ([`Partition::index`]: 1 for
    /// the first partition; 0 for a filesystem on the whole disk).
    pub partition: usize,
    /// `/etc/os-release`, else `/usr/lib/os-release` (symlinks followed).
    pub os_release: Option<String>,
    /// `/var/lib/dpkg/status`.
    pub dpkg_status: Option<String>,
    /// `/var/lib/dpkg/status.d/*` (distroless images), by file name,
    /// sorted; `*.md5sums` files are left out (they list file digests, not
    /// packages).
    pub dpkg_status_d: Vec<(String, String)>,
    /// `/lib/apk/db/installed`.
    pub apk_installed: Option<String>,
    /// Says that an rpm database exists (and which); it is not read.
    pub rpm_db: Option<&'static str>,
    /// Bytes read from the disk for all of this, partition table included.
    pub bytes_read: u64,
}

/// Finds the root filesystem of `disk` and reads the guest's os-release
/// and package databases from it.
///
/// The root is the first ext partition (in table order) that has
/// `/etc/os-release` or `/usr/lib/os-release`; failing that, the first one
/// with a dpkg, apk or rpm database. Partitions that are not ext are
/// skipped; if no partition gives a root, the error says what each one was.
pub fn read_guest(disk: &dyn ReadAt) -> Result<Guest, FsError> {
    let counting = Counting::new(disk);
    let disk: &dyn ReadAt = &counting;
    let partitions = read_partitions(disk)?;
    if partitions.is_empty() {
        return Err(FsError::NoRoot(format!(
            "the {}-byte disk has no partition table and no ext filesystem ({})",
            disk.size(),
            detect(disk)
        )));
    }

    let mut notes = Vec::new();
    let mut fallback: Option<&Partition> = None;
    for p in &partitions {
        let slice = p.slice(disk);
        let fs = match Ext4::open(&slice) {
            Ok(fs) => fs,
            Err(FsError::NotExt) => {
                notes.push(format!(
                    "partition {} ({}): {}",
                    p.index,
                    p.type_description(),
                    detect(&slice)
                ));
                continue;
            }
            Err(e) => {
                notes.push(format!(
                    "partition {} ({}): {e}",
                    p.index,
                    p.type_description()
                ));
                continue;
            }
        };
        let wrap = |e: FsError| FsError::InPartition {
            index: p.index,
            source: Box::new(e),
        };
        let mut has_os_release = false;
        for path in OS_RELEASE {
            if exists_file(&fs, path).map_err(wrap)? {
                has_os_release = true;
                break;
            }
        }
        if has_os_release {
            let mut guest = read_root(&fs, p).map_err(wrap)?;
            guest.bytes_read = counting.bytes_read();
            return Ok(guest);
        }
        if fallback.is_none() && has_package_db(&fs).map_err(wrap)? {
            fallback = Some(p);
        }
        notes.push(format!(
            "partition {} ({}): ext filesystem without os-release or package database",
            p.index,
            p.type_description()
        ));
    }
    if let Some(p) = fallback {
        let slice = p.slice(disk);
        let fs = Ext4::open(&slice)?;
        let mut guest = read_root(&fs, p).map_err(|e| FsError::InPartition {
            index: p.index,
            source: Box::new(e),
        })?;
        guest.bytes_read = counting.bytes_read();
        return Ok(guest);
    }
    Err(FsError::NoRoot(notes.join("; ")))
}

fn exists_file(fs: &Ext4<'_>, path: &str) -> Result<bool, FsError> {
    match fs.metadata(path) {
        Ok(m) => Ok(m.is_some_and(|m| m.kind == FileKind::File)),
        // A dangling or looping symlink is "not there" for this purpose.
        Err(FsError::Path { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn has_package_db(fs: &Ext4<'_>) -> Result<bool, FsError> {
    for path in [DPKG_STATUS, APK_INSTALLED] {
        if exists_file(fs, path)? {
            return Ok(true);
        }
    }
    if fs
        .metadata(DPKG_STATUS_D)?
        .is_some_and(|m| m.kind == FileKind::Dir)
    {
        return Ok(true);
    }
    for (path, _) in RPM_DBS {
        if exists_file(fs, path)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn text(fs: &Ext4<'_>, path: &str) -> Result<Option<String>, FsError> {
    Ok(fs
        .read_file(path, MAX_GUEST_FILE)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

fn read_root(fs: &Ext4<'_>, p: &Partition) -> Result<Guest, FsError> {
    let mut os_release = None;
    for path in OS_RELEASE {
        if exists_file(fs, path)? {
            os_release = text(fs, path)?;
            break;
        }
    }
    let dpkg_status = text(fs, DPKG_STATUS)?;
    let mut dpkg_status_d = Vec::new();
    if let Some(entries) = match fs.read_dir(DPKG_STATUS_D) {
        Ok(e) => e,
        Err(FsError::Path { .. }) => None,
        Err(e) => return Err(e),
    } {
        let mut names: Vec<String> = entries
            .into_iter()
            .map(|e| e.name)
            .filter(|n| !n.ends_with(".md5sums"))
            .collect();
        names.sort();
        if names.len() > MAX_STATUS_D_FILES {
            return Err(FsError::Path {
                path: DPKG_STATUS_D.to_string(),
                reason: format!("{} files (more than {MAX_STATUS_D_FILES})", names.len()),
            });
        }
        for name in names {
            let path = format!("{DPKG_STATUS_D}/{name}");
            if !exists_file(fs, &path)? {
                continue;
            }
            if let Some(t) = text(fs, &path)? {
                dpkg_status_d.push((name, t));
            }
        }
    }
    let apk_installed = text(fs, APK_INSTALLED)?;
    let mut rpm_db = None;
    for (path, note) in RPM_DBS {
        if exists_file(fs, path)? {
            rpm_db = Some(note);
            break;
        }
    }
    Ok(Guest {
        partition: p.index as usize,
        os_release,
        dpkg_status,
        dpkg_status_d,
        apk_installed,
        rpm_db,
        bytes_read: 0,
    })
}

/// A short guess at what a non-ext partition holds, for messages.
fn detect(dev: &dyn ReadAt) -> &'static str {
    let probe = |offset: u64, magic: &[u8]| -> bool {
        let mut buf = vec![0u8; magic.len()];
        read_exact_at(dev, offset, &mut buf).is_ok() && buf == magic
    };
    if probe(0, b"XFSB") {
        "XFS filesystem (not read)"
    } else if probe(0x10040, b"_BHRfS_M") {
        "btrfs filesystem (not read)"
    } else if probe(512 + 24, b"LVM2 001") || probe(512, b"LABELONE") {
        "LVM physical volume (not read)"
    } else if probe(0, b"LUKS\xba\xbe") {
        "LUKS encrypted volume (not read)"
    } else if probe(4086, b"SWAPSPACE2") || probe(4086, b"SWAP-SPACE") {
        "swap"
    } else if probe(54, b"FAT") || probe(82, b"FAT32") {
        "FAT filesystem"
    } else if probe(3, b"NTFS    ") {
        "NTFS filesystem (not read)"
    } else if probe(0x8001, b"CD001") {
        "ISO 9660 filesystem (not read)"
    } else if probe(0, b"hsqs") {
        "squashfs (not read)"
    } else {
        "no filesystem recognized"
    }
}
