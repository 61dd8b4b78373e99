//! `patchline serve` as an operator runs it: the configuration file (with
//! `--check-config`), JSON logs when stderr is a file, `/readyz`, and no
//! secret in the log — the real binary over loopback HTTP, its webhooks
//! received by a small receiver in this test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ServeProcess;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_patchline");
const ADMIN: &str = "ops-admin-token-5f1d2c3b4a596877";
const KEY: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const VULNERABLE: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `patchline serve` with a cleared `PATCHLINE_*` environment and `env`.
fn serve_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("PATCHLINE_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("serve").args(args).envs(env.iter().copied());
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    serve_command(args, env)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One HTTP/1.1 request on its own connection: status and JSON body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: t\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn ok(addr: &str, method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
    let (s, v) = http(addr, method, path, Some(token), body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

/// `patchline serve` with `args` and `env`, its stderr in `log`.
fn start_server(args: &[&str], env: &[(&str, &str)], log: &Path) -> ServeProcess {
    ServeProcess::start(serve_command(args, env), log)
}

/// A webhook receiver on loopback answering 204 to every request, keeping
/// each request whole.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            request.push_str(&String::from_utf8_lossy(&body));
            seen.lock().unwrap().push(request);
            let _ = conn.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (addr, got)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn secrets_from_the_configuration_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    let key_file = dir.path().join("secret-keys");
    private_file(&token_file, &format!("{ADMIN}\n"));
    private_file(&key_file, &format!("{KEY}\n"));
    let (hooks, received) = receiver();
    let config = dir.path().join("patchline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
[delivery]
retry_schedule = "0,200ms,500ms"
[webhook]
allow = ["127.0.0.0/8"]
timeout = "5s"
operator_url = "http://{hooks}/operator"
[secrets]
admin_token_file = "{token}"
key_file = "{keys}"
[log]
level = "trace"
"#,
            data = dir.path().join("data").display(),
            token = token_file.display(),
            keys = key_file.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let server = start_server(&["--config", config.to_str().unwrap()], &[], &log);
    let addr = server.addr.clone();

    // Drive it: a refused token, a tenant, a webhook whose secret is
    // rotated, an advisory that makes a notice, its signed delivery.
    let (s, _) = http(
        &addr,
        "GET",
        "/v1/tenants/x/tokens",
        Some("wrong-token"),
        None,
    );
    assert_eq!(s, 401);
    let (s, v) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!((s, &v["ready"]), (200, &json!(true)), "{v}");
    let tenant = ok(
        &addr,
        "POST",
        "/v1/tenants",
        ADMIN,
        Some(&json!({"id": "acme", "roles": ["publisher"]})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = ok(
        &addr,
        "POST",
        "/v1/subscriptions",
        &tenant,
        Some(&json!({"channel": {"type": "webhook", "url": format!("http://{hooks}/acme")}})),
    );
    let (sub_id, first_secret) = (
        sub["id"].as_str().unwrap().to_string(),
        sub["secret"].as_str().unwrap().to_string(),
    );
    let rotated = ok(
        &addr,
        "POST",
        &format!("/v1/subscriptions/{sub_id}/rotate"),
        &tenant,
        None,
    );
    let second_secret = rotated["secret"].as_str().unwrap().to_string();
    let escalation = ok(&addr, "GET", "/v1/operator/escalation", ADMIN, None);
    let operator_secret = escalation["secret"].as_str().unwrap().to_string();
    ok(
        &addr,
        "POST",
        "/v1/artifacts",
        &tenant,
        Some(&json!({"id": "img", "kind": "image", "components": [VULNERABLE]})),
    );
    let usn: Value = serde_json::from_slice(
        &std::fs::read(testdata("advisories/ubuntu/USN-4038-1.json")).unwrap(),
    )
    .unwrap();
    ok(&addr, "POST", "/v1/advisories", &tenant, Some(&usn));
    wait_until("a signed delivery", Duration::from_secs(30), || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("POST /acme") && r.contains("webhook-signature"))
    });
    let log = server.stop();

    assert!(
        log.contains("accepting connections"),
        "the log is empty?\n{log}"
    );
    // Every secret, whole and without its prefix, is absent.
    let mut secrets = vec![
        ADMIN.to_string(),
        KEY.to_string(),
        first_secret.clone(),
        second_secret.clone(),
        operator_secret.clone(),
    ];
    for s in [&first_secret, &second_secret, &operator_secret] {
        assert!(s.starts_with("whsec_"), "{s}");
        secrets.push(s.trim_start_matches("whsec_").to_string());
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in the log: {secret}"
        );
    }
    assert!(!log.contains("whsec_"), "a webhook secret is in the log");
    assert!(!log.contains(&tenant), "a tenant token is in the log");
    // stderr is a file: JSON lines, no colour codes.
    assert!(!log.contains('\u{1b}'), "colour codes in a file");
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 10, "{lines} lines");
}

#[test]
fn text_logs_when_asked_and_readyz_on_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let server = start_server(
        &["--listen", "127.0.0.1:0"],
        &[
            ("PATCHLINE_DATA_DIR", data.to_str().unwrap()),
            ("PATCHLINE_ADMIN_TOKEN", ADMIN),
            ("PATCHLINE_LOG_FORMAT", "text"),
        ],
        &log,
    );
    let (s, v) = http(&server.addr, "GET", "/readyz", None, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["checks"]["store"], "ok");
    let (s, _) = http(&server.addr, "GET", "/healthz", None, None);
    assert_eq!(s, 200);
    let log = server.stop();
    assert!(log.contains("accepting connections"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "JSON lines although text was asked for:\n{log}"
    );
    assert!(!log.contains(ADMIN));
}

#[test]
fn check_config_validates_prints_redacted_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    private_file(&token_file, &format!("{ADMIN}\n"));
    let config = dir.path().join("patchline.toml");
    std::fs::write(
        &config,
        format!(
            "[secrets]\nadmin_token_file = \"{}\"\n[limits]\nconns_max = 42\n",
            token_file.display()
        ),
    )
    .unwrap();
    let out = run(
        &["--check-config", "--config", config.to_str().unwrap()],
        &[
            ("PATCHLINE_SECRET_KEY", KEY),
            ("PATCHLINE_STREAMS_MAX", "9"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("conns_max = 42"), "{stdout}");
    assert!(stdout.contains("limits.conns_max"), "{stdout}");
    assert!(stdout.contains("streams_max = 9"), "{stdout}");
    assert!(stdout.contains("PATCHLINE_STREAMS_MAX"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    for secret in [ADMIN, KEY] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    // Nothing was created: the check does not open the data directory.
    assert!(!dir.path().join("patchline-data").exists());

    // Invalid: exit 3, the key and the source named.
    std::fs::write(&config, "[limits]\nconns_max = 0\nstreams = 5\n").unwrap();
    let out = run(
        &["--check-config", "--config", config.to_str().unwrap()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("limits.streams") && stderr.contains("unknown field"),
        "{stderr}"
    );

    // The same refusals stop a real start, before anything is opened.
    let data = dir.path().join("data");
    std::fs::write(&config, "[limits]\nconns_max = 0\n").unwrap();
    let out = run(
        &["--config", config.to_str().unwrap()],
        &[("PATCHLINE_DATA_DIR", data.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("limits.conns_max") && stderr.contains("allowed 1 to 1000000"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused start created the data directory");
    let out = run(
        &[],
        &[
            ("PATCHLINE_DATA_DIR", data.to_str().unwrap()),
            ("PATCHLINE_WEBHOOK_TIMEOUT_MS", "50"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("PATCHLINE_WEBHOOK_TIMEOUT_MS"), "{stderr}");
    let out = run(
        &["--bus", "nats://u:pw@127.0.0.1:4222"],
        &[("PATCHLINE_DATA_DIR", data.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("--bus") && stderr.contains("--store postgres://"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw@"), "{stderr}");
    let out = run(
        &["--store", "mysql://u:pw@127.0.0.1/x"],
        &[("PATCHLINE_DATA_DIR", data.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("--store") && stderr.contains("not a PostgreSQL URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw@"), "{stderr}");
    assert!(!data.exists());
}

#[test]
fn the_shipped_example_passes_the_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/patchline.toml");
    let out = run(
        &["--check-config", "--config", example.to_str().unwrap()],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen = \"127.0.0.1:8080\""), "{stdout}");
}
