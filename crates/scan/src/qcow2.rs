//! qcow2 images (versions 2 and 3), read-only, as specified by QEMU's
//! `docs/interop/qcow2.rst`.
//!
//! What is read: the header, the header extensions (backing file format,
//! feature name table, external data file name), the active L1 table and,
//! on demand, L2 tables (kept in a bounded LRU cache) and data clusters:
//! standard, zero, unallocated (read from the backing image, or zeros where
//! there is none or it is shorter), deflate-compressed, and the subclusters
//! of images with extended L2 entries. Refcounts, snapshots and bitmaps are
//! not needed to read the active image and are ignored.
//!
//! What is refused, with a [`ScanError`] naming the file: encrypted images
//! ([`ScanError::Encrypted`]), external data files and zstd compression
//! ([`ScanError::Unsupported`]; [`header_info`] still describes such
//! images), unknown incompatible features, and every structure that is
//! malformed or lies past the end of the file. Sizes from the file are
//! checked against bounds before anything is allocated from them.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::ReadAt;
use crate::error::ScanError;
use crate::raw::{DiskFile, ReadStats};

/// The four bytes every qcow2 file starts with.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

const V2_HEADER_LEN: u32 = 72;
const V3_HEADER_LEN: u32 = 104;
/// The spec's limit on backing file names.
pub const MAX_BACKING_NAME: u64 = 1023;
/// QEMU's limit on the active L1 table.
const MAX_L1_BYTES: u64 = 32 << 20;
/// L1/L2 entries address at most 2^56 bytes of populated clusters.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 56;
const MIN_CLUSTER_BITS: u32 = 9;
/// QEMU's limit (2 MiB clusters).
const MAX_CLUSTER_BITS: u32 = 21;
/// Budget of the L2 cache; the number of tables is within [2, 64].
const L2_CACHE_BYTES: usize = 16 << 20;
const L2_CACHE_MAX_TABLES: usize = 64;
/// Decompressed clusters kept (sequential small reads of one compressed
/// cluster would otherwise read and inflate it again each time).
const COMPRESSED_CACHE_CLUSTERS: usize = 4;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_DATA_FILE: u32 = 0x4441_5441;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = 0x1f;

const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const OFLAG_COMPRESSED: u64 = 1 << 62;
const OFLAG_ZERO: u64 = 1;

/// How compressed clusters are compressed (header field `compression_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate (QEMU's "zlib"), the default.
    Deflate,
    /// zstd: described, not read.
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        })
    }
}

/// Which feature bitmap a feature name table entry names a bit of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    Incompatible,
    Compatible,
    Autoclear,
    Other(u8),
}

/// An entry of the feature name table header extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    pub kind: FeatureKind,
    pub bit: u8,
    pub name: String,
}

/// What a qcow2 header says, checked for consistency with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Info {
    /// 2 or 3.
    pub version: u32,
    pub cluster_bits: u32,
    pub cluster_size: u64,
    /// Size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// Size of the image file in bytes.
    pub file_size: u64,
    /// The backing file name exactly as stored (relative names are relative
    /// to the folder of this image).
    pub backing_file: Option<String>,
    /// The backing file format extension (`qcow2`, `raw`, ...), if present.
    pub backing_format: Option<String>,
    /// `crypt_method` is not 0.
    pub encrypted: bool,
    /// 0 none, 1 AES, 2 LUKS.
    pub crypt_method: u32,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    /// Dirty bit: refcounts may be stale (harmless for reading).
    pub dirty: bool,
    /// Corrupt bit: QEMU found an inconsistency and marked the image.
    pub marked_corrupt: bool,
    /// Extended L2 entries (subclusters).
    pub extended_l2: bool,
    /// External data file bit.
    pub external_data_file: bool,
    /// The external data file name extension, if present.
    pub data_file_name: Option<String>,
    pub compression: Compression,
    /// 4 for version 2.
    pub refcount_order: u32,
    pub header_length: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub nb_snapshots: u32,
    /// The feature name table, if present.
    pub feature_names: Vec<FeatureName>,
}

impl Qcow2Info {
    fn l2_bits(&self) -> u32 {
        // An L2 table is one cluster of 8-byte (16 with extended L2) entries.
        self.cluster_bits - if self.extended_l2 { 4 } else { 3 }
    }

