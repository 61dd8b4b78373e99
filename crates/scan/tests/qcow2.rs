//! qcow2, raw and backing chains, checked against images that QEMU's own
//! tools build on the fly (`qemu-img`, `qemu-io`), with `qemu-img convert
//! -O raw` as the oracle for contents and `qemu-img info --backing-chain` for
//! chains. Without QEMU's tools those tests say so and return.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use patchline_scan::ReadAt;
use patchline_scan::chain::{self, Format};
use patchline_scan::qcow2::{self, Compression, Qcow2Image};
use patchline_scan::raw::{RawImage, ReadStats};
use patchline_scan::{ScanError, open_chain, resolve};

/// Returns from the test when qemu-img or qemu-io is missing (a failure
/// in CI, see `patchline_testkit`).
macro_rules! require_qemu {
    () => {
        if !patchline_testkit::require_tools(module_path!(), &["qemu-img", "qemu-io"]) {
            return;
        }
    };
}

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn img(dir: &Path, args: &[&str]) {
    let mut all = vec!["qemu-img"];
    all.extend_from_slice(args);
    run(dir, &all);
}

/// `qemu-io -f FMT -c CMD... FILE`
fn io(dir: &Path, fmt: &str, file: &str, cmds: &[&str]) {
    let mut all = vec!["qemu-io", "-f", fmt];
    for c in cmds {
        all.push("-c");
        all.push(c);
    }
    all.push(file);
    run(dir, &all);
}

/// The virtual disk of `image` as QEMU reads it.
fn oracle(dir: &Path, image: &str) -> Vec<u8> {
    let flat = format!("{image}.flat.raw");
    img(dir, &["convert", "-O", "raw", image, &flat]);
    let data = fs::read(dir.join(&flat)).unwrap();
    fs::remove_file(dir.join(&flat)).unwrap();
    data
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Compares the whole disk (in chunks that cross clusters) and many reads
/// at odd offsets and lengths with `expected`.
fn assert_same(reader: &dyn ReadAt, expected: &[u8], what: &str) {
    assert_eq!(reader.size(), expected.len() as u64, "{what}: size");
    let mut all = vec![0u8; expected.len()];
    let chunk = 1_000_003;
    for (i, part) in all.chunks_mut(chunk).enumerate() {
        reader.read_at((i * chunk) as u64, part).unwrap();
    }
    if let Some(pos) = all.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at offset {pos:#x}: read {:#04x}, expected {:#04x}",
            all[pos], expected[pos]
        );
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = rng.below(200_000).min(expected.len() as u64) as usize;
        let off = rng.below(expected.len() as u64 - len as u64 + 1) as usize;
        let mut buf = vec![0u8; len];
        reader.read_at(off as u64, &mut buf).unwrap();
        assert!(
            buf == expected[off..off + len],
            "{what}: read of {len} at {off:#x} differs"
        );
    }
    let mut one = [0u8; 1];
    let err = reader.read_at(expected.len() as u64, &mut one).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{what}");
    assert!(reader.read_at(u64::MAX, &mut one).is_err());
    reader.read_at(expected.len() as u64, &mut []).unwrap();
}

