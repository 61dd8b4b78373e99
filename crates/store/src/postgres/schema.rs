//! The PostgreSQL schema and its migrations. `MIGRATIONS[i]` brings a
//! database at schema `i` to schema `i + 1`; the version reached is kept in
//! `meta` under `schema`. A change to the schema is a new entry at the end,
//! never an edit of one that shipped.
//!
//! The tables are those of the SQLite backend, with PostgreSQL's types:
//! numbers are `BIGINT`, `removed` is a `BOOLEAN`, blobs are `BYTEA` (same
//! little-endian encoding as in SQLite), a delivery's notices are a
//! `BIGINT[]`, and states carry `CHECK` constraints. As in SQLite, foreign
//! keys are not enforced (the engine writes rows in dependency order inside
//! one transaction, and loading checks every reference). Every table is
//! logged (no `UNLOGGED`): a crash of the server loses nothing committed.

/// The advisory lock under which a node migrates (`pg_advisory_xact_lock`):
/// nodes started at the same moment on an empty database wait for the first
/// one and then find the schema made. The bytes spell `patchlin`.
pub(super) const MIGRATION_LOCK: i64 = 0x7061_7463_686c_696e;

/// Created before anything else, so the version can be read.
pub(super) const META: &str =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Schema 0 → 1: the catalog, the records and the service's state.
const V1: &str = "
CREATE TABLE tenants (idx BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE components (idx BIGINT PRIMARY KEY, purl TEXT NOT NULL UNIQUE);
CREATE TABLE inventories (
    idx BIGINT PRIMARY KEY,
    base BIGINT,
    added BYTEA NOT NULL,
    removed BYTEA NOT NULL
);
CREATE TABLE artifacts (
    idx BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind BIGINT NOT NULL,
    tenant BIGINT NOT NULL,
    parent BIGINT,
    relation BIGINT,
    visibility BIGINT NOT NULL,
    name TEXT,
    labels TEXT,
    inventory BIGINT,
    fixes TEXT,
    removed BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX artifacts_parent ON artifacts (parent);
CREATE TABLE records (
    idx BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('advisory', 'failure')),
    modified TEXT NOT NULL,
    artifact BIGINT,
    body TEXT NOT NULL
);

CREATE TABLE tenant_roles (tenant BIGINT PRIMARY KEY, roles TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    tenant BIGINT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    minted_by TEXT
);
CREATE TABLE record_owners (record BIGINT PRIMARY KEY, tenant BIGINT NOT NULL);
CREATE TABLE id_prefixes (prefix TEXT PRIMARY KEY, tenant BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    tenant BIGINT NOT NULL,
    channel TEXT NOT NULL,
    filter TEXT NOT NULL,
    secrets TEXT NOT NULL,
    state TEXT NOT NULL,
    disabled_reason TEXT,
    rate_per_s BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE watches (tenant BIGINT NOT NULL, artifact BIGINT NOT NULL, PRIMARY KEY (tenant, artifact));
CREATE TABLE notice_groups (
    id BIGINT PRIMARY KEY,
    advisory BIGINT NOT NULL,
    components TEXT NOT NULL
);
CREATE TABLE notices (
    id BIGINT PRIMARY KEY,
    advisory BIGINT NOT NULL,
    artifact BIGINT NOT NULL,
    tenant BIGINT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('affected', 'notified', 'acknowledged', 'remediated', 'not_affected')),
    justification TEXT,
    grp BIGINT NOT NULL,
    path BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    reminders BIGINT NOT NULL DEFAULT 0,
    reminded_at BIGINT NOT NULL,
    UNIQUE (advisory, artifact)
);
CREATE INDEX notices_tenant ON notices (tenant, id);
CREATE INDEX notices_artifact ON notices (artifact);
CREATE INDEX notices_due ON notices (reminded_at) WHERE state IN ('affected', 'notified');
CREATE TABLE notice_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice BIGINT NOT NULL,
    advisory BIGINT NOT NULL,
    state TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX notice_events_advisory ON notice_events (advisory, at);
CREATE TABLE deliveries (
    id BIGINT PRIMARY KEY,
    subscription TEXT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('notice', 'reminder', 'escalation')),
    notices BIGINT[] NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'in_flight', 'delivered', 'failed', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
-- What a claim scans: only queued rows, in the order they are claimed.
CREATE INDEX deliveries_due ON deliveries (next_at, id) WHERE state IN ('pending', 'failed');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'in_flight';
CREATE INDEX deliveries_subscription ON deliveries (subscription, state);
";

/// Schema 1 → 2: inventory warnings kept with each artifact (a JSON list,
/// NULL when there are none).
const V2: &str = "ALTER TABLE artifacts ADD COLUMN warnings TEXT;";

/// Schema 2 → 3: the change log of a deployment of several nodes. Each
/// committed change that other nodes must apply gets the next `seq` (one
/// writer at a time, under the write lock; the primary key refuses a
/// second writer that did not catch up): which artifacts and records it
/// wrote (little-endian `u32` indexes), whether it touched the service
/// state, the reading tenants of the notices it created (runs of
/// `tenant u32, first id i64, count u32`) and how many deliveries it
/// queued. New tenants, components and inventories need no list: they are
/// appended, and a follower reads those past what it holds.
const V3: &str = "
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY CHECK (seq > 0),
    at BIGINT NOT NULL,
    artifacts BYTEA NOT NULL,
    records BYTEA NOT NULL,
    service BOOLEAN NOT NULL,
    readers BYTEA NOT NULL,
    deliveries BIGINT NOT NULL
);
";

