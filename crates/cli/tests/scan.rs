//! `patchline scan` end to end on real disk images made on the fly: an ext4
//! root with a real dpkg status, a qcow2 base, overlays whose guest dpkg
//! status differs (changed with `debugfs -w`, only the changed clusters
//! written into the overlay with `qemu-io`), then a real advisory: the
//! overlay that introduced the vulnerable version is `introduced_by`, the
//! one that upgraded it is not affected.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CLUSTER: usize = 65536;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn patchline(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchline"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Ubuntu 18.04 status with bzip2's binaries at `version`.
fn status_with_bzip2(version: &str) -> String {
    let text = std::fs::read_to_string(testdata("inventories/ubuntu-18.04.dpkg-status")).unwrap();
    text.split("\n\n")
        .map(|stanza| {
            if stanza.contains("\nSource: bzip2") || stanza.starts_with("Package: bzip2\n") {
                stanza
                    .lines()
                    .map(|l| {
                        if l.starts_with("Version: ") {
                            format!("Version: {version}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                stanza.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Replaces /var/lib/dpkg/status inside a raw ext4 image.
fn debugfs_write(image: &Path, content: &str, scratch: &Path) {
    let file = scratch.join("status.new");
    std::fs::write(&file, content).unwrap();
    run(
        "debugfs",
        &[
            "-w",
            "-R",
            "rm /var/lib/dpkg/status",
            image.to_str().unwrap(),
        ],
    );
    run(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("write {} /var/lib/dpkg/status", file.display()),
            image.to_str().unwrap(),
        ],
    );
}

/// Writes into `overlay` only the clusters where `new` differs from `old`.
fn write_diff(old: &Path, new: &Path, overlay: &Path, scratch: &Path) -> usize {
    let a = std::fs::read(old).unwrap();
    let b = std::fs::read(new).unwrap();
    assert_eq!(a.len(), b.len());
    let mut args: Vec<String> = vec!["-f".into(), "qcow2".into()];
    let mut n = 0;
    for (i, (x, y)) in a.chunks(CLUSTER).zip(b.chunks(CLUSTER)).enumerate() {
        if x != y {
            let f = scratch.join(format!("cluster-{i}"));
            std::fs::write(&f, y).unwrap();
            args.push("-c".into());
            args.push(format!(
                "write -s {} {} {}",
                f.display(),
                i * CLUSTER,
                y.len()
            ));
            n += 1;
        }
    }
    args.push(overlay.to_str().unwrap().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &refs);
    n
}

#[test]
fn scan_finds_lineage_and_where_a_vulnerable_version_came_in() {
    if !patchline_testkit::require_tools(
        "scan_finds_lineage_and_where_a_vulnerable_version_came_in",
        &["qemu-img", "qemu-io", "mkfs.ext4", "debugfs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images");
    std::fs::create_dir_all(images.join("web")).unwrap();
    // A root filesystem: os-release and a dpkg status with bzip2 fixed.
    let root = d.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"Ubuntu\"\nVERSION=\"18.04.6 LTS (Bionic Beaver)\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"18.04\"\nVERSION_CODENAME=bionic\n",
    )
    .unwrap();
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        status_with_bzip2("1.0.6-8.1ubuntu0.1"),
    )
    .unwrap();
    let base_raw = d.join("base.raw");
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-d",
            root.to_str().unwrap(),
            base_raw.to_str().unwrap(),
            "64M",
        ],
    );
    let base = images.join("base.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            base_raw.to_str().unwrap(),
            base.to_str().unwrap(),
        ],
    );
    // v1: bzip2 downgraded to the vulnerable 1.0.6-8.1 (the overlay
    // introduces it); v2 on v1 upgrades it again; v3 on v1 changes nothing.
    let v1_raw = d.join("v1.raw");
    std::fs::copy(&base_raw, &v1_raw).unwrap();
    debugfs_write(&v1_raw, &status_with_bzip2("1.0.6-8.1"), d);
    let v1 = images.join("web/v1.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "../base.qcow2",
            "-F",
            "qcow2",
            v1.to_str().unwrap(),
        ],
    );
    assert!(write_diff(&base_raw, &v1_raw, &v1, d) > 0);
    let v2_raw = d.join("v2.raw");
    std::fs::copy(&v1_raw, &v2_raw).unwrap();
    debugfs_write(&v2_raw, &status_with_bzip2("1.0.6-8.1ubuntu0.1"), d);
    let v2 = images.join("web/v2.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "v1.qcow2",
            "-F",
            "qcow2",
            v2.to_str().unwrap(),
        ],
    );
    write_diff(&v1_raw, &v2_raw, &v2, d);
    let v3 = images.join("web/v3.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "v1.qcow2",
            "-F",
            "qcow2",
            v3.to_str().unwrap(),
        ],
    );
    // A broken file in the same folder: reported, the rest goes on.
    std::fs::copy(testdata("qcow2/invalid.qcow2"), images.join("broken.qcow2")).unwrap();

    // The lineage matches qemu-img's view of the chain.
    let info = Command::new("qemu-img")
        .args([
            "info",
            "--backing-chain",
            "--output=json",
            v2.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let chain: Value = serde_json::from_slice(&info.stdout).unwrap();
    let names: Vec<String> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            Path::new(i["filename"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["v2.qcow2", "v1.qcow2", "base.qcow2"]);

    let data = d.join("data");
    let (ok, out, err) = patchline(
        &data,
        &["scan", images.to_str().unwrap(), "--tenant", "ops"],
    );
    assert!(
        !ok,
        "the broken image makes the scan exit non-zero: {out}{err}"
    );
    assert!(err.contains("broken.qcow2"), "{err}");
    assert!(out.contains("4 images: 4 created"), "{out}");
    let (_, show, _) = patchline(&data, &["show", "web/v2.qcow2", "--json"]);
    let v2_doc: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v2_doc["parent"], "web/v1.qcow2");
    assert_eq!(v2_doc["relation"], "derived_from");
    assert_eq!(v2_doc["tenant"], "ops");
    let (_, show, _) = patchline(&data, &["show", "web/v1.qcow2", "--json"]);
    let v1_doc: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v1_doc["parent"], "base.qcow2");
    let comps: Vec<&str> = v1_doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        comps.len(),
        90,
        "the guest's dpkg status, read through the chain"
    );
    assert!(
        comps
            .iter()
            .any(|c| c.starts_with("pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?")),
        "{comps:?}"
    );
    assert!(
        comps.iter().all(|c| c.contains("distro=ubuntu-18.04")),
        "distro from os-release"
    );

    // A real advisory: v1 introduced the vulnerable bzip2, v3 inherits it,
    // v2 upgraded it, the base never had it.
    let (ok, _, err) = patchline(
        &data,
        &[
            "import",
            "advisories",
            testdata("advisories/ubuntu/USN-4038-1.json")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let (_, json, _) = patchline(&data, &["affected", "USN-4038-1", "--json"]);
    let doc: Value = serde_json::from_str(&json).unwrap();
    let affected: Vec<&str> = doc["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["artifact"].as_str().unwrap())
        .collect();
    assert_eq!(affected, ["web/v1.qcow2", "web/v3.qcow2"]);
    for a in doc["affected"].as_array().unwrap() {
        for c in a["components"].as_array().unwrap() {
            assert_eq!(c["introduced_by"], "web/v1.qcow2");
        }
    }

    // Rescanning the same folder changes nothing.
    let (_, out, _) = patchline(
        &data,
        &["scan", images.to_str().unwrap(), "--tenant", "ops"],
    );
    assert!(out.contains("0 created, 0 updated, 4 unchanged"), "{out}");
    // The scan reads metadata and the files it needs, not the disks: here
    // the guests are 64 MiB each and four are read for about 1 MiB.
    let line = out.lines().last().unwrap();
    let read: u64 = line
        .split("read ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(read < 4 << 20, "{line}");
}
