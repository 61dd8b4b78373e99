//! ext2, ext3 and ext4, read-only, through a [`ReadAt`].
//!
//! Supported: 1–64 KiB blocks, 32- and 64-bit group descriptors, `flex_bg`,
//! `meta_bg`, `sparse_super`/`sparse_super2`, extents (any depth) and ext2/3
//! block maps (up to triple indirect), uninitialized extents (read as
//! zeros), holes, inline data (files, directories and symlinks),
//! `metadata_csum` (superblock, group descriptor, inode, extent block and
//! directory block checksums verified) and `gdt_csum`, linear and htree
//! directories (htree read linearly), fast and slow symlinks, and replay of
//! a journal that needs recovery (jbd2 v2/v3 checksums, 64-bit, revoke,
//! escaped blocks) without writing anything.
//!
//! Refused with [`FsError::Unsupported`]: compression, `dirdata`, an
//! external journal device or a filesystem that needs recovery from one,
//! unknown incompatible features, encrypted files.
//!
//! Only the blocks on the way to what is asked for are read: superblock,
//! the group descriptor blocks of the groups visited, inode table blocks,
//! extent/indirect blocks, directory blocks (stopping at the entry found)
//! and the file's data. A small cache keeps recently read metadata blocks.

mod journal;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::crc::{crc16_raw, crc32c_raw};
use super::{FsError, read_exact_at};
use crate::ReadAt;

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_SYMLINK_HOPS: u32 = 40;
/// Longest symlink target read (PATH_MAX).
const MAX_SYMLINK_LEN: u64 = 4096;
/// Directories larger than this are refused (a huge directory is a few MiB).
const MAX_DIR_BYTES: u64 = 256 << 20;
/// Extent tree depth limit (the kernel allows 5).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Extent and block-map entries walked for one file at most (bounds the
/// work a corrupt tree that points at the same blocks again can cause).
const MAX_MAP_ENTRIES: u64 = 1 << 21;
/// Metadata blocks kept in the cache.
const CACHE_BLOCKS: usize = 256;

// Superblock feature flags.
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_COMPRESSION: u32 = 0x1;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_DIRDATA: u32 = 0x1000;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
const INCOMPAT_CASEFOLD: u32 = 0x20000;
const INCOMPAT_KNOWN: u32 = INCOMPAT_COMPRESSION
    | INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_JOURNAL_DEV
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_DIRDATA
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

// Inode flags.
const INODE_ENCRYPT: u32 = 0x800;
const INODE_HUGE_FILE: u32 = 0x4_0000;
const INODE_EXTENTS: u32 = 0x8_0000;
const INODE_INLINE_DATA: u32 = 0x1000_0000;

const ROOT_INODE: u32 = 2;

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The superblock fields this reader uses, validated.
#[derive(Debug, Clone)]
struct Superblock {
    block_size: u64,
    blocks_count: u64,
    inodes_count: u32,
    blocks_per_group: u64,
    inodes_per_group: u32,
    first_data_block: u64,
    group_count: u64,
    inode_size: usize,
    desc_size: usize,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    first_meta_bg: u64,
    backup_bgs: [u32; 2],
    uuid: [u8; 16],
    csum_seed: u32,
    journal_inum: u32,
    label: String,
}

