//! Subscriptions and routing: what a subscription is (its channel, its
//! filter, its signing secrets, its state), the filter a notice must pass,
//! which tenants read a notice (the artifact's owner, and the watchers of a
//! public artifact), which of their webhooks a notice goes to, and how the
//! notice ids queued for one subscription are cut into webhook messages.
//!
//! The engine keeps the subscriptions in memory (loaded from and written to
//! the store's rows with [`Subscription::from_row`] and
//! [`Subscription::to_row`]) and calls [`Webhooks::route`] and [`batches`]
//! inside its write, so every notice's deliveries are committed with it.

use std::collections::{BTreeMap, HashMap};

use patchline_core::notice::{Channel, Grouping, Severity, SubscriptionState};
use patchline_core::{Kind, TenantIdx};
use patchline_store::service::SubscriptionRow;
use serde::{Deserialize, Serialize};

use crate::view::{OPERATOR_SUBSCRIPTION, Target};

/// Default per-endpoint rate limit, requests per second.
pub const RATE_PER_S_DEFAULT: u32 = 1000;
/// Most notices one webhook message carries.
pub const DELIVERY_BATCH_MAX: usize = 100;
/// Bytes one webhook message aims to stay under: notices are batched by
/// their estimated rendered size as well as by count.
pub const DELIVERY_BYTES_TARGET: usize = 4 << 20;
/// Estimated bytes of a notice whose size is not known (reminders).
const NOTICE_BYTES_DEFAULT: usize = 4 << 10;

/// Most values per filter field: filters are evaluated per notice.
pub const FILTER_VALUES_MAX: usize = 256;

/// Which notices a subscription wants; every given field must match.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    /// Artifact labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Purl types or OSV ecosystems of the affected components (`deb`,
    /// `pypi`, `Debian`, `PyPI`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecosystems: Vec<String>,
    /// Package names (binary or source) of the affected components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}

/// What a filter looks at in a notice.
#[derive(Clone, Debug)]
pub struct FilterInput<'a> {
    pub severity: Option<Severity>,
    pub kind: Kind,
    pub labels: &'a BTreeMap<String, String>,
    /// Purl types of the affected components (`deb`).
    pub purl_types: &'a [String],
    /// Package names, binary and source.
    pub packages: &'a [String],
    pub advisory: &'a str,
    pub aliases: &'a [String],
}

impl Filter {
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            self.kinds.len(),
            self.labels.len(),
            self.ecosystems.len(),
            self.packages.len(),
            self.advisories.len(),
        ];
        if sizes.iter().any(|&n| n > FILTER_VALUES_MAX) {
            return Err(format!(
                "a filter field has more than {FILTER_VALUES_MAX} values"
            ));
        }
        Ok(())
    }

    pub fn matches(&self, n: &FilterInput<'_>) -> bool {
        if let Some(min) = self.min_severity {
            // Unknown severity passes: a filter must not hide what was not rated.
            if n.severity.is_some_and(|s| s < min) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&n.kind) {
            return false;
        }
        if self.labels.iter().any(|(k, v)| n.labels.get(k) != Some(v)) {
            return false;
        }
        if !self.ecosystems.is_empty() {
            let wanted = |e: &str| {
                let e = e.to_ascii_lowercase();
                let ty = match e.split(':').next().unwrap_or("") {
                    "debian" | "ubuntu" => "deb",
                    "alpine" => "apk",
                    "red hat" | "rocky linux" | "almalinux" => "rpm",
                    "crates.io" => "cargo",
                    "go" => "golang",
                    other => other,
                }
                .to_string();
                n.purl_types.iter().any(|t| *t == ty || *t == e)
            };
            if !self.ecosystems.iter().any(|e| wanted(e)) {
                return false;
            }
        }
        if !self.packages.is_empty() && !self.packages.iter().any(|p| n.packages.contains(p)) {
            return false;
        }
        if !self.advisories.is_empty()
            && !self
                .advisories
                .iter()
                .any(|a| a == n.advisory || n.aliases.contains(a))
        {
            return false;
        }
        true
    }
}

/// A webhook secret with the time it stops signing (rotation overlap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_ms: Option<i64>,
}

