//! Raw images, and the file access with byte accounting that every image
//! reader shares.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ReadAt;
use crate::error::ScanError;

/// Counts what image readers read from disk files. Cloning gives another
/// handle to the same counters, so one `ReadStats` can be shared by every
/// file of a backing chain (and by the chain resolver) and report
/// "read N bytes of M on disk".
#[derive(Debug, Clone, Default)]
pub struct ReadStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    reads: AtomicU64,
}

impl ReadStats {
    pub fn new() -> ReadStats {
        ReadStats::default()
    }

    /// Bytes read from files so far.
    pub fn bytes_read(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Read calls made to files so far.
    pub fn reads(&self) -> u64 {
        self.0.reads.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.0.reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// An open image file: positional reads that are counted in a
/// [`ReadStats`], with the file's path for error messages.
#[derive(Debug)]
pub(crate) struct DiskFile {
    file: File,
    path: PathBuf,
    len: u64,
    allocated: u64,
    stats: ReadStats,
}

impl DiskFile {
    pub(crate) fn open(path: &Path, stats: &ReadStats) -> Result<DiskFile, ScanError> {
        let io_err = |source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(io_err(io::Error::other("is a directory")));
        }
        #[cfg(unix)]
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
        #[cfg(not(unix))]
        let allocated = meta.len();
        Ok(DiskFile {
            file,
            path: path.to_path_buf(),
            len: meta.len(),
            allocated,
            stats: stats.clone(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes the file occupies on disk (its allocated blocks; sparse files
    /// take less than their length).
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
    }

    pub(crate) fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Reads exactly `buf.len()` bytes at `offset`; reading past the end of
    /// the file is `UnexpectedEof`.
    pub(crate) fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: read of {} bytes at offset {offset} goes past the end of the file ({} bytes)",
                    self.path.display(),
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.stats.add(buf.len() as u64);
        pread_exact(&self.file, offset, buf)
    }

    /// Reads what the file has of `[offset, offset + buf.len())` and fills
    /// the rest (past the end of the file) with zeros, as QEMU's file driver
    /// does.
    pub(crate) fn read_zero_padded(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let avail = self.len.saturating_sub(offset);
        let n = usize::try_from(avail).map_or(buf.len(), |a| a.min(buf.len()));
        let (head, tail) = buf.split_at_mut(n);
        self.read_exact_at(offset, head)?;
        tail.fill(0);
        Ok(())
    }

    /// Reads up to `max` bytes at `offset` (fewer at the end of the file).
    pub(crate) fn read_up_to(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let avail = self.len.saturating_sub(offset);
        let n = usize::try_from(avail).map_or(max, |a| a.min(max));
        let mut buf = vec![0; n];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

#[cfg(unix)]
fn pread_exact(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn pread_exact(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A raw disk image: the file's bytes are the disk's bytes.
#[derive(Debug)]
pub struct RawImage {
    file: DiskFile,
}

impl RawImage {
    /// Opens `path` with a counter of its own (see [`RawImage::stats`]).
    pub fn open(path: impl AsRef<Path>) -> Result<RawImage, ScanError> {
        RawImage::open_with_stats(path, &ReadStats::new())
    }

    /// Opens `path`, counting what it reads in `stats`.
    pub fn open_with_stats(
        path: impl AsRef<Path>,
        stats: &ReadStats,
    ) -> Result<RawImage, ScanError> {
        Ok(RawImage {
            file: DiskFile::open(path.as_ref(), stats)?,
        })
    }

    pub(crate) fn from_file(file: DiskFile) -> RawImage {
        RawImage { file }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What this image has read from its file.
    pub fn stats(&self) -> &ReadStats {
        self.file.stats()
    }
}

impl ReadAt for RawImage {
    fn size(&self) -> u64 {
        self.file.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(offset, buf)
    }
}