impl Superblock {
    fn parse(b: &[u8], dev_size: u64) -> Result<Self, FsError> {
        if le16(b, 0x38) != 0xEF53 {
            return Err(FsError::NotExt);
        }
        let compat = le32(b, 0x5C);
        let incompat = le32(b, 0x60);
        let ro_compat = le32(b, 0x64);
        let rev_level = le32(b, 0x4C);

        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(FsError::unsupported(
                "this is an external journal device, not a filesystem",
            ));
        }
        if incompat & INCOMPAT_COMPRESSION != 0 {
            return Err(FsError::unsupported("compression (incompat 0x1)"));
        }
        if incompat & INCOMPAT_DIRDATA != 0 {
            return Err(FsError::unsupported("dirdata (incompat 0x1000)"));
        }
        let unknown = incompat & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(FsError::unsupported(format!(
                "unknown incompatible features 0x{unknown:x}"
            )));
        }

        let metadata_csum = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        if metadata_csum {
            if b[0x175] != 1 {
                return Err(FsError::unsupported(format!(
                    "metadata checksum type {} (only crc32c is defined)",
                    b[0x175]
                )));
            }
            let stored = le32(b, 0x3FC);
            let computed = crc32c_raw(!0, &b[..0x3FC]);
            if stored != computed {
                return Err(FsError::corrupt(format!(
                    "superblock checksum mismatch (stored {stored:08x}, computed {computed:08x})"
                )));
            }
        }

        let log_block_size = le32(b, 0x18);
        if log_block_size > 6 {
            return Err(FsError::corrupt(format!(
                "block size 2^(10+{log_block_size}) is larger than 64 KiB"
            )));
        }
        let block_size = 1024u64 << log_block_size;
        let blocks_hi = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le32(b, 0x150))
        } else {
            0
        };
        let blocks_count = u64::from(le32(b, 0x4)) | (blocks_hi << 32);
        let first_data_block = u64::from(le32(b, 0x14));
        let blocks_per_group = u64::from(le32(b, 0x20));
        let inodes_per_group = le32(b, 0x28);
        let inodes_count = le32(b, 0x0);
        if blocks_per_group == 0 {
            return Err(FsError::corrupt("0 blocks per group"));
        }
        if inodes_per_group == 0 || u64::from(inodes_per_group) > 8 * block_size {
            return Err(FsError::corrupt(format!(
                "{inodes_per_group} inodes per group"
            )));
        }
        if first_data_block >= blocks_count {
            return Err(FsError::corrupt(format!(
                "first data block {first_data_block} is not below the block count {blocks_count}"
            )));
        }
        let fs_bytes = blocks_count.checked_mul(block_size).ok_or_else(|| {
            FsError::corrupt(format!(
                "{blocks_count} blocks of {block_size} bytes overflow"
            ))
        })?;
        if fs_bytes > dev_size {
            return Err(FsError::corrupt(format!(
                "the filesystem is {fs_bytes} bytes ({blocks_count} blocks of {block_size}) \
                 but its partition or disk holds only {dev_size} bytes"
            )));
        }
        let group_count = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        if u64::from(inodes_count) > group_count.saturating_mul(u64::from(inodes_per_group)) {
            return Err(FsError::corrupt(format!(
                "{inodes_count} inodes do not fit {group_count} groups of {inodes_per_group}"
            )));
        }

        let inode_size = if rev_level == 0 {
            128
        } else {
            usize::from(le16(b, 0x58))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size as u64 > block_size {
            return Err(FsError::corrupt(format!("inode size {inode_size}")));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            let d = usize::from(le16(b, 0xFE));
            if d < 64 || !d.is_power_of_two() || d as u64 > block_size {
                return Err(FsError::corrupt(format!(
                    "64-bit group descriptor size {d}"
                )));
            }
            d
        } else {
            32
        };

        let uuid: [u8; 16] = b[0x68..0x78].try_into().expect("16 bytes");
        let csum_seed = if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(b, 0x270)
        } else {
            crc32c_raw(!0, &uuid)
        };
        let label_bytes = &b[0x78..0x88];
        let label_end = label_bytes.iter().position(|&c| c == 0).unwrap_or(16);
        Ok(Superblock {
            block_size,
            blocks_count,
            inodes_count,
            blocks_per_group,
            inodes_per_group,
            first_data_block,
            group_count,
            inode_size,
            desc_size,
            compat,
            incompat,
            ro_compat,
            first_meta_bg: u64::from(le32(b, 0x104)),
            backup_bgs: [le32(b, 0x24C), le32(b, 0x250)],
            uuid,
            csum_seed,
            journal_inum: le32(b, 0xE0),
            label: String::from_utf8_lossy(&label_bytes[..label_end]).into_owned(),
        })
    }

    fn has(&self, incompat: u32) -> bool {
        self.incompat & incompat != 0
    }

    fn metadata_csum(&self) -> bool {
        self.ro_compat & RO_COMPAT_METADATA_CSUM != 0
    }

    /// Whether group `g` holds a superblock backup (and so descriptors).
    fn group_has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == u64::from(self.backup_bgs[0]) || g == u64::from(self.backup_bgs[1]);
        }
        if g <= 1 || self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        if g & 1 == 0 {
            return false;
        }
        [3u64, 5, 7].iter().any(|&base| {
            let mut n = base;
            while n < g {
                n *= base;
            }
            n == g
        })
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// Devices, FIFOs, sockets.
    Other,
}

impl FileKind {
    fn from_mode(mode: u16) -> Self {
        match mode & 0xF000 {
            0x8000 => FileKind::File,
            0x4000 => FileKind::Dir,
            0xA000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// Metadata of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub inode: u32,
    pub kind: FileKind,
    /// Permission bits and type, as `st_mode`.
    pub mode: u16,
    pub size: u64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, lossily decoded as UTF-8.
    pub name: String,
    pub inode: u32,
}

/// A parsed inode.
#[derive(Debug, Clone)]
struct Inode {
    number: u32,
    raw: Vec<u8>,
    mode: u16,
    size: u64,
    flags: u32,
}

impl Inode {
    fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode)
    }

    fn i_block(&self) -> &[u8] {
        &self.raw[0x28..0x28 + 60]
    }

    fn generation(&self) -> u32 {
        le32(&self.raw, 0x64)
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            inode: self.number,
            kind: self.kind(),
            mode: self.mode,
            size: self.size,
        }
    }
}