/// Schema 3 → 4: budgets that hold over a deployment of several nodes
/// (a tenant's creations of taken ids): a token bucket per key.
const V4: &str = "
CREATE TABLE budgets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at BIGINT NOT NULL
);
";

/// Schema 4 → 5: the artifact each one supersedes (its index), for
/// patched successors.
const V5: &str = "ALTER TABLE artifacts ADD COLUMN supersedes BIGINT;";

/// Schema 5 → 6: patch notices (a successor announced to a tenant, for one
/// record and root cause; ids from the notices' sequence) and deliveries
/// of purpose `patch`, which carry their ids.
const V6: &str = "
CREATE TABLE patch_notices (
    id BIGINT PRIMARY KEY,
    tenant BIGINT NOT NULL,
    record BIGINT NOT NULL,
    successor BIGINT NOT NULL,
    doc TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX patch_notices_tenant ON patch_notices (tenant, id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('notice', 'reminder', 'escalation', 'patch'));
";

/// Schema 6 → 7: what remediated a notice (the step, a JSON document the
/// store keeps as given), and the cause of each remediation in the
/// history, for progress by remedy.
const V7: &str = "
ALTER TABLE notices ADD COLUMN remediated_by TEXT;
ALTER TABLE notice_events ADD COLUMN cause TEXT;
CREATE INDEX patch_notices_successor ON patch_notices (successor);
";

/// Schema 7 → 8: grouped notices and digests. A root cause (tenant,
/// record, top-most `introduced_by`, remedy step) with an id from the
/// notices' sequence, each notice's root, each subscription's grouping
/// (those made before keep one entry per artifact) and digest schedule,
/// the notices routed to digest subscriptions, and the purpose `digest`.
const V8: &str = "
CREATE TABLE notice_roots (
    id BIGINT PRIMARY KEY,
    tenant BIGINT NOT NULL,
    advisory BIGINT NOT NULL,
    introduced_by BIGINT NOT NULL,
    step BIGINT NOT NULL,
    action TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    waits_for BIGINT,
    onto BIGINT,
    UNIQUE (tenant, advisory, introduced_by, step, action)
);
ALTER TABLE notices ADD COLUMN root BIGINT;
CREATE INDEX notices_root ON notices (root);
ALTER TABLE subscriptions ADD COLUMN grouping TEXT NOT NULL DEFAULT 'artifact';
ALTER TABLE subscriptions ADD COLUMN digest TEXT;
CREATE TABLE digest_items (
    subscription TEXT NOT NULL,
    notice BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (subscription, notice)
);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('notice', 'reminder', 'escalation', 'patch', 'digest'));
";

