//! Disk images as patchline reads them, without extracting anything: qcow2
//! (versions 2 and 3, backing chains) and raw images give random access to
//! the virtual disk through [`ReadAt`]; partition tables and ext4 give the
//! guest's files; the scanner turns a folder of images into lineage and
//! inventories.

use std::io;

/// Random access to the virtual contents of a disk (or a partition of it).
/// Implementations count what they read from files so that a scan can show
/// it read only metadata and the files it needed.
pub trait ReadAt: Send + Sync {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; reading past `size` is an error
    /// (`UnexpectedEof`), never a panic.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

pub mod chain;
pub mod error;
pub mod fs;
pub mod qcow2;
pub mod raw;
pub mod scanner;

pub use chain::{ChainLink, Format, open_chain, open_chain_with_stats, resolve};
pub use error::ScanError;
pub use qcow2::{Qcow2Image, Qcow2Info, header_info};
pub use raw::{RawImage, ReadStats};