/// (filename, format, virtual size) of each image of QEMU's view of the
/// chain.
fn qemu_chain(dir: &Path, image: &str) -> Vec<(PathBuf, String, u64)> {
    let out = Command::new("qemu-img")
        .args(["info", "--backing-chain", "--output=json", image])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                PathBuf::from(i["filename"].as_str().unwrap()),
                i["format"].as_str().unwrap().to_string(),
                i["virtual-size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_chain_matches_qemu(dir: &Path, image: &str) -> Vec<chain::ChainLink> {
    let links = resolve(dir.join(image)).unwrap();
    let ours: Vec<(PathBuf, String, u64)> = links
        .iter()
        .map(|l| (l.path.clone(), l.format.to_string(), l.virtual_size))
        .collect();
    // QEMU ran in `dir`: its relative file names are relative to it.
    let theirs: Vec<(PathBuf, String, u64)> = qemu_chain(dir, image)
        .into_iter()
        .map(|(path, format, size)| (dir.join(path), format, size))
        .collect();
    assert_eq!(ours, theirs, "chain of {image}");
    links
}

fn chain_err(path: impl AsRef<Path>) -> ScanError {
    match open_chain(path) {
        Ok((_, links)) => panic!("opened a chain of {links:?}"),
        Err(e) => e,
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("patchline-qcow2-")
        .tempdir()
        .unwrap()
}

#[test]
fn v3_chain_in_subfolders_matches_qemu() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    fs::create_dir_all(d.join("sub/deeper")).unwrap();
    img(d, &["create", "-q", "-f", "qcow2", "base.qcow2", "16M"]);
    io(
        d,
        "qcow2",
        "base.qcow2",
        &[
            "write -P 0xab 0 64k",
            "write -P 0x11 100k 300k",
            "write -P 0x33 1M 128k",
            "write -P 0x22 15M 1M",
        ],
    );
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "../base.qcow2",
            "-F",
            "qcow2",
            "sub/mid.qcow2",
        ],
    );
    io(
        d,
        "qcow2",
        "sub/mid.qcow2",
        &[
            "write -P 0xcd 32k 64k",
            "write -z 1M 64k",
            "write -P 0x5a 3000 1",
        ],
    );
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "../mid.qcow2",
            "-F",
            "qcow2",
            "sub/deeper/top.qcow2",
        ],
    );
    io(
        d,
        "qcow2",
        "sub/deeper/top.qcow2",
        &[
            "write -P 0xef 2M 4k",
            "write -z 15M 64k",
            "write -P 0x77 1100k 70k",
        ],
    );

    let links = assert_chain_matches_qemu(d, "sub/deeper/top.qcow2");
    assert_eq!(links.len(), 3);
    assert_eq!(links[0].backing_name(), Some("../mid.qcow2"));
    assert_eq!(links[1].path, d.join("sub/deeper/../mid.qcow2"));
    let top_info = links[0].info.as_ref().unwrap();
    assert_eq!(top_info.version, 3);
    assert_eq!(top_info.cluster_size, 65536);
    assert_eq!(top_info.backing_format.as_deref(), Some("qcow2"));
    assert!(!top_info.encrypted);
    assert!(!top_info.feature_names.is_empty());

    // Absolute path: the chain's other paths are absolute too.
    let top = d.join("sub/deeper/top.qcow2");
    let stats = ReadStats::new();
    let (reader, links) = chain::open_chain_with_stats(&top, &stats).unwrap();
    assert_eq!(links[2].path, d.join("sub/deeper/../../base.qcow2"));
    let opened = stats.bytes_read();
    assert!(
        opened > 0 && opened < 64 * 1024,
        "opening read {opened} bytes"
    );
    let mut buf = [0u8; 4096];
    reader.read_at(2 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0xef));
    let after = stats.bytes_read();
    // One L2 table and one 4 KiB read.
    assert!(
        after - opened <= 64 * 1024 + 4096,
        "read {}",
        after - opened
    );
    assert_same(&*reader, &oracle(d, "sub/deeper/top.qcow2"), "top");

    // Each layer alone, as QEMU sees it.
    let (mid, _) = open_chain(d.join("sub/mid.qcow2")).unwrap();
    assert_same(&*mid, &oracle(d, "sub/mid.qcow2"), "mid");

    // The zero write made zero clusters, not data.
    let mid = Qcow2Image::open(d.join("sub/mid.qcow2"), None).unwrap();
    let alloc = mid.check().unwrap();
    assert!(alloc.zero_clusters >= 1, "{alloc:?}");
    assert!(alloc.data_clusters >= 2, "{alloc:?}");
    // Without its backing image, unallocated clusters read as zeros.
    let mut buf = vec![0u8; 8192];
    mid.read_at(15 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn v2_chain_matches_qemu() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            "base.qcow2",
            "8M",
        ],
    );
    io(
        d,
        "qcow2",
        "base.qcow2",
        &["write -P 0x61 0 3M", "write -P 0x62 7M 1M"],
    );
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10,cluster_size=4096",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    );
    io(
        d,
        "qcow2",
        "top.qcow2",
        &[
            "write -P 0x63 1M 10k",
            "write -z 2M 8k",
            "write -P 0x64 7M 3",
        ],
    );
    let links = assert_chain_matches_qemu(d, "top.qcow2");
    let info = links[0].info.as_ref().unwrap();
    assert_eq!((info.version, info.cluster_size), (2, 4096));
    assert_eq!(info.header_length, 72);
    let (reader, _) = open_chain(d.join("top.qcow2")).unwrap();
    assert_same(&*reader, &oracle(d, "top.qcow2"), "v2 top");
}