/// Schema 8 → 9: the roots a change of one artifact can touch, found by
/// step, by what a step waits for and by the successor it moves onto.
const V9: &str = "
CREATE INDEX notice_roots_step ON notice_roots (step);
CREATE INDEX notice_roots_waits_for ON notice_roots (waits_for);
CREATE INDEX notice_roots_onto ON notice_roots (onto);
";

/// Schema 9 → 10: marking a notice `notified`, which every delivery does
/// to each notice it carries, becomes a HOT update (a new row version on
/// the same page, no index entry). PostgreSQL makes one only when no
/// indexed column changes value, and a partial index's predicate counts:
/// `notices_due` named `state`, so every mark wrote a version on another
/// page and an entry in each index of the table. The predicate now reads
/// `open`, a column PostgreSQL derives from `state` that the mark leaves
/// true. Half of each page is left free (`fillfactor`), so a page whose
/// notices are all marked in one round keeps their new versions (the fan-out
/// writes each delivery's notices next to each other). The `ADD COLUMN`
/// rewrites the table, with the new fill factor.
const V10: &str = "
ALTER TABLE notices SET (fillfactor = 50);
ALTER TABLE notices ADD COLUMN open BOOLEAN
    GENERATED ALWAYS AS (state IN ('affected', 'notified')) STORED;
DROP INDEX notices_due;
CREATE INDEX notices_due ON notices (reminded_at) WHERE open;
";

/// Schema 10 → 11: a claim becomes a HOT update, as marking a notice did
/// in schema 10. A claim used to set `state = 'in_flight'`, which moved
/// the row out of `deliveries_due` and into `deliveries_leased`: a version
/// on another page and an entry in every index, then the same again when
/// the result came. A claim now writes only `lease_until`, which no index
/// names (`deliveries_leased` is dropped; a claim takes a row whose lease
/// ran out), and half of each page is left free for the leased versions.
/// Rows in flight when the schema changes keep their leases as pending
/// rows. `VACUUM FULL` would rewrite the table with the new fill factor;
/// the migration leaves existing pages as they are (new rows get it).
const V11: &str = "
UPDATE deliveries SET state = 'pending' WHERE state = 'in_flight';
DROP INDEX deliveries_leased;
ALTER TABLE deliveries SET (fillfactor = 50);
";

/// Schema 11 → 12: each claim of a delivery is counted (`claims`), and an
/// attempt's result is recorded only under the claim it was made under:
/// a node that stalled past its lease no longer overwrites the result of
/// the node that claimed the delivery after it (found from outside: a
/// node stopped for 40 s turned 18 delivered rows back into failed, and
/// sent them a third time). No index names the column: a claim stays a
/// HOT update. Adding a column with a constant default rewrites nothing.
const V12: &str = "ALTER TABLE deliveries ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;";

/// Schema 12 → 13: a claim also sets `next_at` to the end of its lease,
/// so the due index lists only what is due and a claim no longer steps
/// over the rows other claims hold (it read every leased row at the head
/// of the index: with three nodes, 1,536 rows a claim). The claim is no
/// longer a HOT update (it moves the row in `deliveries_due`); the rows
/// leased when the schema changes are dated the same way.
const V13: &str = "
UPDATE deliveries SET next_at = lease_until
 WHERE state IN ('pending', 'failed') AND lease_until IS NOT NULL AND lease_until > next_at;
";

/// Schema 13 → 14: VEX. The free text of a tenant's decision on a notice
/// (`detail`, beside its justification), and the tenants' VEX statements
/// on their artifacts, which cover each artifact's subtree: a notice that
/// appears there later takes the decision.
const V14: &str = "
ALTER TABLE notices ADD COLUMN detail TEXT;
CREATE TABLE vex_statements (
    tenant BIGINT NOT NULL,
    artifact BIGINT NOT NULL,
    name TEXT NOT NULL,
    packages TEXT NOT NULL,
    names TEXT NOT NULL,
    subtree BOOLEAN NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('acknowledged', 'not_affected')),
    justification TEXT,
    detail TEXT,
    at BIGINT NOT NULL,
    ord BIGINT NOT NULL,
    PRIMARY KEY (tenant, artifact, name, packages)
);
";

/// Every migration, in order.
pub(super) const MIGRATIONS: &[&str] =
    &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14];

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