    /// L1 entries needed to map the whole virtual disk.
    fn l1_entries_needed(&self) -> u64 {
        let shift = self.cluster_bits + self.l2_bits();
        self.virtual_size.div_ceil(1u64 << shift)
    }
}

/// Reads and checks the header of the qcow2 image at `path` (reading only
/// the header cluster's structures). Encrypted images, external data files
/// and zstd compression are described here; [`Qcow2Image::open`] refuses
/// them.
pub fn header_info(path: impl AsRef<Path>) -> Result<Qcow2Info, ScanError> {
    header_info_with_stats(path, &ReadStats::new())
}

/// [`header_info`], counting what it reads in `stats`.
pub fn header_info_with_stats(
    path: impl AsRef<Path>,
    stats: &ReadStats,
) -> Result<Qcow2Info, ScanError> {
    let file = DiskFile::open(path.as_ref(), stats)?;
    parse_header(&file)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The first bytes of the file, read as far as the header needs them.
struct Head<'a> {
    file: &'a DiskFile,
    data: Vec<u8>,
}

impl<'a> Head<'a> {
    fn new(file: &'a DiskFile) -> Result<Head<'a>, ScanError> {
        let data = file
            .read_up_to(0, 4096)
            .map_err(|e| ScanError::io(file.path(), e))?;
        Ok(Head { file, data })
    }

    /// `n` bytes at `off`; callers bound both by the cluster size (2 MiB)
    /// plus the backing name limit, so this never allocates much.
    fn bytes(&mut self, off: u64, n: u64, what: &str) -> Result<&[u8], ScanError> {
        let len = self.file.len();
        let end = off
            .checked_add(n)
            .filter(|&end| end <= len)
            .ok_or_else(|| {
                ScanError::truncated(
                    self.file.path(),
                    format!(
                        "{what} (bytes {off}..{}) lies past the end of the file ({len} bytes)",
                        off.saturating_add(n)
                    ),
                )
            })?;
        let have = self.data.len() as u64;
        if end > have {
            let want = end.next_multiple_of(4096).min(len);
            let more = self
                .file
                .read_up_to(have, (want - have) as usize)
                .map_err(|e| ScanError::io(self.file.path(), e))?;
            self.data.extend_from_slice(&more);
        }
        Ok(&self.data[off as usize..end as usize])
    }
}

fn parse_string(path: &Path, bytes: &[u8], what: &str) -> Result<String, ScanError> {
    // Stored without a terminator; QEMU reads it as a C string, so a NUL
    // ends it.
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ScanError::unsupported(path, format!("{what} is not valid UTF-8")))
}

