//! Runs every line of every file in `testdata/versions/` (osv-scalibr's
//! `semantic/testdata`) through one `check` helper, in both directions, and
//! reports all failures together before failing.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use patchline_versions::{Scheme, Version};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/versions");

/// Which scheme a vector file exercises, from its name.
fn scheme_for(file: &str) -> Option<Scheme> {
    [
        ("alpine-versions", Scheme::Apk),
        ("debian-versions", Scheme::Dpkg),
        ("pypi-versions", Scheme::Pep440),
        ("redhat-versions", Scheme::Rpm),
        ("semver-versions", Scheme::Semver),
    ]
    .into_iter()
    .find(|(prefix, _)| file.starts_with(prefix))
    .map(|(_, scheme)| scheme)
}

fn op_symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

fn hash_of(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Checks one file; returns how many comparisons held and a message per
/// failure (`file:line: ...`).
fn check(scheme: Scheme, name: &str, text: &str) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let at = format!("{name}:{}", idx + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [a, op, b] = fields[..] else {
            failures.push(format!("{at}: malformed line {line:?}"));
            continue;
        };
        let expected = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => {
                failures.push(format!("{at}: unknown operator in {line:?}"));
                continue;
            }
        };
        let (va, vb) = match (scheme.parse(a), scheme.parse(b)) {
            (Ok(va), Ok(vb)) => (va, vb),
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{at}: {line:?}: parse error: {e}"));
                continue;
            }
        };
        let forward = va.cmp(&vb);
        let backward = vb.cmp(&va);
        let mut ok = true;
        if forward != expected {
            ok = false;
            failures.push(format!(
                "{at}: expected {a} {op} {b}, got {a} {} {b}",
                op_symbol(forward)
            ));
        }
        if backward != expected.reverse() {
            ok = false;
            failures.push(format!(
                "{at}: expected {b} {} {a}, got {b} {} {a}",
                op_symbol(expected.reverse()),
                op_symbol(backward)
            ));
        }
        if expected == Ordering::Equal && hash_of(&va) != hash_of(&vb) {
            ok = false;
            failures.push(format!("{at}: {a} = {b} but their hashes differ"));
        }
        if ok {
            passed += 1;
        }
    }
    (passed, failures)
}

#[test]
fn every_vector_file_holds() {
    let mut entries: Vec<_> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("cannot list {DIR}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    entries.sort();

    let mut failures = Vec::new();
    let mut total = 0;
    let mut schemes_seen = Vec::new();
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(scheme) = scheme_for(&name) else {
            failures.push(format!("{name}: no scheme is mapped to this vector file"));
            continue;
        };
        schemes_seen.push(scheme);
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (passed, mut file_failures) = check(scheme, &name, &text);
        println!(
            "{name}: {passed} comparisons hold, {} failures",
            file_failures.len()
        );
        total += passed;
        failures.append(&mut file_failures);
    }
    for scheme in Scheme::ALL {
        assert!(
            schemes_seen.contains(&scheme),
            "no vector file for {scheme}"
        );
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        panic!(
            "{} vector failures ({total} comparisons held)",
            failures.len()
        );
    }
    // Guard against the files silently going missing or empty.
    assert!(total > 40_000, "only {total} comparisons found");
}
