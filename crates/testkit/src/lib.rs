//! What a test needs from the machine (a tool such as `qemu-img`, a Python
//! with a package, a service URL), and one rule for when it is missing: in
//! CI (`CI` set, as `.ci/run` sets it) the test fails, naming what to
//! install; elsewhere it says clearly, on stderr, that it did not run. No
//! test passes in CI without having run.

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether this run is CI's: then nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports that `test` cannot run for `why`: panics in CI, else prints a
/// `NOT RUN` line (straight to stderr, which libtest does not capture) and
/// answers `false` so the caller returns.
pub fn not_run(test: &str, why: &str) -> bool {
    if in_ci() {
        panic!(
            "{test} cannot run: {why}. CI must provide it (`.ci/run` installs what the tests need)"
        );
    }
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test}: {why}");
    false
}

/// Whether `tool` runs (`tool --version` or `tool -V` succeeds).
pub fn has_tool(tool: &str) -> bool {
    ["--version", "-V"].iter().any(|flag| {
        Command::new(tool)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `true` when every tool is there; otherwise [`not_run`].
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !has_tool(t)).collect();
    if missing.is_empty() {
        true
    } else {
        not_run(test, &format!("{} not installed", missing.join(", ")))
    }
}

/// The Python of `PATCHLINE_TEST_PYTHON` when it can import `module`;
/// otherwise [`not_run`] and `None`.
pub fn require_python(test: &str, module: &str) -> Option<String> {
    let py = std::env::var("PATCHLINE_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let usable = py.as_ref().is_some_and(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if usable {
        py
    } else {
        not_run(
            test,
            &format!(
                "PATCHLINE_TEST_PYTHON ({py:?}) is not a python that can import `{module}` \
                 (`.ci/run` makes one in target/pyvenv)"
            ),
        );
        None
    }
}
