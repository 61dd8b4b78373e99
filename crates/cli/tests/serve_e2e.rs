//! End-to-end tests of `patchline serve`: the real binary over real HTTP,
//! its webhooks received by `receiver.py`, which checks every signature with
//! an independent Standard Webhooks implementation (PyPI `standardwebhooks`).
//!
//! They need `PATCHLINE_TEST_PYTHON` to name a Python that can import
//! `standardwebhooks` (`.ci/run` sets it up); without it each test fails in
//! CI and, elsewhere, says that it did not run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ServeProcess;
use patchline_testkit::postgres::TestDb;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_patchline");
const ADMIN: &str = "e2e-admin-token";
const USN: &str = "USN-4038-1";
/// Short retries: a receiver that is down for a second or two is caught up.
const FAST_RETRY: &str = "0,200ms,500ms,1s,1s,1s,1s,1s,1s,1s";

/// Straight to stderr: libtest captures `println!` of passing tests.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// The Python of `PATCHLINE_TEST_PYTHON` when it can import
/// `standardwebhooks`; otherwise the test did not run (a failure in CI).
fn python(test: &str) -> Option<String> {
    patchline_testkit::require_python(&format!("serve_e2e::{test}"), "standardwebhooks")
}

/// Polls `f` every 50 ms until it holds; panics after `within`.
fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- HTTP -----

/// One HTTP/1.1 request on its own connection: status and body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
    out
}

// ----- the service -----

/// A running `patchline serve`; SIGKILLed when dropped.
struct Server {
    process: ServeProcess,
    addr: String,
}

impl Server {
    /// Starts the binary on `data` (a free port) and waits for its address.
    fn start(data: &Path, retry: &str) -> Server {
        Server::start_on(data, retry, None)
    }

    /// [`Server::start`] with its state in the PostgreSQL database of
    /// `store` (`--store`) instead of the data directory.
    fn start_on(data: &Path, retry: &str, store: Option<&str>) -> Server {
        match Server::try_start(data, retry, store) {
            Ok(s) => s,
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts the binary; the first line and log when it did not start.
    fn try_start(data: &Path, retry: &str, store: Option<&str>) -> Result<Server, String> {
        let args: Vec<&str> = store.map(|url| vec!["--store", url]).unwrap_or_default();
        Server::try_start_with(data, retry, &args)
    }

    /// A node of a deployment: the database of `store`, the bus of `bus`
    /// under `prefix`; waits until it is ready.
    fn start_node(data: &Path, retry: &str, store: &str, bus: &str, prefix: &str) -> Server {
        let args = ["--store", store, "--bus", bus, "--bus-prefix", prefix];
        let srv = Server::try_start_with(data, retry, &args).unwrap_or_else(|why| panic!("{why}"));
        wait_until("the node is ready", Duration::from_secs(20), || {
            http(&srv.addr, "GET", "/readyz", "", b"").0 == 200
        });
        srv
    }

    /// Starts the binary with `extra` arguments to `serve`.
    fn try_start_with(data: &Path, retry: &str, extra: &[&str]) -> Result<Server, String> {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        cmd.env("PATCHLINE_ADMIN_TOKEN", ADMIN)
            .env("PATCHLINE_WEBHOOK_ALLOW", "127.0.0.0/8")
            .env("PATCHLINE_RETRY_SCHEDULE", retry)
            .env("PATCHLINE_WEBHOOK_TIMEOUT_MS", "5000")
            .env_remove("PATCHLINE_DATA_DIR")
            .env_remove("PATCHLINE_OPERATOR_WEBHOOK");
        let process = ServeProcess::spawn(cmd, &data.with_extension("log"))?;
        Ok(Server {
            addr: process.addr.clone(),
            process,
        })
    }

    /// A request; the answer's JSON (or its text as a JSON string).
    fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, out) = http(&self.addr, method, path, token, body.as_bytes());
        let value = serde_json::from_slice(&out)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out).into_owned()));
        (status, value)
    }

    /// A request that must succeed.
    fn ok(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method, path, token, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {v}"
        );
        v
    }

    /// Creates a tenant; answers its token.
    fn tenant(&self, id: &str, role: &str) -> String {
        let v = self.ok(
            "POST",
            "/v1/tenants",
            ADMIN,
            Some(&json!({"id": id, "roles": [role]})),
        );
        v["token"].as_str().unwrap().to_string()
    }

    /// Subscribes the token's tenant to a webhook: (id, secret).
    fn subscribe(&self, token: &str, url: &str) -> (String, String) {
        let v = self.ok(
            "POST",
            "/v1/subscriptions",
            token,
            Some(&json!({"channel": {"type": "webhook", "url": url}})),
        );
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        (s("id"), s("secret"))
    }

    fn artifact(&self, token: &str, doc: Value) -> Value {
        self.ok("POST", "/v1/artifacts", token, Some(&doc))
    }

    fn publish(&self, token: &str, advisory: &str) -> Value {
        let path = testdata(&format!("advisories/ubuntu/{advisory}.json"));
        let body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        self.ok("POST", "/v1/advisories", token, Some(&body))
    }

    /// Every notice the token's tenant can read, paging through the cursor.
    fn notices(&self, token: &str) -> Vec<Value> {
        let (mut out, mut after) = (Vec::new(), 0);
        loop {
            let page = self.ok(
                "GET",
                &format!("/v1/notices?after={after}&limit=1000"),
                token,
                None,
            );
            let list = page["notices"].as_array().unwrap();
            if list.is_empty() {
                return out;
            }
            out.extend(list.iter().cloned());
            after = page["next"].as_i64().unwrap();
        }
    }

    /// `GET /metrics` as name{labels} -> value.
    fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, body) = http(&self.addr, "GET", "/metrics", ADMIN, b"");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    /// Deliveries by state (`patchline_deliveries{state=...}`), one scrape.
    fn deliveries(&self) -> BTreeMap<String, f64> {
        self.metrics()
            .into_iter()
            .filter_map(|(k, v)| {
                let state = k.strip_prefix("patchline_deliveries{state=\"")?;
                Some((state.strip_suffix("\"}")?.to_string(), v))
            })
            .collect()
    }

    /// Deliveries pending, in flight or failed (to be retried).
    fn unfinished(&self) -> f64 {
        let d = self.deliveries();
        ["pending", "in_flight", "failed"]
            .iter()
            .filter_map(|s| d.get(*s))
            .sum()
    }

    /// Waits until no delivery is pending, in flight or failed.
    fn wait_drained(&self, within: Duration) {
        wait_until("the delivery queue drains", within, || {
            self.unfinished() == 0.0
        });
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        self.process.kill();
    }
}