#[test]
fn other_qemu_options_match_qemu() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    let variants: [(&str, &[&str]); 5] = [
        ("meta.qcow2", &["-o", "preallocation=metadata"]),
        (
            "falloc.qcow2",
            &["-o", "preallocation=falloc,cluster_size=16k"],
        ),
        ("lazy.qcow2", &["-o", "lazy_refcounts=on,refcount_bits=1"]),
        ("snap.qcow2", &["-o", "refcount_bits=64"]),
        ("odd.qcow2", &["-o", "cluster_size=2M"]),
    ];
    for (name, opts) in variants {
        let mut args = vec!["create", "-q", "-f", "qcow2"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[name, "5000k"]);
        img(d, &args);
        io(
            d,
            "qcow2",
            name,
            &["write -P 0x61 100k 200k", "write -z 1M 1M"],
        );
        if name == "snap.qcow2" {
            // The active L1 table after an internal snapshot: shared
            // clusters (refcount 2) and copied-on-write ones.
            img(d, &["snapshot", "-c", "s1", name]);
            io(
                d,
                "qcow2",
                name,
                &["write -P 0x62 150k 10k", "write -P 0x63 4M 64k"],
            );
        }
        let image = Qcow2Image::open(d.join(name), None).unwrap();
        image.check().unwrap();
        assert_same(&image, &oracle(d, name), name);
    }
}

/// A disk with zeros, low-entropy text, repeated patterns and noise.
fn mixed_disk(len: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    let mut disk = vec![0u8; len];
    for (i, block) in disk.chunks_mut(48 * 1024).enumerate() {
        match i % 4 {
            0 => {}
            1 => block
                .iter_mut()
                .for_each(|b| *b = b"etc/os-release debian 12 "[rng.below(25) as usize]),
            2 => block
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (j % 251) as u8),
            _ => block.iter_mut().for_each(|b| *b = rng.next() as u8),
        }
    }
    disk
}

#[test]
fn compressed_clusters_match_the_source() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    // Not a whole number of clusters: the last one is partly outside the disk.
    let disk = mixed_disk((3 << 20) + 4608);
    fs::write(d.join("src.raw"), &disk).unwrap();
    for cluster in ["512", "4096", "65536", "2M"] {
        let name = format!("c{cluster}.qcow2");
        img(
            d,
            &[
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                &format!("cluster_size={cluster}"),
                "src.raw",
                &name,
            ],
        );
        let image = Qcow2Image::open(d.join(&name), None).unwrap();
        assert_eq!(image.info().compression, Compression::Deflate);
        let alloc = image.check().unwrap();
        assert!(alloc.compressed_clusters > 0, "{cluster}: {alloc:?}");
        assert_same(&image, &disk, &name);
    }
    // An overlay over a compressed base.
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "c65536.qcow2",
            "-F",
            "qcow2",
            "over.qcow2",
        ],
    );
    io(d, "qcow2", "over.qcow2", &["write -P 0x99 60k 10k"]);
    let (reader, _) = open_chain(d.join("over.qcow2")).unwrap();
    assert_same(&*reader, &oracle(d, "over.qcow2"), "overlay on compressed");
}

