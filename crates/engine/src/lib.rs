//! The engine: the in-memory catalog and advisory database kept durable by
//! a [`CatalogStore`]. Every entry point (CLI, HTTP, scan) goes through it:
//! a batch of artifacts is applied whole or not at all, published records
//! are stored before they are evaluated, and impact questions are answered
//! from the current state, so that an artifact created after an advisory is
//! matched at once (PRODUCT.md §4.5).

pub mod jsonl;
pub mod report;

use std::collections::HashMap;
use std::path::Path;

use patchline_core::advisory::Failure;
use patchline_core::propagate::{self, ArtifactMatch, Impact, MatchCache};
use patchline_core::{
    Actor, AdvIdx, Advisory, AdvisoryDb, AdvisoryError, ArtIdx, ArtifactSpec, Catalog,
    CatalogError, Inheritance, Mode, Outcome, Published, Record,
};
use patchline_store::sqlite::SqliteStore;
use patchline_store::{CatalogStore, StoreError};
use thiserror::Error;

/// Most example matches a batch report keeps (the counts are exact).
pub const REPORT_EXAMPLES_MAX: usize = 1000;
/// How often batch progress is reported, in items.
pub const PROGRESS_EVERY: usize = 4096;

/// Why an engine operation failed. Rejections leave everything unchanged.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{}{error}", location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Rejected {
        location: Option<String>,
        error: CatalogError,
    },
    #[error("{}{error}", location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Advisory {
        location: Option<String>,
        error: AdvisoryError,
    },
    #[error("unknown {what} {id}")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One artifact of a batch, with where it came from (`line 12`).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub location: String,
    pub spec: ArtifactSpec,
}

/// A record (advisory or failure) affecting an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub artifact: ArtIdx,
    pub advisory: AdvIdx,
}

/// What a batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// (artifact, record) pairs now affected among the changed artifacts
    /// and, for updated ones, their descendants.
    pub affected_pairs: usize,
    pub examples: Vec<Match>,
}

/// What publishing a set of records did.
#[derive(Debug, Default, Clone)]
pub struct PublishReport {
    pub outcomes: Vec<Published>,
}

/// The engine over a store backend.
#[derive(Debug)]
pub struct Engine<S = SqliteStore> {
    store: S,
    catalog: Catalog,
    db: AdvisoryDb,
    inheritance: Option<Inheritance>,
    /// Component → advisories, kept across batches (see `MatchCache`).
    match_cache: MatchCache,
}

impl Engine<SqliteStore> {
    /// Opens the embedded store in `data_dir` and loads it.
    pub fn open(data_dir: &Path) -> Result<Engine<SqliteStore>, EngineError> {
        Engine::with_store(SqliteStore::open(data_dir)?)
    }
}

