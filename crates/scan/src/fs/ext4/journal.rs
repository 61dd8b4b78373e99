//! In-memory replay of an ext3/ext4 (jbd2) journal when the filesystem
//! needs recovery: which filesystem blocks have a newer copy in the log.
//! Only the journal superblock and the descriptor, revoke and commit blocks
//! are read here; logged data blocks are read later, and only if asked for.
//!
//! As the kernel: transactions are replayed in order from `s_start` while
//! their sequence numbers follow on; a transaction without a (valid) commit
//! block ends the log; a revoke record in transaction T cancels writes of
//! that block in transactions up to and including T. Fast-commit blocks are
//! not replayed.

use std::collections::HashMap;

use super::{Ext4, Inode, Run};
use crate::fs::FsError;
use crate::fs::crc::crc32c_raw;

pub(crate) const JBD2_MAGIC: u32 = 0xC03B_3998;

const BLOCK_DESCRIPTOR: u32 = 1;
const BLOCK_COMMIT: u32 = 2;
const BLOCK_SUPER_V1: u32 = 3;
const BLOCK_SUPER_V2: u32 = 4;
const BLOCK_REVOKE: u32 = 5;

const INCOMPAT_REVOKE: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
const INCOMPAT_KNOWN: u32 = INCOMPAT_REVOKE
    | INCOMPAT_64BIT
    | INCOMPAT_ASYNC_COMMIT
    | INCOMPAT_CSUM_V2
    | INCOMPAT_CSUM_V3
    | INCOMPAT_FAST_COMMIT;

const TAG_ESCAPE: u32 = 0x1;
const TAG_SAME_UUID: u32 = 0x2;
const TAG_LAST: u32 = 0x8;

/// Log blocks walked at most (16 GiB of 4 KiB blocks).
const MAX_LOG_BLOCKS: u64 = 1 << 22;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Where the newest copy of a filesystem block lives in the journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logged {
    /// Physical filesystem block holding the copy.
    pub(crate) physical: u64,
    /// The copy's first 4 bytes were the jbd2 magic, escaped to zero.
    pub(crate) escaped: bool,
}

#[derive(Debug, Default)]
pub(crate) struct JournalMap {
    map: HashMap<u64, Logged>,
}

impl JournalMap {
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, block: u64) -> Option<Logged> {
        self.map.get(&block).copied()
    }
}

/// The journal inode's blocks: logical journal block -> physical block.
struct LogBlocks {
    runs: Vec<Run>,
}

impl LogBlocks {
    fn physical(&self, logical: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.logical + r.len <= logical);
        let r = self.runs.get(i)?;
        (r.logical <= logical && !r.uninit).then(|| r.physical + (logical - r.logical))
    }
}

fn journal_err(m: impl std::fmt::Display) -> FsError {
    FsError::corrupt(format!("journal (needs recovery): {m}"))
}