#[test]
fn extended_l2_subclusters_match_qemu() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    img(d, &["create", "-q", "-f", "qcow2", "base.qcow2", "4M"]);
    io(d, "qcow2", "base.qcow2", &["write -P 0x11 0 4M"]);
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=64k",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    );
    io(
        d,
        "qcow2",
        "top.qcow2",
        &[
            "write -P 0x22 4k 2k",
            "write -z 10k 6k",
            "write -P 0x33 70k 1k",
            "write -z 128k 64k",
            "write -P 0x44 1M 64k",
        ],
    );
    let top = Qcow2Image::open(d.join("top.qcow2"), None).unwrap();
    assert!(top.info().extended_l2);
    let alloc = top.check().unwrap();
    assert!(alloc.partial_clusters >= 2, "{alloc:?}");
    let (reader, _) = open_chain(d.join("top.qcow2")).unwrap();
    assert_same(&*reader, &oracle(d, "top.qcow2"), "extended L2");
}

#[test]
fn raw_backing_files_absolute_probed_and_shorter() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    fs::create_dir(d.join("bases")).unwrap();
    fs::create_dir(d.join("vms")).unwrap();
    let base: Vec<u8> = (0..(1usize << 20) + 512).map(|i| (i / 512) as u8).collect();
    fs::write(d.join("bases/base.img"), &base).unwrap();
    let abs = d.join("bases/base.img");
    // An overlay larger than its raw backing file, which it names by its
    // absolute path.
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            abs.to_str().unwrap(),
            "-F",
            "raw",
            "vms/big.qcow2",
            "4M",
        ],
    );
    io(d, "qcow2", "vms/big.qcow2", &["write -P 0x44 768k 512k"]);
    let links = assert_chain_matches_qemu(d, "vms/big.qcow2");
    assert_eq!(links[1].path, abs);
    assert_eq!(links[1].format, Format::Raw);
    assert_eq!(links[1].virtual_size, base.len() as u64);
    assert!(links[1].info.is_none());
    let (reader, _) = open_chain(d.join("vms/big.qcow2")).unwrap();
    assert_same(&*reader, &oracle(d, "vms/big.qcow2"), "over raw");

    // The raw image alone.
    let raw = RawImage::open(&abs).unwrap();
    assert_same(&raw, &base, "raw");
    assert!(raw.stats().bytes_read() >= base.len() as u64);

    // Without the backing format extension the backing file is probed (and
    // found raw), as QEMU does.
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "../bases/base.img",
            "-F",
            "raw",
            "vms/probed.qcow2",
        ],
    );
    io(d, "qcow2", "vms/probed.qcow2", &["write -P 0x45 0 1k"]);
    let path = d.join("vms/probed.qcow2");
    let mut bytes = fs::read(&path).unwrap();
    let ext = bytes
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .unwrap();
    bytes[ext..ext + 4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    fs::write(&path, bytes).unwrap();
    assert_eq!(qcow2::header_info(&path).unwrap().backing_format, None);
    let links = assert_chain_matches_qemu(d, "vms/probed.qcow2");
    assert_eq!(links[1].format, Format::Raw);
    let (reader, _) = open_chain(&path).unwrap();
    assert_same(&*reader, &oracle(d, "vms/probed.qcow2"), "probed raw");
}

/// Rewrites the backing file name stored in `image` (same length).
fn set_backing_name(image: &Path, name: &str) {
    let mut bytes = fs::read(image).unwrap();
    let off = u64::from_be_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let len = u32::from_be_bytes(bytes[16..20].try_into().unwrap()) as usize;
    assert_eq!(len, name.len());
    bytes[off..off + len].copy_from_slice(name.as_bytes());
    fs::write(image, bytes).unwrap();
}