impl<S: CatalogStore> Engine<S> {
    pub fn with_store(mut store: S) -> Result<Engine<S>, EngineError> {
        let (catalog, db) = store.load()?;
        Ok(Engine {
            store,
            catalog,
            db,
            inheritance: None,
            match_cache: MatchCache::new(),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn db(&self) -> &AdvisoryDb {
        &self.db
    }

    /// The catalog to mutate without persisting (benchmarks, what-if
    /// checks), with the advisory database. Roll the catalog back to a
    /// checkpoint before calling anything that commits.
    pub fn parts_mut(&mut self) -> (&mut Catalog, &AdvisoryDb) {
        self.inheritance = None;
        (&mut self.catalog, &self.db)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// After a failed commit the memory may be ahead of the store: reload
    /// so that what is answered is what is durable.
    fn reload(&mut self) -> Result<(), EngineError> {
        let (catalog, db) = self.store.load()?;
        self.catalog = catalog;
        self.db = db;
        self.inheritance = None;
        Ok(())
    }

    /// Applies a batch atomically: the first rejected item (or the first
    /// item the caller could not even read) rolls back the whole batch and is
    /// reported with its location. `progress` is called with the number of
    /// items applied so far, every [`PROGRESS_EVERY`] items.
    pub fn apply_batch<I>(
        &mut self,
        items: I,
        mode: Mode,
        actor: &Actor,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BatchReport, EngineError>
    where
        I: IntoIterator<Item = Result<BatchItem, EngineError>>,
    {
        let cp = self.catalog.checkpoint();
        let mut report = BatchReport::default();
        let mut changed = Vec::new();
        for (n, item) in items.into_iter().enumerate() {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.catalog.rollback(cp);
                    return Err(e);
                }
            };
            match self.catalog.apply(&item.spec, mode, actor) {
                Ok(Outcome::Created(a)) => {
                    report.created += 1;
                    changed.push((a, false));
                }
                Ok(Outcome::Updated(a)) => {
                    report.updated += 1;
                    changed.push((a, true));
                }
                Ok(Outcome::Unchanged(_)) => report.unchanged += 1,
                Err(error) => {
                    self.catalog.rollback(cp);
                    return Err(EngineError::Rejected {
                        location: Some(item.location),
                        error,
                    });
                }
            }
            if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                progress(n + 1);
            }
        }
        self.commit_catalog(&[])?;
        self.count_matches(&changed, &mut report);
        Ok(report)
    }

    /// Removes artifacts (instances deleted, images retired).
    pub fn remove(&mut self, ids: &[&str], actor: &Actor) -> Result<usize, EngineError> {
        let cp = self.catalog.checkpoint();
        for id in ids {
            if let Err(error) = self.catalog.remove(id, actor) {
                self.catalog.rollback(cp);
                return Err(EngineError::Rejected {
                    location: None,
                    error,
                });
            }
        }
        self.commit_catalog(&[])?;
        Ok(ids.len())
    }

    fn commit_catalog(&mut self, records: &[AdvIdx]) -> Result<(), EngineError> {
        let changes = self.catalog.take_changes();
        if changes.is_empty() && records.is_empty() {
            return Ok(());
        }
        self.inheritance = None;
        if let Err(e) = self
            .store
            .commit(&self.catalog, &changes, &self.db, records, &Default::default())
        {
            self.reload()?;
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks changed artifacts (and the subtrees of updated ones) against
    /// every open record. Artifacts that inherit an inventory share their
    /// holder's advisory matches, so a million new instances cost a million
    /// lookups, not a million inventory scans.
    fn count_matches(&mut self, changed: &[(ArtIdx, bool)], report: &mut BatchReport) {
        if self.db.is_empty() {
            return;
        }
        let Engine {
            catalog,
            db,
            match_cache,
            ..
        } = self;
        let (catalog, db) = (&*catalog, &*db);
        // Per holder only the advisory ids are kept: a batch of a million
        // instances over thousands of images must not hold every match.
        let mut by_holder: HashMap<ArtIdx, Vec<AdvIdx>> = HashMap::new();
        let mut visit = |a: ArtIdx, report: &mut BatchReport| {
            let holder = catalog.inventory_holder(a);
            let advisories: &[AdvIdx] = match holder {
                Some(h) => by_holder.entry(h).or_insert_with(|| {
                    propagate::advisory_matches_cached(catalog, db, h, match_cache)
                        .into_iter()
                        .map(|m| m.advisory)
                        .collect()
                }),
                None => &[],
            };
            let failures = propagate::failure_matches(catalog, db, a);
            report.affected_pairs += advisories.len() + failures.len();
            let ids = advisories
                .iter()
                .copied()
                .chain(failures.iter().map(|m| m.advisory));
            for advisory in ids {
                if report.examples.len() >= REPORT_EXAMPLES_MAX {
                    break;
                }
                report.examples.push(Match {
                    artifact: a,
                    advisory,
                });
            }
        };
        for &(a, updated) in changed {
            if catalog.node(a).removed {
                continue;
            }
            visit(a, report);
            if updated {
                for d in catalog.descendants(a) {
                    visit(d, report);
                }
            }
        }
    }

    /// Publishes advisories; each is stored before anything is evaluated.
    pub fn publish_advisories(
        &mut self,
        advisories: Vec<(String, Advisory)>,
    ) -> Result<PublishReport, EngineError> {
        let records = advisories
            .into_iter()
            .map(|(loc, a)| (loc, Record::Advisory(a)))
            .collect();
        self.publish(records)
    }

    /// Publishes a failure of one artifact; only its owner may.
    pub fn publish_failure(
        &mut self,
        failure: Failure,
        actor: &Actor,
    ) -> Result<Published, EngineError> {
        if !self.catalog.owns(actor, failure.artifact)
            || self.catalog.node(failure.artifact).removed
        {
            return Err(EngineError::NotFound {
                what: "artifact",
                id: self.catalog.node(failure.artifact).id.to_string(),
            });
        }
        let report = self.publish(vec![(String::new(), Record::Failure(failure))])?;
        Ok(report.outcomes[0])
    }

    fn publish(&mut self, records: Vec<(String, Record)>) -> Result<PublishReport, EngineError> {
        let mut report = PublishReport::default();
        let mut changed = Vec::new();
        for (location, record) in records {
            let outcome = self
                .db
                .publish(record)
                .map_err(|error| EngineError::Advisory {
                    location: (!location.is_empty()).then_some(location),
                    error,
                });
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    // Records already published in memory must not outlive
                    // a rejection that the caller will report as "nothing
                    // changed": nothing was committed yet, so reload.
                    self.reload()?;
                    return Err(e);
                }
            };
            if outcome.changed() {
                changed.push(outcome.idx());
            }
            report.outcomes.push(outcome);
        }
        self.commit_catalog(&changed)?;
        Ok(report)
    }

    /// The inheritance table for the current catalog.
    pub fn inheritance(&mut self) -> &Inheritance {
        if !self
            .inheritance
            .as_ref()
            .is_some_and(|i| i.is_current(&self.catalog))
        {
            self.inheritance = Some(Inheritance::build(&self.catalog));
        }
        self.inheritance
            .get_or_insert_with(|| Inheritance::build(&self.catalog))
    }

    /// Makes sure the inheritance table is current, for `impact`.
    pub fn prepare(&mut self) {
        let _ = self.inheritance();
    }

    /// Every open record affecting artifact `a` now.
    pub fn check(&mut self, a: ArtIdx) -> Vec<ArtifactMatch> {
        propagate::check_artifact_cached(&self.catalog, &self.db, a, &mut self.match_cache)
    }

    /// The impact of a record; call [`Engine::prepare`] first.
    pub fn impact(&self, adv: AdvIdx) -> Impact<'_> {
        match &self.inheritance {
            Some(inh) if inh.is_current(&self.catalog) => {
                propagate::impact(&self.catalog, inh, &self.db, adv)
            }
            _ => {
                // Not prepared: compute with a private table (correct, slower).
                let inh = Inheritance::build(&self.catalog);
                let owned = propagate::impact(&self.catalog, &inh, &self.db, adv);
                Impact {
                    groups: owned
                        .groups
                        .into_iter()
                        .map(|g| propagate::Group {
                            hits: g.hits,
                            members: std::borrow::Cow::Owned(g.members.into_owned()),
                        })
                        .collect(),
                }
            }
        }
    }

    pub fn lookup_record(&self, id: &str) -> Result<AdvIdx, EngineError> {
        self.db.lookup(id).ok_or_else(|| EngineError::NotFound {
            what: "advisory",
            id: id.to_string(),
        })
    }
}
