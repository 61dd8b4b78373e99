//! os-release parsing (os-release(5) shell-style values) and the distro
//! string derived from it.

mod common;

use common::assert_err_contains;
use patchline_formats::os_release::{self, split_distro};

#[test]
fn real_files() {
    let cases: &[(&str, &str, &[&str], Option<&str>)] = &[
        (
            // Debian 12
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n",
            "debian-12",
            &[],
            Some("bookworm"),
        ),
        (
            // Ubuntu 18.04
            "NAME=\"Ubuntu\"\nVERSION=\"18.04.6 LTS (Bionic Beaver)\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 18.04.6 LTS\"\nVERSION_ID=\"18.04\"\nVERSION_CODENAME=bionic\nUBUNTU_CODENAME=bionic\n",
            "ubuntu-18.04",
            &["debian"],
            Some("bionic"),
        ),
        (
            // Alpine 3.18
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\nHOME_URL=\"https://alpinelinux.org/\"\n",
            "alpine-3.18.4",
            &[],
            None,
        ),
        (
            // Rocky, single quotes and several ID_LIKE
            "# comment\n\nID='rocky'\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\r\n",
            "rocky-9.3",
            &["rhel", "centos", "fedora"],
            None,
        ),
        // Debian sid: no VERSION_ID
        (
            "ID=debian\nVERSION_CODENAME=trixie\n",
            "debian",
            &[],
            Some("trixie"),
        ),
        // No ID: defaults to linux
        ("NAME=Thing\n", "linux", &[], None),
    ];
    for (text, distro, like, codename) in cases {
        let os = os_release::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(os.distro().as_deref(), Some(*distro));
        assert_eq!(os.id_like, *like);
        assert_eq!(os.version_codename.as_deref(), *codename);
    }
}

#[test]
fn quoting() {
    let os = os_release::parse(
        "ID=x\nPRETTY_NAME=\"A \\\"quoted\\\" \\$name\\\\ with `tick` \\n\"\nVERSION_ID=1'.'2\"\" # trailing\n",
    )
    .unwrap();
    assert_eq!(
        os.pretty_name.as_deref(),
        Some("A \"quoted\" $name\\ with `tick` \\n")
    );
    assert_eq!(os.version_id.as_deref(), Some("1.2"));
    let os = os_release::parse("ID=debian   # the id\n").unwrap();
    assert_eq!(os.id, "debian");
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "ID=debian\nthis line has no equals\n",
            &["os-release", "line 2", "KEY=value"],
        ),
        (
            "ID=debian\nPRETTY_NAME=\"open\n",
            &["line 2", "unterminated double quote"],
        ),
        ("ID='x\n", &["line 1", "single quote"]),
        ("1ID=x\n", &["line 1", "variable name"]),
        (
            "PRETTY_NAME=two words\n",
            &["line 1", "unquoted whitespace"],
        ),
    ];
    for (text, fragments) in cases {
        let err = os_release::parse(text).unwrap_err();
        assert_err_contains(&err, fragments);
    }
}

#[test]
fn distro_strings_split() {
    assert_eq!(split_distro("debian-12"), ("debian", Some("12")));
    assert_eq!(split_distro("alpine-3.18.4"), ("alpine", Some("3.18.4")));
    assert_eq!(
        split_distro("opensuse-leap-15.5"),
        ("opensuse-leap", Some("15.5"))
    );
    assert_eq!(split_distro("debian"), ("debian", None));
}