/// Builds the replay map of a filesystem flagged as needing recovery.
pub(crate) fn load(fs: &Ext4<'_>) -> Result<JournalMap, FsError> {
    let bs = fs.sb.block_size;
    let inode: Inode = fs.inode(fs.sb.journal_inum)?;
    let nblocks = inode.size.div_ceil(bs).min(MAX_LOG_BLOCKS);
    let mut runs = fs.runs(&inode, nblocks)?;
    runs.sort_by_key(|r| r.logical);
    let log = LogBlocks { runs };
    let read = |logical: u64| -> Result<Vec<u8>, FsError> {
        let physical = log
            .physical(logical)
            .ok_or_else(|| journal_err(format!("log block {logical} is not mapped")))?;
        let mut buf = vec![0u8; bs as usize];
        fs.read_raw(physical * bs, &mut buf)?;
        Ok(buf)
    };

    let sb = read(0)?;
    if be32(&sb, 0) != JBD2_MAGIC {
        return Err(journal_err("no jbd2 magic in the journal superblock"));
    }
    let sb_type = be32(&sb, 4);
    if sb_type != BLOCK_SUPER_V1 && sb_type != BLOCK_SUPER_V2 {
        return Err(journal_err(format!("superblock type {sb_type}")));
    }
    if u64::from(be32(&sb, 0xC)) != bs {
        return Err(journal_err(format!(
            "journal block size {} differs from the filesystem's {bs}",
            be32(&sb, 0xC)
        )));
    }
    let maxlen = u64::from(be32(&sb, 0x10));
    let first = u64::from(be32(&sb, 0x14));
    let mut sequence = be32(&sb, 0x18);
    let start = u64::from(be32(&sb, 0x1C));
    let incompat = if sb_type == BLOCK_SUPER_V2 {
        be32(&sb, 0x28)
    } else {
        0
    };
    if incompat & !INCOMPAT_KNOWN != 0 {
        return Err(FsError::unsupported(format!(
            "journal features 0x{:x}",
            incompat & !INCOMPAT_KNOWN
        )));
    }
    if start == 0 {
        // Clean journal: nothing to replay.
        return Ok(JournalMap::default());
    }
    let mut last = maxlen.min(nblocks);
    if incompat & INCOMPAT_FAST_COMMIT != 0 {
        let fc = u64::from(be32(&sb, 0x54));
        last = last.saturating_sub(if fc == 0 { 256 } else { fc });
    }
    if first == 0 || first >= last || start < first || start >= last {
        return Err(journal_err(format!(
            "log area {first}..{last} does not hold its start {start}"
        )));
    }
    let csum_v3 = incompat & INCOMPAT_CSUM_V3 != 0;
    let csum = csum_v3 || incompat & INCOMPAT_CSUM_V2 != 0;
    let is64 = incompat & INCOMPAT_64BIT != 0;
    let uuid = &sb[0x30..0x40];
    let seed = crc32c_raw(!0, uuid);
    let tag_size = if csum_v3 {
        16
    } else {
        let base = if csum { 14 } else { 12 };
        if is64 { base } else { base - 4 }
    };
    let bsz = bs as usize;

    let mut map: HashMap<u64, Logged> = HashMap::new();
    let mut pending: Vec<(u64, Logged)> = Vec::new();
    let mut revoked: Vec<u64> = Vec::new();
    let mut pos = start;
    let next = |p: u64| if p + 1 >= last { first } else { p + 1 };
    let mut walked = 0u64;
    let limit = (last - first).min(MAX_LOG_BLOCKS);
    while walked < limit {
        let block = read(pos)?;
        walked += 1;
        if be32(&block, 0) != JBD2_MAGIC || be32(&block, 8) != sequence {
            break;
        }
        match be32(&block, 4) {
            BLOCK_DESCRIPTOR => {
                if csum {
                    let stored = be32(&block, bsz - 4);
                    let mut c = crc32c_raw(seed, &block[..bsz - 4]);
                    c = crc32c_raw(c, &[0; 4]);
                    if c != stored {
                        break;
                    }
                }
                let end = if csum { bsz - 4 } else { bsz };
                let mut off = 12;
                let mut done = false;
                while !done && off + tag_size <= end {
                    let t = &block[off..off + tag_size];
                    let (lo, flags, hi) = if csum_v3 {
                        (be32(t, 0), be32(t, 4), if is64 { be32(t, 8) } else { 0 })
                    } else {
                        (
                            be32(t, 0),
                            u32::from(u16::from_be_bytes([t[6], t[7]])),
                            if is64 { be32(t, 8) } else { 0 },
                        )
                    };
                    off += tag_size;
                    if flags & TAG_SAME_UUID == 0 {
                        off += 16;
                    }
                    done = flags & TAG_LAST != 0;
                    pos = next(pos);
                    walked += 1;
                    let target = (u64::from(hi) << 32) | u64::from(lo);
                    let physical = log
                        .physical(pos)
                        .ok_or_else(|| journal_err(format!("log block {pos} is not mapped")))?;
                    pending.push((
                        target,
                        Logged {
                            physical,
                            escaped: flags & TAG_ESCAPE != 0,
                        },
                    ));
                }
            }
            BLOCK_REVOKE => {
                if csum {
                    let stored = be32(&block, bsz - 4);
                    let mut c = crc32c_raw(seed, &block[..bsz - 4]);
                    c = crc32c_raw(c, &[0; 4]);
                    if c != stored {
                        break;
                    }
                }
                let count = (be32(&block, 12) as usize).min(if csum { bsz - 4 } else { bsz });
                let rec = if is64 { 8 } else { 4 };
                let mut off = 16;
                while off + rec <= count {
                    let b = if is64 {
                        (u64::from(be32(&block, off)) << 32) | u64::from(be32(&block, off + 4))
                    } else {
                        u64::from(be32(&block, off))
                    };
                    revoked.push(b);
                    off += rec;
                }
            }
            BLOCK_COMMIT => {
                if csum {
                    let stored = be32(&block, 16);
                    let mut copy = block.clone();
                    copy[16..20].fill(0);
                    if crc32c_raw(seed, &copy) != stored {
                        break;
                    }
                }
                for b in revoked.drain(..) {
                    map.remove(&b);
                    pending.retain(|(t, _)| *t != b);
                }
                map.extend(pending.drain(..));
                sequence = sequence.wrapping_add(1);
            }
            _ => break,
        }
        pos = next(pos);
    }
    // Blocks past the filesystem would be corruption: drop them so that a
    // read of them fails as for any out-of-range block.
    map.retain(|&b, _| b < fs.sb.blocks_count);
    Ok(JournalMap { map })
}