pub(crate) fn parse_header(file: &DiskFile) -> Result<Qcow2Info, ScanError> {
    let path = file.path();
    let len = file.len();
    let mut head = Head::new(file)?;
    if head.data.len() < 4 {
        return Err(ScanError::NotQcow2 {
            path: path.to_path_buf(),
            reason: format!("the file is {len} bytes long, too short for a qcow2 header"),
        });
    }
    if head.data[..4] != MAGIC {
        return Err(ScanError::NotQcow2 {
            path: path.to_path_buf(),
            reason: format!(
                "bad magic {:02x?} (a qcow2 image starts with \"QFI\\xfb\")",
                &head.data[..4]
            ),
        });
    }
    let h = head.bytes(0, u64::from(V2_HEADER_LEN), "the qcow2 header")?;
    let version = be32(h, 4);
    let backing_file_offset = be64(h, 8);
    let backing_file_size = be32(h, 16);
    let cluster_bits = be32(h, 20);
    let virtual_size = be64(h, 24);
    let crypt_method = be32(h, 32);
    let l1_size = be32(h, 36);
    let l1_table_offset = be64(h, 40);
    let nb_snapshots = be32(h, 60);

    match version {
        2 | 3 => {}
        1 => return Err(ScanError::unsupported(path, "qcow version 1 (not qcow2)")),
        v => return Err(ScanError::unsupported(path, format!("qcow2 version {v}"))),
    }
    if cluster_bits < MIN_CLUSTER_BITS {
        return Err(ScanError::corrupt(
            path,
            format!("cluster_bits is {cluster_bits}, below the minimum of {MIN_CLUSTER_BITS}"),
        ));
    }
    if cluster_bits > MAX_CLUSTER_BITS {
        return Err(ScanError::unsupported(
            path,
            format!("cluster size 2^{cluster_bits} bytes (larger than QEMU's limit of 2 MiB)"),
        ));
    }
    let cluster_size = 1u64 << cluster_bits;

    let mut info = Qcow2Info {
        version,
        cluster_bits,
        cluster_size,
        virtual_size,
        file_size: len,
        backing_file: None,
        backing_format: None,
        encrypted: crypt_method != 0,
        crypt_method,
        incompatible_features: 0,
        compatible_features: 0,
        autoclear_features: 0,
        dirty: false,
        marked_corrupt: false,
        extended_l2: false,
        external_data_file: false,
        data_file_name: None,
        compression: Compression::Deflate,
        refcount_order: 4,
        header_length: V2_HEADER_LEN,
        l1_size,
        l1_table_offset,
        nb_snapshots,
        feature_names: Vec::new(),
    };

    let mut compression_type = 0u8;
    if version >= 3 {
        let h = head.bytes(0, u64::from(V3_HEADER_LEN), "the version 3 qcow2 header")?;
        info.incompatible_features = be64(h, 72);
        info.compatible_features = be64(h, 80);
        info.autoclear_features = be64(h, 88);
        info.refcount_order = be32(h, 96);
        info.header_length = be32(h, 100);
        if info.header_length < V3_HEADER_LEN {
            return Err(ScanError::corrupt(
                path,
                format!(
                    "header length {} is smaller than the {V3_HEADER_LEN} bytes of a version 3 header",
                    info.header_length
                ),
            ));
        }
        if u64::from(info.header_length) > cluster_size {
            return Err(ScanError::corrupt(
                path,
                format!(
                    "header length {} is larger than the cluster size {cluster_size}",
                    info.header_length
                ),
            ));
        }
        if info.header_length > V3_HEADER_LEN {
            compression_type = head.bytes(104, 1, "the compression type field")?[0];
        }
    }
    let incompat = info.incompatible_features;
    info.dirty = incompat & INCOMPAT_DIRTY != 0;
    info.marked_corrupt = incompat & INCOMPAT_CORRUPT != 0;
    info.external_data_file = incompat & INCOMPAT_DATA_FILE != 0;
    info.extended_l2 = incompat & INCOMPAT_EXTL2 != 0;

    // Backing file name: stored after the extensions, inside the first
    // cluster (QEMU refuses an offset past it).
    let mut ext_end = cluster_size;
    if backing_file_offset != 0 {
        if backing_file_offset > cluster_size {
            return Err(ScanError::corrupt(
                path,
                format!(
                    "backing file name offset {backing_file_offset} lies outside the header cluster ({cluster_size} bytes)"
                ),
            ));
        }
        if u64::from(backing_file_size) > MAX_BACKING_NAME {
            return Err(ScanError::corrupt(
                path,
                format!(
                    "backing file name is {backing_file_size} bytes long (at most {MAX_BACKING_NAME} allowed)"
                ),
            ));
        }
        ext_end = backing_file_offset;
        let raw = head.bytes(
            backing_file_offset,
            u64::from(backing_file_size),
            "the backing file name",
        )?;
        let name = parse_string(path, raw, "the backing file name")?;
        if !name.is_empty() {
            info.backing_file = Some(name);
        }
    }

    // Header extensions, from the end of the header to the backing file
    // name (or the end of the first cluster).
    let mut off = u64::from(info.header_length);
    while off < ext_end {
        if off + 8 > len {
            // QEMU reads zeros past the end of the file: an end marker.
            break;
        }
        let e = head.bytes(off, 8, "a header extension")?;
        let (ext_type, ext_len) = (be32(e, 0), u64::from(be32(e, 4)));
        if ext_type == EXT_END {
            break;
        }
        off += 8;
        if ext_len > ext_end.saturating_sub(off) {
            return Err(ScanError::corrupt(
                path,
                format!(
                    "header extension {ext_type:#010x} at offset {} is {ext_len} bytes long, past the end of the header area ({ext_end})",
                    off - 8
                ),
            ));
        }
        let data = head.bytes(off, ext_len, "a header extension")?;
        match ext_type {
            EXT_BACKING_FORMAT => {
                let fmt = parse_string(path, data, "the backing file format")?;
                info.backing_format = Some(fmt);
            }
            EXT_FEATURE_NAMES => {
                // 3 bitmaps of 64 bits: at most 192 meaningful entries.
                info.feature_names = data
                    .chunks_exact(48)
                    .take(192)
                    .map(|entry| FeatureName {
                        kind: match entry[0] {
                            0 => FeatureKind::Incompatible,
                            1 => FeatureKind::Compatible,
                            2 => FeatureKind::Autoclear,
                            k => FeatureKind::Other(k),
                        },
                        bit: entry[1],
                        name: String::from_utf8_lossy(
                            entry[2..].split(|&b| b == 0).next().unwrap_or_default(),
                        )
                        .into_owned(),
                    })
                    .collect();
            }
            EXT_DATA_FILE => {
                info.data_file_name = Some(String::from_utf8_lossy(data).into_owned());
            }
            _ => {}
        }
        off += ext_len.next_multiple_of(8);
    }
    if info.backing_file.is_none() {
        info.backing_format = None;
    }

    let unknown = incompat & !INCOMPAT_KNOWN;
    if unknown != 0 {
        let names: Vec<String> = (0..64)
            .filter(|bit| unknown & (1u64 << bit) != 0)
            .map(|bit| {
                match info
                    .feature_names
                    .iter()
                    .find(|f| f.kind == FeatureKind::Incompatible && u32::from(f.bit) == bit)
                {
                    Some(f) => format!("bit {bit} ({:?})", f.name),
                    None => format!("bit {bit}"),
                }
            })
            .collect();
        return Err(ScanError::unsupported(
            path,
            format!("unknown incompatible features: {}", names.join(", ")),
        ));
    }

    info.compression = match compression_type {
        0 => Compression::Deflate,
        1 => Compression::Zstd,
        t => {
            return Err(ScanError::unsupported(
                path,
                format!("unknown compression type {t}"),
            ));
        }
    };
    if (compression_type != 0) != (incompat & INCOMPAT_COMPRESSION != 0) {
        return Err(ScanError::corrupt(
            path,
            format!(
                "compression type {compression_type} does not agree with the compression type feature bit"
            ),
        ));
    }
    match crypt_method {
        0..=2 => {}
        m => {
            return Err(ScanError::corrupt(
                path,
                format!("unknown encryption method {m}"),
            ));
        }
    }
    if info.extended_l2 && cluster_bits < 14 {
        return Err(ScanError::corrupt(
            path,
            format!(
                "extended L2 entries need clusters of at least 16 KiB, this image has {cluster_size} bytes"
            ),
        ));
    }
    if virtual_size > MAX_VIRTUAL_SIZE {
        return Err(ScanError::unsupported(
            path,
            format!(
                "virtual size {virtual_size} bytes is larger than 2^56 bytes (64 PiB), the most qcow2 can map"
            ),
        ));
    }

    // The active L1 table.
    let l1_bytes = u64::from(l1_size) * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(ScanError::unsupported(
            path,
            format!("the L1 table has {l1_size} entries, more than QEMU's limit of 32 MiB"),
        ));
    }
    let needed = info.l1_entries_needed();
    if u64::from(l1_size) < needed {
        return Err(ScanError::corrupt(
            path,
            format!(
                "the L1 table has {l1_size} entries, too few for a virtual size of {virtual_size} bytes ({needed} needed)"
            ),
        ));
    }
    if l1_size > 0 {
        if !l1_table_offset.is_multiple_of(cluster_size) {
            return Err(ScanError::corrupt(
                path,
                format!("L1 table offset {l1_table_offset:#x} is not aligned to a cluster"),
            ));
        }
        if l1_table_offset == 0 {
            return Err(ScanError::corrupt(
                path,
                "the L1 table offset is 0 (the header's own cluster)",
            ));
        }
        if l1_table_offset
            .checked_add(l1_bytes)
            .is_none_or(|end| end > len)
        {
            return Err(ScanError::truncated(
                path,
                format!(
                    "the L1 table ({l1_size} entries at offset {l1_table_offset:#x}) extends past the end of the file ({len} bytes)"
                ),
            ));
        }
    }
    Ok(info)
}

