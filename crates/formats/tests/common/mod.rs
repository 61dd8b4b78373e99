//! Shared test helpers: reading the real-world fixtures of testdata/.

#![allow(dead_code)]

pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

/// The bytes of `testdata/<rel>`.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{TESTDATA}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn fixture_str(rel: &str) -> String {
    String::from_utf8(fixture(rel)).expect("fixture is UTF-8")
}

/// Every OSV advisory fixture (JSON and YAML; the .txt files beside them are
/// osv.dev's Python-repr expectations, not OSV).
pub fn advisory_files() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in ["alpine", "debian", "pypi", "ubuntu"] {
        let path = format!("{TESTDATA}/advisories/{dir}");
        for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{path}: {e}")) {
            let p = entry.expect("dir entry").path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "json" | "yaml" | "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Asserts that an error's text contains every expected fragment.
pub fn assert_err_contains(err: &impl std::fmt::Display, fragments: &[&str]) {
    let text = err.to_string();
    for f in fragments {
        assert!(text.contains(f), "error {text:?} should contain {f:?}");
    }
}