/// A subscription in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub tenant: TenantIdx,
    pub channel: Channel,
    pub filter: Filter,
    pub secrets: Vec<SecretEntry>,
    pub state: SubscriptionState,
    pub rate_per_s: u32,
    pub created_at_ms: i64,
    pub grouping: Grouping,
    /// With `Grouping::Digest`: the schedule and the last window's end.
    pub digest: Option<crate::digest::Digest>,
}

impl Subscription {
    pub fn to_row(&self) -> SubscriptionRow {
        SubscriptionRow {
            id: self.id.clone(),
            tenant: self.tenant,
            channel: serde_json::to_string(&self.channel).unwrap_or_default(),
            filter: serde_json::to_string(&self.filter).unwrap_or_default(),
            secrets: serde_json::to_string(&self.secrets).unwrap_or_default(),
            state: self.state,
            rate_per_s: self.rate_per_s,
            created_at_ms: self.created_at_ms,
            grouping: self.grouping,
            digest: self
                .digest
                .as_ref()
                .and_then(|d| serde_json::to_string(d).ok()),
        }
    }

    pub fn from_row(row: &SubscriptionRow) -> Option<Subscription> {
        Some(Subscription {
            id: row.id.clone(),
            tenant: row.tenant,
            channel: serde_json::from_str(&row.channel).ok()?,
            filter: serde_json::from_str(&row.filter).ok()?,
            secrets: serde_json::from_str(&row.secrets).ok()?,
            state: row.state,
            rate_per_s: row.rate_per_s,
            created_at_ms: row.created_at_ms,
            grouping: row.grouping,
            digest: match &row.digest {
                Some(text) => Some(serde_json::from_str(text).ok()?),
                None => None,
            },
        })
    }

    /// What a sender needs of it (the delivery view keeps one per live
    /// subscription).
    pub fn target(&self) -> Target {
        Target {
            id: self.id.clone(),
            tenant: self.tenant,
            channel: self.channel.clone(),
            secrets: self
                .secrets
                .iter()
                .map(|e| (e.secret.clone(), e.not_after_ms))
                .collect(),
            state: self.state,
            rate_per_s: self.rate_per_s,
            operator: self.id == OPERATOR_SUBSCRIPTION,
            grouping: self.grouping,
        }
    }

    /// Secrets that sign now (the current one and, during a rotation,
    /// the previous one until its overlap ends).
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.not_after_ms.is_none_or(|t| t > now_ms))
            .map(|s| s.secret.as_str())
            .collect()
    }
}

/// The webhook subscriptions of each tenant, by id: every notice looks its
/// readers up here. Disabled webhooks stay in it: what they miss is
/// recorded straight into their dead letters, so that enable + replay fills
/// the gap. Deleted ones leave it.
#[derive(Debug, Default, Clone)]
pub struct Webhooks {
    by_tenant: HashMap<TenantIdx, Vec<String>>,
}

impl Webhooks {
    /// The index of `subscriptions` (rebuilt after each subscription
    /// change).
    pub fn index(subscriptions: &BTreeMap<String, Subscription>) -> Webhooks {
        let mut by_tenant: HashMap<TenantIdx, Vec<String>> = HashMap::new();
        for s in subscriptions.values() {
            if !s.state.is_deleted() && matches!(s.channel, Channel::Webhook { .. }) {
                by_tenant.entry(s.tenant).or_default().push(s.id.clone());
            }
        }
        Webhooks { by_tenant }
    }

    /// The webhook subscriptions of tenant `t`.
    pub fn of<'a>(
        &'a self,
        t: TenantIdx,
        subscriptions: &'a BTreeMap<String, Subscription>,
    ) -> impl Iterator<Item = &'a Subscription> + 'a {
        self.by_tenant
            .get(&t)
            .into_iter()
            .flatten()
            .filter_map(|id| subscriptions.get(id))
    }

    /// Routes a notice to its `readers` (see [`readers`]): for each,
    /// `reader` is called, then `matched` for each of the reader's webhooks
    /// whose filter `input` passes (disabled ones included: the caller
    /// records theirs as dead letters).
    pub fn route<'a>(
        &'a self,
        subscriptions: &'a BTreeMap<String, Subscription>,
        readers: impl IntoIterator<Item = TenantIdx>,
        input: &FilterInput<'_>,
        mut reader: impl FnMut(TenantIdx),
        mut matched: impl FnMut(&'a Subscription),
    ) {
        for t in readers {
            reader(t);
            for s in self.of(t, subscriptions) {
                if s.filter.matches(input) {
                    matched(s);
                }
            }
        }
    }
}

