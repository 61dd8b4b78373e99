//! Our signatures checked by the reference implementation, PyPI
//! `standardwebhooks`, through `verify_with_standardwebhooks.py`.
//!
//! Runs only when `PATCHLINE_TEST_PYTHON` names a Python that can import
//! `standardwebhooks` (e.g. `python3 -m venv /tmp/swvenv &&
//! /tmp/swvenv/bin/pip install standardwebhooks`, then
//! `PATCHLINE_TEST_PYTHON=/tmp/swvenv/bin/python`); otherwise it says so
//! loudly and passes, since CI machines need not have the package.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use patchline_webhook::{Secret, sign};

fn python() -> Option<String> {
    patchline_testkit::require_python("python_interop", "standardwebhooks")
}

/// Runs the reference verifier; true when it accepted the delivery.
fn reference_verifies(py: &str, secret: &str, id: &str, ts: &str, sig: &str, body: &[u8]) -> bool {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/verify_with_standardwebhooks.py");
    let mut child = Command::new(py)
        .arg(script)
        .args([secret, id, ts, sig])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the python verifier");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write body");
    let out = child.wait_with_output().expect("python verifier");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {
            assert!(stdout.contains("verified"), "{stdout}");
            true
        }
        Some(1) => false,
        _ => panic!(
            "verifier failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("timestamp fits i64")
}

#[test]
fn reference_library_verifies_our_signatures() {
    let Some(py) = python() else { return };
    let secret = Secret::generate();
    let old = Secret::generate();
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let ts = now();
    let body = serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0",
        "type": "dev.patchline.notice",
        "data": {"notices": [{"notice_id": "n-1", "advisory": "CVE-2024-0001", "note": "ünïcødé ✓"}]},
    }))
    .expect("json");

    // One secret.
    let sig = sign::signature(&secret, id, ts, &body);
    assert!(reference_verifies(
        &py,
        &secret.to_string(),
        id,
        &ts.to_string(),
        &sig,
        &body
    ));

    // Rotation: a header signed by both; each secret alone verifies.
    let header = sign::header_value(&[&secret, &old], id, ts, &body);
    for s in [&secret, &old] {
        assert!(reference_verifies(
            &py,
            &s.to_string(),
            id,
            &ts.to_string(),
            &header,
            &body
        ));
    }

    // Negative controls: the reference rejects a tampered body and a wrong secret.
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert!(!reference_verifies(
        &py,
        &secret.to_string(),
        id,
        &ts.to_string(),
        &sig,
        &tampered
    ));
    let other = Secret::generate();
    assert!(!reference_verifies(
        &py,
        &other.to_string(),
        id,
        &ts.to_string(),
        &sig,
        &body
    ));
    eprintln!("python_interop: standardwebhooks verified our signatures");
}
