//! What the end-to-end tests of `patchline serve` share (`serve_e2e.rs`,
//! `faults.rs`): the real binary over real HTTP as one node or several,
//! its webhooks received by `receiver.py`, which checks every signature with
//! an independent Standard Webhooks implementation (PyPI `standardwebhooks`),
//! server-sent event streams, and what the tests check of what was received.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ServeProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_patchline");
pub const ADMIN: &str = "e2e-admin-token";
pub const USN: &str = "USN-4038-1";
/// Short retries: a receiver that is down for a second or two is caught up.
pub const FAST_RETRY: &str = "0,200ms,500ms,1s,1s,1s,1s,1s,1s,1s";
/// Where webhooks may go: the receiver, on loopback or on the host's end
/// of a test's network namespace link (`10.213.0.0/16`, see `faults.rs`).
pub const WEBHOOK_ALLOW: &str = "127.0.0.0/8,10.213.0.0/16";

/// Straight to stderr: libtest captures `println!` of passing tests.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// The Python of `PATCHLINE_TEST_PYTHON` when it can import
/// `standardwebhooks`; otherwise the test did not run (a failure in CI).
pub fn python(test: &str) -> Option<String> {
    // `module_path!` starts with the test binary's name (`serve_e2e`, …).
    let binary = module_path!().split("::").next().unwrap_or_default();
    patchline_testkit::require_python(&format!("{binary}::{test}"), "standardwebhooks")
}

