//! Cross-checks the dpkg ordering against the real `dpkg --compare-versions`
//! when the binary is installed: a deterministic random sample of pairs from
//! `debian-versions-generated.txt` (any two lines, not just the listed
//! pairs), mutated variants of them, and the strings dpkg refuses.

use std::cmp::Ordering;
use std::process::Command;

use patchline_versions::Scheme;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// `dpkg --compare-versions a op b`'s exit code: 0 true, 1 false, 2 error.
fn dpkg(a: &str, op: &str, b: &str) -> Option<i32> {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .output()
        .ok()
        .and_then(|o| o.status.code())
}

fn dpkg_available() -> bool {
    Command::new("dpkg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn agrees_with_dpkg_binary() {
    if !dpkg_available()
        && !patchline_testkit::not_run("agrees_with_dpkg_binary", "no `dpkg` binary")
    {
        return;
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/versions/debian-versions-generated.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut versions: Vec<&str> = text
        .lines()
        .flat_map(|l| l.split_whitespace())
        .filter(|f| !matches!(*f, "<" | "=" | ">"))
        .collect();
    versions.sort_unstable();
    versions.dedup();

    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for _ in 0..300 {
        let a = versions[rng.below(versions.len())];
        let b = versions[rng.below(versions.len())];
        pairs.push((a.to_owned(), b.to_owned()));
    }
    // Mutations probe the rules the archive rarely exercises: tildes, empty
    // digit runs, epochs, revisions of zero, letters versus punctuation and
    // non-ASCII bytes.
    const EDITS: &[&str] = &[
        "~", "~rc1", "+b1", "a", "A", ".0", ".", "+", "-0", "-1~", "é", "00",
    ];
    for _ in 0..100 {
        let base = versions[rng.below(versions.len())];
        let edited = format!("{base}{}", EDITS[rng.below(EDITS.len())]);
        let other = if rng.below(2) == 0 {
            base.to_owned()
        } else {
            format!("{}:{base}", rng.below(3))
        };
        pairs.push((edited, other));
    }

    let mut disagreements = Vec::new();
    for (a, b) in &pairs {
        let ours = Scheme::Dpkg.compare(a, b).unwrap_or_else(|e| panic!("{e}"));
        let op = match ours {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        match dpkg(a, op, b) {
            Some(0) => {}
            code => disagreements.push(format!("we say {a} {op} {b}; dpkg exit {code:?}")),
        }
    }
    // What we reject, dpkg must reject with an error (exit 2), not accept.
    for bad in [
        ":1",
        "a:1",
        "1a:1",
        "2147483648:1",
        "1:",
        "1.0-",
        "1:-1",
        "a b",
    ] {
        assert!(Scheme::Dpkg.parse(bad).is_err(), "{bad}");
        if dpkg(bad, "lt", "1") != Some(2) {
            disagreements.push(format!("we reject {bad:?} but dpkg does not"));
        }
    }
    for d in &disagreements {
        eprintln!("{d}");
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements with dpkg",
        disagreements.len()
    );
    println!("dpkg agreed on {} pairs", pairs.len());
}
