//! The delivery view: what rendering and sending a notice need to know of
//! the catalog, the records and the subscriptions — artifact ids, kinds,
//! owners and visibility, tenant names, record ids, summaries and
//! severities, webhook targets — kept beside the engine instead of inside
//! it. The engine updates it in the same critical section as each commit
//! (only what the commit changed), so a reader of the view sees a catalog
//! at least as new as the last committed change, and the delivery path
//! (workers, streams, pages) never takes the engine's lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use patchline_core::notice::{Channel, Grouping, Severity, SubscriptionState};
use patchline_core::{AdvIdx, ArtIdx, Kind, TenantIdx};

/// What the view knows of one artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactFacts {
    pub tenant: TenantIdx,
    pub kind: Kind,
    pub public: bool,
    pub removed: bool,
}

/// What the view knows of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFacts {
    pub id: Arc<str>,
    pub summary: Option<Arc<str>>,
    pub severity: Option<Severity>,
}

/// Id of the operator's escalation subscription.
pub const OPERATOR_SUBSCRIPTION: &str = "sub_operator";

/// A webhook subscription as a sender needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub tenant: TenantIdx,
    pub channel: Channel,
    /// Signing secrets with the time each stops signing (`None`: never).
    pub secrets: Vec<(String, Option<i64>)>,
    pub state: SubscriptionState,
    pub rate_per_s: u32,
    /// The operator's escalation channel reads as an admin.
    pub operator: bool,
    pub grouping: Grouping,
}

impl Target {
    /// Secrets that sign at `now_ms`.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|(_, until)| until.is_none_or(|t| t > now_ms))
            .map(|(s, _)| s.as_str())
            .collect()
    }
}

/// The names and facts, indexed like the catalog and the records.
#[derive(Debug, Default)]
pub struct Names {
    artifacts: Vec<(Arc<str>, ArtifactFacts)>,
    tenants: Vec<Arc<str>>,
    records: Vec<RecordFacts>,
}

impl Names {
    pub fn artifact(&self, a: ArtIdx) -> Option<(&str, ArtifactFacts)> {
        self.artifacts
            .get(a.0 as usize)
            .map(|(id, facts)| (&**id, *facts))
    }

    pub fn tenant(&self, t: TenantIdx) -> &str {
        self.tenants.get(t.0 as usize).map_or("", |n| n)
    }

    pub fn tenant_idx(&self, name: &str) -> Option<TenantIdx> {
        self.tenants
            .iter()
            .position(|t| &**t == name)
            .map(|i| TenantIdx(i as u32))
    }

    pub fn record(&self, r: AdvIdx) -> Option<&RecordFacts> {
        self.records.get(r.0 as usize)
    }

    pub fn artifacts_len(&self) -> usize {
        self.artifacts.len()
    }

    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// Sets artifact `a` (appending as needed: indexes only grow).
    pub fn set_artifact(&mut self, a: ArtIdx, id: &str, facts: ArtifactFacts) {
        let i = a.0 as usize;
        if i < self.artifacts.len() {
            let slot = &mut self.artifacts[i];
            if &*slot.0 != id {
                slot.0 = id.into();
            }
            slot.1 = facts;
        } else {
            while self.artifacts.len() < i {
                // A gap cannot happen (indexes are dense), but stay total.
                self.artifacts.push((
                    "".into(),
                    ArtifactFacts {
                        tenant: TenantIdx(0),
                        kind: Kind::Image,
                        public: false,
                        removed: true,
                    },
                ));
            }
            self.artifacts.push((id.into(), facts));
        }
    }

    pub fn set_tenant(&mut self, t: TenantIdx, name: &str) {
        let i = t.0 as usize;
        if i < self.tenants.len() {
            self.tenants[i] = name.into();
        } else {
            self.tenants.resize(i, "".into());
            self.tenants.push(name.into());
        }
    }

    pub fn set_record(&mut self, r: AdvIdx, facts: RecordFacts) {
        let i = r.0 as usize;
        if i < self.records.len() {
            self.records[i] = facts;
        } else {
            self.records.resize(
                i,
                RecordFacts {
                    id: "".into(),
                    summary: None,
                    severity: None,
                },
            );
            self.records.push(facts);
        }
    }

    /// Forgets everything past the first `artifacts` artifacts and
    /// `records` records (a rolled-back batch that had appended).
    pub fn truncate(&mut self, artifacts: usize, records: usize) {
        self.artifacts.truncate(artifacts);
        self.records.truncate(records);
    }
}

/// The view shared by the engine (writer) and the delivery path (readers).
#[derive(Debug, Default)]
pub struct DeliveryView {
    names: RwLock<Names>,
    targets: RwLock<Arc<HashMap<String, Target>>>,
    installation: RwLock<String>,
}

impl DeliveryView {
    pub fn new() -> Arc<DeliveryView> {
        Arc::new(DeliveryView::default())
    }

    /// Reads the names (briefly: the engine waits for readers to update).
    pub fn names(&self) -> RwLockReadGuard<'_, Names> {
        self.names.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the names under the write lock.
    pub fn update_names(&self, f: impl FnOnce(&mut Names)) {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        f(&mut names);
    }

    /// The webhook targets now (a snapshot: cheap to clone, never torn).
    pub fn targets(&self) -> Arc<HashMap<String, Target>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn target(&self, id: &str) -> Option<Target> {
        self.targets().get(id).cloned()
    }

    /// Replaces the targets (after a subscription changed).
    pub fn set_targets(&self, targets: HashMap<String, Target>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(targets);
    }

    pub fn installation(&self) -> String {
        self.installation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_installation(&self, id: &str) {
        *self.installation.write().unwrap_or_else(|e| e.into_inner()) = id.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_grow_change_and_roll_back() {
        let view = DeliveryView::new();
        let facts = |public| ArtifactFacts {
            tenant: TenantIdx(0),
            kind: Kind::Image,
            public,
            removed: false,
        };
        view.update_names(|n| {
            n.set_tenant(TenantIdx(0), "acme");
            n.set_artifact(ArtIdx(0), "base", facts(true));
            n.set_artifact(ArtIdx(1), "vm", facts(false));
        });
        assert_eq!(view.names().artifact(ArtIdx(1)).unwrap().0, "vm");
        view.update_names(|n| n.set_artifact(ArtIdx(0), "base", facts(false)));
        assert!(!view.names().artifact(ArtIdx(0)).unwrap().1.public);
        view.update_names(|n| n.truncate(1, 0));
        assert!(view.names().artifact(ArtIdx(1)).is_none());
        assert_eq!(view.names().tenant(TenantIdx(0)), "acme");
        assert_eq!(view.names().tenant_idx("acme"), Some(TenantIdx(0)));
    }
}