#[test]
fn backing_loops_and_missing_backing_files() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    img(d, &["create", "-q", "-f", "qcow2", "c.qcow2", "1M"]);
    img(
        d,
        &[
            "create", "-q", "-f", "qcow2", "-b", "c.qcow2", "-F", "qcow2", "b.qcow2",
        ],
    );
    img(
        d,
        &[
            "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2",
        ],
    );
    assert_eq!(resolve(d.join("a.qcow2")).unwrap().len(), 3);

    // a -> b -> a
    set_backing_name(&d.join("b.qcow2"), "a.qcow2");
    for err in [
        resolve(d.join("a.qcow2")).unwrap_err(),
        chain_err(d.join("a.qcow2")),
    ] {
        match &err {
            ScanError::BackingLoop { path, backing } => {
                assert_eq!(path, &d.join("b.qcow2"));
                assert_eq!(backing, &d.join("a.qcow2"));
            }
            other => panic!("expected a loop, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("b.qcow2") && msg.contains("a.qcow2") && msg.contains("loop"),
            "{msg}"
        );
    }
    // c -> c
    set_backing_name(&d.join("b.qcow2"), "b.qcow2");
    assert!(matches!(
        resolve(d.join("b.qcow2")),
        Err(ScanError::BackingLoop { .. })
    ));

    // A missing backing file.
    img(d, &["create", "-q", "-f", "qcow2", "base.qcow2", "1M"]);
    fs::create_dir(d.join("vm")).unwrap();
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "../base.qcow2",
            "-F",
            "qcow2",
            "vm/top.qcow2",
        ],
    );
    fs::remove_file(d.join("base.qcow2")).unwrap();
    let err = chain_err(d.join("vm/top.qcow2"));
    match &err {
        ScanError::BackingMissing { path, backing } => {
            assert_eq!(path, &d.join("vm/top.qcow2"));
            assert_eq!(backing, &d.join("vm/../base.qcow2"));
        }
        other => panic!("expected a missing backing file, got {other:?}"),
    }
    assert!(err.to_string().contains("top.qcow2") && err.to_string().contains("base.qcow2"));
    // The overlay itself is fine.
    let info = qcow2::header_info(d.join("vm/top.qcow2")).unwrap();
    assert_eq!(info.backing_file.as_deref(), Some("../base.qcow2"));
    Qcow2Image::open(d.join("vm/top.qcow2"), None).unwrap();
    // A chain that never ends stops at the depth bound.
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=512",
            "x0001.qcow2",
            "64k",
        ],
    );
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=512",
            "-b",
            "x0001.qcow2",
            "-F",
            "qcow2",
            "x0000.qcow2",
        ],
    );
    let template = fs::read(d.join("x0000.qcow2")).unwrap();
    for i in 1..300 {
        let path = d.join(format!("x{i:04}.qcow2"));
        fs::write(&path, &template).unwrap();
        set_backing_name(&path, &format!("x{:04}.qcow2", i + 1));
    }
    let err = resolve(d.join("x0000.qcow2")).unwrap_err();
    assert!(matches!(err, ScanError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("256"), "{err}");

    // A missing first file is plain I/O.
    assert!(matches!(
        resolve(d.join("nope.qcow2")),
        Err(ScanError::Io { .. })
    ));
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/qcow2/invalid.qcow2")
}

#[test]
fn the_invalid_fixture_is_refused() {
    let path = fixture();
    let name = path.display().to_string();
    for err in [
        qcow2::header_info(&path).unwrap_err(),
        Qcow2Image::open(&path, None).unwrap_err(),
        resolve(&path).unwrap_err(),
        chain_err(&path),
    ] {
        assert!(matches!(err, ScanError::NotQcow2 { .. }), "{err:?}");
        assert!(err.to_string().contains(&name), "{err}");
        assert_eq!(err.path(), path);
    }
    // As raw bytes it is just a 35-byte disk.
    assert_eq!(RawImage::open(&path).unwrap().size(), 35);
}