/// Cached L2 tables, least recently used evicted first.
#[derive(Debug)]
struct L2Cache {
    capacity: usize,
    tick: u64,
    tables: Vec<(u64, u64, Arc<[u64]>)>,
}

impl L2Cache {
    fn get(&mut self, offset: u64) -> Option<Arc<[u64]>> {
        self.tick += 1;
        let tick = self.tick;
        self.tables
            .iter_mut()
            .find(|(off, _, _)| *off == offset)
            .map(|(_, used, table)| {
                *used = tick;
                Arc::clone(table)
            })
    }

    fn insert(&mut self, offset: u64, table: Arc<[u64]>) {
        self.tick += 1;
        if self.tables.iter().any(|(off, _, _)| *off == offset) {
            return;
        }
        if self.tables.len() >= self.capacity
            && let Some(oldest) = self
                .tables
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(i, _)| i)
        {
            self.tables.swap_remove(oldest);
        }
        self.tables.push((offset, self.tick, table));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a guest cluster maps to, per its L2 entry.
enum Mapping {
    /// Read from the backing image (or zeros).
    Unallocated,
    Zero,
    /// Host offset of the cluster.
    Data(u64),
    Compressed(u64),
    /// Extended L2: host offset (0 if none), allocation and zero bitmaps.
    Subclusters {
        host: u64,
        alloc: u32,
        zero: u32,
    },
}

/// Counts of the guest clusters an image maps itself (see
/// [`Qcow2Image::check`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    pub data_clusters: u64,
    pub zero_clusters: u64,
    pub compressed_clusters: u64,
    /// Clusters with extended L2 entries in which some subclusters are
    /// data or zero and others fall through.
    pub partial_clusters: u64,
    /// L2 tables read.
    pub l2_tables: u64,
}

