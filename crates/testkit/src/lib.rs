//! What a test needs from the machine (a tool such as `qemu-img`, a Python
//! with a package, a service URL), and one rule for when it is missing: in
//! CI (`CI` set, as `.ci/test` sets it) the test fails, naming what to
//! install; elsewhere it says clearly, on stderr, that it did not run. No
//! test passes in CI without having run.

pub mod nats;
pub mod postgres;

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
    not_run_in(in_ci(), test, why)
}

fn not_run_in(ci: bool, test: &str, why: &str) -> bool {
    if ci {
        panic!(
            "{test} cannot run: {why}. CI must provide it (`.ci/test` installs what the tests need)"
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

/// Whether the tests run as root (`id -u` is 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
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
                 (`.ci/test` makes one in target/pyvenv)"
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening item 22: a test that cannot run never passes in CI.
    #[test]
    fn in_ci_a_missing_tool_fails_the_test() {
        let outcome = std::panic::catch_unwind(|| not_run_in(true, "t", "qemu-img not installed"));
        let message = outcome
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .expect("in CI, not_run panics");
        assert!(message.contains("qemu-img not installed") && message.contains(".ci/test"));
        assert!(
            !not_run_in(false, "t", "qemu-img not installed"),
            "elsewhere it says so and returns"
        );
        assert!(!has_tool("no-such-tool-patchline"));
    }
}
