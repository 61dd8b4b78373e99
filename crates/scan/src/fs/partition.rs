//! Partition tables: MBR (with extended partitions) and GPT (header and
//! entry array CRCs checked; the backup header is not read). A disk with no
//! table whose first bytes are an ext filesystem is one whole-disk
//! "partition".

use std::collections::HashSet;
use std::fmt;
use std::io;

use super::crc::crc32;
use super::{FsError, read_exact_at};
use crate::ReadAt;

/// Which kind of table a partition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Gpt,
    Mbr,
    /// No partition table: the filesystem starts at byte 0.
    WholeDisk,
}

/// A GPT GUID, shown in the usual mixed-endian text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// "Linux filesystem data".
    pub const LINUX_FILESYSTEM: Guid = Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    /// EFI system partition.
    pub const EFI_SYSTEM: Guid = Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    /// BIOS boot partition (GRUB's core image).
    pub const BIOS_BOOT: Guid = Guid::from_str_const("21686148-6449-6E6F-744E-656564454649");

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` at compile time.
    const fn from_str_const(s: &str) -> Guid {
        const fn hex(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => panic!("bad hex digit in GUID"),
            }
        }
        let s = s.as_bytes();
        assert!(s.len() == 36, "GUID text is 36 characters");
        let mut text = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < 36 {
            if s[i] == b'-' {
                i += 1;
                continue;
            }
            text[n] = (hex(s[i]) << 4) | hex(s[i + 1]);
            n += 1;
            i += 2;
        }
        // Text order to on-disk order: the first three fields are little-endian.
        let mut b = [0u8; 16];
        b[0] = text[3];
        b[1] = text[2];
        b[2] = text[1];
        b[3] = text[0];
        b[4] = text[5];
        b[5] = text[4];
        b[6] = text[7];
        b[7] = text[6];
        let mut k = 8;
        while k < 16 {
            b[k] = text[k];
            k += 1;
        }
        Guid(b)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The type information of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKind {
    Gpt {
        type_guid: Guid,
        unique_guid: Guid,
        attributes: u64,
    },
    Mbr {
        type_byte: u8,
        bootable: bool,
        /// A logical partition inside an extended one.
        logical: bool,
    },
    WholeDisk,
}

/// One partition (or the whole disk when there is no table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The number Linux gives it: GPT slot + 1, MBR primary 1–4, logical
    /// 5 and up; 0 for a whole-disk filesystem.
    pub index: u32,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub kind: PartitionKind,
    /// The GPT partition name (empty for MBR and whole disks).
    pub name: String,
}

impl Partition {
    pub fn scheme(&self) -> Scheme {
        match self.kind {
            PartitionKind::Gpt { .. } => Scheme::Gpt,
            PartitionKind::Mbr { .. } => Scheme::Mbr,
            PartitionKind::WholeDisk => Scheme::WholeDisk,
        }
    }

    /// A view of the partition's bytes.
    pub fn slice<'a>(&self, disk: &'a dyn ReadAt) -> Slice<'a> {
        Slice::new(disk, self.start_bytes, self.size_bytes)
    }

    /// A short description of the partition type, for messages.
    pub fn type_description(&self) -> String {
        match &self.kind {
            PartitionKind::Gpt { type_guid, .. } => {
                let known = match type_guid.to_string().as_str() {
                    "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
                    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI system",
                    "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
                    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
                    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM64)",
                    "44479540-F297-41B2-9AF7-D131D5F0458A" => "Linux root (x86)",
                    "8484680C-9521-48C6-9C11-B0720656F69E" => "Linux /usr (x86-64)",
                    "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
                    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
                    "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
                    "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
                    "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
                    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
                    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
                    _ => "",
                };
                if known.is_empty() {
                    format!("GPT type {type_guid}")
                } else {
                    format!("GPT type {type_guid} ({known})")
                }
            }
            PartitionKind::Mbr { type_byte, .. } => {
                let known = match type_byte {
                    0x83 => " (Linux)",
                    0x82 => " (Linux swap)",
                    0x8e => " (Linux LVM)",
                    0xfd => " (Linux RAID)",
                    0xef => " (EFI system)",
                    0x07 => " (NTFS/exFAT)",
                    0x0b | 0x0c | 0x0e | 0x06 | 0x04 | 0x01 => " (FAT)",
                    _ => "",
                };
                format!("MBR type 0x{type_byte:02x}{known}")
            }
            PartitionKind::WholeDisk => "whole disk".to_string(),
        }
    }
}

/// A [`ReadAt`] over `len` bytes of another one, from `start`.
#[derive(Clone, Copy)]
pub struct Slice<'a> {
    inner: &'a dyn ReadAt,
    start: u64,
    len: u64,
}

impl<'a> Slice<'a> {
    /// The range is clipped to the inner device.
    pub fn new(inner: &'a dyn ReadAt, start: u64, len: u64) -> Self {
        let start = start.min(inner.size());
        let len = len.min(inner.size() - start);
        Slice { inner, start, len }
    }

    pub fn start(&self) -> u64 {
        self.start
    }
}

impl fmt::Debug for Slice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slice")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl ReadAt for Slice<'_> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.inner.read_at(self.start + offset, buf),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end of a {}-byte partition",
                    buf.len(),
                    self.len
                ),
            )),
        }
    }
}

const SECTOR: u64 = 512;
/// At most this many bytes of GPT entries (the usual array is 16 KiB).
const MAX_GPT_ENTRIES_BYTES: u64 = 1 << 20;
/// At most this many logical partitions in an extended partition chain.
const MAX_LOGICAL: u32 = 256;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Whether the bytes at 1024 are an ext superblock (magic at 1024 + 56).
pub fn has_ext_superblock(dev: &dyn ReadAt) -> Result<bool, FsError> {
    if dev.size() < 2048 {
        return Ok(false);
    }
    let mut magic = [0u8; 2];
    read_exact_at(dev, 1024 + 56, &mut magic)?;
    Ok(u16::from_le_bytes(magic) == 0xEF53)
}

/// Reads the partition table of `disk`. A disk without a table that holds
/// an ext filesystem at byte 0 gives one [`PartitionKind::WholeDisk`]
/// partition; a disk with neither gives an empty list.
pub fn read_partitions(disk: &dyn ReadAt) -> Result<Vec<Partition>, FsError> {
    let size = disk.size();
    if size >= SECTOR {
        let mut mbr = [0u8; 512];
        read_exact_at(disk, 0, &mut mbr)?;
        if let Some(entries) = mbr_entries(&mbr) {
            if entries.iter().any(|e| e.type_byte == 0xEE) {
                return read_gpt(disk);
            }
            let parts = read_mbr(disk, &entries)?;
            if !parts.is_empty() {
                return Ok(parts);
            }
        }
    }
    if has_ext_superblock(disk)? {
        return Ok(vec![Partition {
            index: 0,
            start_bytes: 0,
            size_bytes: size,
            kind: PartitionKind::WholeDisk,
            name: String::new(),
        }]);
    }
    Ok(Vec::new())
}

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    status: u8,
    type_byte: u8,
    start_lba: u32,
    sectors: u32,
}

/// The four primary entries when `sector` is an MBR (signature 55 AA and
/// every status byte 0x00 or 0x80, as Linux checks), else `None`.
fn mbr_entries(sector: &[u8; 512]) -> Option<[MbrEntry; 4]> {
    if sector[510] != 0x55 || sector[511] != 0xAA {
        return None;
    }
    let mut entries = [MbrEntry {
        status: 0,
        type_byte: 0,
        start_lba: 0,
        sectors: 0,
    }; 4];
    for (i, e) in entries.iter_mut().enumerate() {
        let b = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        if b[0] != 0 && b[0] != 0x80 {
            return None;
        }
        *e = MbrEntry {
            status: b[0],
            type_byte: b[4],
            start_lba: le32(b, 8),
            sectors: le32(b, 12),
        };
    }
    Some(entries)
}

fn is_extended(type_byte: u8) -> bool {
    matches!(type_byte, 0x05 | 0x0F | 0x85)
}

/// A partition from sector numbers, clipped to the disk as Linux does;
/// `None` when it starts past the end.
fn mbr_partition(
    disk_size: u64,
    index: u32,
    e: &MbrEntry,
    base_lba: u64,
    logical: bool,
) -> Option<Partition> {
    let start = (base_lba + u64::from(e.start_lba)) * SECTOR;
    if start >= disk_size {
        return None;
    }
    let size = (u64::from(e.sectors) * SECTOR).min(disk_size - start);
    Some(Partition {
        index,
        start_bytes: start,
        size_bytes: size,
        kind: PartitionKind::Mbr {
            type_byte: e.type_byte,
            bootable: e.status == 0x80,
            logical,
        },
        name: String::new(),
    })
}

fn read_mbr(disk: &dyn ReadAt, entries: &[MbrEntry; 4]) -> Result<Vec<Partition>, FsError> {
    let size = disk.size();
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        if e.type_byte == 0 || e.sectors == 0 || e.start_lba == 0 {
            continue;
        }
        if is_extended(e.type_byte) {
            if extended.is_none() {
                extended = Some(u64::from(e.start_lba));
            }
            continue;
        }
        if let Some(p) = mbr_partition(size, i as u32 + 1, e, 0, false) {
            parts.push(p);
        }
    }
    if let Some(ext_lba) = extended {
        read_logical(disk, ext_lba, &mut parts)?;
    }
    Ok(parts)
}

/// Walks the chain of extended boot records from the extended partition
/// at `ext_lba`.
fn read_logical(
    disk: &dyn ReadAt,
    ext_lba: u64,
    parts: &mut Vec<Partition>,
) -> Result<(), FsError> {
    let size = disk.size();
    let mut ebr_lba = ext_lba;
    let mut seen = HashSet::new();
    let mut index = 5;
    while index < 5 + MAX_LOGICAL {
        if !seen.insert(ebr_lba) {
            return Err(FsError::Partition(format!(
                "extended partition chain loops back to sector {ebr_lba}"
            )));
        }
        let offset = ebr_lba * SECTOR;
        if offset + SECTOR > size {
            return Err(FsError::Partition(format!(
                "extended boot record at sector {ebr_lba} is past the end of the disk"
            )));
        }
        let mut sector = [0u8; 512];
        read_exact_at(disk, offset, &mut sector)?;
        let Some(entries) = mbr_entries(&sector) else {
            return Err(FsError::Partition(format!(
                "extended boot record at sector {ebr_lba} has no 55 AA signature"
            )));
        };
        let logical = entries[0];
        if logical.type_byte != 0 && logical.sectors != 0 {
            if let Some(p) = mbr_partition(size, index, &logical, ebr_lba, true) {
                parts.push(p);
            }
            index += 1;
        }
        let next = entries[1];
        if next.type_byte == 0 || next.sectors == 0 || !is_extended(next.type_byte) {
            return Ok(());
        }
        ebr_lba = ext_lba + u64::from(next.start_lba);
    }
    Err(FsError::Partition(format!(
        "more than {MAX_LOGICAL} logical partitions"
    )))
}

/// Reads the primary GPT (at LBA 1, for 512- or 4096-byte sectors).
fn read_gpt(disk: &dyn ReadAt) -> Result<Vec<Partition>, FsError> {
    let size = disk.size();
    let mut last_err = None;
    for sector in [512u64, 4096] {
        if size < 2 * sector {
            continue;
        }
        let mut header = vec![0u8; sector as usize];
        read_exact_at(disk, sector, &mut header)?;
        if &header[0..8] != b"EFI PART" {
            continue;
        }
        match parse_gpt(disk, sector, &header) {
            Ok(parts) => return Ok(parts),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        FsError::Partition(
            "protective MBR (type 0xEE) but no GPT header (\"EFI PART\") at LBA 1".to_string(),
        )
    }))
}

fn parse_gpt(disk: &dyn ReadAt, sector: u64, header: &[u8]) -> Result<Vec<Partition>, FsError> {
    let disk_size = disk.size();
    let bad = |msg: String| FsError::Partition(format!("GPT header: {msg}"));
    let header_size = le32(header, 12) as usize;
    if header_size < 92 || header_size > header.len() {
        return Err(bad(format!(
            "header size {header_size} is not in 92..={}",
            header.len()
        )));
    }
    let stored_crc = le32(header, 16);
    let mut copy = header[..header_size].to_vec();
    copy[16..20].fill(0);
    let crc = crc32(&copy);
    if crc != stored_crc {
        return Err(bad(format!(
            "checksum mismatch (stored {stored_crc:08x}, computed {crc:08x})"
        )));
    }
    let my_lba = le64(header, 24);
    if my_lba != 1 {
        return Err(bad(format!(
            "primary header says it is at LBA {my_lba}, not 1"
        )));
    }
    let entries_lba = le64(header, 72);
    let count = u64::from(le32(header, 80));
    let entry_size = u64::from(le32(header, 84));
    let entries_crc = le32(header, 88);
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Err(bad(format!(
            "partition entry size {entry_size} is not 128 times a power of two"
        )));
    }
    let total = count * entry_size;
    if total > MAX_GPT_ENTRIES_BYTES {
        return Err(bad(format!(
            "{count} entries of {entry_size} bytes is more than 1 MiB"
        )));
    }
    let entries_at = entries_lba
        .checked_mul(sector)
        .filter(|&at| entries_lba >= 2 && at.checked_add(total).is_some_and(|end| end <= disk_size))
        .ok_or_else(|| {
            bad(format!(
                "partition entries at LBA {entries_lba} are outside the disk"
            ))
        })?;
    let mut entries = vec![0u8; total as usize];
    read_exact_at(disk, entries_at, &mut entries)?;
    let crc = crc32(&entries);
    if crc != entries_crc {
        return Err(FsError::Partition(format!(
            "GPT partition entries: checksum mismatch (stored {entries_crc:08x}, computed {crc:08x})"
        )));
    }
    let mut parts = Vec::new();
    for (slot, e) in entries.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = Guid(e[0..16].try_into().expect("16 bytes"));
        if type_guid.is_zero() {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        let index = slot as u32 + 1;
        if last < first {
            return Err(FsError::Partition(format!(
                "GPT partition {index}: last LBA {last} is before first LBA {first}"
            )));
        }
        let start = first.saturating_mul(sector);
        if start >= disk_size {
            // Linux ignores partitions starting past the end of the disk.
            continue;
        }
        let size = (last - first + 1)
            .saturating_mul(sector)
            .min(disk_size - start);
        let name_units: Vec<u16> = (0..36)
            .map(|i| le16(e, 56 + 2 * i))
            .take_while(|&u| u != 0)
            .collect();
        parts.push(Partition {
            index,
            start_bytes: start,
            size_bytes: size,
            kind: PartitionKind::Gpt {
                type_guid,
                unique_guid: Guid(e[16..32].try_into().expect("16 bytes")),
                attributes: le64(e, 48),
            },
            name: String::from_utf16_lossy(&name_units),
        });
    }
    Ok(parts)
}
