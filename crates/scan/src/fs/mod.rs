//! Guest filesystems read through a [`ReadAt`] view of a virtual disk:
//! partition tables ([`partition`]), ext2/3/4 read-only ([`ext4`]) and the
//! guest files patchline needs ([`guest`]).
//!
//! Everything here reads only what it needs (the partition table, the
//! filesystem's superblock, the group descriptors, inodes and directory
//! blocks on the way to a file, and that file's data), never the whole
//! disk, and turns corrupt or unsupported input into an [`FsError`], never
//! a panic or an allocation sized by an unchecked on-disk number.

pub mod ext4;
pub mod guest;
pub mod partition;

mod crc;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ReadAt;

pub use ext4::{Ext4, FileKind, Metadata};
pub use guest::{Guest, MAX_GUEST_FILE, read_guest};
pub use partition::{Guid, Partition, PartitionKind, Scheme, Slice, read_partitions};

/// What went wrong reading a partition table, a filesystem or a guest file.
/// Messages name the file, the structure and the problem.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The disk could not be read (or the read fell outside it).
    #[error("reading {len} bytes at offset {offset}: {source}")]
    Io {
        offset: u64,
        len: usize,
        source: io::Error,
    },
    /// The partition table is present but invalid.
    #[error("partition table: {0}")]
    Partition(String),
    /// There is no ext superblock where one was expected.
    #[error("not an ext2/ext3/ext4 filesystem (no superblock magic at byte 1080)")]
    NotExt,
    /// An ext structure is inconsistent.
    #[error("corrupt ext filesystem: {0}")]
    Corrupt(String),
    /// A feature this reader does not read.
    #[error("unsupported ext filesystem: {0}")]
    Unsupported(String),
    /// A file is larger than the bound the caller set.
    #[error("{path}: {size} bytes is larger than the {limit}-byte limit for guest files")]
    TooLarge { path: String, size: u64, limit: u64 },
    /// A path could not be followed (not a directory, symlink loop, ...).
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
    /// An error while reading a named file.
    #[error("{path}: {source}")]
    File { path: String, source: Box<FsError> },
    /// An error inside a numbered partition.
    #[error("partition {index}: {source}")]
    InPartition { index: u32, source: Box<FsError> },
    /// No partition holds a readable Linux root filesystem.
    #[error("no root filesystem found: {0}")]
    NoRoot(String),
}

impl FsError {
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        FsError::Corrupt(msg.into())
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        FsError::Unsupported(msg.into())
    }

    pub(crate) fn in_file(self, path: &str) -> Self {
        match self {
            // Already names a path (or is about the limit of one).
            FsError::File { .. } | FsError::TooLarge { .. } | FsError::Path { .. } => self,
            other => FsError::File {
                path: path.to_string(),
                source: Box::new(other),
            },
        }
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, mapping the error.
pub(crate) fn read_exact_at(dev: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
    let end = offset.checked_add(buf.len() as u64);
    if end.is_none_or(|end| end > dev.size()) {
        return Err(FsError::Io {
            offset,
            len: buf.len(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("past the end of the {}-byte device", dev.size()),
            ),
        });
    }
    dev.read_at(offset, buf).map_err(|source| FsError::Io {
        offset,
        len: buf.len(),
        source,
    })
}

/// A [`ReadAt`] that counts the bytes read through it.
pub struct Counting<'a> {
    inner: &'a dyn ReadAt,
    bytes: AtomicU64,
}

impl<'a> Counting<'a> {
    pub fn new(inner: &'a dyn ReadAt) -> Self {
        Counting {
            inner,
            bytes: AtomicU64::new(0),
        }
    }

    /// Bytes requested so far (successful or not).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl ReadAt for Counting<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_at(offset, buf)
    }
}

impl std::fmt::Debug for Counting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("size", &self.inner.size())
            .field("bytes_read", &self.bytes_read())
            .finish()
    }
}
