//! `patchline-bench --scan`: a chain of five qcow2 overlays over a 2 GiB
//! base image holding a real Debian root filesystem (this machine's own
//! `/usr/bin`, `/usr/sbin`, `/usr/share`, `/etc` and dpkg database, copied
//! into an ext4 made with `mkfs.ext4 -d`); each overlay changes the guest's
//! dpkg status (with `debugfs -w`) and holds only the changed clusters
//! (written with `qemu-io`). The scan is timed, its bytes read counted, and
//! `qemu-img info --backing-chain` is timed on the same files in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use patchline_core::{TenantId, Visibility};

const CLUSTER: usize = 65536;

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Writes into `overlay` the clusters where `new` differs from `old`.
fn write_diff(old: &[u8], new: &[u8], overlay: &Path, scratch: &Path) -> anyhow::Result<usize> {
    let mut args: Vec<String> = vec!["-f".into(), "qcow2".into()];
    let mut n = 0;
    for (i, (x, y)) in old.chunks(CLUSTER).zip(new.chunks(CLUSTER)).enumerate() {
        if x != y {
            let f = scratch.join(format!("cluster-{i}"));
            std::fs::write(&f, y)?;
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
    args.push(overlay.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &refs)?;
    Ok(n)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run_scan_bench(dir: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    for tool in ["qemu-img", "qemu-io", "mkfs.ext4", "debugfs"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!("{tool} is not installed: the scan benchmark needs qemu-utils and e2fsprogs");
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/lib"))?;
    std::fs::create_dir_all(root.join("var/lib"))?;
    eprintln!("copying a Debian root filesystem");
    for (src, dst) in [
        ("/usr/bin", "usr/"),
        ("/usr/sbin", "usr/"),
        ("/usr/share", "usr/"),
        ("/usr/lib/os-release", "usr/lib/"),
        ("/etc", ""),
        ("/var/lib/dpkg", "var/lib/"),
    ] {
        run("cp", &["-a", src, &root.join(dst).display().to_string()])?;
    }
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let raw = dir.join("disk.raw");
    eprintln!("mkfs.ext4 -d (2 GiB)");
    let t = Instant::now();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-d",
            &root.display().to_string(),
            &raw.display().to_string(),
            "2G",
        ],
    )?;
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            &raw.display().to_string(),
            &images.join("base.qcow2").display().to_string(),
        ],
    )?;
    eprintln!("  base image in {:.0} s", t.elapsed().as_secs_f64());
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status"))?;
    let mut prev = std::fs::read(&raw)?;
    let mut parent = "base.qcow2".to_string();
    for i in 1..=5 {
        // Each overlay bumps one more package's version in the guest.
        let mut text = status.clone();
        for k in 0..i {
            let needle = "\nVersion: ";
            if let Some(pos) = text
                .match_indices(needle)
                .nth(k * 37)
                .map(|(p, _)| p + needle.len())
            {
                text.insert_str(pos, &format!("{i}:"));
            }
        }
        let file = dir.join("status.new");
        std::fs::write(&file, text)?;
        run(
            "debugfs",
            &[
                "-w",
                "-R",
                "rm /var/lib/dpkg/status",
                &raw.display().to_string(),
            ],
        )?;
        run(
            "debugfs",
            &[
                "-w",
                "-R",
                &format!("write {} /var/lib/dpkg/status", file.display()),
                &raw.display().to_string(),
            ],
        )?;
        let name = format!("v{i}.qcow2");
        let overlay = images.join(&name);
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                &parent,
                "-F",
                "qcow2",
                &overlay.display().to_string(),
            ],
        )?;
        let next = std::fs::read(&raw)?;
        let n = write_diff(&prev, &next, &overlay, dir)?;
        eprintln!("  {name}: {n} clusters changed");
        prev = next;
        parent = name;
    }
    drop(prev);
    std::fs::remove_file(&raw)?;
    std::fs::remove_dir_all(&root)?;
    let top = images.join("v5.qcow2");

    // Scan, five times; the page cache is warm for both measurements.
    let options = patchline_scan::scanner::ScanOptions {
        tenant: TenantId::new("bench")?,
        visibility: Visibility::Private,
        roots: Vec::new(),
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let outcome = patchline_scan::scanner::scan(std::slice::from_ref(&images), &options);
        times.push(t.elapsed());
        last = Some(outcome);
    }
    let outcome = last.context("scanned")?;
    if !outcome.errors.is_empty() || outcome.images.len() != 6 {
        bail!(
            "scan: {} images, errors {:?}",
            outcome.images.len(),
            outcome.errors
        );
    }
    let packages = outcome
        .images
        .iter()
        .map(|i| i.spec.components.as_ref().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let on_disk: u64 = images
        .read_dir()?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let read = outcome.bytes_read();
    let d_scan = median(times);
    let mut qemu_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        run(
            "qemu-img",
            &[
                "info",
                "--backing-chain",
                "--output=json",
                &top.display().to_string(),
            ],
        )?;
        qemu_times.push(t.elapsed());
    }
    let d_qemu = median(qemu_times);
    Ok(vec![
        (
            "scan of a 5-overlay chain over a 2 GiB Debian base (target ≤ 1 s, ≤ 2 % read)".into(),
            format!(
                "{:.0} ms, {:.3} % of the bytes on disk read",
                d_scan.as_secs_f64() * 1e3,
                read as f64 * 100.0 / on_disk.max(1) as f64
            ),
            format!(
                "6 images registered, {packages} packages each read through the chain; {read} of {on_disk} bytes; median of 5"
            ),
        ),
        (
            "qemu-img info --backing-chain on the same files".into(),
            format!("{:.0} ms", d_qemu.as_secs_f64() * 1e3),
            format!(
                "whole process, median of 5; the scan (which also reads every guest's package database) takes {:.1}× its time",
                d_scan.as_secs_f64() / d_qemu.as_secs_f64()
            ),
        ),
    ])
}