/// A qcow2 image opened for reading its virtual disk, stacked on its
/// backing image if it has one.
pub struct Qcow2Image {
    file: DiskFile,
    info: Qcow2Info,
    l1: Vec<u64>,
    l2_bits: u32,
    backing: Option<Box<dyn ReadAt>>,
    l2_cache: Mutex<L2Cache>,
    compressed_cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("path", &self.file.path())
            .field("virtual_size", &self.info.virtual_size)
            .field("cluster_size", &self.info.cluster_size)
            .field("has_backing", &self.backing.is_some())
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Opens the image at `path`; unallocated clusters read from `backing`
    /// (zeros where it is `None` or shorter). Reads are counted in a
    /// counter of its own ([`Qcow2Image::stats`]); see
    /// [`crate::chain::open_chain`] to open a whole chain.
    pub fn open(
        path: impl AsRef<Path>,
        backing: Option<Box<dyn ReadAt>>,
    ) -> Result<Qcow2Image, ScanError> {
        Qcow2Image::open_with_stats(path, backing, &ReadStats::new())
    }

    /// [`Qcow2Image::open`], counting what it reads in `stats`.
    pub fn open_with_stats(
        path: impl AsRef<Path>,
        backing: Option<Box<dyn ReadAt>>,
        stats: &ReadStats,
    ) -> Result<Qcow2Image, ScanError> {
        let file = DiskFile::open(path.as_ref(), stats)?;
        let info = parse_header(&file)?;
        Qcow2Image::from_parts(file, info, backing)
    }