// ----- the receiver -----

/// `receiver.py`: one port, one record file, one secrets file.
struct Receiver {
    py: String,
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Receiver {
    fn start(py: &str, dir: &Path, args: &[&str]) -> Receiver {
        let mut r = Receiver {
            py: py.to_string(),
            dir: dir.to_path_buf(),
            child: None,
            port: 0,
        };
        r.set_secrets(&BTreeMap::new());
        r.spawn(args);
        r
    }

    /// Starts the script on the receiver's port (a free one the first
    /// time; the same one after a stop, so subscription URLs stay valid).
    fn spawn(&mut self, args: &[&str]) {
        assert!(self.child.is_none());
        for _ in 0..50 {
            let mut child = Command::new(&self.py)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receiver.py"))
                .arg(self.port.to_string())
                .arg(self.dir.join("received.jsonl"))
                .arg(self.dir.join("secrets.json"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(File::create(self.dir.join("receiver.log")).unwrap())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if let Some(port) = line.trim().strip_prefix("listening ") {
                self.port = port.parse().unwrap();
                self.child = Some(child);
                return;
            }
            // The port may still be held for a moment after a stop.
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "receiver.py did not start:\n{}",
            std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// URL path -> whsec secret, replaced atomically.
    fn set_secrets(&self, secrets: &BTreeMap<String, String>) {
        let tmp = self.dir.join("secrets.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(secrets).unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("secrets.json")).unwrap();
    }

    /// Every request recorded so far (a line being written is skipped).
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The requests to `path` that were answered with a 2xx.
fn accepted<'a>(records: &'a [Value], path: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["path"] == path && (200..300).contains(&r["status"].as_i64().unwrap()))
        .collect()
}

/// The values of `key` (a list) over `records`, with repetitions.
fn all_of<'a>(records: impl IntoIterator<Item = &'a Value>, key: &str) -> Vec<Value> {
    records
        .into_iter()
        .flat_map(|r| r[key].as_array().unwrap().iter().cloned())
        .collect()
}

fn ids(values: &[Value]) -> BTreeSet<i64> {
    values.iter().map(|v| v.as_i64().unwrap()).collect()
}

fn strings(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every request was signed with the subscription's secret, as the
/// reference implementation checks it, and is a CloudEvents 1.0 event whose
/// id is the webhook id.
fn assert_signed(records: &[Value]) {
    for r in records {
        assert_eq!(r["verified"], true, "signature refused: {r}");
        assert_eq!(r["specversion"], "1.0", "{r}");
        assert_eq!(r["event_id"], r["webhook_id"], "{r}");
    }
}

/// The purls of the real Ubuntu 18.04 dpkg status, as patchline reads it.
fn ubuntu_purls(scratch: &Path) -> Vec<Value> {
    let data = scratch.join("purls-data");
    let jsonl = scratch.join("purls.jsonl");
    std::fs::write(
        &jsonl,
        r#"{"id": "u", "kind": "image", "tenant": "canonical"}"#,
    )
    .unwrap();
    let status = testdata("inventories/ubuntu-18.04.dpkg-status");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        out.stdout
    };
    run(&["import", "artifacts", jsonl.to_str().unwrap()]);
    run(&[
        "import",
        "inventory",
        "u",
        status.to_str().unwrap(),
        "--distro",
        "ubuntu-18.04",
    ]);
    let shown: Value = serde_json::from_slice(&run(&["show", "u", "--json"])).unwrap();
    let purls = shown["components"].as_array().unwrap().clone();
    for real in [
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&distro=ubuntu-18.04&upstream=bzip2",
        "pkg:deb/ubuntu/bsdutils@1:2.31.1-0.4ubuntu3.1?arch=amd64&distro=ubuntu-18.04&upstream=util-linux%402.31.1-0.4ubuntu3.1",
    ] {
        assert!(purls.contains(&json!(real)), "{real} not in {purls:?}");
    }
    purls
}

// ----- the tests -----

#[test]
fn tenants_receive_exactly_their_notices() {
    tenants_receive_exactly_their_notices_on("tenants_receive_exactly_their_notices", false);
}

/// The same on a PostgreSQL store (`serve --store`).
#[test]
fn tenants_receive_exactly_their_notices_postgres() {
    tenants_receive_exactly_their_notices_on(
        "tenants_receive_exactly_their_notices_postgres",
        true,
    );
}

fn tenants_receive_exactly_their_notices_on(test: &str, postgres: bool) {
    let Some(py) = python(test) else {
        return;
    };
    let db = if postgres {
        let Some(db) = TestDb::create(test) else {
            return;
        };
        Some(db)
    } else {
        None
    };
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &[]);
    let srv = Server::start_on(
        &tmp.path().join("data"),
        FAST_RETRY,
        db.as_ref().map(|d| d.url.as_str()),
    );

    let canonical = srv.tenant("canonical", "publisher");
    let acme = srv.tenant("acme", "tenant");
    let globex = srv.tenant("globex", "tenant");
    let tenants = [
        ("canonical", &canonical),
        ("acme", &acme),
        ("globex", &globex),
    ];
    let mut secrets = BTreeMap::new();
    for (name, token) in tenants {
        let path = format!("/{name}");
        secrets.insert(path.clone(), srv.subscribe(token, &rx.url(&path)).1);
    }
    rx.set_secrets(&secrets);

    srv.artifact(
        &canonical,
        json!({"id": "ubuntu-18.04", "kind": "image", "visibility": "public",
               "name": "Ubuntu 18.04 LTS", "components": purls}),
    );
    for (id, kind, parent) in [
        ("acme-web", "image", "ubuntu-18.04"),
        ("acme-tpl", "template", "acme-web"),
        ("acme-rep", "replica", "acme-tpl"),
        ("acme-vm-1", "instance", "acme-rep"),
        ("acme-vm-2", "instance", "acme-tpl"),
        ("acme-vm-3", "instance", "acme-web"),
    ] {
        srv.artifact(&acme, json!({"id": id, "kind": kind, "parent": parent}));
    }
    let upgraded: Vec<Value> = purls
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            if p.starts_with("pkg:deb/ubuntu/libbz2-1.0@") || p.starts_with("pkg:deb/ubuntu/bzip2@")
            {
                json!(p.replace("@1.0.6-8.1?", "@1.0.6-8.1ubuntu0.1?"))
            } else {
                json!(p)
            }
        })
        .collect();
    assert_ne!(upgraded, purls);
    for doc in [
        json!({"id": "globex-vm-1", "kind": "instance", "parent": "ubuntu-18.04"}),
        json!({"id": "globex-vm-2", "kind": "instance", "parent": "ubuntu-18.04"}),
        json!({"id": "globex-fixed", "kind": "image", "parent": "ubuntu-18.04",
               "components": upgraded}),
        json!({"id": "globex-fixed-tpl", "kind": "template", "parent": "globex-fixed"}),
        json!({"id": "globex-fixed-vm", "kind": "instance", "parent": "globex-fixed-tpl"}),
    ] {
        srv.artifact(&globex, doc);
    }

    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], 9, "{published}");

    // What the service says is affected (admin: every tenant, full paths)
    // is what the lineage above makes affected.
    let report = srv.ok(
        "GET",
        &format!("/v1/advisories/{USN}/affected"),
        ADMIN,
        None,
    );
    let affected: BTreeMap<String, (String, Value)> = report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let id = a["artifact"].as_str().unwrap().to_string();
            let tenant = a["tenant"].as_str().unwrap().to_string();
            (id, (tenant, a["path"].clone()))
        })
        .collect();
    let expected: BTreeSet<&str> = [
        "ubuntu-18.04",
        "acme-web",
        "acme-tpl",
        "acme-rep",
        "acme-vm-1",
        "acme-vm-2",
        "acme-vm-3",
        "globex-vm-1",
        "globex-vm-2",
    ]
    .into();
    assert_eq!(
        affected.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(
        affected["acme-vm-1"].1,
        json!([
            "ubuntu-18.04",
            "acme-web",
            "acme-tpl",
            "acme-rep",
            "acme-vm-1"
        ])
    );

    let of_tenant = |t: &str| -> BTreeSet<String> {
        affected
            .iter()
            .filter(|(_, (owner, _))| owner == t)
            .map(|(a, _)| a.clone())
            .collect()
    };
    wait_until(
        "every affected artifact is delivered",
        Duration::from_secs(20),
        || {
            let records = rx.records();
            tenants.iter().all(|(t, _)| {
                let path = format!("/{t}");
                strings(&all_of(accepted(&records, &path), "artifacts")) == of_tenant(t)
            })
        },
    );
    srv.wait_drained(Duration::from_secs(20));

    let records = rx.records();
    assert_signed(&records);
    for (t, token) in tenants {
        let path = format!("/{t}");
        let mine: Vec<&Value> = records.iter().filter(|r| r["path"] == path).collect();
        assert!(
            mine.iter().all(|r| r["status"] == 204),
            "{t}: failed requests {mine:?}"
        );
        let got = accepted(&records, &path);
        let notice_ids = all_of(got.iter().copied(), "notice_ids");
        // Only the tenant's own artifacts, each exactly as the report has it.
        assert!(
            all_of(got.iter().copied(), "tenant_of_each_notice")
                .iter()
                .all(|x| x == t),
            "{t} received notices about other tenants' artifacts: {mine:?}"
        );
        for r in got.iter().copied() {
            for (a, p) in r["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .zip(r["paths"].as_array().unwrap())
            {
                assert_eq!(&affected[a.as_str().unwrap()].1, p, "path of {a}");
            }
        }
        assert_eq!(
            strings(&all_of(got.iter().copied(), "advisories")),
            BTreeSet::from([USN.to_string()])
        );
        assert_eq!(
            strings(&all_of(got.iter().copied(), "artifacts")),
            of_tenant(t),
            "{t}"
        );
        // Exactly the notices the tenant reads from its feed, each once.
        let feed: BTreeMap<i64, Value> = srv
            .notices(token)
            .iter()
            .map(|n| (n["notice_id"].as_i64().unwrap(), n["artifact"].clone()))
            .collect();
        let pushed: BTreeMap<i64, Value> = notice_ids
            .iter()
            .map(|n| n.as_i64().unwrap())
            .zip(all_of(got.iter().copied(), "artifacts"))
            .collect();
        assert_eq!(pushed, feed, "{t}");
        assert_eq!(notice_ids.len(), feed.len(), "{t}: duplicates");
    }
    for masked in ["globex-fixed", "globex-fixed-tpl", "globex-fixed-vm"] {
        assert!(!affected.contains_key(masked));
        assert!(
            !all_of(records.iter(), "artifacts").contains(&json!(masked)),
            "{masked} is masked but was notified"
        );
    }

    // Instances created after the advisory are checked at once: the masked
    // one stays quiet, the affected one is pushed without waiting for
    // anything else.
    srv.artifact(
        &globex,
        json!({"id": "globex-fixed-vm-late", "kind": "instance", "parent": "globex-fixed"}),
    );
    let start = Instant::now();
    let late = srv.artifact(
        &acme,
        json!({"id": "acme-vm-late", "kind": "instance", "parent": "acme-rep"}),
    );
    assert_eq!(late["affected_by"], json!([USN]), "{late}");
    wait_until(
        "the late instance is delivered",
        Duration::from_secs(5),
        || all_of(accepted(&rx.records(), "/acme"), "artifacts").contains(&json!("acme-vm-late")),
    );
    say(&format!(
        "late instance delivered {:?} after its creation",
        start.elapsed()
    ));
    srv.wait_drained(Duration::from_secs(10));
    let records = rx.records();
    assert_signed(&records);
    let artifacts = all_of(records.iter(), "artifacts");
    assert!(!artifacts.contains(&json!("globex-fixed-vm-late")));
    assert_eq!(artifacts.iter().filter(|a| *a == "acme-vm-late").count(), 1);
    assert!(
        all_of(records.iter().filter(|r| r["path"] != "/acme"), "artifacts")
            .iter()
            .all(|a| a != "acme-vm-late")
    );
}

/// Every notice of `advisory` in each tenant's feed reached the tenant's
/// webhook (at least once), and nothing else did; answers the number of
/// notices received more than once.
fn delivered_once_or_more(
    srv: &Server,
    records: &[Value],
    tokens: &[(String, String)],
    advisory: &str,
    expected: usize,
) -> usize {
    assert_signed(records);
    let mut duplicates = 0;
    let mut total = 0;
    for (t, token) in tokens {
        let path = format!("/{t}");
        let feed: BTreeSet<i64> = srv
            .notices(token)
            .iter()
            .filter(|n| n["advisory"] == advisory)
            .map(|n| n["notice_id"].as_i64().unwrap())
            .collect();
        let got: Vec<&Value> = accepted(records, &path)
            .into_iter()
            .filter(|r| r["advisories"][0] == advisory)
            .collect();
        let received = all_of(got.iter().copied(), "notice_ids");
        assert!(
            all_of(got.iter().copied(), "tenant_of_each_notice")
                .iter()
                .all(|x| x == t.as_str())
        );
        let received_ids = ids(&received);
        let missing: Vec<_> = feed.difference(&received_ids).collect();
        assert!(
            missing.is_empty(),
            "{t}: {} notices of {advisory} never delivered, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(received_ids, feed, "{t}: notices not in its feed");
        duplicates += received.len() - feed.len();
        total += feed.len();
    }
    assert_eq!(total, expected);
    duplicates
}

/// `canonical` and a `tenant` for each name, each subscribed to the
/// receiver at `/<name>`: (name, token), the publisher first.
fn subscribed(
    srv: &Server,
    rx: &Receiver,
    canonical: &str,
    names: &[String],
) -> Vec<(String, String)> {
    let mut tokens = vec![("canonical".to_string(), canonical.to_string())];
    for t in names {
        tokens.push((t.clone(), srv.tenant(t, "tenant")));
    }
    let mut secrets = BTreeMap::new();
    for (t, token) in &tokens {
        let path = format!("/{t}");
        secrets.insert(path.clone(), srv.subscribe(token, &rx.url(&path)).1);
    }
    rx.set_secrets(&secrets);
    tokens
}

/// Tenants and instances per tenant of the crash test.
const CRASH_TENANTS: usize = 20;
const CRASH_INSTANCES: usize = 520;
/// Instances imported while the service is down.
const CRASH_LATE: usize = 50;

/// `patchline import artifacts` of these JSON lines (the service stopped).
fn import_artifacts(data: &Path, lines: &[String]) {
    let jsonl = data.with_extension("jsonl");
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["import", "artifacts"])
        .arg(&jsonl)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn crash_mid_fanout_loses_nothing() {
    let Some(py) = python("crash_mid_fanout_loses_nothing") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let purls = ubuntu_purls(tmp.path());

    // The cloud, imported before the service starts.
    let mut lines = vec![
        json!({"id": "base", "kind": "image", "tenant": "canonical", "visibility": "public",
               "components": purls})
        .to_string(),
    ];
    let names: Vec<String> = (0..CRASH_TENANTS).map(|t| format!("t{t:02}")).collect();
    for t in &names {
        for i in 0..CRASH_INSTANCES {
            lines.push(
                json!({"id": format!("{t}-vm-{i:04}"), "kind": "instance", "tenant": t,
                       "parent": "base"})
                .to_string(),
            );
        }
    }
    import_artifacts(&data, &lines);

    // A slow receiver, so that the crash comes in the middle of the fan-out.
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    let mut srv = Server::start(&data, FAST_RETRY);
    let canonical = srv.tenant("canonical", "publisher");
    let tokens = subscribed(&srv, &rx, &canonical, &names);

    let mut expected_notices = CRASH_TENANTS * CRASH_INSTANCES + 1;
    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], expected_notices, "{published}");
    let queued: f64 = srv.deliveries().values().sum();
    wait_until(
        "the first delivery arrives",
        Duration::from_secs(20),
        || !rx.records().is_empty(),
    );
    srv.kill();
    let at_kill = rx.records().len();
    say(&format!(
        "crash: killed the server with {at_kill} of {queued} deliveries received"
    ));
    assert!(
        (at_kill as f64) < queued,
        "the crash came after the fan-out"
    );

    // While it is down, instances are imported: the restart records their
    // notices. What was not acknowledged before the crash is sent again.
    let late: Vec<String> = (0..CRASH_LATE)
        .map(|i| {
            json!({"id": format!("t00-late-{i:03}"), "kind": "instance", "tenant": "t00",
                   "parent": "base"})
            .to_string()
        })
        .collect();
    import_artifacts(&data, &late);
    expected_notices += CRASH_LATE;
    let srv = Server::start(&data, FAST_RETRY);
    srv.wait_drained(Duration::from_secs(60));
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, USN, expected_notices);
    say(&format!(
        "crash: all {expected_notices} notices delivered; {duplicates} delivered twice"
    ));

    // The receiver down: deliveries fail and are retried until it is back;
    // its first answers after that are errors too.
    rx.stop();
    let failed_before = srv.metrics()["patchline_webhook_failed_total"];
    let second = "USN-4108-1";
    let published = srv.publish(&canonical, second);
    assert_eq!(published["affected"], expected_notices, "{published}");
    let queued = srv.unfinished();
    assert!(queued > 0.0);
    wait_until(
        "every delivery failed three times against the stopped receiver",
        Duration::from_secs(20),
        || srv.metrics()["patchline_webhook_failed_total"] - failed_before >= 3.0 * queued,
    );
    rx.spawn(&["--fail-first", "5"]);
    srv.wait_drained(Duration::from_secs(60));
    assert_eq!(srv.deliveries().get("dead"), None);
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, second, expected_notices);
    say(&format!(
        "receiver down: all {expected_notices} notices delivered; {duplicates} delivered twice"
    ));
    // A retry is the same message: it keeps its webhook id.
    let records = rx.records();
    let refused: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["status"] == 503)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| r["status"] == 503).count(), 5);
    assert!(!refused.is_empty());
    let delivered: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["status"] == 204)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert!(refused.is_subset(&delivered), "{refused:?}");
}

