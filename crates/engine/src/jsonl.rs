//! Reading `import artifacts` files: one artifact JSON per line, each turned
//! into a [`BatchItem`] located as `FILE:LINE`, lazily, so that a million
//! lines never sit in memory at once.

use std::io::{BufRead, Read};

use patchline_core::CatalogError;
use patchline_core::doc::ArtifactDoc;

use crate::{BatchItem, EngineError};

/// Longest line accepted (an inline SBOM can be big).
pub const LINE_LEN_MAX: usize = 64 << 20;

/// Iterates over the artifacts of a JSONL stream. Blank lines are skipped;
/// warnings (unknown fields, SBOM notes, skipped SBOM components) are
/// handed to `warn`; `progress` gets the bytes read so far every 4096 lines.
/// Inline SBOMs are read leniently.
pub fn artifacts<'a, R: BufRead + 'a>(
    reader: R,
    name: &'a str,
    warn: impl FnMut(String) + 'a,
    progress: impl FnMut(u64) + 'a,
) -> impl Iterator<Item = Result<BatchItem, EngineError>> + 'a {
    artifacts_with(reader, name, false, warn, progress)
}

/// [`artifacts`]; with `strict`, the first component of an inline SBOM that
/// cannot be read rejects its line.
pub fn artifacts_with<'a, R: BufRead + 'a>(
    mut reader: R,
    name: &'a str,
    strict: bool,
    mut warn: impl FnMut(String) + 'a,
    mut progress: impl FnMut(u64) + 'a,
) -> impl Iterator<Item = Result<BatchItem, EngineError>> + 'a {
    let mut line_no = 0usize;
    let mut read_bytes = 0u64;
    let mut buf = String::new();
    std::iter::from_fn(move || {
        loop {
            buf.clear();
            line_no += 1;
            let location = format!("{name}:{line_no}");
            let rejected = |error| {
                Some(Err(EngineError::Rejected {
                    location: Some(location.clone()),
                    error,
                }))
            };
            let n = match (&mut reader)
                .take(LINE_LEN_MAX as u64 + 1)
                .read_line(&mut buf)
            {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => {
                    return rejected(CatalogError::Invalid(format!("cannot read the line: {e}")));
                }
            };
            read_bytes += n as u64;
            if line_no.is_multiple_of(4096) {
                progress(read_bytes);
            }
            if n > LINE_LEN_MAX {
                return rejected(CatalogError::Invalid(format!(
                    "line longer than {LINE_LEN_MAX} bytes"
                )));
            }
            let text = buf.trim();
            if text.is_empty() {
                continue;
            }
            return match ArtifactDoc::parse(text).and_then(|doc| doc.into_spec_with(None, strict)) {
                Ok(t) => {
                    for w in t.warnings {
                        warn(format!("{location}: {w}"));
                    }
                    Some(Ok(BatchItem {
                        location,
                        spec: t.spec,
                    }))
                }
                Err(error) => rejected(error),
            };
        }
    })
}
