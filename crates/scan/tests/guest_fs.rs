//! Partition tables, ext2/3/4 and guest files, on filesystems built on the
//! fly with `mkfs.ext4 -d`, edited with `debugfs -w`, and placed in GPT and
//! MBR disks written here (and by `sfdisk` when it is installed).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use patchline_scan::ReadAt;
use patchline_scan::fs::{
    Ext4, FileKind, FsError, Guid, PartitionKind, Scheme, read_guest, read_partitions,
};

const DEBIAN_STATUS: &str = include_str!("../../../testdata/inventories/debian-12.dpkg-status");
const ALPINE_INSTALLED: &str =
    include_str!("../../../testdata/inventories/alpine-3.18.apk-installed");

const DEBIAN_OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

const ALPINE_OS_RELEASE: &str = r#"NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.18.4
PRETTY_NAME="Alpine Linux v3.18"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"#;

const MIB: u64 = 1 << 20;

// ---- test-only disks ----

struct FileDisk {
    file: File,
    size: u64,
}

impl FileDisk {
    fn open(path: &Path) -> FileDisk {
        let file = File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        FileDisk { file, size }
    }
}

impl ReadAt for FileDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.file.read_exact_at(buf, offset)
    }
}

struct VecDisk(Vec<u8>);

impl ReadAt for VecDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

