//! Errors of the image readers. Every variant names the file it is about so
//! that a scan can report it and go on with the other images.

use std::io;
use std::path::{Path, PathBuf};

/// Why an image (or a backing chain) could not be read.
///
/// Match on the variant to tell kinds apart; `Display` gives a sentence that
/// names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The file is not a qcow2 image (bad magic, or too short to hold one).
    #[error("{}: not a qcow2 image: {reason}", path.display())]
    NotQcow2 { path: PathBuf, reason: String },
    /// A structure the header points to lies (partly) past the end of the
    /// file: the image claims more than its file holds.
    #[error("{}: truncated image: {what}", path.display())]
    Truncated { path: PathBuf, what: String },
    /// A structure has values that no valid image has.
    #[error("{}: corrupt image: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    /// A valid image using a feature this reader refuses to read.
    #[error("{}: unsupported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// The image's data is encrypted; patchline reports it and never
    /// interprets the ciphertext.
    #[error("{}: encrypted image ({method}); patchline does not read encrypted images", path.display())]
    Encrypted { path: PathBuf, method: String },
    /// Following backing files came back to a file already in the chain.
    #[error(
        "{}: backing file loop: its backing file {} is already in the chain",
        path.display(),
        backing.display()
    )]
    BackingLoop { path: PathBuf, backing: PathBuf },
    /// An overlay names a backing file that does not exist.
    #[error("{}: backing file {} is missing", path.display(), backing.display())]
    BackingMissing { path: PathBuf, backing: PathBuf },
    /// The operating system refused a read (or an open).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ScanError {
    /// The file the error is about (for backing errors: the overlay that
    /// names the bad backing file).
    pub fn path(&self) -> &Path {
        match self {
            ScanError::NotQcow2 { path, .. }
            | ScanError::Truncated { path, .. }
            | ScanError::Corrupt { path, .. }
            | ScanError::Unsupported { path, .. }
            | ScanError::Encrypted { path, .. }
            | ScanError::BackingLoop { path, .. }
            | ScanError::BackingMissing { path, .. }
            | ScanError::Io { path, .. } => path,
        }
    }

    /// Wraps an I/O error met on `path`. When the error already carries a
    /// `ScanError` (as the readers' `read_at` errors do), that one is
    /// returned instead, so errors found deep in a chain keep their kind.
    pub fn io(path: &Path, err: io::Error) -> ScanError {
        match ScanError::from_io_error(err) {
            Ok(scan) => scan,
            Err(source) => ScanError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// Takes the `ScanError` out of an `io::Error` made by [`ScanError::into_io`]
    /// (for example one returned by [`ReadAt::read_at`](crate::ReadAt) of a
    /// qcow2 image whose L2 table is corrupt); gives the error back otherwise.
    pub fn from_io_error(err: io::Error) -> Result<ScanError, io::Error> {
        if err.get_ref().is_some_and(|inner| inner.is::<ScanError>()) {
            let inner = err.into_inner().expect("checked above");
            Ok(*inner.downcast::<ScanError>().expect("checked above"))
        } else {
            Err(err)
        }
    }

    /// This error as an `io::Error` (what [`ReadAt`](crate::ReadAt) returns),
    /// from which [`ScanError::from_io_error`] recovers it.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            ScanError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            ScanError::Unsupported { .. } | ScanError::Encrypted { .. } => {
                io::ErrorKind::Unsupported
            }
            ScanError::Io { source, .. } => source.kind(),
            ScanError::BackingMissing { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    pub(crate) fn corrupt(path: &Path, what: impl Into<String>) -> ScanError {
        ScanError::Corrupt {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub(crate) fn truncated(path: &Path, what: impl Into<String>) -> ScanError {
        ScanError::Truncated {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, what: impl Into<String>) -> ScanError {
        ScanError::Unsupported {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}
