//! Regression tests of the CLI contract for the hardening issue (items 7,
//! 8, 14, 16, 17, 18, 19, 21): data safety, read commands beside a running
//! server, answers to typos and the exit-code table of the README. Each
//! runs the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::ServeProcess;
use serde_json::{Value, json};

const ADMIN: &str = "cli-hardening-admin";

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn patchline(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchline"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `patchline serve` on a free port, with stderr kept in a file.
struct Serve {
    process: ServeProcess,
    addr: String,
}

impl Serve {
    fn start(data: &Path, env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_patchline"));
        cmd.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("PATCHLINE_ADMIN_TOKEN", ADMIN)
            .envs(env.iter().copied());
        let process = ServeProcess::start(cmd, &data.with_extension("stderr.log"));
        Serve {
            addr: process.addr.clone(),
            process,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).unwrap().parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn stderr(&self) -> String {
        self.process.log_text()
    }

    fn stop(self) {
        self.process.stop();
    }
}

fn artifacts_jsonl(dir: &Path) -> PathBuf {
    // canonical's public base is built on its private secret-img (which
    // brought the vulnerable bzip2 in); globex and acme derive from base.
    let lines = [
        json!({"id": "secret-img", "kind": "image", "tenant": "canonical",
               "components": ["pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04"]}),
        json!({"id": "base", "kind": "image", "tenant": "canonical", "visibility": "public", "parent": "secret-img"}),
        json!({"id": "globex-img", "kind": "image", "tenant": "globex", "parent": "base"}),
        json!({"id": "globex-vm", "kind": "instance", "tenant": "globex", "parent": "globex-img"}),
        json!({"id": "acme-vm", "kind": "instance", "tenant": "acme", "parent": "base"}),
    ];
    let p = dir.join("cloud.jsonl");
    std::fs::write(
        &p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    p
}

/// A catalog with artifacts of three tenants and USN-4038-1 (which affects
/// all five).
fn catalog(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let out = patchline(
        &data,
        &[
            "import",
            "artifacts",
            artifacts_jsonl(dir).to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let usn = testdata("advisories/ubuntu/USN-4038-1.json");
    let out = patchline(&data, &["import", "advisories", usn.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    data
}

#[test]
fn item14_demo_never_touches_a_served_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    let server = Serve::start(&data, &[]);
    let out = patchline(&data, &["demo"]);
    assert_eq!(code(&out), 5, "{}", text(&out));
    assert!(
        data.join("patchline.db").exists(),
        "the demo deleted the served database"
    );
    let out = patchline(&data, &["demo", "--keep"]);
    assert_eq!(code(&out), 5, "{}", text(&out));
    assert!(
        !data.join("DEMO").exists(),
        "the demo marked a catalog it did not make"
    );
    server.stop();
    let server = Serve::start(&data, &[]);
    let (s, v) = server.call("GET", "/healthz", None);
    assert_eq!((s, v["artifacts"].as_u64()), (200, Some(5)), "{v}");
}

#[test]
fn item14_demo_keep_never_marks_a_foreign_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    let out = patchline(&data, &["demo", "--keep"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        !data.join("DEMO").exists(),
        "the demo marked a catalog it did not make"
    );
    let out = patchline(&data, &["demo"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let out = patchline(&data, &["show", "acme-vm"]);
    assert_eq!(code(&out), 0, "the catalog is intact: {}", text(&out));
    // A directory the demo made is its own to redo...
    let fresh = dir.path().join("demo");
    assert_eq!(code(&patchline(&fresh, &["demo"])), 0);
    assert_eq!(code(&patchline(&fresh, &["demo"])), 0);
    // ... until someone else writes to it (found by a new user: a rerun
    // deleted the artifacts imported after the demo).
    let mine = dir.path().join("mine.jsonl");
    std::fs::write(
        &mine,
        "{\"id\":\"my-prod-vm\",\"kind\":\"instance\",\"tenant\":\"me\",\"parent\":\"ubuntu-18.04\"}\n",
    )
    .unwrap();
    assert_eq!(
        code(&patchline(
            &fresh,
            &["import", "artifacts", mine.to_str().unwrap()]
        )),
        0
    );
    let out = patchline(&fresh, &["demo"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        text(&out).contains("changed since the demo made it"),
        "{}",
        text(&out)
    );
    assert_eq!(
        code(&patchline(&fresh, &["show", "my-prod-vm"])),
        0,
        "the import survived"
    );
}

#[test]
fn item16_reads_work_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    let server = Serve::start(&data, &[]);
    for args in [
        &["affected", "USN-4038-1", "--json"][..],
        &["affected", "USN-4038-1"],
        &["show", "acme-vm"],
        &["lineage", "base"],
        &["report"],
    ] {
        let out = patchline(&data, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    }
    let out = patchline(&data, &["affected", "USN-4038-1", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["affected"].as_array().unwrap().len(), 5);
    // Writes still wait for the server to stop.
    let out = patchline(&data, &["remove", "acme-vm"]);
    assert_eq!(code(&out), 5, "{}", text(&out));
    // The server's reads exist too.
    let (s, v) = server.call("GET", "/v1/artifacts?kind=instance", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["artifacts"].as_array().unwrap().len(), 2);
    let (s, v) = server.call("GET", "/v1/artifacts/base/lineage", None);
    assert_eq!(
        (s, v["descendants"]["instance"].as_u64()),
        (200, Some(2)),
        "{v}"
    );
    let (s, v) = server.call("GET", "/v1/report", None);
    assert_eq!(
        (s, v["records"][0]["affected"].as_u64()),
        (200, Some(5)),
        "{v}"
    );
    let (s, v) = server.call("GET", "/v1/advisories", None);
    assert_eq!(
        (s, v["records"][0]["id"].as_str()),
        (200, Some("USN-4038-1")),
        "{v}"
    );
    server.stop();
}

#[test]
fn item17_typos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    let typo = dir.path().join("dta");
    for args in [
        &["affected", "USN-4038-1"][..],
        &["report"],
        &["show", "base"],
        &["lineage", "base"],
    ] {
        let out = patchline(&typo, args);
        assert_eq!(code(&out), 6, "{args:?}: {}", text(&out));
        assert!(text(&out).contains("no catalog"), "{}", text(&out));
    }
    // Changes to what must exist do not create a catalog either.
    for args in [
        &["remove", "web-vm-3"][..],
        &["fail", "base", "--id", "FAIL-1", "--summary", "x"],
    ] {
        let out = patchline(&typo, args);
        assert_eq!(code(&out), 6, "{args:?}: {}", text(&out));
    }
    assert!(!typo.exists(), "a read created a data directory");
    let out = patchline(&data, &["affected", "USN-4038-1", "--tenant", "nosuch"]);
    assert_eq!(code(&out), 4, "{}", text(&out));
    assert!(text(&out).contains("unknown tenant nosuch"));
}

#[test]
fn item18_readable_affected_masks_other_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    // acme's vm inherits the package from canonical's private image: acme
    // must read neither that id nor other tenants' names.
    let out = patchline(&data, &["affected", "USN-4038-1", "--tenant", "acme"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let shown = text(&out);
    assert!(
        !shown.contains("secret-img") && !shown.contains("globex"),
        "{shown}"
    );
    assert!(shown.contains("acme-vm"), "{shown}");
    let out = patchline(
        &data,
        &["affected", "USN-4038-1", "--tenant", "acme", "--json"],
    );
    assert!(!text(&out).contains("secret-img"));
}

#[test]
fn item19_exit_codes_follow_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = catalog(dir.path());
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"id\": \"X\"}").unwrap();
    let good = testdata("advisories/ubuntu/USN-3658-1.json");
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec!["remove".into(), "nosuch".into()], 4),
        (vec!["remove".into()], 2),
        (
            vec![
                "scan".into(),
                ".".into(),
                "--visibility".into(),
                "bogus".into(),
            ],
            2,
        ),
        (
            vec![
                "import".into(),
                "inventory".into(),
                "base".into(),
                bad.display().to_string(),
                "--format".into(),
                "bogus".into(),
            ],
            2,
        ),
        (vec!["affected".into(), "NOPE-1".into()], 4),
        (
            vec!["serve".into(), "--listen".into(), "nonsense".into()],
            2,
        ),
        (
            vec![
                "import".into(),
                "advisories".into(),
                bad.display().to_string(),
            ],
            3,
        ),
        (
            vec![
                "import".into(),
                "advisories".into(),
                good.display().to_string(),
                bad.display().to_string(),
            ],
            7,
        ),
    ];
    for (args, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = patchline(&data, &refs);
        assert_eq!(code(&out), want, "{args:?}: {}", text(&out));
    }
    // The partial import did import the good file.
    let out = patchline(&data, &["affected", "USN-3658-1", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // And the README lists every code.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    for c in 0..=7 {
        assert!(
            readme.contains(&format!("| {c} |")),
            "README lacks exit code {c}"
        );
    }
}

#[test]
fn item21_scan_ids_are_stable_and_non_disks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A raw disk with an MBR signature, and a PNG.
    let mut disk = vec![0u8; 1 << 20];
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(d.join("base.img"), &disk).unwrap();
    std::fs::write(d.join("picture.png"), b"\x89PNG\r\n\x1a\n0000IHDR").unwrap();
    std::fs::write(d.join("fake.img"), b"\x89PNG\r\n\x1a\n0000IHDR").unwrap();
    let data = d.join("data");
    let scan = |arg: &str| {
        Command::new(env!("CARGO_BIN_EXE_patchline"))
            .current_dir(d)
            .arg("--data-dir")
            .arg(&data)
            .args(["scan", arg])
            .output()
            .unwrap()
    };
    let first = scan("base.img");
    assert_eq!(code(&first), 0, "{}", text(&first));
    let second = scan("./base.img");
    assert_eq!(code(&second), 0, "{}", text(&second));
    assert!(
        text(&second).contains("unchanged"),
        "a second id: {}",
        text(&second)
    );
    let lineage = patchline(&data, &["show", "base.img", "--json"]);
    assert_eq!(code(&lineage), 0, "{}", text(&lineage));
    // Two files that would share an id are never merged.
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    std::fs::write(d.join("a/disk.img"), &disk).unwrap();
    let mut other = disk.clone();
    other[0] = 1;
    std::fs::write(d.join("b/disk.img"), &other).unwrap();
    let both = Command::new(env!("CARGO_BIN_EXE_patchline"))
        .current_dir(d)
        .arg("--data-dir")
        .arg(&data)
        .args(["scan", "a/disk.img", "b/disk.img"])
        .output()
        .unwrap();
    assert_eq!(code(&both), 7, "{}", text(&both));
    assert!(
        text(&both).contains("would be artifact disk.img"),
        "{}",
        text(&both)
    );
    for not_a_disk in ["picture.png", "fake.img"] {
        let out = scan(not_a_disk);
        assert_eq!(code(&out), 3, "{not_a_disk}: {}", text(&out));
        assert!(text(&out).contains("not a disk image"), "{}", text(&out));
    }
}

#[test]
fn item08_the_escalation_secret_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Serve::start(
        &data,
        &[
            ("PATCHLINE_OPERATOR_WEBHOOK", "http://127.0.0.1:9/escalate"),
            ("PATCHLINE_WEBHOOK_ALLOW", "127.0.0.0/8"),
        ],
    );
    let (s, v) = server.call("GET", "/v1/operator/escalation", None);
    assert_eq!(s, 200, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let log = server.stderr();
    server.stop();
    assert!(!log.contains("whsec_") && !log.contains(&secret), "{log}");
}

#[test]
fn item07_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let usn = testdata("advisories/ubuntu/USN-4038-1.json");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" --data-dir \"$1\" import advisories \"$2\"")
        .arg(env!("CARGO_BIN_EXE_patchline"))
        .arg(&data)
        .arg(&usn)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // The demo's own files too, and a directory left open by someone is
    // closed.
    let demo = dir.path().join("demo");
    std::fs::create_dir(&demo).unwrap();
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" --data-dir \"$1\" demo")
        .arg(env!("CARGO_BIN_EXE_patchline"))
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(mode(&demo), 0o700);
    for entry in std::fs::read_dir(&demo).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}