/// Polls `f` every 50 ms until it holds; panics after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
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
pub fn http(addr: &str, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    try_http(addr, method, path, token, body, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`http`] that answers what went wrong instead of panicking: a refused
/// connection, a connection closed without an answer, or no answer within
/// `within` (which bounds every read and write).
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
    within: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, within).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(within)).unwrap();
    s.set_write_timeout(Some(within)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
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
pub struct Server {
    pub process: ServeProcess,
    pub addr: String,
}

impl Server {
    /// Starts the binary on `data` (a free port) and waits for its address.
    pub fn start(data: &Path, retry: &str) -> Server {
        Server::start_on(data, retry, None)
    }

    /// [`Server::start`] with its state in the PostgreSQL database of
    /// `store` (`--store`) instead of the data directory.
    pub fn start_on(data: &Path, retry: &str, store: Option<&str>) -> Server {
        match Server::try_start(data, retry, store) {
            Ok(s) => s,
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts the binary; the first line and log when it did not start.
    pub fn try_start(data: &Path, retry: &str, store: Option<&str>) -> Result<Server, String> {
        let args: Vec<&str> = store.map(|url| vec!["--store", url]).unwrap_or_default();
        Server::try_start_with(data, retry, &args)
    }

    /// A node of a deployment: the database of `store`, the bus of `bus`
    /// under `prefix`; waits until it is ready.
    pub fn start_node(data: &Path, retry: &str, store: &str, bus: &str, prefix: &str) -> Server {
        let args = ["--store", store, "--bus", bus, "--bus-prefix", prefix];
        let srv = Server::try_start_with(data, retry, &args).unwrap_or_else(|why| panic!("{why}"));
        wait_until("the node is ready", Duration::from_secs(20), || {
            http(&srv.addr, "GET", "/readyz", "", b"").0 == 200
        });
        srv
    }

    /// Starts the binary with `extra` arguments to `serve`.
    pub fn try_start_with(data: &Path, retry: &str, extra: &[&str]) -> Result<Server, String> {
        Server::try_launch(&[], "127.0.0.1:0", data, retry, extra)
    }

    /// A node of a deployment as [`Server::start_node`] does, run through
    /// `wrapper` (e.g. `ip netns exec NAME`, which execs the binary: the
    /// child is the server) and listening on `listen`.
    pub fn start_node_via(
        wrapper: &[&str],
        listen: &str,
        data: &Path,
        retry: &str,
        store: &str,
        bus: &str,
        prefix: &str,
    ) -> Server {
        let args = ["--store", store, "--bus", bus, "--bus-prefix", prefix];
        let srv = Server::try_launch(wrapper, listen, data, retry, &args)
            .unwrap_or_else(|why| panic!("{why}"));
        wait_until("the node is ready", Duration::from_secs(20), || {
            http(&srv.addr, "GET", "/readyz", "", b"").0 == 200
        });
        srv
    }

    /// Starts the binary (through `wrapper`, when not empty) on `listen`
    /// with `extra` arguments to `serve`.
    fn try_launch(
        wrapper: &[&str],
        listen: &str,
        data: &Path,
        retry: &str,
        extra: &[&str],
    ) -> Result<Server, String> {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", listen])
            .args(extra);
        cmd.env("PATCHLINE_ADMIN_TOKEN", ADMIN)
            .env("PATCHLINE_WEBHOOK_ALLOW", WEBHOOK_ALLOW)
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
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, out) = http(&self.addr, method, path, token, body.as_bytes());
        let value = serde_json::from_slice(&out)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out).into_owned()));
        (status, value)
    }

    /// A request that must succeed.
    pub fn ok(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method, path, token, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {v}"
        );
        v
    }

    /// Creates a tenant; answers its token.
    pub fn tenant(&self, id: &str, role: &str) -> String {
        let v = self.ok(
            "POST",
            "/v1/tenants",
            ADMIN,
            Some(&json!({"id": id, "roles": [role]})),
        );
        v["token"].as_str().unwrap().to_string()
    }

    /// Subscribes the token's tenant to a webhook, one entry per notice
    /// (what the delivery checks count): (id, secret).
    pub fn subscribe(&self, token: &str, url: &str) -> (String, String) {
        let v = self.ok(
            "POST",
            "/v1/subscriptions",
            token,
            Some(&json!({"channel": {"type": "webhook", "url": url}, "grouping": "artifact"})),
        );
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        (s("id"), s("secret"))
    }

    pub fn artifact(&self, token: &str, doc: Value) -> Value {
        self.ok("POST", "/v1/artifacts", token, Some(&doc))
    }

    pub fn publish(&self, token: &str, advisory: &str) -> Value {
        let path = testdata(&format!("advisories/ubuntu/{advisory}.json"));
        let body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        self.ok("POST", "/v1/advisories", token, Some(&body))
    }

    /// Every notice the token's tenant can read, paging through the cursor.
    pub fn notices(&self, token: &str) -> Vec<Value> {
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
    pub fn metrics(&self) -> BTreeMap<String, f64> {
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
    pub fn deliveries(&self) -> BTreeMap<String, f64> {
        self.metrics()
            .into_iter()
            .filter_map(|(k, v)| {
                let state = k.strip_prefix("patchline_deliveries{state=\"")?;
                Some((state.strip_suffix("\"}")?.to_string(), v))
            })
            .collect()
    }

    /// Deliveries pending, in flight or failed (to be retried).
    pub fn unfinished(&self) -> f64 {
        let d = self.deliveries();
        ["pending", "in_flight", "failed"]
            .iter()
            .filter_map(|s| d.get(*s))
            .sum()
    }

    /// Waits until no delivery is pending, in flight or failed.
    pub fn wait_drained(&self, within: Duration) {
        wait_until("the delivery queue drains", within, || {
            self.unfinished() == 0.0
        });
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

// ----- the receiver -----

/// `receiver.py`: one port, one record file, one secrets file.
pub struct Receiver {
    py: String,
    dir: PathBuf,
    child: Option<Child>,
    host: String,
    port: u16,
}

impl Receiver {
    pub fn start(py: &str, dir: &Path, args: &[&str]) -> Receiver {
        Receiver::start_on("127.0.0.1", py, dir, args)
    }

    /// [`Receiver::start`] listening on `host`.
    pub fn start_on(host: &str, py: &str, dir: &Path, args: &[&str]) -> Receiver {
        let mut r = Receiver {
            py: py.to_string(),
            dir: dir.to_path_buf(),
            child: None,
            host: host.to_string(),
            port: 0,
        };
        r.set_secrets(&BTreeMap::new());
        r.spawn(args);
        r
    }

    /// Starts the script on the receiver's port (a free one the first
    /// time; the same one after a stop, so subscription URLs stay valid).
    pub fn spawn(&mut self, args: &[&str]) {
        assert!(self.child.is_none());
        for _ in 0..50 {
            let mut child = Command::new(&self.py)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receiver.py"))
                .arg(self.port.to_string())
                .arg(self.dir.join("received.jsonl"))
                .arg(self.dir.join("secrets.json"))
                .args(["--host", &self.host])
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

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    /// URL path -> whsec secret, replaced atomically.
    pub fn set_secrets(&self, secrets: &BTreeMap<String, String>) {
        let tmp = self.dir.join("secrets.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(secrets).unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("secrets.json")).unwrap();
    }

    /// Every request recorded so far (a line being written is skipped).
    pub fn records(&self) -> Vec<Value> {
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
pub fn accepted<'a>(records: &'a [Value], path: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["path"] == path && (200..300).contains(&r["status"].as_i64().unwrap()))
        .collect()
}

/// The values of `key` (a list) over `records`, with repetitions.
pub fn all_of<'a>(records: impl IntoIterator<Item = &'a Value>, key: &str) -> Vec<Value> {
    records
        .into_iter()
        .flat_map(|r| r[key].as_array().unwrap().iter().cloned())
        .collect()
}

pub fn ids(values: &[Value]) -> BTreeSet<i64> {
    values.iter().map(|v| v.as_i64().unwrap()).collect()
}

pub fn strings(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every request was signed with the subscription's secret, as the
/// reference implementation checks it, and is a CloudEvents 1.0 event whose
/// id is the webhook id.
pub fn assert_signed(records: &[Value]) {
    for r in records {
        assert_eq!(r["verified"], true, "signature refused: {r}");
        assert_eq!(r["specversion"], "1.0", "{r}");
        assert_eq!(r["event_id"], r["webhook_id"], "{r}");
    }
}

/// The purls of the real Ubuntu 18.04 dpkg status, as patchline reads it.
pub fn ubuntu_purls(scratch: &Path) -> Vec<Value> {
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

/// Every notice of `advisory` in each tenant's feed reached the tenant's
/// webhook (at least once), and nothing else did; answers the number of
/// notices received more than once.
pub fn delivered_once_or_more(
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
pub fn subscribed(
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

// ----- several nodes -----

/// A server-sent event stream read on a thread of its own: the ids of the
/// events received so far.
pub struct EventStream {
    ids: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    stream: TcpStream,
}

impl EventStream {
    /// `GET /v1/notices/stream` on `addr`, resuming after `last_event_id`.
    pub fn open(addr: &str, token: &str, last_event_id: Option<i64>) -> EventStream {
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

    pub fn ids(&self) -> Vec<i64> {
        self.ids.lock().unwrap().clone()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads a chunked event stream until it ends, pushing each event's id.
pub fn read_events(mut s: TcpStream, out: &std::sync::Mutex<Vec<i64>>) {
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
pub fn feed_ids(srv: &Server, token: &str, advisory: &str) -> Vec<i64> {
    srv.notices(token)
        .iter()
        .filter(|n| n["advisory"] == advisory)
        .map(|n| n["notice_id"].as_i64().unwrap())
        .collect()
}
