//! Hardening items 7 and 13: what the store leaves on disk. A 2xx means
//! fsynced (`synchronous = FULL` in WAL mode), and the files are private to
//! the service's user whatever the umask.

use std::os::unix::fs::PermissionsExt;

use patchline_store::sqlite::SqliteStore;

#[test]
fn item13_commits_are_synchronous() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).unwrap();
    let mode: i64 = store
        .connection()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "synchronous must be FULL (2), not NORMAL (1)");
    let journal: String = store
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn item07_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let _store = SqliteStore::open(&data).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in ["patchline.db", "patchline.db-wal", "patchline.db-shm"] {
        let p = data.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    // A database left readable by an older version is made private.
    drop(_store);
    std::fs::set_permissions(
        data.join("patchline.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _again = SqliteStore::open(&data).unwrap();
    assert_eq!(mode(&data.join("patchline.db")), 0o600);
    assert_eq!(mode(&data), 0o700, "a directory left open is closed");
}