#[test]
fn gone_disables_and_dead_letters_replay() {
    gone_disables_and_dead_letters_replay_on("gone_disables_and_dead_letters_replay", false);
}

/// The same on a PostgreSQL store (`serve --store`).
#[test]
fn gone_disables_and_dead_letters_replay_postgres() {
    gone_disables_and_dead_letters_replay_on(
        "gone_disables_and_dead_letters_replay_postgres",
        true,
    );
}

fn gone_disables_and_dead_letters_replay_on(test: &str, postgres: bool) {
    let Some(py) = python(test) else {
        return;
    };
    let db = if postgres {
        let Some(db) = TestDb::create(test) else {
            return;
        };
        Some(db)
    } else {
        None
    };
    let tmp = tempfile::tempdir().unwrap();
    // A slow 410: more deliveries are queued while the first one is out.
    let mut rx = Receiver::start(&py, tmp.path(), &["--status", "410", "--delay-ms", "1000"]);
    let srv = Server::start_on(
        &tmp.path().join("data"),
        FAST_RETRY,
        db.as_ref().map(|d| d.url.as_str()),
    );
    let canonical = srv.tenant("canonical", "publisher");
    let initech = srv.tenant("initech", "tenant");
    let (sub, secret) = srv.subscribe(&initech, &rx.url("/initech"));
    rx.set_secrets(&BTreeMap::from([("/initech".to_string(), secret)]));
    srv.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [
            "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04",
            "pkg:deb/ubuntu/bzip2@1.0.6-8.1?arch=amd64&distro=ubuntu-18.04"]}),
    );
    let instance = |i: usize| {
        srv.artifact(
            &initech,
            json!({"id": format!("vm-{i}"), "kind": "instance", "parent": "base"}),
        );
    };
    (0..3).for_each(instance);
    let start = Instant::now();
    srv.publish(&canonical, USN);
    (3..5).for_each(instance);
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "too slow to queue the deliveries before the first 410"
    );
    let feed = |srv: &Server| -> BTreeMap<i64, String> {
        srv.notices(&initech)
            .iter()
            .map(|n| {
                let id = n["notice_id"].as_i64().unwrap();
                (id, n["artifact"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let before: BTreeSet<i64> = feed(&srv).into_keys().collect();
    assert_eq!(before.len(), 5);

    let sub_path = format!("/v1/subscriptions/{sub}");
    wait_until(
        "the subscription is disabled",
        Duration::from_secs(20),
        || srv.ok("GET", &sub_path, &initech, None)["state"] == "disabled",
    );
    // One more notice while the subscription is disabled.
    instance(5);
    let during: Vec<i64> = feed(&srv)
        .into_iter()
        .filter(|(_, a)| a == "vm-5")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(during.len(), 1);

    // Every delivery is a dead letter, each after its own 410 was recorded,
    // or, for the notice made while the subscription was disabled, recorded
    // straight into the dead letters.
    let dead_path = format!("{sub_path}/deliveries?state=dead");
    let mut dead = Vec::new();
    wait_until("the deliveries are dead", Duration::from_secs(20), || {
        dead = srv.ok("GET", &dead_path, &initech, None)["deliveries"]
            .as_array()
            .unwrap()
            .clone();
        ids(&all_of(dead.iter(), "notices")).is_superset(&before)
            && ids(&all_of(dead.iter(), "notices")).contains(&during[0])
            && dead.iter().all(|d| {
                d["attempts"].as_i64() >= Some(1) || d["last_error"] == "subscription disabled"
            })
    });
    srv.wait_drained(Duration::from_secs(20));
    let records = rx.records();
    assert_signed(&records);
    assert!(!records.is_empty() && records.iter().all(|r| r["status"] == 410));

    // Enabled again, the receiver healthy: the replay delivers them all.
    let enabled = srv.ok("POST", &format!("{sub_path}/enable"), &initech, None);
    assert_eq!(enabled["state"], "active");
    rx.stop();
    rx.spawn(&[]);
    let replayed = srv.ok("POST", &format!("{sub_path}/replay"), &initech, None);
    assert_eq!(replayed["replayed"], dead.len(), "{replayed}");
    wait_until("the replay is delivered", Duration::from_secs(20), || {
        ids(&all_of(accepted(&rx.records(), "/initech"), "notice_ids")).is_superset(&before)
    });
    srv.wait_drained(Duration::from_secs(20));
    let records = rx.records();
    assert_signed(&records);
    let dead_after = srv.ok("GET", &dead_path, &initech, None);
    assert_eq!(dead_after["deliveries"], json!([]), "{dead_after}");
    assert_eq!(srv.ok("GET", &sub_path, &initech, None)["state"], "active");
    // The replay resends the same messages (same webhook ids).
    let webhook_ids = |status: i64| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["status"] == status)
            .map(|r| r["webhook_id"].as_str().unwrap().to_string())
            .collect()
    };
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(webhook_ids(204), dead_ids);
    assert!(webhook_ids(410).is_subset(&dead_ids));

    // The notice recorded while the subscription was disabled reaches the
    // webhook after enable + replay too, like the ones that were pending.
    let received = ids(&all_of(accepted(&records, "/initech"), "notice_ids"));
    let all = srv.ok("GET", &format!("{sub_path}/deliveries"), &initech, None);
    assert!(
        received.contains(&during[0]),
        "notice {} (vm-5, created while the subscription was disabled) never reached the \
         webhook after enable + replay: no delivery carries it, so it is not a dead letter \
         and replay cannot bring it; deliveries: {all}",
        during[0]
    );
}

/// `serve --store postgres://…`: one node per database (a second is
/// refused with a clear message while the first runs), SIGKILL in the
/// middle of deliveries loses nothing (a new node on the same database —
/// with another, empty data directory — delivers the rest), and the state
/// is the database's, not the data directory's.
#[test]
fn postgres_store_one_node_and_kill() {
    let test = "postgres_store_one_node_and_kill";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    let mut srv = Server::start_on(&tmp.path().join("a"), FAST_RETRY, Some(&db.url));

    let second = Server::try_start(&tmp.path().join("b"), FAST_RETRY, Some(&db.url));
    let why = second
        .err()
        .expect("a second node on the same database is refused");
    assert!(
        why.contains("another patchline node is serving the PostgreSQL database"),
        "{why}"
    );
    assert!(!why.contains("password"), "{why}");

    let canonical = srv.tenant("canonical", "publisher");
    let names: Vec<String> = (0..5).map(|t| format!("t{t}")).collect();
    let tokens = subscribed(&srv, &rx, &canonical, &names);
    srv.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": purls}),
    );
    let per_tenant = 120;
    for (t, token) in tokens.iter().skip(1) {
        for i in 0..per_tenant {
            srv.artifact(
                token,
                json!({"id": format!("{t}-vm-{i:03}"), "kind": "instance", "parent": "base"}),
            );
        }
    }
    let expected = names.len() * per_tenant + 1;
    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], expected, "{published}");
    let queued: f64 = srv.deliveries().values().sum();
    // Killed while deliveries are out (the receiver answers after 300 ms).
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        srv.deliveries().get("in_flight").is_some_and(|n| *n > 0.0)
    });
    srv.kill();
    let at_kill = rx.records().len();
    say(&format!(
        "postgres: killed the node with {at_kill} of {queued} deliveries received"
    ));
    assert!(
        (at_kill as f64) < queued,
        "the kill came after the deliveries"
    );

    // The killed node's session ends with it, and its hold with it.
    let mut started = None;
    wait_until(
        "a new node starts on the database",
        Duration::from_secs(20),
        || match Server::try_start(&tmp.path().join("b"), FAST_RETRY, Some(&db.url)) {
            Ok(s) => {
                started = Some(s);
                true
            }
            Err(_) => false,
        },
    );
    let srv = started.unwrap();
    srv.wait_drained(Duration::from_secs(60));
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, USN, expected);
    say(&format!(
        "postgres: all {expected} notices delivered; {duplicates} delivered twice"
    ));
    // The data directories hold no catalog: the database does.
    for d in ["a", "b"] {
        assert!(!tmp.path().join(d).join("patchline.db").exists());
    }
    // A graceful stop ends with 0 (it aborted with 134: the database
    // clients were dropped on the runtime's threads).
    let (status, log) = srv.process.stop_with_status();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    rx.stop();
}

