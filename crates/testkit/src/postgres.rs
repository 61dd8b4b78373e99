//! A PostgreSQL database of its own for each test, from the server named by
//! `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets it), and PostgreSQL
//! servers of a test's own ([`OwnPostgres`]), to stop and start.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The URL of the test server, or `None` after [`patchline_testkit::not_run`].
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("PATCHLINE_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            crate::not_run(
                test,
                "PATCHLINE_TEST_POSTGRES_URL is not set (a PostgreSQL server for the tests, \
                 e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            None
        }
    }
}

/// `url` with its database replaced by `db` (the query string kept);
/// `None` when `url` is not of the form `SCHEME://…`.
pub fn with_database(url: &str, db: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A database made for one test (`patchline_t_<pid>_<n>`), dropped when
/// the guard is, even when the test failed.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDb {
    /// A fresh, empty database, or `None` after `not_run` (no URL, or the
    /// server is not there).
    pub fn create(test: &str) -> Option<TestDb> {
        let admin_url = postgres_url(test)?;
        let name = format!(
            "patchline_t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = match postgres::Client::connect(&admin_url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                crate::not_run(
                    test,
                    &format!(
                        "cannot reach PostgreSQL (PATCHLINE_TEST_POSTGRES_URL): {e}{}",
                        std::error::Error::source(&e)
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    ),
                );
                return None;
            }
        };
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(TestDb {
            url: with_database(&admin_url, &name).expect("a postgres:// URL"),
            name,
            admin_url,
        })
    }

    /// A plain connection, for what the traits do not show.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// Runs SQL as the administrator (e.g. `ALTER DATABASE`).
    pub fn admin(&self, sql: &str) {
        let mut admin = postgres::Client::connect(&self.admin_url, postgres::NoTls).unwrap();
        admin.batch_execute(sql).unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Where Debian's PostgreSQL keeps `initdb` and `pg_ctl`: the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL server of the test's own (never the machine's shared one),
/// for outage tests: a cluster made by `initdb` in a directory of its own
/// (trust authentication, user `postgres`), on a free port of the given
/// addresses and a socket directory of its own, stopped and started again
/// with `pg_ctl`. As root the tools run as `postgres` (`runuser`), since
/// PostgreSQL refuses to run as root. Stopped (immediate) and its
/// directory removed when dropped.
#[derive(Debug)]
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    listen: Vec<String>,
    pub port: u16,
    running: bool,
}

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

impl OwnPostgres {
    /// Makes and starts the cluster, listening on `listen` (addresses of
    /// this host); `None` after [`crate::not_run`] when the PostgreSQL
    /// server tools (or, as root, `runuser` and a `postgres` user) are
    /// missing.
    pub fn start(test: &str, listen: &[&str]) -> Option<OwnPostgres> {
        let Some(bin) = server_bin_dir() else {
            crate::not_run(
                test,
                "the PostgreSQL server tools (initdb, pg_ctl under /usr/lib/postgresql/*/bin) \
                 are not installed (Debian: postgresql)",
            );
            return None;
        };
        let as_postgres = crate::is_root();
        let uid = |user: &str| {
            Command::new("id")
                .args(["-u", user])
                .output()
                .ok()
                .filter(|o| o.status.success())
        };
        if as_postgres && (!crate::has_tool("runuser") || uid("postgres").is_none()) {
            crate::not_run(
                test,
                "running as root, a PostgreSQL cluster needs `runuser` and a `postgres` user",
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "patchline-pg-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sockets")).unwrap();
        if as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown postgres {}", dir.display());
        }
        let port = {
            let l = std::net::TcpListener::bind((listen[0], 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let mut pg = OwnPostgres {
            bin,
            dir,
            as_postgres,
            listen: listen.iter().map(|a| a.to_string()).collect(),
            port,
            running: false,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                "data",
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        // initdb lets in loopback only; clients on a directly connected
        // network too (a test's network namespace).
        let hba = pg.dir.join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("\nhost all all samenet trust\n");
        std::fs::write(&hba, rules).unwrap();
        pg.start_again();
        Some(pg)
    }

    /// Runs one of the server tools in the cluster's directory; panics
    /// with its output when it fails.
    fn run(&self, tool: &str, args: &[&str]) {
        if let Err(why) = self.try_run(tool, args) {
            panic!("{why}");
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        ))
    }

    /// Starts the server (again) on the same port and data; waits until
    /// it accepts connections.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses={} -k {}",
            self.port,
            self.listen.join(","),
            self.dir.join("sockets").display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                "data",
                "-l",
                "server.log",
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: every server process ends at once, with
    /// no checkpoint (recovery replays the WAL at the next start), as in a
    /// crash of the database server.
    pub fn stop_immediate(&mut self) {
        self.run("pg_ctl", &["-D", "data", "-m", "immediate", "-w", "stop"]);
        self.running = false;
    }

    /// `postgres://postgres@HOST:PORT/postgres` for one of its addresses.
    pub fn url(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// A connection as `postgres` over loopback (the cluster must listen
    /// on 127.0.0.1).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("127.0.0.1"), postgres::NoTls).unwrap()
    }

    /// From now on every commit that writes stops after its commit record
    /// is flushed to the WAL and before it answers: it waits (`SyncRep`)
    /// for a synchronous standby that does not exist. A server stopped
    /// then has committed what the client never heard about.
    pub fn hold_commits(&self) {
        let mut c = self.client();
        c.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'patchline_no_standby'")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    }

    /// Undoes [`OwnPostgres::hold_commits`] while the server is stopped
    /// (`ALTER SYSTEM` writes `postgresql.auto.conf`; the next start reads
    /// it without the setting). The file keeps its owner.
    pub fn release_commits_when_stopped(&self) {
        assert!(!self.running, "the server must be stopped");
        std::fs::write(
            self.dir.join("data/postgresql.auto.conf"),
            "# Do not edit this file manually!\n\
             # It will be overwritten by the ALTER SYSTEM command.\n",
        )
        .unwrap();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.try_run("pg_ctl", &["-D", "data", "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
