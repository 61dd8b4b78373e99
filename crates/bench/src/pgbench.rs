//! `--service --store postgres://…`: a fresh database for one run of the
//! service benchmark, made on the server the URL names and dropped
//! afterwards (unless `--keep`), and the server settings the figures
//! depend on.

use anyhow::Context;

/// A database made for this run (`patchline_bench_<pid>`).
#[derive(Debug)]
pub struct Scratch {
    /// The given URL with its database replaced by the scratch one.
    pub url: String,
    name: String,
    admin_url: String,
}

fn connect(url: &str) -> anyhow::Result<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls).with_context(|| {
        format!(
            "cannot connect to {}",
            patchline_store::postgres::redact_url(url)
        )
    })
}

impl Scratch {
    /// Makes the database (after dropping one of the same name a crashed
    /// run of this process id may have left).
    pub fn create(admin_url: &str) -> anyhow::Result<Scratch> {
        let name = format!("patchline_bench_{}", std::process::id());
        let mut admin = connect(admin_url)?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = patchline_testkit::postgres::with_database(admin_url, &name)
            .context("a postgres:// URL")?;
        eprintln!(
            "PostgreSQL database {}",
            patchline_store::postgres::redact_url(&url)
        );
        Ok(Scratch {
            url,
            name,
            admin_url: admin_url.to_string(),
        })
    }

    /// Drops the database (closing any session left on it), or says where
    /// it was kept.
    pub fn finish(self, keep: bool) {
        if keep {
            eprintln!(
                "kept the PostgreSQL database {}",
                patchline_store::postgres::redact_url(&self.url)
            );
            return;
        }
        let dropped = connect(&self.admin_url).and_then(|mut admin| {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .map_err(anyhow::Error::from)
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the database {}: {e:#}", self.name);
        }
    }
}

/// The server's version and the settings a durable commit's cost depends
/// on, as `SHOW` gives them.
pub fn settings(url: &str) -> anyhow::Result<String> {
    let mut client = connect(url)?;
    let mut out = Vec::new();
    for name in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "shared_buffers",
        "max_wal_size",
        "checkpoint_timeout",
        "work_mem",
        "autovacuum",
    ] {
        let value: String = client.query_one(&format!("SHOW {name}"), &[])?.get(0);
        out.push(format!("{name} = {value}"));
    }
    Ok(out.join(", "))
}