/// A contiguous piece of a file: `len` blocks from logical block `logical`
/// at physical block `physical`; `uninit` extents read as zeros.
#[derive(Debug, Clone, Copy)]
struct Run {
    logical: u64,
    physical: u64,
    len: u64,
    uninit: bool,
}

/// Read-only access to an ext2/3/4 filesystem on a [`ReadAt`].
pub struct Ext4<'a> {
    dev: &'a dyn ReadAt,
    sb: Superblock,
    cache: Mutex<HashMap<u64, Arc<[u8]>>>,
    journal: journal::JournalMap,
}

impl std::fmt::Debug for Ext4<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4")
            .field("block_size", &self.sb.block_size)
            .field("blocks_count", &self.sb.blocks_count)
            .field("label", &self.sb.label)
            .field("journal_replayed_blocks", &self.journal.len())
            .finish()
    }
}

impl<'a> Ext4<'a> {
    /// Reads and checks the superblock and, when the filesystem needs
    /// recovery, the journal's descriptor blocks (to replay it in memory).
    pub fn open(dev: &'a dyn ReadAt) -> Result<Self, FsError> {
        if dev.size() < 2048 {
            return Err(FsError::NotExt);
        }
        let mut raw = vec![0u8; 1024];
        read_exact_at(dev, 1024, &mut raw)?;
        let sb = Superblock::parse(&raw, dev.size())?;
        let mut fs = Ext4 {
            dev,
            sb,
            cache: Mutex::new(HashMap::new()),
            journal: journal::JournalMap::default(),
        };
        if fs.sb.has(INCOMPAT_RECOVER) && fs.sb.compat & COMPAT_HAS_JOURNAL != 0 {
            if fs.sb.journal_inum == 0 {
                return Err(FsError::unsupported(
                    "the filesystem needs recovery from an external journal device",
                ));
            }
            let map = journal::load(&fs)?;
            fs.journal = map;
            fs.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        Ok(fs)
    }

    pub fn block_size(&self) -> u64 {
        self.sb.block_size
    }

    /// Size of the filesystem in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sb.blocks_count * self.sb.block_size
    }

    pub fn label(&self) -> &str {
        &self.sb.label
    }

    pub fn uuid(&self) -> [u8; 16] {
        self.sb.uuid
    }

    /// Filesystem blocks whose newest copy was taken from the journal
    /// (0 unless the filesystem needed recovery).
    pub fn journal_replayed_blocks(&self) -> usize {
        self.journal.len()
    }

    /// Metadata of what `path` names, following symlinks; `None` when it
    /// does not exist.
    pub fn metadata(&self, path: &str) -> Result<Option<Metadata>, FsError> {
        Ok(self.resolve(path, true)?.map(|i| i.metadata()))
    }

    /// Metadata of `path` itself (a final symlink is not followed).
    pub fn symlink_metadata(&self, path: &str) -> Result<Option<Metadata>, FsError> {
        Ok(self.resolve(path, false)?.map(|i| i.metadata()))
    }

    /// The target of the symlink `path`; `None` when `path` does not exist.
    pub fn read_link(&self, path: &str) -> Result<Option<String>, FsError> {
        let Some(inode) = self.resolve(path, false)? else {
            return Ok(None);
        };
        if inode.kind() != FileKind::Symlink {
            return Err(FsError::Path {
                path: path.to_string(),
                reason: "not a symbolic link".to_string(),
            });
        }
        let target = self.symlink_target(&inode).map_err(|e| e.in_file(path))?;
        Ok(Some(String::from_utf8_lossy(&target).into_owned()))
    }