/// The tenants that read a notice on an artifact: its owner, then — for a
/// public artifact only — its watchers, each once. (Watchers follow public
/// artifacts only: one made private stops reaching them at once.)
pub fn readers(
    owner: TenantIdx,
    watchers: &[TenantIdx],
    public: bool,
) -> impl Iterator<Item = TenantIdx> + '_ {
    let watchers = if public { watchers } else { &[] };
    std::iter::once(owner).chain(
        watchers
            .iter()
            .enumerate()
            .filter(move |(i, t)| **t != owner && !watchers[..*i].contains(t))
            .map(|(_, t)| *t),
    )
}

/// What filters look at of a notice's affected components, from each
/// one's purl and source package name: the purl types, and the package
/// names (binary, from the purl, and source).
pub fn component_facts<'a>(
    components: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (Vec<String>, Vec<String>) {
    let mut purl_types = Vec::new();
    let mut packages = Vec::new();
    for (purl, source) in components {
        if let Ok(p) = purl.parse::<patchline_formats::purl::Purl>() {
            purl_types.push(p.ty.clone());
            packages.push(p.name.clone());
        }
        packages.push(source.to_string());
    }
    (purl_types, packages)
}

/// Splits queued notice ids into webhook messages of at most
/// [`DELIVERY_BATCH_MAX`] notices and about [`DELIVERY_BYTES_TARGET`]
/// bytes (a notice alone may exceed it; it then travels alone).
pub fn batches<'a>(ids: &'a [i64], sizes: &HashMap<i64, usize>) -> Vec<&'a [i64]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let size = sizes.get(id).copied().unwrap_or(NOTICE_BYTES_DEFAULT);
        let full = i - start == DELIVERY_BATCH_MAX || bytes + size > DELIVERY_BYTES_TARGET;
        if i > start && full {
            out.push(&ids[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

/// Most distinct root causes in one grouped message.
pub const GROUPED_BATCH_GROUPS_MAX: usize = 100;

/// Most notices one grouped message carries (a larger group goes on in
/// the next message, under the same `notice_id`).
pub const GROUPED_BATCH_NOTICES_MAX: usize = 10_000;

/// Estimated rendered bytes of one listed member of a grouped notice.
const MEMBER_BYTES: usize = patchline_core::model::ID_LEN_MAX + 64;

/// Cuts the notice ids queued for a grouped subscription into messages:
/// the ids of one root cause travel together (in the order roots first
/// appear), at most [`GROUPED_BATCH_GROUPS_MAX`] roots and
/// [`GROUPED_BATCH_NOTICES_MAX`] notices a message, within the size
/// target by the same conservative estimate as [`batches`] (a group costs
/// its first notice plus its listed members). Notices without a root are
/// groups of one.
pub fn grouped_batches(
    ids: &[i64],
    root_of: &HashMap<i64, i64>,
    sizes: &HashMap<i64, usize>,
) -> Vec<Vec<i64>> {
    // Root (or the notice itself) -> its ids, in first-appearance order.
    let mut order: Vec<(Option<i64>, i64)> = Vec::new();
    let mut members: HashMap<(Option<i64>, i64), Vec<i64>> = HashMap::new();
    for &id in ids {
        let key = match root_of.get(&id) {
            Some(&root) => (Some(root), root),
            None => (None, id),
        };
        let list = members.entry(key).or_default();
        if list.is_empty() {
            order.push(key);
        }
        list.push(id);
    }
    let mut out: Vec<Vec<i64>> = Vec::new();
    let (mut cur, mut groups, mut bytes) = (Vec::new(), 0usize, 0usize);
    for key in order {
        let list = members.remove(&key).unwrap_or_default();
        for part in list.chunks(GROUPED_BATCH_NOTICES_MAX) {
            let first = sizes.get(&part[0]).copied().unwrap_or(NOTICE_BYTES_DEFAULT);
            let size = first + part.len().min(crate::GROUP_ARTIFACTS_MAX) * MEMBER_BYTES;
            let full = groups == GROUPED_BATCH_GROUPS_MAX
                || cur.len() + part.len() > GROUPED_BATCH_NOTICES_MAX
                || bytes + size > DELIVERY_BYTES_TARGET;
            if !cur.is_empty() && full {
                out.push(std::mem::take(&mut cur));
                groups = 0;
                bytes = 0;
            }
            cur.extend_from_slice(part);
            groups += 1;
            bytes += size;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_batches_keep_a_root_cause_together() {
        // 3,000 notices of root 1, interleaved with 5 of root 2 and two
        // without a root.
        let mut ids: Vec<i64> = (100..3100).collect();
        ids.insert(10, 7);
        ids.insert(20, 8);
        let mut root_of: HashMap<i64, i64> = (100..3100).map(|i| (i, 1)).collect();
        for i in 5000..5005 {
            ids.push(i);
            root_of.insert(i, 2);
        }
        let out = grouped_batches(&ids, &root_of, &HashMap::new());
        assert_eq!(out.len(), 1, "four groups, 3,007 notices: one message");
        assert_eq!(out[0].len(), ids.len());
        assert_eq!(&out[0][..3], &[100, 101, 102], "root 1 first, whole");
        assert_eq!(out[0][3000], 7);
        // Many roots: at most 100 a message; a root larger than the cap
        // goes on in the next message.
        let ids: Vec<i64> = (0..250).collect();
        let root_of: HashMap<i64, i64> = ids.iter().map(|&i| (i, 1000 + i)).collect();
        let out = grouped_batches(&ids, &root_of, &HashMap::new());
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let ids: Vec<i64> = (0..25_000).collect();
        let root_of: HashMap<i64, i64> = ids.iter().map(|&i| (i, 1)).collect();
        let out = grouped_batches(&ids, &root_of, &HashMap::new());
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10_000, 10_000, 5_000]
        );
    }

    #[test]
    fn filters() {
        let labels = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let types = vec!["deb".to_string()];
        let packages = vec!["libbz2-1.0".to_string(), "bzip2".to_string()];
        let input = FilterInput {
            severity: Some(Severity::Medium),
            kind: Kind::Instance,
            labels: &labels,
            purl_types: &types,
            packages: &packages,
            advisory: "USN-4038-1",
            aliases: &[],
        };
        assert!(Filter::default().matches(&input));
        let f: Filter = serde_json::from_str(
            r#"{"min_severity":"medium","kinds":["instance"],"labels":{"region":"eu"},"ecosystems":["Ubuntu:18.04:LTS"],"packages":["bzip2"],"advisories":["USN-4038-1"]}"#,
        )
        .unwrap();
        assert!(f.matches(&input));
        let f: Filter = serde_json::from_str(r#"{"min_severity":"high"}"#).unwrap();
        assert!(!f.matches(&input));
        let f: Filter = serde_json::from_str(r#"{"labels":{"region":"us"}}"#).unwrap();
        assert!(!f.matches(&input));
        let f: Filter = serde_json::from_str(r#"{"ecosystems":["PyPI"]}"#).unwrap();
        assert!(!f.matches(&input));
        assert!(serde_json::from_str::<Filter>(r#"{"severity":"high"}"#).is_err());
    }

    #[test]
    fn owners_then_the_watchers_of_public_artifacts_read_each_once() {
        let (o, a, b) = (TenantIdx(0), TenantIdx(1), TenantIdx(2));
        let got: Vec<_> = readers(o, &[a, o, b, a], true).collect();
        assert_eq!(got, vec![o, a, b]);
        let got: Vec<_> = readers(o, &[a, b], false).collect();
        assert_eq!(got, vec![o]);
    }

    #[test]
    fn messages_are_cut_by_count_and_by_size() {
        let ids: Vec<i64> = (0..250).collect();
        let cut: Vec<usize> = batches(&ids, &HashMap::new())
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(cut, vec![100, 100, 50]);
        let sizes = HashMap::from([(1, DELIVERY_BYTES_TARGET), (2, 10)]);
        let cut: Vec<&[i64]> = batches(&[0, 1, 2], &sizes);
        assert_eq!(cut, vec![&[0][..], &[1], &[2]]);
    }
}