fn put32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn get64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn bad_headers_and_tables_are_clear_errors() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    img(d, &["create", "-q", "-f", "qcow2", "good.qcow2", "4M"]);
    io(d, "qcow2", "good.qcow2", &["write -P 0x5 0 128k"]);
    let good = fs::read(d.join("good.qcow2")).unwrap();
    let file_len = good.len() as u64;
    let l1_off = get64(&good, 40) as usize;
    let l2_off = (get64(&good, l1_off) & 0x00ff_ffff_ffff_fe00) as usize;

    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("version4", Box::new(|b| put32(b, 4, 4)), "version 4"),
        ("bits8", Box::new(|b| put32(b, 20, 8)), "cluster_bits"),
        ("bits30", Box::new(|b| put32(b, 20, 30)), "cluster size"),
        ("unknown", Box::new(|b| put64(b, 72, 1 << 5)), "bit 5"),
        (
            "hdrlen",
            Box::new(|b| put32(b, 100, 64)),
            "header length 64",
        ),
        ("huge", Box::new(|b| put64(b, 24, 1 << 57)), "2^56"),
        ("l1small", Box::new(|b| put64(b, 24, 1 << 40)), "too few"),
        (
            "l1past",
            Box::new(move |b| put64(b, 40, file_len.next_multiple_of(1 << 16) + (1 << 16))),
            "L1 table",
        ),
        (
            "l1align",
            Box::new(|b| put64(b, 40, 0x30200)),
            "not aligned",
        ),
        ("l1huge", Box::new(|b| put32(b, 36, u32::MAX)), "32 MiB"),
        (
            "backlong",
            Box::new(|b| {
                put64(b, 8, 0x200);
                put32(b, 16, 2000);
            }),
            "1023",
        ),
        (
            "crypt9",
            Box::new(|b| put32(b, 32, 9)),
            "encryption method 9",
        ),
        ("cut50", Box::new(|b| b.truncate(50)), "past the end"),
        ("cut90", Box::new(|b| b.truncate(90)), "past the end"),
        ("magic", Box::new(|b| b[0] = b'X'), "bad magic"),
        (
            "l2past",
            Box::new(move |b| put64(b, l1_off, 0x8000_0000_0100_0000)),
            "past the end",
        ),
    ];
    for (name, edit, needle) in &cases {
        let mut bytes = good.clone();
        edit(&mut bytes);
        let path = d.join(format!("{name}.qcow2"));
        fs::write(&path, &bytes).unwrap();
        let err = Qcow2Image::open(&path, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{name}.qcow2")), "{name}: {msg}");
        assert!(msg.contains(needle), "{name}: {msg}");
        let err2 = resolve(&path).err();
        if !matches!(*name, "l2past") {
            assert_eq!(err2.map(|e| e.to_string()), Some(msg), "{name}");
        }
    }

    // An L2 entry pointing past the end of the file: found when read.
    let mut bytes = good.clone();
    put64(&mut bytes, l2_off + 8, 0x8000_0000_4000_0000);
    fs::write(d.join("datapast.qcow2"), &bytes).unwrap();
    let image = Qcow2Image::open(d.join("datapast.qcow2"), None).unwrap();
    let mut buf = vec![0u8; 4096];
    image.read_at(0, &mut buf).unwrap();
    let err = image.read_at(65536, &mut buf).unwrap_err();
    let err = ScanError::from_io_error(err).unwrap();
    assert!(matches!(err, ScanError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("datapast.qcow2"), "{err}");
    assert!(matches!(image.check(), Err(ScanError::Truncated { .. })));
    // ... and a misaligned one.
    put64(&mut bytes, l2_off + 8, 0x8000_0000_0003_0200);
    fs::write(d.join("dataalign.qcow2"), &bytes).unwrap();
    let image = Qcow2Image::open(d.join("dataalign.qcow2"), None).unwrap();
    let err = ScanError::from_io_error(image.read_at(65536, &mut buf).unwrap_err()).unwrap();
    assert!(matches!(err, ScanError::Corrupt { .. }), "{err:?}");

    // Features that are described but not read.
    let luks = [
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        "secret,id=s0,data=123456",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0",
        "luks.qcow2",
        "1M",
    ];
    img(d, &luks);
    assert!(qcow2::header_info(d.join("luks.qcow2")).unwrap().encrypted);
    assert!(resolve(d.join("luks.qcow2")).is_ok());
    let err = chain_err(d.join("luks.qcow2"));
    assert!(matches!(err, ScanError::Encrypted { .. }), "{err:?}");
    assert!(err.to_string().contains("LUKS"), "{err}");

    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compression_type=zstd",
            "zstd.qcow2",
            "1M",
        ],
    );
    assert_eq!(
        qcow2::header_info(d.join("zstd.qcow2"))
            .unwrap()
            .compression,
        Compression::Zstd
    );
    let err = Qcow2Image::open(d.join("zstd.qcow2"), None).unwrap_err();
    assert!(matches!(err, ScanError::Unsupported { .. }) && err.to_string().contains("zstd"));

    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "data_file=data.raw",
            "ext.qcow2",
            "1M",
        ],
    );
    let info = qcow2::header_info(d.join("ext.qcow2")).unwrap();
    assert!(info.external_data_file);
    assert_eq!(info.data_file_name.as_deref(), Some("data.raw"));
    let err = Qcow2Image::open(d.join("ext.qcow2"), None).unwrap_err();
    assert!(err.to_string().contains("external data file"), "{err}");
}

