//! The records `import advisories` reads: OSV files (JSON or YAML),
//! folders of them, osv.dev's offline exports (an ecosystem's `all.zip`,
//! one `ID.json` per record) and folders of such zips — a feed. Records
//! are read one at a time (a zip entry is inflated when its turn comes),
//! each bounded to [`RECORD_LEN_MAX`] bytes, so an export of 100,000
//! records never sits in memory whole.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::exit::Failure;

/// Where records come from: a record file, or a zip of records.
#[derive(Debug)]
pub enum Source {
    File(PathBuf),
    Zip {
        path: PathBuf,
        archive: zip::ZipArchive<BufReader<File>>,
        /// Its `.json` entries (name, index), in name order.
        entries: Vec<(String, usize)>,
    },
}

impl Source {
    /// Records it holds (a file: one).
    pub fn len(&self) -> usize {
        match self {
            Source::File(_) => 1,
            Source::Zip { entries, .. } => entries.len(),
        }
    }
}

fn is_record_file(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        e.eq_ignore_ascii_case("json")
            || e.eq_ignore_ascii_case("yaml")
            || e.eq_ignore_ascii_case("yml")
    })
}

fn is_zip(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// The sources of `paths`: files as given, folders walked for record
/// files and zips, sorted; each file once, however many links lead to it
/// (a folder reached again through a symbolic link is not walked again).
/// A path that cannot be read, or a zip that cannot be opened, is an
/// error of its own (`Err` in the list): the other sources are read.
/// Only a path named on the command line that does not exist stops the
/// run before anything is read.
pub fn sources(paths: &[PathBuf]) -> Result<Vec<Result<Source, Failure>>, Failure> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut errors: Vec<Failure> = Vec::new();
    let mut seen_dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(Failure::rejected)?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            // A loop of links (or two ways to one folder) is walked once.
            match std::fs::canonicalize(&dir) {
                Ok(real) => {
                    if !seen_dirs.insert(real) {
                        continue;
                    }
                }
                Err(e) => {
                    errors.push(Failure::rejected(anyhow::anyhow!(
                        "cannot read {}: {e}",
                        dir.display()
                    )));
                    continue;
                }
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    errors.push(Failure::rejected(anyhow::anyhow!(
                        "cannot read {}: {e}",
                        dir.display()
                    )));
                    continue;
                }
            };
            for entry in entries {
                let p = match entry {
                    Ok(entry) => entry.path(),
                    Err(e) => {
                        errors.push(Failure::rejected(anyhow::anyhow!(
                            "cannot read an entry of {}: {e}",
                            dir.display()
                        )));
                        continue;
                    }
                };
                match std::fs::metadata(&p) {
                    Ok(m) if m.is_dir() => stack.push(p),
                    Ok(_) if is_record_file(&p) || is_zip(&p) => files.push(p),
                    Ok(_) => {}
                    // A dangling link, a path too long to follow: said,
                    // never skipped in silence.
                    Err(e) => errors.push(Failure::rejected(anyhow::anyhow!(
                        "cannot read {}: {e}",
                        p.display()
                    ))),
                }
            }
        }
    }
    // Each file once, whatever the links that lead to it.
    let mut keyed: Vec<(PathBuf, PathBuf)> = files
        .into_iter()
        .map(|p| (std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone()), p))
        .collect();
    keyed.sort();
    keyed.dedup_by(|a, b| a.0 == b.0);
    let mut files: Vec<PathBuf> = keyed.into_iter().map(|(_, p)| p).collect();
    files.sort();
    let mut out: Vec<Result<Source, Failure>> = errors.into_iter().map(Err).collect();
    out.extend(files.into_iter().map(|p| {
        if !is_zip(&p) {
            return Ok(Source::File(p));
        }
        let file = File::open(&p)
            .with_context(|| format!("cannot read {}", p.display()))
            .map_err(Failure::rejected)?;
        let archive = zip::ZipArchive::new(BufReader::new(file))
            .with_context(|| format!("{}: not a readable zip archive", p.display()))
            .map_err(Failure::rejected)?;
        let mut entries: Vec<(String, usize)> = (0..archive.len())
            .filter_map(|i| {
                let name = archive.name_for_index(i)?.ok()?;
                let lower = name.to_ascii_lowercase();
                (lower.ends_with(".json") && !lower.ends_with('/')).then(|| (name.to_string(), i))
            })
            .collect();
        entries.sort();
        Ok(Source::Zip {
            path: p,
            archive,
            entries,
        })
    }));
    Ok(out)
}

/// Calls `each(location, bytes)` for every record of `source`, in order;
/// a record that cannot be read is given as an error for its location.
pub fn for_each_record(
    source: &mut Source,
    mut each: impl FnMut(String, Result<Vec<u8>, Failure>),
) {
    match source {
        Source::File(p) => each(p.display().to_string(), read_file(p)),
        Source::Zip {
            path,
            archive,
            entries,
        } => {
            for (entry_name, i) in entries.iter() {
                let name = format!("{}:{entry_name}", path.display());
                let bytes = match archive.by_index(*i) {
                    Ok(mut entry) => {
                        let size = entry.size();
                        read_bounded(&mut entry, size)
                    }
                    Err(e) => Err(Failure::rejected(anyhow::anyhow!("{e}"))),
                };
                each(name, bytes);
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut f = File::open(path)
        .context("cannot read it")
        .map_err(Failure::rejected)?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    read_bounded(&mut f, size)
}

/// Bytes accepted for one record (a file or a zip entry): what the API
/// accepts in a request. A record is held in memory about 12 times over
/// while it is parsed and compiled (an outside trial's 240 MiB record
/// took 3 GB, at import and at every later load); the largest real
/// records are a few megabytes.
pub const RECORD_LEN_MAX: u64 = 16 << 20;

/// Reads at most [`RECORD_LEN_MAX`] bytes (an entry's declared size is not
/// trusted: the read itself is bounded).
fn read_bounded(r: &mut impl Read, declared: u64) -> Result<Vec<u8>, Failure> {
    let too_big = || {
        Failure::rejected(anyhow::anyhow!(
            "more than the {RECORD_LEN_MAX} bytes accepted for one record"
        ))
    };
    if declared > RECORD_LEN_MAX {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(declared.min(1 << 20) as usize);
    r.take(RECORD_LEN_MAX + 1)
        .read_to_end(&mut bytes)
        .context("cannot read it")
        .map_err(Failure::rejected)?;
    if bytes.len() as u64 > RECORD_LEN_MAX {
        return Err(too_big());
    }
    Ok(bytes)
}

/// What an incremental import looks at before reading a record whole.
#[derive(Deserialize)]
pub struct Head {
    pub id: String,
    pub modified: String,
}

/// The id and `modified` of a JSON record, read without building the rest
/// (`None` for YAML or a record too broken to say: it is read whole, and
/// its errors reported as usual).
pub fn head(bytes: &[u8]) -> Option<Head> {
    serde_json::from_slice(bytes).ok()
}
