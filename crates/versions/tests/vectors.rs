//! Runs every line of every file in `testdata/versions/` (osv-scalibr's
//! `semantic/testdata`) through one `check` helper, in both directions, and
//! reports all failures together before failing.
//!
//! The one exception is [`CONTRADICTED`]: lines that no total order can
//! hold together with the others. The generated files list each package's
//! versions as the ecosystem's own comparator sorted them, one pair of
//! neighbours per line, and a comparator that is not transitive (Maven's)
//! sorts some versions where no order can put them; `packagist-versions.txt`
//! states `1.2.3.# = 1.2.3` and `1.2.3.# = 1.2.3.1` although `1.2.3 <
//! 1.2.3.1`. Each such line is named with the chain that refutes it, and a
//! test checks that the chain holds and that the line is the one that
//! fails, so the list can neither hide a real failure nor go stale.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use patchline_versions::{Scheme, Version};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/versions");

/// A vector line that no order can hold with the rest: `chain` is a run
/// of comparisons (`x < y = z …`, each a line of the same file or a rule
/// that file states, see `why`) whose ends are the line's two versions, and
/// what the chain implies between its ends is not what the line says.
struct Contradicted {
    file: &'static str,
    line: usize,
    chain: &'static str,
    why: &'static str,
}

const CONTRADICTED: &[Contradicted] = &[
    Contradicted {
        file: "maven-versions-generated.txt",
        line: 2786,
        chain: "1.0.0.RC7-3 < 1.0.0.RC8-beta < 1.0.0 < 1.0.0-gradle-rework-beta1 \
                < 1.0.0-gradle-rework-beta2 < 1.0.0-gradle-rework-beta3",
        why: "RC7 < RC8 (numbers by value), then lines 2782-2785",
    },
    Contradicted {
        file: "maven-versions-generated.txt",
        line: 5776,
        chain: "2.9.0.RC1 < 2.9.0.RC2 < 2.9.0.RC3 < 2.9.0 < 2.9.0-1",
        why: "line 5777, RC2 < RC3 (numbers by value), then lines 5774-5775",
    },
    Contradicted {
        file: "maven-versions-generated.txt",
        line: 12642,
        chain: "1.1.0.Beta1 < 1.1.0.Beta2 < 1.1.0.Final < 1.1.0-01-glassfish",
        why: "lines 41-42, then `1.0 < 1.0-1` (maven-versions.txt)",
    },
    Contradicted {
        file: "packagist-versions.txt",
        line: 96,
        chain: "1.2.3.# = 1.2.3 < 1.2.3.1",
        why: "line 94, then a number past the end is greater (line 75: `1.0.0 > 1.0`)",
    },
];

fn contradicted(file: &str, line: usize) -> Option<&'static Contradicted> {
    CONTRADICTED
        .iter()
        .find(|c| c.file == file && c.line == line)
}

/// Which scheme a vector file exercises, from its name.
fn scheme_for(file: &str) -> Option<Scheme> {
    [
        ("alpine-versions", Scheme::Apk),
        ("debian-versions", Scheme::Dpkg),
        ("pypi-versions", Scheme::Pep440),
        ("redhat-versions", Scheme::Rpm),
        ("semver-versions", Scheme::Semver),
        ("maven-versions", Scheme::Maven),
        ("rubygems-versions", Scheme::RubyGems),
        ("nuget-versions", Scheme::NuGet),
        ("packagist-versions", Scheme::Packagist),
        ("pub-versions", Scheme::Pub),
        ("hackage-versions", Scheme::Hackage),
        ("cran-versions", Scheme::Cran),
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
/// failure (`file:line: ...`). Lines in [`CONTRADICTED`] are left to
/// [`contradicted_lines_close_cycles`].
fn check(scheme: Scheme, name: &str, text: &str) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        if contradicted(name, idx + 1).is_some() {
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

fn parse_op(op: &str) -> Option<Ordering> {
    match op {
        "<" => Some(Ordering::Less),
        "=" => Some(Ordering::Equal),
        ">" => Some(Ordering::Greater),
        _ => None,
    }
}

#[test]
fn contradicted_lines_close_cycles() {
    for c in CONTRADICTED {
        let at = format!("{}:{}", c.file, c.line);
        let scheme = scheme_for(c.file).expect("mapped file");
        let text = std::fs::read_to_string(format!("{DIR}/{}", c.file))
            .unwrap_or_else(|e| panic!("{}: {e}", c.file));
        let line = text.lines().nth(c.line - 1).expect("line exists");
        let [a, op, b] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("{at}: malformed line {line:?}");
        };
        let claimed = parse_op(op).expect("operator");
        let parse = |s: &str| scheme.parse(s).unwrap();
        // Walk the chain: every step must hold, and it implies `<` between
        // its ends if any step is strict, `=` otherwise.
        let chain: Vec<&str> = c.chain.split_whitespace().collect();
        assert!(
            chain.len() >= 3 && chain.len() % 2 == 1,
            "{at}: chain shape"
        );
        let mut implied = Ordering::Equal;
        for step in chain.windows(3).step_by(2) {
            let want = parse_op(step[1]).expect("chain operator");
            assert!(want != Ordering::Greater, "{at}: chains climb");
            assert_eq!(
                parse(step[0]).cmp(&parse(step[2])),
                want,
                "{at}: chain step {} {} {} ({})",
                step[0],
                step[1],
                step[2],
                c.why
            );
            if want == Ordering::Less {
                implied = Ordering::Less;
            }
        }
        let (first, last) = (chain[0], chain[chain.len() - 1]);
        // The implied relation, read in the line's direction (a op b).
        let implied_ab = if (a, b) == (first, last) {
            implied
        } else {
            assert_eq!(
                (a, b),
                (last, first),
                "{at}: chain ends are the line's versions"
            );
            implied.reverse()
        };
        assert_ne!(claimed, implied_ab, "{at}: the chain agrees with the line");
        assert_eq!(parse(a).cmp(&parse(b)), implied_ab, "{at}");
        println!(
            "{at}: {line} contradicts {} ({})",
            c.chain.split_whitespace().collect::<Vec<_>>().join(" "),
            c.why
        );
    }
}
