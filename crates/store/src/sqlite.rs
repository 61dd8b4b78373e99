//! The embedded SQLite backend: one file in the data directory, WAL mode,
//! one transaction per batch.

use std::path::{Path, PathBuf};

use patchline_core::inventory::{ComponentId, InvId};
use patchline_core::{AdvIdx, AdvisoryDb, ArtIdx, Catalog, Changes, TenantId, TenantIdx};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{self, ArtifactRow, RecordRow};
use crate::service::{self, Outbox, ServiceState, StoredNotice};
use crate::{CatalogStore, DB_FILE, SecretKeys, StoreError};
use patchline_core::notice::NoticeState;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Prepared statements kept per connection. A commit runs some thirty
/// distinct statements (catalog rows, the outbox's tables); rusqlite keeps
/// 16 by default, so each commit parsed most of them again (found by a
/// profile of the latency benchmark: SQL parsing on every write).
pub(crate) const STATEMENTS_CACHED: usize = 128;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS components (idx INTEGER PRIMARY KEY, purl TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS inventories (
    idx INTEGER PRIMARY KEY,
    base INTEGER REFERENCES inventories(idx),
    added BLOB NOT NULL,
    removed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    tenant INTEGER NOT NULL REFERENCES tenants(idx),
    parent INTEGER,
    relation INTEGER,
    visibility INTEGER NOT NULL,
    name TEXT,
    labels TEXT,
    inventory INTEGER REFERENCES inventories(idx),
    fixes TEXT,
    removed INTEGER NOT NULL DEFAULT 0,
    warnings TEXT,
    supersedes INTEGER
);
CREATE INDEX IF NOT EXISTS artifacts_parent ON artifacts(parent);
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('advisory', 'failure')),
    modified TEXT NOT NULL,
    artifact INTEGER,
    body TEXT NOT NULL
);
";

/// SQLite in `DATA_DIR/patchline.db`.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    keys: SecretKeys,
    /// Opened beside a running server: never writes.
    read_only: bool,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Creates the data directory (0700, whatever the umask) if it is missing.
pub fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(meta) = std::fs::metadata(data_dir)
        && meta.is_dir()
    {
        // An existing directory open to others is closed (when it is the
        // service's to change; its files are 0600 either way).
        if meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| StoreError::Open {
            path: data_dir.display().to_string(),
            source,
        })
}

/// Makes the database file and its companions private to the service's
/// user (0600, whatever the umask): they hold token hashes and secrets.
fn restrict_files(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !db.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(|source| StoreError::Open {
                path: db.display().to_string(),
                source,
            })?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::metadata(&p)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::Open {
                    path: p.display().to_string(),
                    source,
                },
            )?;
        }
    }
    Ok(())
}

/// The pragmas every read-write connection uses. `synchronous = FULL`: a
/// commit is on disk before it returns, so a 2xx survives a power loss.
pub(crate) const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     PRAGMA foreign_keys = OFF;
     PRAGMA busy_timeout = 10000;
     PRAGMA temp_store = MEMORY;";

/// Reads a `meta` value.
fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(db_err)
}

/// Adds a column of type `ty` unless the table has it already (a migration
/// that was interrupted, or a table created by this build).
fn add_column(conn: &Connection, table: &str, column: &str, ty: &str) -> Result<(), StoreError> {
    let exists = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
        .and_then(|mut s| s.exists([table, column]))
        .map_err(db_err)?;
    if !exists {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
            .map_err(db_err)?;
    }
    Ok(())
}

/// Brings a database written by an older build to this schema.
fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    if from < 2 {
        add_column(conn, "tokens", "minted_by", "TEXT")?;
    }
    if from < 3 {
        // Inventory warnings kept with each artifact (a JSON list).
        add_column(conn, "artifacts", "warnings", "TEXT")?;
    }
    if from < 4 {
        // The artifact each one supersedes (its index), for patched
        // successors.
        add_column(conn, "artifacts", "supersedes", "INTEGER")?;
    }
    if from < 5 {
        // What remediated a notice (the step), and the cause of each
        // remediation in the history, for progress by remedy.
        add_column(conn, "notices", "remediated_by", "TEXT")?;
        add_column(conn, "notice_events", "cause", "TEXT")?;
    }
    if from < 6 {
        // Grouped notices: each notice's root cause (`notice_roots`, made
        // by the service schema), and each subscription's grouping (those
        // made before keep one entry per artifact).
        add_column(conn, "notices", "root", "INTEGER")?;
        add_column(
            conn,
            "subscriptions",
            "grouping",
            "TEXT NOT NULL DEFAULT 'artifact'",
        )?;
        // Digest subscriptions: the schedule and last window end
        // (`digest_items` is made by the service schema).
        add_column(conn, "subscriptions", "digest", "TEXT")?;
    }
    if from < 7 {
        // VEX: the free text of a tenant's decision on a notice
        // (`vex_statements` is made by the service schema).
        add_column(conn, "notices", "detail", "TEXT")?;
    }
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1)",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(db_err)?;
    Ok(())
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// SQLite's page cache for work that reads each page about once (a
/// catalog loading, records imported in bulk), in KiB.
const ONCE_CACHE_KIB: u32 = 16 * 1024;