    /// The contents of the regular file `path` (symlinks followed within
    /// the filesystem); `None` when it does not exist; an error when it is
    /// larger than `limit` bytes.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let Some(inode) = self.resolve(path, true)? else {
            return Ok(None);
        };
        match inode.kind() {
            FileKind::File => {}
            FileKind::Dir => {
                return Err(FsError::Path {
                    path: path.to_string(),
                    reason: "is a directory, not a file".to_string(),
                });
            }
            _ => {
                return Err(FsError::Path {
                    path: path.to_string(),
                    reason: "is not a regular file".to_string(),
                });
            }
        }
        if inode.size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size: inode.size,
                limit,
            });
        }
        self.read_inode_data(&inode)
            .map(Some)
            .map_err(|e| e.in_file(path))
    }

    /// The entries of directory `path` (without `.` and `..`); `None` when
    /// it does not exist.
    pub fn read_dir(&self, path: &str) -> Result<Option<Vec<DirEntry>>, FsError> {
        let Some(inode) = self.resolve(path, true)? else {
            return Ok(None);
        };
        if inode.kind() != FileKind::Dir {
            return Err(FsError::Path {
                path: path.to_string(),
                reason: "not a directory".to_string(),
            });
        }
        let mut out = Vec::new();
        self.scan_dir(&inode, &mut |name, ino| {
            if name != b"." && name != b".." {
                out.push(DirEntry {
                    name: String::from_utf8_lossy(name).into_owned(),
                    inode: ino,
                });
            }
            false
        })
        .map_err(|e| e.in_file(path))?;
        Ok(Some(out))
    }

    // ---- path resolution ----

    fn resolve(&self, path: &str, follow_last: bool) -> Result<Option<Inode>, FsError> {
        let path_err = |reason: &str| FsError::Path {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let root = self.inode(ROOT_INODE).map_err(|e| e.in_file("/"))?;
        if root.kind() != FileKind::Dir {
            return Err(FsError::corrupt("the root inode is not a directory"));
        }
        let mut stack: Vec<Inode> = vec![root];
        let mut queue: VecDeque<Vec<u8>> = components(path.as_bytes());
        let mut hops = 0;
        while let Some(name) = queue.pop_front() {
            if name == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().expect("stack keeps the root");
            if dir.kind() != FileKind::Dir {
                return Err(path_err("a component on the way is not a directory"));
            }
            let Some(ino) = self.lookup(dir, &name).map_err(|e| e.in_file(path))? else {
                return Ok(None);
            };
            let inode = self.inode(ino).map_err(|e| e.in_file(path))?;
            if inode.kind() == FileKind::Symlink && (follow_last || !queue.is_empty()) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(path_err("too many levels of symbolic links"));
                }
                let target = self.symlink_target(&inode).map_err(|e| e.in_file(path))?;
                if target.is_empty() {
                    return Err(path_err("empty symbolic link"));
                }
                if target[0] == b'/' {
                    stack.truncate(1);
                }
                for c in components(&target).into_iter().rev() {
                    queue.push_front(c);
                }
                continue;
            }
            stack.push(inode);
        }
        Ok(stack.pop())
    }

    /// The inode number of `name` in directory `dir`.
    fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<u32>, FsError> {
        let mut found = None;
        self.scan_dir(dir, &mut |n, ino| {
            if n == name {
                found = Some(ino);
                true
            } else {
                false
            }
        })?;
        Ok(found)
    }

    /// Calls `f(name, inode)` for each live entry until it returns true.
    fn scan_dir(&self, dir: &Inode, f: &mut dyn FnMut(&[u8], u32) -> bool) -> Result<(), FsError> {
        if dir.flags & INODE_ENCRYPT != 0 {
            return Err(FsError::unsupported("encrypted directory"));
        }
        if dir.flags & INODE_INLINE_DATA != 0 {
            let ib = dir.i_block();
            // The first 4 bytes are the parent's inode number.
            if f(b".", dir.number) || f(b"..", le32(ib, 0)) {
                return Ok(());
            }
            if self.parse_dirents(&ib[4..], dir, false, f)? {
                return Ok(());
            }
            if let Some(extra) = self.inline_xattr(dir)? {
                self.parse_dirents(&extra, dir, false, f)?;
            }
            return Ok(());
        }
        if dir.size > MAX_DIR_BYTES {
            return Err(FsError::unsupported(format!(
                "a directory of {} bytes (more than {MAX_DIR_BYTES})",
                dir.size
            )));
        }
        let bs = self.sb.block_size;
        let nblocks = dir.size.div_ceil(bs);
        for run in self.runs(dir, nblocks)? {
            if run.uninit {
                continue;
            }
            for i in 0..run.len {
                let block = self.read_block(run.physical + i)?;
                if self.parse_dirents(&block, dir, true, f)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Parses the entries of one directory block (or inline region).
    fn parse_dirents(
        &self,
        buf: &[u8],
        dir: &Inode,
        whole_block: bool,
        f: &mut dyn FnMut(&[u8], u32) -> bool,
    ) -> Result<bool, FsError> {
        let mut end = buf.len();
        if whole_block && self.sb.metadata_csum() && buf.len() >= 12 {
            let t = &buf[buf.len() - 12..];
            if le32(t, 0) == 0 && le16(t, 4) == 12 && t[6] == 0 && t[7] == 0xDE {
                let stored = le32(t, 8);
                let computed = crc32c_raw(self.inode_seed(dir), &buf[..buf.len() - 12]);
                if stored != computed {
                    return Err(FsError::corrupt(format!(
                        "directory inode {}: block checksum mismatch (stored {stored:08x}, computed {computed:08x})",
                        dir.number
                    )));
                }
                end = buf.len() - 12;
            }
        }
        let filetype = self.sb.has(INCOMPAT_FILETYPE);
        let mut off = 0usize;
        while off + 8 <= end {
            let ino = le32(buf, off);
            let mut rec_len = usize::from(le16(buf, off + 4));
            if whole_block && buf.len() == 65536 && (rec_len == 0 || rec_len == 65535) {
                rec_len = 65536;
            }
            let name_len = if filetype {
                usize::from(buf[off + 6])
            } else {
                usize::from(le16(buf, off + 6))
            };
            if rec_len < 8
                || rec_len % 4 != 0
                || off + rec_len > buf.len()
                || 8 + name_len > rec_len
            {
                return Err(FsError::corrupt(format!(
                    "directory inode {}: bad entry at offset {off} (rec_len {rec_len}, name_len {name_len})",
                    dir.number
                )));
            }
            if ino != 0 && name_len > 0 && f(&buf[off + 8..off + 8 + name_len], ino) {
                return Ok(true);
            }
            off += rec_len;
        }
        Ok(false)
    }

    // ---- inodes ----

    fn group_desc_inode_table(&self, group: u64) -> Result<u64, FsError> {
        let sb = &self.sb;
        if group >= sb.group_count {
            return Err(FsError::corrupt(format!(
                "group {group} is past the last group {}",
                sb.group_count - 1
            )));
        }
        let per_block = sb.block_size / sb.desc_size as u64;
        let desc_block = group / per_block;
        let sb_block = if sb.block_size == 1024 { 1 } else { 0 };
        let block = if sb.has(INCOMPAT_META_BG) && desc_block >= sb.first_meta_bg {
            let first = desc_block * per_block;
            sb.first_data_block + first * sb.blocks_per_group + u64::from(sb.group_has_super(first))
        } else {
            sb_block + 1 + desc_block
        };
        let data = self.read_block(block)?;
        let off = (group % per_block) as usize * sb.desc_size;
        let d = &data[off..off + sb.desc_size];

        let stored = le16(d, 0x1E);
        if sb.metadata_csum() {
            let mut c = crc32c_raw(sb.csum_seed, &(group as u32).to_le_bytes());
            c = crc32c_raw(c, &d[..0x1E]);
            c = crc32c_raw(c, &[0, 0]);
            c = crc32c_raw(c, &d[0x20..]);
            if (c & 0xFFFF) as u16 != stored {
                return Err(FsError::corrupt(format!(
                    "group descriptor {group}: checksum mismatch (stored {stored:04x}, computed {:04x})",
                    c & 0xFFFF
                )));
            }
        } else if sb.ro_compat & RO_COMPAT_GDT_CSUM != 0 {
            let mut c = crc16_raw(!0, &sb.uuid);
            c = crc16_raw(c, &(group as u32).to_le_bytes());
            c = crc16_raw(c, &d[..0x1E]);
            if sb.has(INCOMPAT_64BIT) {
                c = crc16_raw(c, &d[0x20..]);
            }
            if c != stored {
                return Err(FsError::corrupt(format!(
                    "group descriptor {group}: checksum mismatch (stored {stored:04x}, computed {c:04x})"
                )));
            }
        }
        let mut table = u64::from(le32(d, 0x8));
        if sb.has(INCOMPAT_64BIT) {
            table |= u64::from(le32(d, 0x28)) << 32;
        }
        Ok(table)
    }

    fn inode(&self, number: u32) -> Result<Inode, FsError> {
        let sb = &self.sb;
        if number == 0 || number > sb.inodes_count {
            return Err(FsError::corrupt(format!(
                "inode number {number} is outside 1..={}",
                sb.inodes_count
            )));
        }
        let index = u64::from(number - 1);
        let group = index / u64::from(sb.inodes_per_group);
        let in_group = index % u64::from(sb.inodes_per_group);
        let table = self.group_desc_inode_table(group)?;
        let byte = in_group * sb.inode_size as u64;
        let block = table.checked_add(byte / sb.block_size).ok_or_else(|| {
            FsError::corrupt(format!("inode table of group {group} at block {table}"))
        })?;
        let data = self.read_block(block).map_err(|e| match e {
            FsError::Corrupt(m) => FsError::corrupt(format!("inode {number}: {m}")),
            other => other,
        })?;
        let off = (byte % sb.block_size) as usize;
        let raw = data[off..off + sb.inode_size].to_vec();

        let mode = le16(&raw, 0);
        let flags = le32(&raw, 0x20);
        let size = u64::from(le32(&raw, 0x4)) | (u64::from(le32(&raw, 0x6C)) << 32);
        let inode = Inode {
            number,
            raw,
            mode,
            size,
            flags,
        };
        if sb.metadata_csum() {
            self.verify_inode_csum(&inode)?;
        }
        Ok(inode)
    }

    fn inode_seed(&self, inode: &Inode) -> u32 {
        let c = crc32c_raw(self.sb.csum_seed, &inode.number.to_le_bytes());
        crc32c_raw(c, &inode.generation().to_le_bytes())
    }

    fn verify_inode_csum(&self, inode: &Inode) -> Result<(), FsError> {
        let raw = &inode.raw;
        if raw.iter().all(|&b| b == 0) {
            return Err(FsError::corrupt(format!(
                "inode {} is in use by a directory but empty",
                inode.number
            )));
        }
        let size = raw.len();
        let extra = if size > 128 {
            usize::from(le16(raw, 0x80))
        } else {
            0
        };
        let has_hi = size > 128 && 128 + extra >= 0x84 && 0x84 <= size;
        let mut c = crc32c_raw(self.inode_seed(inode), &raw[..0x7C]);
        c = crc32c_raw(c, &[0, 0]);
        c = crc32c_raw(c, &raw[0x7E..0x80]);
        if size > 128 {
            c = crc32c_raw(c, &raw[0x80..0x82]);
            let mut off = 0x82;
            if has_hi {
                c = crc32c_raw(c, &[0, 0]);
                off += 2;
            }
            c = crc32c_raw(c, &raw[off..]);
        }
        let mut stored = u32::from(le16(raw, 0x7C));
        if has_hi {
            stored |= u32::from(le16(raw, 0x82)) << 16;
        } else {
            c &= 0xFFFF;
        }
        if c != stored {
            return Err(FsError::corrupt(format!(
                "inode {}: checksum mismatch (stored {stored:08x}, computed {c:08x})",
                inode.number
            )));
        }
        Ok(())
    }

    /// The value of the in-inode extended attribute `system.data` that
    /// holds inline data past the first 60 bytes.
    fn inline_xattr(&self, inode: &Inode) -> Result<Option<Vec<u8>>, FsError> {
        let raw = &inode.raw;
        if raw.len() <= 128 {
            return Ok(None);
        }
        let extra = usize::from(le16(raw, 0x80));
        let start = 128 + extra;
        if start + 4 > raw.len() || le32(raw, start) != 0xEA02_0000 {
            return Ok(None);
        }
        let first = start + 4;
        let bad = |m: &str| FsError::corrupt(format!("inode {}: in-inode xattr {m}", inode.number));
        let mut off = first;
        while off + 4 <= raw.len() && le32(raw, off) != 0 {
            if off + 16 > raw.len() {
                return Err(bad("entry runs past the inode"));
            }
            let name_len = usize::from(raw[off]);
            let index = raw[off + 1];
            let value_offs = usize::from(le16(raw, off + 2));
            let value_inum = le32(raw, off + 4);
            let value_size = le32(raw, off + 8) as usize;
            if off + 16 + name_len > raw.len() {
                return Err(bad("name runs past the inode"));
            }
            let name = &raw[off + 16..off + 16 + name_len];
            if index == 7 && name == b"data" {
                if value_inum != 0 {
                    return Err(FsError::unsupported("inline data stored in an xattr inode"));
                }
                let vstart = first + value_offs;
                let vend = vstart + value_size;
                if vend > raw.len() {
                    return Err(bad("value runs past the inode"));
                }
                return Ok(Some(raw[vstart..vend].to_vec()));
            }
            off += (16 + name_len).div_ceil(4) * 4;
        }
        Ok(None)
    }

    fn symlink_target(&self, inode: &Inode) -> Result<Vec<u8>, FsError> {
        if inode.flags & INODE_ENCRYPT != 0 {
            return Err(FsError::unsupported("encrypted symbolic link"));
        }
        if inode.size > MAX_SYMLINK_LEN {
            return Err(FsError::corrupt(format!(
                "symbolic link inode {} is {} bytes long",
                inode.number, inode.size
            )));
        }
        if inode.flags & INODE_INLINE_DATA == 0 && self.is_fast_symlink(inode) {
            if inode.size > 60 {
                return Err(FsError::corrupt(format!(
                    "fast symbolic link inode {} claims {} bytes",
                    inode.number, inode.size
                )));
            }
            return Ok(inode.i_block()[..inode.size as usize].to_vec());
        }
        self.read_inode_data(inode)
    }

    /// As the kernel's `ext4_inode_is_fast_symlink`: no data blocks.
    fn is_fast_symlink(&self, inode: &Inode) -> bool {
        let raw = &inode.raw;
        let mut blocks = u64::from(le32(raw, 0x1C));
        if self.sb.ro_compat & RO_COMPAT_HUGE_FILE != 0 {
            blocks |= u64::from(le16(raw, 0x74)) << 32;
        }
        let file_acl = u64::from(le32(raw, 0x68)) | (u64::from(le16(raw, 0x76)) << 32);
        let mut ea = if file_acl != 0 {
            self.sb.block_size / 512
        } else {
            0
        };
        if inode.flags & INODE_HUGE_FILE != 0 && self.sb.ro_compat & RO_COMPAT_HUGE_FILE != 0 {
            // i_blocks counts filesystem blocks.
            ea = u64::from(file_acl != 0);
        }
        blocks.saturating_sub(ea) == 0
    }

    // ---- file data ----

    /// All of an inode's data (`inode.size` bytes; the caller bounds it).
    fn read_inode_data(&self, inode: &Inode) -> Result<Vec<u8>, FsError> {
        if inode.flags & INODE_ENCRYPT != 0 {
            return Err(FsError::unsupported("encrypted file"));
        }
        let size = usize::try_from(inode.size)
            .map_err(|_| FsError::corrupt(format!("inode {} size {}", inode.number, inode.size)))?;
        if inode.flags & INODE_INLINE_DATA != 0 {
            let mut out = inode.i_block()[..size.min(60)].to_vec();
            if size > 60 {
                let extra = self.inline_xattr(inode)?.unwrap_or_default();
                if extra.len() < size - 60 {
                    return Err(FsError::corrupt(format!(
                        "inode {}: inline data holds {} bytes, size says {size}",
                        inode.number,
                        60 + extra.len()
                    )));
                }
                out.extend_from_slice(&extra[..size - 60]);
            }
            return Ok(out);
        }
        let bs = self.sb.block_size;
        let nblocks = inode.size.div_ceil(bs);
        let mut out = vec![0u8; size];
        for run in self.runs(inode, nblocks)? {
            if run.uninit {
                continue;
            }
            let start = (run.logical * bs) as usize;
            let end = ((run.logical + run.len) * bs).min(inode.size) as usize;
            if start >= end {
                continue;
            }
            self.read_blocks_into(run.physical, &mut out[start..end])?;
        }
        Ok(out)
    }

    /// The runs covering logical blocks `0..nblocks` of an inode (holes
    /// left out), validated against the filesystem size.
    fn runs(&self, inode: &Inode, nblocks: u64) -> Result<Vec<Run>, FsError> {
        let mut runs = Vec::new();
        if inode.flags & INODE_EXTENTS != 0 {
            let mut budget = nblocks.saturating_add(64).min(MAX_MAP_ENTRIES);
            self.extent_node(
                inode,
                inode.i_block(),
                MAX_EXTENT_DEPTH + 1,
                nblocks,
                &mut runs,
                &mut budget,
            )?;
        } else {
            let mut budget = nblocks.saturating_add(64).min(MAX_MAP_ENTRIES);
            self.block_map(inode, nblocks, &mut runs, &mut budget)?;
        }
        for r in &runs {
            if r.physical == 0
                || r.physical
                    .checked_add(r.len)
                    .is_none_or(|e| e > self.sb.blocks_count)
            {
                return Err(FsError::corrupt(format!(
                    "inode {}: blocks {}..+{} are outside the filesystem ({} blocks)",
                    inode.number, r.physical, r.len, self.sb.blocks_count
                )));
            }
        }
        Ok(runs)
    }

    /// Walks one extent tree node (`node` is the i_block area or a block).
    fn extent_node(
        &self,
        inode: &Inode,
        node: &[u8],
        max_depth: u16,
        nblocks: u64,
        runs: &mut Vec<Run>,
        budget: &mut u64,
    ) -> Result<(), FsError> {
        let bad = |m: String| FsError::corrupt(format!("inode {}: extent tree: {m}", inode.number));
        if le16(node, 0) != 0xF30A {
            return Err(bad("bad header magic".to_string()));
        }
        let entries = usize::from(le16(node, 2));
        let max = usize::from(le16(node, 4));
        let depth = le16(node, 6);
        if entries > max || 12 + 12 * max > node.len() {
            return Err(bad(format!(
                "{entries} entries of {max} in a {}-byte node",
                node.len()
            )));
        }
        if depth >= max_depth {
            return Err(bad(format!(
                "depth {depth} where at most {} fits",
                max_depth - 1
            )));
        }
        for i in 0..entries {
            let e = &node[12 + 12 * i..24 + 12 * i];
            let first = u64::from(le32(e, 0));
            if first >= nblocks {
                break;
            }
            if *budget == 0 {
                return Err(bad("more extents than the file has blocks".to_string()));
            }
            *budget -= 1;
            if depth == 0 {
                let raw_len = le16(e, 4);
                let (len, uninit) = if raw_len > 32768 {
                    (u64::from(raw_len - 32768), true)
                } else {
                    (u64::from(raw_len), false)
                };
                let physical = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
                let len = len.min(nblocks - first);
                if len > 0 {
                    runs.push(Run {
                        logical: first,
                        physical,
                        len,
                        uninit,
                    });
                }
            } else {
                let leaf = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
                let block = self.read_block(leaf)?;
                if self.sb.metadata_csum() {
                    let max_child = usize::from(le16(&block, 4));
                    let tail = 12 + 12 * max_child;
                    if tail + 4 <= block.len() {
                        let stored = le32(&block, tail);
                        let computed = crc32c_raw(self.inode_seed(inode), &block[..tail]);
                        if stored != computed {
                            return Err(bad(format!(
                                "block {leaf}: checksum mismatch (stored {stored:08x}, computed {computed:08x})"
                            )));
                        }
                    }
                }
                if le16(&block, 6) != depth - 1 {
                    return Err(bad(format!("block {leaf} has the wrong depth")));
                }
                self.extent_node(inode, &block, depth, nblocks, runs, budget)?;
            }
        }
        Ok(())
    }

    /// Maps logical blocks through ext2/3 direct and indirect pointers.
    fn block_map(
        &self,
        inode: &Inode,
        nblocks: u64,
        runs: &mut Vec<Run>,
        budget: &mut u64,
    ) -> Result<(), FsError> {
        let ib = inode.i_block();
        let per = self.sb.block_size / 4;
        let mut walk = BlockMapWalk {
            inode: inode.number,
            nblocks,
            budget,
            runs,
        };
        for i in 0..12u64.min(nblocks) {
            walk.push(i, u64::from(le32(ib, 4 * i as usize)));
        }
        let mut base = 12u64;
        for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
            if base >= nblocks {
                break;
            }
            let span = per.pow(level);
            let ptr = u64::from(le32(ib, 4 * slot));
            if ptr != 0 {
                self.indirect(&mut walk, ptr, level, base)?;
            }
            base = base.saturating_add(span);
        }
        Ok(())
    }

    fn indirect(
        &self,
        walk: &mut BlockMapWalk<'_>,
        block: u64,
        level: u32,
        base: u64,
    ) -> Result<(), FsError> {
        if block >= self.sb.blocks_count {
            return Err(FsError::corrupt(format!(
                "inode {}: indirect block {block} is outside the filesystem",
                walk.inode
            )));
        }
        let data = self.read_block(block)?;
        let per = self.sb.block_size / 4;
        let span = per.pow(level - 1);
        for i in 0..per {
            let logical = base + i * span;
            if logical >= walk.nblocks {
                break;
            }
            let ptr = u64::from(le32(&data, 4 * i as usize));
            if ptr == 0 {
                continue;
            }
            if *walk.budget == 0 {
                return Err(FsError::corrupt(format!(
                    "inode {}: more block pointers than the file has blocks",
                    walk.inode
                )));
            }
            *walk.budget -= 1;
            if level == 1 {
                walk.push(logical, ptr);
            } else {
                self.indirect(walk, ptr, level - 1, logical)?;
            }
        }
        Ok(())
    }

    // ---- block access ----

    /// One filesystem block (its newest copy: from the journal when the
    /// journal being replayed holds one), through the metadata cache.
    fn read_block(&self, block: u64) -> Result<Arc<[u8]>, FsError> {
        if block >= self.sb.blocks_count {
            return Err(FsError::corrupt(format!(
                "block {block} is past the end of the filesystem ({} blocks)",
                self.sb.blocks_count
            )));
        }
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = cache.get(&block) {
                return Ok(b.clone());
            }
        }
        let mut buf = vec![0u8; self.sb.block_size as usize];
        self.read_blocks_into(block, &mut buf)?;
        let data: Arc<[u8]> = buf.into();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_BLOCKS {
            cache.clear();
        }
        cache.insert(block, data.clone());
        Ok(data)
    }

    /// Reads `dst.len()` bytes starting at block `first` (contiguous on
    /// disk), taking replayed blocks from the journal.
    fn read_blocks_into(&self, first: u64, dst: &mut [u8]) -> Result<(), FsError> {
        let bs = self.sb.block_size;
        if self.journal.is_empty() {
            return self.read_raw(first * bs, dst);
        }
        for (i, chunk) in dst.chunks_mut(bs as usize).enumerate() {
            let block = first + i as u64;
            match self.journal.get(block) {
                Some(j) => {
                    self.read_raw(j.physical * bs, chunk)?;
                    if j.escaped && chunk.len() >= 4 {
                        chunk[..4].copy_from_slice(&journal::JBD2_MAGIC.to_be_bytes());
                    }
                }
                None => self.read_raw(block * bs, chunk)?,
            }
        }
        Ok(())
    }

    fn read_raw(&self, offset: u64, dst: &mut [u8]) -> Result<(), FsError> {
        read_exact_at(self.dev, offset, dst)
    }
}

/// State of one walk through ext2/3 block pointers.
struct BlockMapWalk<'r> {
    inode: u32,
    nblocks: u64,
    budget: &'r mut u64,
    runs: &'r mut Vec<Run>,
}

impl BlockMapWalk<'_> {
    /// Adds one mapped block, merging it into the last run when contiguous.
    fn push(&mut self, logical: u64, physical: u64) {
        if physical == 0 {
            return;
        }
        if let Some(last) = self.runs.last_mut()
            && last.logical + last.len == logical
            && last.physical + last.len == physical
        {
            last.len += 1;
            return;
        }
        self.runs.push(Run {
            logical,
            physical,
            len: 1,
            uninit: false,
        });
    }
}

/// Path components without empty ones and `.`.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| c.to_vec())
        .collect()
}