    pub(crate) fn from_parts(
        file: DiskFile,
        info: Qcow2Info,
        backing: Option<Box<dyn ReadAt>>,
    ) -> Result<Qcow2Image, ScanError> {
        let path = file.path();
        match info.crypt_method {
            0 => {}
            m => {
                return Err(ScanError::Encrypted {
                    path: path.to_path_buf(),
                    method: match m {
                        1 => "AES".to_string(),
                        2 => "LUKS".to_string(),
                        m => format!("method {m}"),
                    },
                });
            }
        }
        if info.external_data_file {
            let name = info
                .data_file_name
                .as_deref()
                .map(|n| format!(" ({n:?})"))
                .unwrap_or_default();
            return Err(ScanError::unsupported(
                path,
                format!("its guest data is in an external data file{name}"),
            ));
        }
        if info.compression == Compression::Zstd {
            return Err(ScanError::unsupported(
                path,
                "zstd compression (compression type 1); only deflate-compressed images are read",
            ));
        }
        let l2_bits = info.l2_bits();
        let needed = info.l1_entries_needed();
        // Bounded by the L1 checks of parse_header (at most 32 MiB, inside
        // the file).
        let mut raw = vec![0u8; (needed * 8) as usize];
        file.read_exact_at(info.l1_table_offset, &mut raw)
            .map_err(|e| ScanError::io(path, e))?;
        let l1: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        for (i, entry) in l1.iter().enumerate() {
            let off = entry & L1E_OFFSET_MASK;
            if off == 0 {
                continue;
            }
            if !off.is_multiple_of(info.cluster_size) {
                return Err(ScanError::corrupt(
                    path,
                    format!("L1 entry {i}: L2 table offset {off:#x} is not aligned to a cluster"),
                ));
            }
            if off
                .checked_add(info.cluster_size)
                .is_none_or(|end| end > file.len())
            {
                return Err(ScanError::truncated(
                    path,
                    format!(
                        "L1 entry {i}: the L2 table at offset {off:#x} lies past the end of the file ({} bytes)",
                        file.len()
                    ),
                ));
            }
        }
        let capacity = (L2_CACHE_BYTES >> info.cluster_bits).clamp(2, L2_CACHE_MAX_TABLES);
        Ok(Qcow2Image {
            file,
            info,
            l1,
            l2_bits,
            backing,
            l2_cache: Mutex::new(L2Cache {
                capacity,
                tick: 0,
                tables: Vec::new(),
            }),
            compressed_cache: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn info(&self) -> &Qcow2Info {
        &self.info
    }

    /// What this image has read from its file (shared with the rest of the
    /// chain when opened through [`crate::chain::open_chain_with_stats`]).
    pub fn stats(&self) -> &ReadStats {
        self.file.stats()
    }

    pub fn backing(&self) -> Option<&dyn ReadAt> {
        self.backing.as_deref()
    }

    /// Reads every L2 table of the active L1 table and checks every entry
    /// (alignment, inside the file, consistent subcluster bitmaps): a full
    /// metadata check that reads no guest data.
    pub fn check(&self) -> Result<Allocation, ScanError> {
        let mut alloc = Allocation::default();
        let clusters = self.info.virtual_size.div_ceil(self.info.cluster_size);
        for l1_index in 0..self.l1.len() as u64 {
            if self.l1[l1_index as usize] & L1E_OFFSET_MASK == 0 {
                continue;
            }
            alloc.l2_tables += 1;
            let first = l1_index << self.l2_bits;
            let last = (first + (1u64 << self.l2_bits)).min(clusters);
            for cluster in first..last {
                match self.mapping(cluster)? {
                    Mapping::Unallocated => {}
                    Mapping::Zero => alloc.zero_clusters += 1,
                    Mapping::Data(_) => alloc.data_clusters += 1,
                    Mapping::Compressed(entry) => {
                        let (coffset, _) = self.compressed_extent(entry);
                        if coffset >= self.file.len() {
                            return Err(self.compressed_past_eof(cluster, coffset));
                        }
                        alloc.compressed_clusters += 1;
                    }
                    Mapping::Subclusters { alloc: a, zero, .. } => match (a, zero) {
                        (0, 0) => {}
                        (u32::MAX, 0) => alloc.data_clusters += 1,
                        (0, u32::MAX) => alloc.zero_clusters += 1,
                        _ => alloc.partial_clusters += 1,
                    },
                }
            }
        }
        Ok(alloc)
    }

    fn l2_table(&self, l1_index: u64) -> Result<Option<Arc<[u64]>>, ScanError> {
        let entry = self.l1[l1_index as usize];
        let off = entry & L1E_OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if let Some(table) = lock(&self.l2_cache).get(off) {
            return Ok(Some(table));
        }
        // Offset and size checked at open: a cluster inside the file.
        let mut raw = vec![0u8; self.info.cluster_size as usize];
        self.file
            .read_exact_at(off, &mut raw)
            .map_err(|e| ScanError::io(self.path(), e))?;
        let table: Arc<[u64]> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        lock(&self.l2_cache).insert(off, Arc::clone(&table));
        Ok(Some(table))
    }

    fn mapping(&self, cluster: u64) -> Result<Mapping, ScanError> {
        let l1_index = cluster >> self.l2_bits;
        let l2_index = (cluster & ((1u64 << self.l2_bits) - 1)) as usize;
        let Some(table) = self.l2_table(l1_index)? else {
            return Ok(Mapping::Unallocated);
        };
        let guest = cluster << self.info.cluster_bits;
        let (entry, bitmap) = if self.info.extended_l2 {
            (table[2 * l2_index], table[2 * l2_index + 1])
        } else {
            (table[l2_index], 0)
        };
        if entry & OFLAG_COMPRESSED != 0 {
            return Ok(Mapping::Compressed(entry));
        }
        let host = entry & L2E_OFFSET_MASK;
        if host != 0 {
            if !host.is_multiple_of(self.info.cluster_size) {
                return Err(ScanError::corrupt(
                    self.path(),
                    format!(
                        "the L2 entry of guest offset {guest:#x} points to host offset {host:#x}, which is not aligned to a cluster"
                    ),
                ));
            }
            if host >= self.file.len() {
                return Err(ScanError::truncated(
                    self.path(),
                    format!(
                        "the L2 entry of guest offset {guest:#x} points to host offset {host:#x}, past the end of the file ({} bytes)",
                        self.file.len()
                    ),
                ));
            }
        }
        if self.info.extended_l2 {
            let (alloc, zero) = (bitmap as u32, (bitmap >> 32) as u32);
            if alloc & zero != 0 {
                return Err(ScanError::corrupt(
                    self.path(),
                    format!(
                        "the L2 entry of guest offset {guest:#x} marks subclusters both allocated and zero"
                    ),
                ));
            }
            if host == 0 && alloc != 0 {
                return Err(ScanError::corrupt(
                    self.path(),
                    format!(
                        "the L2 entry of guest offset {guest:#x} has allocated subclusters but no host cluster"
                    ),
                ));
            }
            return Ok(Mapping::Subclusters { host, alloc, zero });
        }
        if entry & OFLAG_ZERO != 0 {
            if self.info.version < 3 {
                return Err(ScanError::corrupt(
                    self.path(),
                    format!(
                        "the L2 entry of guest offset {guest:#x} is a zero cluster, which version 2 images cannot have"
                    ),
                ));
            }
            return Ok(Mapping::Zero);
        }
        if host == 0 {
            return Ok(Mapping::Unallocated);
        }
        Ok(Mapping::Data(host))
    }

    /// Host offset and stored length of a compressed cluster.
    fn compressed_extent(&self, entry: u64) -> (u64, u64) {
        let x = 62 - (self.info.cluster_bits - 8);
        let coffset = entry & ((1u64 << x) - 1);
        let sectors = ((entry >> x) & ((1u64 << (self.info.cluster_bits - 8)) - 1)) + 1;
        (coffset, sectors * 512 - (coffset & 511))
    }

    fn compressed_past_eof(&self, cluster: u64, coffset: u64) -> ScanError {
        ScanError::truncated(
            self.path(),
            format!(
                "the compressed cluster of guest offset {:#x} is at host offset {coffset:#x}, past the end of the file ({} bytes)",
                cluster << self.info.cluster_bits,
                self.file.len()
            ),
        )
    }

    fn decompressed(&self, cluster: u64, entry: u64) -> Result<Arc<Vec<u8>>, ScanError> {
        let (coffset, csize) = self.compressed_extent(entry);
        if let Some((_, data)) = lock(&self.compressed_cache)
            .iter()
            .find(|(off, _)| *off == coffset)
        {
            return Ok(Arc::clone(data));
        }
        if coffset >= self.file.len() {
            return Err(self.compressed_past_eof(cluster, coffset));
        }
        // csize is at most two clusters plus a sector; the last sector may
        // reach past the end of the file.
        let input = self
            .file
            .read_up_to(coffset, csize as usize)
            .map_err(|e| ScanError::io(self.path(), e))?;
        let mut out = vec![0u8; self.info.cluster_size as usize];
        let mut inflater = Box::<DecompressorOxide>::default();
        let (status, _, produced) = decompress(
            &mut inflater,
            &input,
            &mut out,
            0,
            inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
        );
        // QEMU accepts the data once it fills a cluster.
        let ok = produced == out.len()
            && matches!(status, TINFLStatus::Done | TINFLStatus::HasMoreOutput);
        if !ok {
            return Err(ScanError::corrupt(
                self.path(),
                format!(
                    "the compressed cluster of guest offset {:#x} (host offset {coffset:#x}, {csize} bytes) does not inflate to a cluster: {status:?} after {produced} bytes",
                    cluster << self.info.cluster_bits
                ),
            ));
        }
        let data = Arc::new(out);
        let mut cache = lock(&self.compressed_cache);
        if cache.len() >= COMPRESSED_CACHE_CLUSTERS {
            cache.remove(0);
        }
        cache.push((coffset, Arc::clone(&data)));
        Ok(data)
    }

    fn read_backing(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Some(backing) = &self.backing else {
            buf.fill(0);
            return Ok(());
        };
        let size = backing.size();
        let n =
            usize::try_from(size.saturating_sub(offset)).map_or(buf.len(), |n| n.min(buf.len()));
        let (head, tail) = buf.split_at_mut(n);
        if !head.is_empty() {
            backing.read_at(offset, head)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// Fills `buf` from guest offset `offset`, all within one cluster.
    fn read_in_cluster(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let cluster = offset >> self.info.cluster_bits;
        let within = offset & (self.info.cluster_size - 1);
        match self.mapping(cluster).map_err(ScanError::into_io)? {
            Mapping::Unallocated => self.read_backing(offset, buf),
            Mapping::Zero => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Data(host) => self.file.read_zero_padded(host + within, buf),
            Mapping::Compressed(entry) => {
                let data = self
                    .decompressed(cluster, entry)
                    .map_err(ScanError::into_io)?;
                let start = within as usize;
                buf.copy_from_slice(&data[start..start + buf.len()]);
                Ok(())
            }
            Mapping::Subclusters { host, alloc, zero } => {
                let sub_bits = self.info.cluster_bits - 5;
                let mut done = 0usize;
                while done < buf.len() {
                    let pos = within + done as u64;
                    let sub = (pos >> sub_bits) as u32;
                    let state = |s: u32| ((alloc >> s) & 1, (zero >> s) & 1);
                    // Extend over following subclusters in the same state.
                    let mut end_sub = sub + 1;
                    while end_sub < 32 && state(end_sub) == state(sub) {
                        end_sub += 1;
                    }
                    let run_end = (u64::from(end_sub) << sub_bits) - within;
                    let n = (run_end as usize).min(buf.len()) - done;
                    let part = &mut buf[done..done + n];
                    match state(sub) {
                        (1, _) => self.file.read_zero_padded(host + pos, part)?,
                        (_, 1) => part.fill(0),
                        _ => self.read_backing(offset + done as u64, part)?,
                    }
                    done += n;
                }
                Ok(())
            }
        }
    }
}

impl ReadAt for Qcow2Image {
    fn size(&self) -> u64 {
        self.info.virtual_size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let size = self.info.virtual_size;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > size)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: read of {} bytes at offset {offset} goes past the end of the virtual disk ({size} bytes)",
                    self.path().display(),
                    buf.len()
                ),
            ));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let left_in_cluster = self.info.cluster_size - (pos & (self.info.cluster_size - 1));
            let n = usize::try_from(left_in_cluster)
                .map_or(buf.len() - done, |l| l.min(buf.len() - done));
            self.read_in_cluster(pos, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_l2_cache_evicts_the_least_recently_used() {
        let mut cache = L2Cache {
            capacity: 2,
            tick: 0,
            tables: Vec::new(),
        };
        let table = |v: u64| -> Arc<[u64]> { Arc::from(vec![v]) };
        cache.insert(1, table(1));
        cache.insert(2, table(2));
        assert_eq!(cache.get(1).unwrap()[0], 1);
        cache.insert(3, table(3));
        assert!(cache.get(2).is_none());
        assert_eq!(cache.get(1).unwrap()[0], 1);
        assert_eq!(cache.get(3).unwrap()[0], 3);
        assert_eq!(cache.tables.len(), 2);
    }
}