#[test]
fn mutated_images_never_panic() {
    require_qemu!();
    let t = tempdir();
    let d = t.path();
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4096",
            "base.qcow2",
            "64k",
        ],
    );
    io(d, "qcow2", "base.qcow2", &["write -P 0x1 0 64k"]);
    img(
        d,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4096,compat=1.1",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    );
    io(
        d,
        "qcow2",
        "top.qcow2",
        &["write -P 0x2 4k 8k", "write -z 20k 4k"],
    );
    img(
        d,
        &[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
            "base.qcow2",
            "comp.qcow2",
        ],
    );

    let mut outcomes = [0usize; 2];
    let mut try_bytes = |name: &str, bytes: &[u8]| {
        let path = d.join(name);
        fs::write(&path, bytes).unwrap();
        let _ = qcow2::header_info(&path);
        match open_chain(&path) {
            Ok((reader, _)) => {
                outcomes[0] += 1;
                let size = reader.size();
                let mut buf = vec![0u8; 64 * 1024];
                let n = size.min(buf.len() as u64) as usize;
                let _ = reader.read_at(0, &mut buf[..n]);
                let _ = reader.read_at(size - n as u64, &mut buf[..n]);
                let _ = reader.read_at(size / 2, &mut buf[..(size - size / 2).min(4096) as usize]);
            }
            Err(e) => {
                outcomes[1] += 1;
                assert!(!e.to_string().is_empty());
            }
        }
        if let Ok(image) = Qcow2Image::open(&path, None) {
            let _ = image.check();
        }
    };

    let mut rng = Rng(7);
    for src in ["top.qcow2", "comp.qcow2"] {
        let good = fs::read(d.join(src)).unwrap();
        // Every header-cluster byte, set to a few values.
        for at in 0..512.min(good.len()) {
            for v in [0x00, 0xff, good[at] ^ 0x80, good[at].wrapping_add(1)] {
                if v == good[at] {
                    continue;
                }
                let mut bytes = good.clone();
                bytes[at] = v;
                try_bytes("m.qcow2", &bytes);
            }
        }
        // Random changes anywhere (tables included), and truncations.
        for _ in 0..600 {
            let mut bytes = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            if rng.below(8) == 0 {
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
            }
            try_bytes("m.qcow2", &bytes);
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