/// SQLite's page cache once the catalog is loaded, for the queries of a
/// large catalog and its service tables, in KiB.
const QUERY_CACHE_KIB: u32 = 256 * 1024;

/// Sets the page cache of `conn` to `kib` KiB.
fn cache_kib(conn: &Connection, kib: u32) -> Result<(), StoreError> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{kib};"))
        .map_err(db_err)
}

impl SqliteStore {
    /// Gives this connection back the small page cache it loaded with (a
    /// loaded catalog's has 256 MiB, for its queries): for a bulk import
    /// that appends records and reads few pages back, where the large
    /// cache only held memory (a quarter of a 100,000-record import's
    /// peak).
    pub fn use_bulk_cache(&self) -> Result<(), StoreError> {
        cache_kib(&self.conn, ONCE_CACHE_KIB)
    }

    /// Opens (creating if needed) the database in `data_dir`, with webhook
    /// secrets stored as they are.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(data_dir, SecretKeys::none())
    }

    /// Opens (creating if needed) the database in `data_dir`; webhook
    /// secrets are sealed under `keys` (and resealed at once when some are
    /// in clear or under a previous key).
    pub fn open_with(data_dir: &Path, keys: SecretKeys) -> Result<SqliteStore, StoreError> {
        create_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        restrict_files(&path)?;
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.execute_batch(PRAGMAS).map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        // A small page cache while the catalog loads (one pass over every
        // table: a cache only holds memory); the queries' cache once it is
        // loaded (`load_all`).
        cache_kib(&conn, ONCE_CACHE_KIB)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        conn.execute_batch(service::SERVICE_SCHEMA)
            .map_err(db_err)?;
        match meta(&conn, "schema")?.as_deref().map(str::parse::<i64>) {
            None => migrate(&conn, SCHEMA_VERSION)?,
            Some(Ok(v)) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    known: SCHEMA_VERSION,
                });
            }
            Some(Ok(v)) if v < SCHEMA_VERSION => migrate(&conn, v)?,
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(StoreError::Corrupt("schema version".into())),
        }
        // After the migration: older notices tables get `root` there.
        conn.execute_batch("CREATE INDEX IF NOT EXISTS notices_root ON notices (root)")
            .map_err(db_err)?;
        if meta(&conn, "installation")?.is_none() {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('installation', ?1)",
                [random_hex(8)?],
            )
            .map_err(db_err)?;
        }
        restrict_files(&path)?;
        service::reseal_secrets(&conn, &keys)?;
        Ok(SqliteStore {
            conn,
            path,
            keys,
            read_only: false,
        })
    }

    /// Opens an existing database for reading only, beside a running
    /// server (which holds the write lock). The service state is not
    /// loaded: reads of the catalog and the records need none of it.
    pub fn open_read_only(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::NoCatalog(data_dir.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
            .map_err(db_err)?;
        match meta(&conn, "schema")?.as_deref().map(str::parse::<i64>) {
            Some(Ok(v)) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    known: SCHEMA_VERSION,
                });
            }
            Some(Ok(_)) => {}
            _ => return Err(StoreError::NoCatalog(data_dir.display().to_string())),
        }
        Ok(SqliteStore {
            conn,
            path,
            keys: SecretKeys::none(),
            read_only: true,
        })
    }

    /// Every stored advisory's id and `modified` as published: what an
    /// incremental import compares before it loads the records whole.
    pub fn advisory_modified(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, modified FROM records WHERE kind = 'advisory'")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// A random id of this installation (made with the database), so that
    /// message ids differ between installations.
    pub fn installation(&self) -> Result<String, StoreError> {
        meta(&self.conn, "installation")?
            .ok_or_else(|| StoreError::Corrupt("no installation id".into()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for read-only baselines in benchmarks.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn load_catalog(&self) -> Result<Catalog, StoreError> {
        let mut catalog = Catalog::new();
        let mut stmt = self
            .conn
            .prepare("SELECT idx, id FROM tenants ORDER BY idx")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?;
        for row in rows {
            let (idx, id) = row.map_err(db_err)?;
            let id = TenantId::from_stored(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let got = catalog.load_tenant(id);
            if i64::from(got.0) != idx {
                return Err(StoreError::Corrupt(format!("tenant index {idx}")));
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT idx, purl FROM components ORDER BY idx")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?;
        for row in rows {
            let (idx, purl) = row.map_err(db_err)?;
            let got = catalog
                .components_mut()
                .intern(&purl)
                .map_err(|e| StoreError::Corrupt(format!("component {purl}: {}", e.0)))?;
            if i64::from(got.0) != idx {
                return Err(StoreError::Corrupt(format!(
                    "component index {idx} ({purl})"
                )));
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT idx, base, added, removed FROM inventories ORDER BY idx")
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let blob = |i: usize| -> Result<&[u8], StoreError> {
                r.get_ref(i)
                    .map_err(db_err)?
                    .as_blob()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            };
            codec::push_inventory(
                &mut catalog,
                r.get(0).map_err(db_err)?,
                r.get(1).map_err(db_err)?,
                blob(2)?,
                blob(3)?,
            )?;
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT idx, id, kind, tenant, parent, relation, visibility, name, labels, inventory, fixes, removed, warnings,
                        supersedes
                 FROM artifacts ORDER BY idx",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut nodes = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let row = ArtifactRow {
                idx: r.get(0).map_err(db_err)?,
                id: r.get(1).map_err(db_err)?,
                kind: r.get(2).map_err(db_err)?,
                tenant: r.get(3).map_err(db_err)?,
                parent: r.get(4).map_err(db_err)?,
                relation: r.get(5).map_err(db_err)?,
                visibility: r.get(6).map_err(db_err)?,
                name: r.get(7).map_err(db_err)?,
                labels: r.get(8).map_err(db_err)?,
                inventory: r.get(9).map_err(db_err)?,
                fixes: r.get(10).map_err(db_err)?,
                removed: r.get(11).map_err(db_err)?,
                warnings: r.get(12).map_err(db_err)?,
                supersedes: r.get(13).map_err(db_err)?,
            };
            if row.idx != nodes.len() as i64 {
                return Err(StoreError::Corrupt(format!("artifact index {}", row.idx)));
            }
            nodes.push(row.into_node(catalog.tenants().len())?);
        }
        catalog
            .load_nodes(nodes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(catalog)
    }

    fn load_records(&self, catalog: &Catalog) -> Result<AdvisoryDb, StoreError> {
        let mut db = AdvisoryDb::new();
        let mut stmt = self
            .conn
            .prepare("SELECT idx, id, kind, artifact, body FROM records ORDER BY idx")
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let body: String = r.get(4).map_err(db_err)?;
            codec::publish_stored(
                &mut db,
                catalog,
                r.get(0).map_err(db_err)?,
                r.get(1).map_err(db_err)?,
                &r.get::<_, String>(2).map_err(db_err)?,
                r.get(3).map_err(db_err)?,
                &body,
            )?;
        }
        Ok(db)
    }
}

impl CatalogStore for SqliteStore {
    fn load(&mut self) -> Result<(Catalog, AdvisoryDb), StoreError> {
        let catalog = self.load_catalog()?;
        let db = self.load_records(&catalog)?;
        Ok((catalog, db))
    }

    /// Loads with the small page cache the store opened with (a pass over
    /// every table filled 256 MiB with pages read once: a fifth of what a
    /// command reading a 100,000-record catalog held), then gives the
    /// connection the queries' cache.
    fn load_all(&mut self) -> Result<(Catalog, AdvisoryDb, ServiceState), StoreError> {
        let (catalog, db) = self.load()?;
        let state = self.load_service()?;
        cache_kib(&self.conn, QUERY_CACHE_KIB)?;
        Ok((catalog, db, state))
    }

    fn commit(
        &mut self,
        catalog: &Catalog,
        changes: &Changes,
        db: &AdvisoryDb,
        records: &[AdvIdx],
        outbox: &Outbox,
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Database(
                "this catalog was opened read-only beside a running server".into(),
            ));
        }
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO tenants (idx, id) VALUES (?1, ?2)")
                .map_err(db_err)?;
            for t in changes.tenants.clone() {
                stmt.execute(params![t as i64, catalog.tenants()[t].as_str()])
                    .map_err(db_err)?;
            }
            let mut stmt = tx
                .prepare_cached("INSERT INTO components (idx, purl) VALUES (?1, ?2)")
                .map_err(db_err)?;
            for c in changes.components.clone() {
                let comp = catalog.components().get(ComponentId(c as u32));
                stmt.execute(params![c as i64, &*comp.purl])
                    .map_err(db_err)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO inventories (idx, base, added, removed) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err)?;
            for i in changes.inventories.clone() {
                let obj = catalog.inventories().get(InvId(i as u32));
                stmt.execute(params![
                    i as i64,
                    obj.base.map(|b| i64::from(b.0)),
                    codec::ids_to_blob(&obj.added, |c| c.0),
                    codec::ids_to_blob(&obj.removed, |c| c.0),
                ])
                .map_err(db_err)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO artifacts
                     (idx, id, kind, tenant, parent, relation, visibility, name, labels, inventory, fixes, removed, warnings,
                      supersedes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT(idx) DO UPDATE SET parent = excluded.parent, relation = excluded.relation,
                       visibility = excluded.visibility, name = excluded.name, labels = excluded.labels,
                       inventory = excluded.inventory, fixes = excluded.fixes, removed = excluded.removed,
                       warnings = excluded.warnings, supersedes = excluded.supersedes",
                )
                .map_err(db_err)?;
            for &a in &changes.artifacts {
                let row = ArtifactRow::of(catalog, a)?;
                stmt.execute(params![
                    row.idx,
                    row.id,
                    row.kind,
                    row.tenant,
                    row.parent,
                    row.relation,
                    row.visibility,
                    row.name,
                    row.labels,
                    row.inventory,
                    row.fixes,
                    row.removed,
                    row.warnings,
                    row.supersedes,
                ])
                .map_err(db_err)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO records (idx, id, kind, modified, artifact, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db_err)?;
            for &r in records {
                let row = RecordRow::of(db, r)?;
                stmt.execute(params![
                    row.idx,
                    row.id,
                    row.kind,
                    row.modified,
                    row.artifact,
                    row.body
                ])
                .map_err(db_err)?;
            }
        }
        service::write_outbox(&tx, outbox, &self.keys)?;
        tx.commit().map_err(db_err)
    }

    fn load_service(&mut self) -> Result<ServiceState, StoreError> {
        if self.read_only {
            return Ok(ServiceState::default());
        }
        service::load_service(&self.conn, &self.keys)
    }

    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        service::notices_of_advisory(&self.conn, adv)
    }

    fn notices_of_artifact(
        &mut self,
        a: ArtIdx,
    ) -> Result<Vec<service::ArtifactNotice>, StoreError> {
        service::notices_of_artifact(&self.conn, a)
    }

    fn announced(&mut self, successor: ArtIdx) -> Result<Vec<(TenantIdx, AdvIdx)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tenant, record FROM patch_notices WHERE successor = ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([successor.0], |r| {
                Ok((TenantIdx(r.get(0)?), AdvIdx(r.get(1)?)))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    fn notices_on(
        &mut self,
        adv: AdvIdx,
        artifacts: &[ArtIdx],
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        service::notices_on(&self.conn, adv, artifacts)
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        service::notice_by_id(&self.conn, id)
    }

    fn root_ids(
        &mut self,
        adv: AdvIdx,
        causes: &[patchline_core::remedy::RootCause],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        service::root_ids(&self.conn, adv, causes)
    }

    fn root_members(&mut self, root: i64) -> Result<Option<service::RootMembers>, StoreError> {
        service::root_members(&self.conn, root)
    }

    fn root_plans_near(
        &mut self,
        arts: &[ArtIdx],
        adv: Option<AdvIdx>,
    ) -> Result<Vec<service::RootPlan>, StoreError> {
        service::root_plans_near(&self.conn, arts, adv)
    }

    fn digest_window(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<service::DigestWindow, StoreError> {
        service::digest_window(&self.conn, subscription, tenant, from_ms, to_ms, limit)
    }

    fn open_notices_of(
        &mut self,
        tenant: TenantIdx,
    ) -> Result<Vec<(i64, AdvIdx, ArtIdx)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, advisory, artifact FROM notices
                 WHERE tenant = ?1 AND state IN ('affected', 'notified', 'acknowledged')
                 ORDER BY id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([tenant.0], |r| {
                Ok((r.get(0)?, AdvIdx(r.get(1)?), ArtIdx(r.get(2)?)))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    fn due_reminders(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        service::due_reminders(&self.conn, before_ms, limit)
    }
}