// ---- building trees, filesystems and disks ----

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn symlink(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

/// A Debian-like tree: `/etc/os-release -> ../usr/lib/os-release`, dpkg
/// status, some filler.
fn debian_tree(root: &Path) {
    write(root, "usr/lib/os-release", DEBIAN_OS_RELEASE.as_bytes());
    symlink(root, "etc/os-release", "../usr/lib/os-release");
    // A slow symlink (more than 60 bytes: stored in a block, or inline).
    symlink(
        root,
        "etc/long-os-release",
        "../usr/./lib/./././././././././././././././././././././././os-release",
    );
    write(root, "var/lib/dpkg/status", DEBIAN_STATUS.as_bytes());
    write(root, "etc/hostname", b"debian\n");
    write(root, "etc/debian_version", b"12.5\n");
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    for i in 0..40 {
        write(
            root,
            &format!("var/lib/dpkg/info/pkg{i}.list"),
            format!("/usr/bin/tool{i}\n").as_bytes(),
        );
    }
    for d in ["bin", "sbin", "lib"] {
        symlink(root, d, &format!("usr/{d}"));
    }
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
}

/// An Alpine-like tree: `/etc/os-release` a file, apk database.
fn alpine_tree(root: &Path) {
    write(root, "etc/os-release", ALPINE_OS_RELEASE.as_bytes());
    write(root, "lib/apk/db/installed", ALPINE_INSTALLED.as_bytes());
    write(root, "etc/alpine-release", b"3.18.4\n");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mkfs.ext4 -q -F [opts] -d DIR IMG SIZE`.
fn mkfs(dir: &Path, img: &Path, size: &str, opts: &[&str]) {
    let _ = fs::remove_file(img);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .args(opts)
        .arg("-d")
        .arg(dir)
        .arg(img)
        .arg(size)
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf"));
}

/// e2fsck, which exits 1 when it changed the filesystem.
fn e2fsck(img: &Path, flags: &str) {
    let out = Command::new("e2fsck").arg(flags).arg(img).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck {flags}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn debugfs_w(img: &Path, cmds: &str) -> String {
    let file = img.with_extension("cmds");
    fs::write(&file, cmds).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&file)
        .arg(img))
}

fn debugfs_r(img: &Path, cmd: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(cmd).arg(img))
}

fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn tree(&self, name: &str, build: fn(&Path)) -> PathBuf {
        let root = self.path(name);
        fs::create_dir_all(&root).unwrap();
        build(&root);
        root
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .chars()
        .filter(|c| *c != '-')
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|p| u8::from_str_radix(&p.iter().collect::<String>(), 16).unwrap())
        .collect();
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&[hex[3], hex[2], hex[1], hex[0]]);
    b[4..6].copy_from_slice(&[hex[5], hex[4]]);
    b[6..8].copy_from_slice(&[hex[7], hex[6]]);
    b[8..].copy_from_slice(&hex[8..]);
    b
}

const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Writes a GPT disk of `size` bytes: protective MBR, primary header and
/// entries (CRCs), backup header and entries, and each partition's image
/// (or zeros) at its LBA range.
fn gpt_disk(path: &Path, size: u64, parts: &[(&str, &str, u64, u64, Option<&Path>)]) {
    let sectors = size / 512;
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0xEE;
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    mbr[446 + 12..446 + 16]
        .copy_from_slice(&((sectors - 1).min(u64::from(u32::MAX)) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    f.write_all_at(&mbr, 0).unwrap();

    let mut entries = vec![0u8; 128 * 128];
    for (i, (type_guid, name, start, len, image)) in parts.iter().enumerate() {
        let e = &mut entries[128 * i..128 * (i + 1)];
        e[..16].copy_from_slice(&guid_bytes(type_guid));
        e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
        e[32..40].copy_from_slice(&(start / 512).to_le_bytes());
        e[40..48].copy_from_slice(&((start + len) / 512 - 1).to_le_bytes());
        for (k, u) in name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
        if let Some(img) = image {
            let data = fs::read(img).unwrap();
            assert!(data.len() as u64 <= *len);
            f.write_all_at(&data, *start).unwrap();
        }
    }
    let entries_crc = crc32(&entries);
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[56..72].copy_from_slice(&[0x42; 16]);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    f.write_all_at(&header(1, sectors - 1, 2), 512).unwrap();
    f.write_all_at(&entries, 1024).unwrap();
    f.write_all_at(&entries, (sectors - 33) * 512).unwrap();
    f.write_all_at(&header(sectors - 1, 1, sectors - 33), (sectors - 1) * 512)
        .unwrap();
}

fn mbr_entry(
    sector: &mut [u8; 512],
    slot: usize,
    status: u8,
    type_byte: u8,
    start_lba: u64,
    sectors: u64,
) {
    let e = &mut sector[446 + 16 * slot..446 + 16 * (slot + 1)];
    e[0] = status;
    e[4] = type_byte;
    e[8..12].copy_from_slice(&(start_lba as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

fn place(f: &File, image: &Path, at: u64) {
    f.write_all_at(&fs::read(image).unwrap(), at).unwrap();
}

fn assert_debian(g: &patchline_scan::fs::Guest) {
    assert_eq!(g.os_release.as_deref(), Some(DEBIAN_OS_RELEASE));
    assert_eq!(
        g.dpkg_status.as_deref(),
        Some(DEBIAN_STATUS),
        "dpkg status read back differs"
    );
    assert_eq!(g.apk_installed, None);
    assert!(g.dpkg_status_d.is_empty());
    assert_eq!(g.rpm_db, None);
}

// ---- tests ----

#[test]
fn debian_root_on_whole_disk_reads_few_bytes() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let img = w.path("debian.raw");
    mkfs(&root, &img, "64M", &[]);
    let disk = FileDisk::open(&img);

    let parts = read_partitions(&disk).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].scheme(), Scheme::WholeDisk);

    let g = read_guest(&disk).unwrap();
    assert_eq!(g.partition, 0);
    assert_debian(&g);
    let payload = (DEBIAN_STATUS.len() + DEBIAN_OS_RELEASE.len()) as u64;
    eprintln!(
        "read {} bytes of a {}-byte disk for {payload} bytes of files",
        g.bytes_read,
        disk.size()
    );
    assert!(
        g.bytes_read < payload + 64 * 1024,
        "read {} bytes for {payload} bytes of files",
        g.bytes_read
    );
    assert!(
        g.bytes_read * 50 < disk.size(),
        "read {} of {}",
        g.bytes_read,
        disk.size()
    );

    // The ext4 API directly.
    let fs = Ext4::open(&disk).unwrap();
    assert_eq!(
        fs.read_link("/etc/os-release").unwrap().as_deref(),
        Some("../usr/lib/os-release")
    );
    assert_eq!(
        fs.symlink_metadata("/etc/os-release")
            .unwrap()
            .unwrap()
            .kind,
        FileKind::Symlink
    );
    assert_eq!(
        fs.metadata("/etc/os-release").unwrap().unwrap().kind,
        FileKind::File
    );
    assert_eq!(fs.metadata("/bin").unwrap().unwrap().kind, FileKind::Dir);
    assert_eq!(
        fs.read_file("/etc/hostname", 100).unwrap().unwrap(),
        b"debian\n"
    );
    assert_eq!(
        fs.read_file("/lib/os-release", 1 << 20).unwrap().unwrap(),
        DEBIAN_OS_RELEASE.as_bytes()
    );
    assert_eq!(
        fs.read_file("/etc/../etc/./nonexistent", 100).unwrap(),
        None
    );
    assert_eq!(fs.read_file("/nonexistent/dir/file", 100).unwrap(), None);
    let mut names: Vec<String> = fs
        .read_dir("/var/lib/dpkg/info")
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names.len(), 40);
    assert!(names.contains(&"pkg7.list".to_string()));
    // Limits and wrong kinds are clear errors naming the path.
    let err = fs.read_file("/var/lib/dpkg/status", 1000).unwrap_err();
    assert!(matches!(err, FsError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("/var/lib/dpkg/status"), "{err}");
    let err = fs.read_file("/var/lib/dpkg", 1000).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    let err = fs.read_file("/etc/hostname/x", 1000).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn feature_variants_read_back_identically() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    // Islands of data between holes: many extents (an extent tree of
    // depth > 0), sparse indirect blocks for ext2/ext3. It ends with data:
    // mke2fs 1.47.0 -d drops a trailing hole when inline_data is on.
    let mut big = vec![0u8; 23 * 128 * 1024 + 4096 * 2 + 43_000];
    fs::create_dir_all(root.join("var/cache")).unwrap();
    let f = File::create(root.join("var/cache/big.bin")).unwrap();
    f.set_len(big.len() as u64).unwrap();
    for island in 0..24usize {
        let start = island * 128 * 1024 + 4096 * (island % 3);
        let len = 20_000 + 1000 * island;
        for (k, b) in big[start..start + len].iter_mut().enumerate() {
            *b = ((k as u32).wrapping_mul(2_654_435_761) >> 13) as u8 | 1;
        }
        f.write_all_at(&big[start..start + len], start as u64)
            .unwrap();
    }
    drop(f);
    let img = w.path("variant.raw");
    let variants: &[&[&str]] = &[
        &["-t", "ext4"],
        &["-t", "ext4", "-O", "^metadata_csum,^64bit"],
        &["-t", "ext4", "-O", "^metadata_csum,uninit_bg"],
        &["-t", "ext4", "-O", "^has_journal,^flex_bg"],
        &["-t", "ext4", "-b", "1024", "-g", "1024"],
        &["-t", "ext4", "-O", "meta_bg,^resize_inode"],
        &["-t", "ext4", "-O", "inline_data", "-I", "1024"],
        &["-t", "ext4", "-b", "65536"],
        &["-t", "ext3"],
        &["-t", "ext2"],
        &["-t", "ext2", "-b", "1024", "-g", "1024"],
        &["-t", "ext2", "-r", "0"],
        &["-t", "ext2", "-O", "^filetype"],
        &["-t", "ext4", "-I", "128"],
        &["-t", "ext4", "-O", "bigalloc", "-C", "16384"],
        &["-t", "ext4", "-O", "sparse_super2,^resize_inode"],
    ];
    for opts in variants {
        mkfs(&root, &img, "64M", opts);
        let disk = FileDisk::open(&img);
        let g = read_guest(&disk).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
        assert_eq!(g.partition, 0);
        assert_debian(&g);
        let fs = Ext4::open(&disk).unwrap();
        let got = fs
            .read_file("/var/cache/big.bin", 64 * MIB)
            .unwrap()
            .unwrap();
        assert!(got == big, "{opts:?}: big.bin differs");
        assert_eq!(
            fs.read_file("/etc/debian_version", 100).unwrap().unwrap(),
            b"12.5\n"
        );
        assert_eq!(
            fs.read_file("/etc/long-os-release", 4096).unwrap().unwrap(),
            DEBIAN_OS_RELEASE.as_bytes(),
            "{opts:?}"
        );
        if opts == &["-t", "ext4"] || opts.contains(&"-g") && opts.contains(&"ext4") {
            let stat = debugfs_r(&img, "stat /var/cache/big.bin");
            assert!(
                stat.contains("(ETB0)"),
                "expected an extent tree of depth > 0:\n{stat}"
            );
        }
        if opts.contains(&"inline_data") {
            let stat = debugfs_r(&img, "stat /etc/hostname");
            assert!(
                stat.contains("Size of inline data"),
                "expected inline data:\n{stat}"
            );
        }
    }
}

#[test]
fn alpine_tree_and_long_symlinks() {
    let w = Work::new();
    let root = w.tree("alpine", alpine_tree);
    // A slow symlink (target longer than 60 bytes, stored in a block) and
    // an absolute one, chained.
    let long = "../../etc/./././././././././././././././././././././././././os-release";
    assert!(long.len() > 60);
    symlink(&root, "usr/lib/os-release", long);
    symlink(&root, "usr/lib/abs-os-release", "/usr/lib/os-release");
    symlink(&root, "loop/a", "b");
    symlink(&root, "loop/b", "/loop/a");
    symlink(&root, "dangling", "/nowhere/at/all");
    let img = w.path("alpine.raw");
    mkfs(&root, &img, "32M", &[]);
    let disk = FileDisk::open(&img);
    let g = read_guest(&disk).unwrap();
    assert_eq!(g.partition, 0);
    assert_eq!(g.os_release.as_deref(), Some(ALPINE_OS_RELEASE));
    assert_eq!(g.apk_installed.as_deref(), Some(ALPINE_INSTALLED));
    assert_eq!(g.dpkg_status, None);

    let fs = Ext4::open(&disk).unwrap();
    assert_eq!(
        fs.read_link("/usr/lib/os-release").unwrap().as_deref(),
        Some(long)
    );
    assert_eq!(
        fs.read_file("/usr/lib/abs-os-release", 4096)
            .unwrap()
            .unwrap(),
        ALPINE_OS_RELEASE.as_bytes()
    );
    let err = fs.read_file("/loop/a", 4096).unwrap_err();
    assert!(
        err.to_string()
            .contains("too many levels of symbolic links"),
        "{err}"
    );
    assert_eq!(fs.read_file("/dangling", 4096).unwrap(), None);
}

#[test]
fn usr_lib_os_release_when_etc_link_dangles_and_status_d() {
    let w = Work::new();
    let root = w.tree("distroless", |root| {
        write(root, "usr/lib/os-release", DEBIAN_OS_RELEASE.as_bytes());
        symlink(root, "etc/os-release", "/etc/os-release");
        // Distroless: one status file per package, plus md5sums.
        for i in 0..300 {
            let stanza =
                format!("Package: pkg{i:03}\nStatus: install ok installed\nVersion: 1.{i}-1\n\n");
            write(
                root,
                &format!("var/lib/dpkg/status.d/pkg{i:03}"),
                stanza.as_bytes(),
            );
            write(
                root,
                &format!("var/lib/dpkg/status.d/pkg{i:03}.md5sums"),
                b"d41d8cd98f00b204e9800998ecf8427e  x\n",
            );
        }
    });
    let img = w.path("distroless.raw");
    mkfs(&root, &img, "32M", &[]);
    // Index the big directory as the kernel or e2fsck -D would (htree).
    e2fsck(&img, "-fyD");
    let stat = debugfs_r(&img, "htree /var/lib/dpkg/status.d");
    assert!(
        stat.contains("Root node dump"),
        "status.d should be an htree directory:\n{stat}"
    );

    let disk = FileDisk::open(&img);
    let g = read_guest(&disk).unwrap();
    assert_eq!(g.os_release.as_deref(), Some(DEBIAN_OS_RELEASE));
    assert_eq!(g.dpkg_status, None);
    assert_eq!(g.dpkg_status_d.len(), 300);
    for (i, (name, text)) in g.dpkg_status_d.iter().enumerate() {
        assert_eq!(name, &format!("pkg{i:03}"));
        assert_eq!(
            text,
            &format!("Package: pkg{i:03}\nStatus: install ok installed\nVersion: 1.{i}-1\n\n")
        );
    }
}

#[test]
fn gpt_disk_finds_root_partition() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let boot = w.tree("boot", |r| write(r, "grub/grub.cfg", b"set timeout=0\n"));
    let root_img = w.path("root.raw");
    let boot_img = w.path("boot.raw");
    mkfs(&root, &root_img, "48M", &[]);
    mkfs(&boot, &boot_img, "8M", &["-t", "ext2"]);
    let disk_path = w.path("gpt.raw");
    gpt_disk(
        &disk_path,
        72 * MIB,
        &[
            (BIOS_BOOT, "bios", MIB, MIB, None),
            (ESP, "EFI System", 2 * MIB, 4 * MIB, None),
            (LINUX_FS, "boot", 6 * MIB, 8 * MIB, Some(&boot_img)),
            (
                LINUX_FS,
                "cloudimg-rootfs",
                14 * MIB,
                48 * MIB,
                Some(&root_img),
            ),
        ],
    );
    let disk = FileDisk::open(&disk_path);
    let parts = read_partitions(&disk).unwrap();
    let summary: Vec<(u32, u64, u64, String)> = parts
        .iter()
        .map(|p| (p.index, p.start_bytes, p.size_bytes, p.name.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, MIB, MIB, "bios".to_string()),
            (2, 2 * MIB, 4 * MIB, "EFI System".to_string()),
            (3, 6 * MIB, 8 * MIB, "boot".to_string()),
            (4, 14 * MIB, 48 * MIB, "cloudimg-rootfs".to_string()),
        ]
    );
    match &parts[3].kind {
        PartitionKind::Gpt { type_guid, .. } => {
            assert_eq!(*type_guid, Guid::LINUX_FILESYSTEM);
            assert_eq!(type_guid.to_string(), LINUX_FS);
        }
        other => panic!("{other:?}"),
    }
    let g = read_guest(&disk).unwrap();
    assert_eq!(g.partition, 4);
    assert_debian(&g);
    assert!(g.bytes_read * 50 < disk.size());

    // A broken entries CRC is a clear error.
    let mut bytes = fs::read(&disk_path).unwrap();
    bytes[1024 + 128 * 3 + 60] ^= 0xFF;
    let err = read_partitions(&VecDisk(bytes.clone())).unwrap_err();
    assert!(
        err.to_string()
            .contains("GPT partition entries: checksum mismatch"),
        "{err}"
    );
    bytes[1024 + 128 * 3 + 60] ^= 0xFF;
    bytes[512 + 40] ^= 1;
    let err = read_guest(&VecDisk(bytes)).unwrap_err();
    assert!(
        err.to_string().contains("GPT header: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn sfdisk_tables_parse_like_linux() {
    if !patchline_testkit::require_tools("sfdisk_tables_parse_like_linux", &["sfdisk"]) {
        return;
    }
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let root_img = w.path("root.raw");
    mkfs(&root, &root_img, "40M", &[]);
    for label in ["gpt", "dos"] {
        let disk_path = w.path(&format!("{label}.raw"));
        let f = File::create(&disk_path).unwrap();
        f.set_len(64 * MIB).unwrap();
        drop(f);
        let script = if label == "gpt" {
            "label: gpt\nstart=2048, size=4096, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\n\
             start=8192, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n"
        } else {
            "label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=100000, type=5\n\
             start=10240, size=81920, type=83\n"
        };
        let mut child = Command::new("sfdisk")
            .args(["--no-reread", "--no-tell-kernel", "-q"])
            .arg(&disk_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let json: serde_json::Value =
            serde_json::from_str(&run(Command::new("sfdisk").arg("--json").arg(&disk_path)))
                .unwrap();
        let expected: Vec<(u64, u64)> = json["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !matches!(p["type"].as_str(), Some("5" | "f" | "85")))
            .map(|p| {
                (
                    p["start"].as_u64().unwrap() * 512,
                    p["size"].as_u64().unwrap() * 512,
                )
            })
            .collect();
        let root_start = expected.last().unwrap().0;
        let f = fs::OpenOptions::new().write(true).open(&disk_path).unwrap();
        place(&f, &root_img, root_start);
        drop(f);

        let disk = FileDisk::open(&disk_path);
        let parts = read_partitions(&disk).unwrap();
        let got: Vec<(u64, u64)> = parts
            .iter()
            .map(|p| (p.start_bytes, p.size_bytes))
            .collect();
        assert_eq!(got, expected, "{label}");
        let g = read_guest(&disk).unwrap();
        assert_eq!(g.partition, if label == "gpt" { 2 } else { 5 });
        assert_debian(&g);
    }
}

#[test]
fn mbr_disk_with_logical_root() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let boot = w.tree("boot", |r| write(r, "vmlinuz", b"not a kernel"));
    let root_img = w.path("root.raw");
    let boot_img = w.path("boot.raw");
    mkfs(&root, &root_img, "40M", &[]);
    mkfs(&boot, &boot_img, "4M", &["-t", "ext2"]);
    let disk_path = w.path("mbr.raw");
    let f = File::create(&disk_path).unwrap();
    f.set_len(64 * MIB).unwrap();
    let s = |bytes: u64| bytes / 512;
    let mut mbr = [0u8; 512];
    mbr_entry(&mut mbr, 0, 0x80, 0x83, s(MIB), s(4 * MIB));
    mbr_entry(&mut mbr, 1, 0, 0x05, s(6 * MIB), s(58 * MIB));
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    f.write_all_at(&mbr, 0).unwrap();
    // Extended: logical 5 (swap-like, zeros) then logical 6 (root).
    let ext = s(6 * MIB);
    let mut ebr1 = [0u8; 512];
    mbr_entry(&mut ebr1, 0, 0, 0x82, s(MIB), s(4 * MIB));
    mbr_entry(&mut ebr1, 1, 0, 0x05, s(11 * MIB), s(42 * MIB));
    ebr1[510] = 0x55;
    ebr1[511] = 0xAA;
    f.write_all_at(&ebr1, ext * 512).unwrap();
    let mut ebr2 = [0u8; 512];
    mbr_entry(&mut ebr2, 0, 0, 0x83, s(MIB), s(41 * MIB));
    ebr2[510] = 0x55;
    ebr2[511] = 0xAA;
    f.write_all_at(&ebr2, (ext + s(11 * MIB)) * 512).unwrap();
    place(&f, &boot_img, MIB);
    place(&f, &root_img, 18 * MIB);
    drop(f);

    let disk = FileDisk::open(&disk_path);
    let parts = read_partitions(&disk).unwrap();
    let summary: Vec<(u32, u64, u64)> = parts
        .iter()
        .map(|p| (p.index, p.start_bytes, p.size_bytes))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, MIB, 4 * MIB),
            (5, 7 * MIB, 4 * MIB),
            (6, 18 * MIB, 41 * MIB)
        ]
    );
    assert!(matches!(
        parts[0].kind,
        PartitionKind::Mbr {
            type_byte: 0x83,
            bootable: true,
            logical: false
        }
    ));
    let g = read_guest(&disk).unwrap();
    assert_eq!(g.partition, 6);
    assert_debian(&g);

    // An EBR chain that loops is an error, not a hang.
    let mut bytes = fs::read(&disk_path).unwrap();
    let at = ((ext + s(11 * MIB)) * 512) as usize;
    mbr_entry(
        (&mut bytes[at..at + 512]).try_into().unwrap(),
        1,
        0,
        0x05,
        0,
        s(MIB),
    );
    let err = read_partitions(&VecDisk(bytes)).unwrap_err();
    assert!(err.to_string().contains("loops"), "{err}");
}

#[test]
fn no_root_filesystem_is_a_clear_error() {
    let w = Work::new();
    let data = w.tree("data", |r| write(r, "home/user/notes.txt", b"hello\n"));
    let img = w.path("data.raw");
    mkfs(&data, &img, "16M", &[]);
    let disk_path = w.path("gpt.raw");
    gpt_disk(
        &disk_path,
        24 * MIB,
        &[
            (ESP, "EFI System", MIB, 4 * MIB, None),
            (LINUX_FS, "data", 5 * MIB, 16 * MIB, Some(&img)),
        ],
    );
    let err = read_guest(&FileDisk::open(&disk_path)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no root filesystem found"), "{msg}");
    assert!(msg.contains("partition 1 (GPT type C12A7328"), "{msg}");
    assert!(msg.contains("partition 2"), "{msg}");

    let err = read_guest(&VecDisk(vec![0; 4 << 20])).unwrap_err();
    assert!(
        err.to_string()
            .contains("no partition table and no ext filesystem"),
        "{err}"
    );
}

#[test]
fn debugfs_edits_are_seen() {
    let w = Work::new();
    let root = w.tree("debian", |r| {
        debian_tree(r);
        alpine_tree(r);
    });
    let img = w.path("edit.raw");
    mkfs(&root, &img, "64M", &[]);
    let new_status = DEBIAN_STATUS.replace("Version: ", "Version: 99:");
    let new_path = w.path("new-status");
    fs::write(&new_path, &new_status).unwrap();
    debugfs_w(
        &img,
        &format!(
            "rm /var/lib/dpkg/status\nwrite {} /var/lib/dpkg/status\nrm /lib/apk/db/installed\n",
            new_path.display()
        ),
    );
    let g = read_guest(&FileDisk::open(&img)).unwrap();
    assert_eq!(g.dpkg_status.as_deref(), Some(new_status.as_str()));
    assert_eq!(g.apk_installed, None);
    assert_eq!(
        debugfs_cat(&img, "/var/lib/dpkg/status"),
        new_status.as_bytes()
    );
}

#[test]
fn sparse_file_over_the_limit_is_refused_by_name() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let f = File::create(root.join("var/lib/dpkg/status")).unwrap();
    f.set_len(80 * MIB).unwrap();
    f.write_all_at(b"Package: x\n", 70 * MIB).unwrap();
    drop(f);
    let img = w.path("sparse.raw");
    mkfs(&root, &img, "32M", &[]);
    let err = read_guest(&FileDisk::open(&img)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/var/lib/dpkg/status") && msg.contains("limit"),
        "{msg}"
    );
    // Below the limit, holes read as zeros.
    let fs_disk = FileDisk::open(&img);
    let fs = Ext4::open(&fs_disk).unwrap();
    let data = fs
        .read_file("/var/lib/dpkg/status", 100 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(data.len() as u64, 80 * MIB);
    assert!(data[..(70 * MIB) as usize].iter().all(|&b| b == 0));
    assert_eq!(
        &data[(70 * MIB) as usize..(70 * MIB) as usize + 11],
        b"Package: x\n"
    );
}

#[test]
fn journal_needing_recovery_is_replayed_in_memory() {
    let w = Work::new();
    let root = w.tree("debian", debian_tree);
    let img = w.path("journal.raw");
    for checksums in ["", "-c"] {
        mkfs(&root, &img, "32M", &[]);
        let stat = debugfs_r(&img, "stat /var/lib/dpkg/status");
        let extents = stat
            .lines()
            .skip_while(|l| !l.starts_with("EXTENTS:"))
            .nth(1)
            .unwrap();
        // "(0-155):2331-2486": the first data block.
        let first: u64 = extents
            .split(':')
            .nth(1)
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let bs = Ext4::open(&FileDisk::open(&img)).unwrap().block_size() as usize;
        let mut block = vec![b'#'; bs];
        block[..16].copy_from_slice(b"Package: journal");
        let blk = w.path("blk");
        fs::write(&blk, &block).unwrap();
        // One committed transaction rewriting the first block of the
        // status file, left unreplayed.
        debugfs_w(
            &img,
            &format!("jo {checksums}\njw -b {first} {}\njc\n", blk.display()),
        );
        let header = run(Command::new("dumpe2fs").arg("-h").arg(&img));
        assert!(header.contains("needs_recovery"), "{header}");

        let disk = FileDisk::open(&img);
        let fs = Ext4::open(&disk).unwrap();
        assert_eq!(fs.journal_replayed_blocks(), 1);
        let got = fs
            .read_file("/var/lib/dpkg/status", 64 * MIB)
            .unwrap()
            .unwrap();
        let mut expected = DEBIAN_STATUS.as_bytes().to_vec();
        expected[..bs].copy_from_slice(&block);
        assert!(got == expected, "journal copy not used ({checksums})");

        // e2fsck replays the same journal: the result matches ours.
        e2fsck(&img, "-fy");
        let after = debugfs_cat(&img, "/var/lib/dpkg/status");
        assert!(
            after == expected,
            "e2fsck replayed differently ({checksums})"
        );

        // A later transaction revoking the block cancels the write.
        mkfs(&root, &img, "32M", &[]);
        debugfs_w(
            &img,
            &format!(
                "jo {checksums}\njw -b {first} {}\njc\njo {checksums}\njw -r {first}\njc\n",
                blk.display()
            ),
        );
        let disk = FileDisk::open(&img);
        let fs = Ext4::open(&disk).unwrap();
        assert_eq!(fs.journal_replayed_blocks(), 0);
        let got = fs
            .read_file("/var/lib/dpkg/status", 64 * MIB)
            .unwrap()
            .unwrap();
        assert!(
            got == DEBIAN_STATUS.as_bytes(),
            "revoked block was replayed ({checksums})"
        );
    }
}

#[test]
fn unknown_incompat_feature_is_refused() {
    let w = Work::new();
    let root = w.tree("alpine", alpine_tree);
    let img = w.path("feat.raw");
    mkfs(&root, &img, "16M", &["-O", "^metadata_csum"]);
    let mut bytes = fs::read(&img).unwrap();
    bytes[1024 + 0x60 + 3] |= 0x40; // incompat bit 30
    let err = Ext4::open(&VecDisk(bytes.clone())).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown incompatible features 0x40000000"),
        "{err}"
    );
    let err = read_guest(&VecDisk(bytes)).unwrap_err();
    assert!(
        err.to_string().contains("unknown incompatible features"),
        "{err}"
    );
}

/// xorshift, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Records the ranges read through it.
struct Recording<'a> {
    inner: &'a dyn ReadAt,
    reads: std::sync::Mutex<Vec<(u64, usize)>>,
}

impl ReadAt for Recording<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reads.lock().unwrap().push((offset, buf.len()));
        self.inner.read_at(offset, buf)
    }
}

#[test]
fn corrupt_metadata_never_panics() {
    let w = Work::new();
    let root = w.tree("debian", |r| {
        debian_tree(r);
        alpine_tree(r);
        symlink(
            r,
            "etc/long-link",
            "../usr/lib/././././././././././././././././././././././././os-release",
        );
        for i in 0..120 {
            write(r, &format!("var/lib/dpkg/status.d/p{i}"), b"Package: p\n");
        }
    });
    let img = w.path("small.raw");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut errors) = (0usize, 0usize);
    let variants: &[&[&str]] = &[
        &["-O", "^metadata_csum"],
        &["-t", "ext2", "-b", "1024"],
        &["-O", "inline_data,^metadata_csum", "-I", "512"],
        &[],
    ];
    for opts in variants {
        mkfs(&root, &img, "8M", opts);
        let mut disk = VecDisk(fs::read(&img).unwrap());
        // What a clean read touches, metadata first: corrupt exactly that.
        let recording = Recording {
            inner: &disk,
            reads: Default::default(),
        };
        read_guest(&recording).unwrap();
        let reads: Vec<(u64, usize)> = recording
            .reads
            .into_inner()
            .unwrap()
            .into_iter()
            .filter(|&(_, len)| len <= 4096)
            .collect();
        for _ in 0..120 {
            let flips: Vec<(usize, u8)> = (0..1 + rng.next() % 4)
                .map(|_| {
                    let (offset, len) = reads[(rng.next() % reads.len() as u64) as usize];
                    let at = offset as usize + (rng.next() % len as u64) as usize;
                    let value = match rng.next() % 4 {
                        0 => 0xFF,
                        1 => 0x80,
                        _ => 1u8 << (rng.next() % 8),
                    };
                    (at, value)
                })
                .collect();
            for &(at, value) in &flips {
                disk.0[at] ^= value;
            }
            match read_guest(&disk) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    if std::env::var_os("SHOW_ERRORS").is_some() {
                        eprintln!("{e}");
                    }
                    errors += 1;
                }
            }
            for &(at, value) in &flips {
                disk.0[at] ^= value;
            }
        }
        // Truncated images.
        for cut in [1024usize, 2000, 4096, 65536, 1 << 20, 5 << 20] {
            let short = VecDisk(disk.0[..cut].to_vec());
            assert!(read_guest(&short).is_err());
        }
    }
    eprintln!("corruption outcomes: {ok} ok, {errors} errors");
    assert!(errors > 50, "{errors} errors of {}", ok + errors);
}