// ----- several nodes -----

/// A server-sent event stream read on a thread of its own: the ids of the
/// events received so far.
struct EventStream {
    ids: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    stream: TcpStream,
}

impl EventStream {
    /// `GET /v1/notices/stream` on `addr`, resuming after `last_event_id`.
    fn open(addr: &str, token: &str, last_event_id: Option<i64>) -> EventStream {
        let mut s = TcpStream::connect(addr).unwrap();
        let resume = last_event_id.map_or(String::new(), |id| format!("last-event-id: {id}\r\n"));
        let head = format!(
            "GET /v1/notices/stream HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
             accept: text/event-stream\r\n{resume}\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (reader, out) = (s.try_clone().unwrap(), ids.clone());
        std::thread::spawn(move || read_events(reader, &out));
        EventStream { ids, stream: s }
    }

    fn ids(&self) -> Vec<i64> {
        self.ids.lock().unwrap().clone()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads a chunked event stream until it ends, pushing each event's id.
fn read_events(mut s: TcpStream, out: &std::sync::Mutex<Vec<i64>>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut body_at = None;
    let (mut chunked, mut body) = (0usize, Vec::new());
    let mut parsed = 0usize;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        raw.extend_from_slice(&buf[..n]);
        if body_at.is_none() {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(
                raw.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&raw)
            );
            body_at = Some(end + 4);
            chunked = end + 4;
        }
        // De-chunk what has fully arrived.
        loop {
            let rest = &raw[chunked..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size = String::from_utf8_lossy(&rest[..eol]);
            let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            else {
                return;
            };
            if rest.len() < eol + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            chunked += eol + 2 + size + 2;
        }
        // Complete events end with a blank line.
        while let Some(end) = body[parsed..].windows(2).position(|w| w == b"\n\n") {
            let event = String::from_utf8_lossy(&body[parsed..parsed + end]).into_owned();
            parsed += end + 2;
            if let Some(id) = event
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .and_then(|v| v.trim().parse().ok())
            {
                out.lock().unwrap().push(id);
            }
        }
    }
}

/// The ids of a tenant's notices of `advisory`, as a node's feed lists them.
fn feed_ids(srv: &Server, token: &str, advisory: &str) -> Vec<i64> {
    srv.notices(token)
        .iter()
        .filter(|n| n["advisory"] == advisory)
        .map(|n| n["notice_id"].as_i64().unwrap())
        .collect()
}

/// Three nodes on one PostgreSQL database and one NATS bus are one
/// deployment: tenants, subscriptions and artifacts made on any node, an
/// advisory published on one, that node SIGKILLed while its deliveries are
/// out — every notice reaches its tenant's webhook (signatures checked by
/// the reference implementation), the dead node's leased deliveries are
/// taken over by the others, an event stream on a third node receives the
/// notices caused on the first, and a stream resumed with `Last-Event-ID`
/// on another node gets exactly the rest.
#[test]
fn three_nodes_one_deployment_and_kill() {
    let test = "three_nodes_one_deployment_and_kill";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let Some(bus) = patchline_testkit::nats::nats_url(test) else {
        return;
    };
    let prefix = format!("e2e{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "2000"]);
    let mut nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| Server::start_node(&tmp.path().join(n), FAST_RETRY, &db.url, &bus, &prefix))
        .collect();

    let canonical = nodes[0].tenant("canonical", "publisher");
    let names: Vec<String> = (0..6).map(|t| format!("t{t}")).collect();
    // Tenants and subscriptions made on B, the image on A.
    let tokens = subscribed(&nodes[1], &rx, &canonical, &names);
    nodes[0].artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": purls}),
    );
    // An event stream of t1 on C, before anything affects it.
    let (t1, t1_token) = tokens[2].clone();
    assert_eq!(t1, "t1");
    let live = EventStream::open(&nodes[2].addr, &t1_token, None);
    // Instances made on every node in turn (each validated against the
    // image made on A).
    let per_tenant = 60;
    for (i, (t, token)) in tokens.iter().skip(1).enumerate() {
        for j in 0..per_tenant {
            nodes[(i + j) % 3].artifact(
                token,
                json!({"id": format!("{t}-vm-{j:03}"), "kind": "instance", "parent": "base"}),
            );
        }
    }
    let expected = names.len() * per_tenant + 1;
    let published = nodes[0].publish(&canonical, USN);
    assert_eq!(published["affected"], expected, "{published}");

    // A — the node that published, so the one whose workers were woken
    // first and took the deliveries — dies while they are out (the
    // receiver answers after 2 s).
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        nodes[2]
            .deliveries()
            .get("in_flight")
            .is_some_and(|n| *n > 0.0)
    });
    nodes[0].kill();
    let at_kill = rx.records().len();
    say(&format!(
        "three nodes: killed A with {at_kill} messages received, {:?} deliveries by state",
        nodes[2].deliveries()
    ));
    // A's leases run out (20 s) and another node sends what A held.
    nodes[2].wait_drained(Duration::from_secs(90));
    let duplicates = delivered_once_or_more(&nodes[2], &rx.records(), &tokens, USN, expected);
    let sent_by: Vec<f64> = [&nodes[1], &nodes[2]]
        .iter()
        .map(|n| {
            n.metrics()
                .get("patchline_webhook_delivered_total")
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    assert!(
        sent_by.iter().sum::<f64>() > 0.0,
        "no other node took over A's deliveries"
    );
    say(&format!(
        "three nodes: all {expected} notices delivered ({duplicates} twice); messages sent by B and C after the kill: {sent_by:?}"
    ));

    // The stream on C got every notice of t1, made on A.
    let feed = feed_ids(&nodes[2], &t1_token, USN);
    assert_eq!(feed.len(), per_tenant);
    wait_until(
        "the stream on C receives t1's notices",
        Duration::from_secs(10),
        || {
            let got: BTreeSet<i64> = live.ids().into_iter().collect();
            feed.iter().all(|id| got.contains(id))
        },
    );
    // Resumed on B after the middle one: exactly the rest.
    let mid = feed[feed.len() / 2];
    let resumed = EventStream::open(&nodes[1].addr, &t1_token, Some(mid));
    let rest: Vec<i64> = feed.iter().copied().filter(|id| *id > mid).collect();
    wait_until("the stream resumed on B", Duration::from_secs(10), || {
        resumed.ids() == rest
    });
    drop((live, resumed));

    for node in [nodes.remove(2), nodes.remove(1)] {
        let (status, log) = node.process.stop_with_status();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    rx.stop();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let bus = patchline_bus::Bus::connect(patchline_bus::BusConfig::new(
                bus,
                patchline_bus::BusPrefix::new(&prefix).unwrap(),
            ))
            .await
            .unwrap();
            bus.delete_streams().await.unwrap();
        });
}
