//! Domain vocabulary: ids, artifact kinds, relations, visibility and the
//! artifact description that every entry point (JSONL import, HTTP, scan)
//! turns its input into.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

/// Longest accepted artifact, tenant, failure or advisory id, in bytes.
pub const ID_LEN_MAX: usize = 256;
/// Most labels one artifact may carry.
pub const LABELS_MAX: usize = 64;
/// Inventory warnings kept with an artifact; more are summed up in the last.
pub const WARNINGS_MAX: usize = 100;
/// Bytes of one inventory warning.
pub const WARNING_LEN_MAX: usize = 1024;
/// Longest label key and value, in bytes.
pub const LABEL_KEY_LEN_MAX: usize = 128;
pub const LABEL_VALUE_LEN_MAX: usize = 1024;
/// Most components one inventory may list.
pub const COMPONENTS_MAX: usize = 200_000;
/// Most failure ids one artifact may declare fixed.
pub const FIXES_MAX: usize = 1024;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            /// Checks the text: 1 to [`ID_LEN_MAX`] bytes of [`ID_CHARS`] (ids
            /// travel in URLs, logs and lineage paths; the class leaves out
            /// whitespace, control and format characters, look-alikes and
            /// the parentheses of the `(private)` marker).
            pub fn new(text: impl Into<String>) -> Result<Self, CatalogError> {
                let text = text.into();
                validate_id($what, &text)?;
                Ok(Self(text.into_boxed_str()))
            }

            /// An id read back from the store: it was checked when it was
            /// accepted, possibly under the looser rules of an older
            /// version, so it is taken as it is (non-empty).
            pub fn from_stored(text: impl Into<String>) -> Result<Self, CatalogError> {
                let text = text.into();
                if text.is_empty() {
                    return Err(CatalogError::InvalidId { what: $what, id: text, reason: "is empty" });
                }
                Ok(Self(text.into_boxed_str()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = CatalogError;
            fn try_from(text: String) -> Result<Self, CatalogError> {
                Self::new(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.into()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The id of an artifact, unique in the catalog (`img-debian-12`, `web/v2.qcow2`).
    ArtifactId,
    "artifact id"
);
string_id!(
    /// The id of a tenant (`acme`).
    TenantId,
    "tenant id"
);
string_id!(
    /// The id of an advisory (`USN-4038-1`) or of an artifact failure.
    AdvisoryId,
    "advisory id"
);

/// The documented id character class (README, "Ids").
pub const ID_CHARS: &str = "ASCII letters, digits and . _ - : / @ + ~ = ,";

/// Whether `c` may appear in an id.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+' | '~' | '=' | ',')
}

fn validate_id(what: &'static str, text: &str) -> Result<(), CatalogError> {
    let reason = if text.is_empty() {
        "is empty"
    } else if text.len() > ID_LEN_MAX {
        "is longer than 256 bytes"
    } else if !text.chars().all(is_id_char) {
        "may only hold ASCII letters, digits and . _ - : / @ + ~ = ,"
    } else {
        return Ok(());
    };
    Err(CatalogError::InvalidId {
        what,
        id: text.chars().take(80).collect(),
        reason,
    })
}

/// What an artifact is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Image,
    Template,
    Replica,
    Instance,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Image, Kind::Template, Kind::Replica, Kind::Instance];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Template => "template",
            Kind::Replica => "replica",
            Kind::Instance => "instance",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// `an image`, `a template`, ... (for messages).
    pub fn with_article(self) -> &'static str {
        match self {
            Kind::Image => "an image",
            Kind::Template => "a template",
            Kind::Replica => "a replica",
            Kind::Instance => "an instance",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an artifact came from its parent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// An image built from another image.
    DerivedFrom,
    /// A template made from an image (or, as vSphere does, from an instance).
    ConvertedFrom,
    /// A replica of a template or of another replica (another region or catalog).
    ReplicatedFrom,
    /// An instance launched from an image, a template or a replica.
    LaunchedFrom,
}

impl Relation {
    pub const ALL: [Relation; 4] = [
        Relation::DerivedFrom,
        Relation::ConvertedFrom,
        Relation::ReplicatedFrom,
        Relation::LaunchedFrom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::DerivedFrom => "derived_from",
            Relation::ConvertedFrom => "converted_from",
            Relation::ReplicatedFrom => "replicated_from",
            Relation::LaunchedFrom => "launched_from",
        }
    }

    pub fn parse(text: &str) -> Option<Relation> {
        Relation::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The only relation a `child` kind can have to a `parent` kind, or
    /// `None` when no artifact of kind `child` can come from one of kind
    /// `parent` (an instance is never the parent of a replica).
    pub fn between(parent: Kind, child: Kind) -> Option<Relation> {
        use Kind::*;
        match (parent, child) {
            (Image, Image) => Some(Relation::DerivedFrom),
            (Image | Instance, Template) => Some(Relation::ConvertedFrom),
            (Template | Replica, Replica) => Some(Relation::ReplicatedFrom),
            (Image | Template | Replica, Instance) => Some(Relation::LaunchedFrom),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Relation> {
        Relation::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may see and derive from an artifact besides its owner.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Private,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }
}

/// Everything that describes one artifact, validated except for what needs
/// the catalog (parent existence, relation against the parent's kind, the
/// inventory's components, which are checked when interned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactSpec {
    pub id: ArtifactId,
    pub kind: Kind,
    pub tenant: TenantId,
    pub name: Option<String>,
    pub parent: Option<ArtifactId>,
    pub relation: Option<Relation>,
    pub visibility: Visibility,
    pub labels: BTreeMap<String, String>,
    /// The artifact's own inventory as canonical purls, or `None` when it
    /// inherits its parent's.
    pub components: Option<Vec<String>>,
    pub fixes: Vec<AdvisoryId>,
    /// The artifact this one is the patched next version of (same kind;
    /// same owner, or declared by an admin).
    pub supersedes: Option<ArtifactId>,
    /// What reading its own inventory skipped (a component with an invalid
    /// purl or no version, in a lenient SBOM import) or cannot evaluate (a
    /// version that does not parse in its ecosystem), each naming the
    /// component and its place: kept with the artifact and shown with it.
    /// At most [`WARNINGS_MAX`] entries.
    pub warnings: Vec<String>,
}

impl ArtifactSpec {
    /// Checks what can be checked without the catalog.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.labels.len() > LABELS_MAX {
            return Err(CatalogError::Invalid(format!(
                "artifact {} has {} labels; at most {LABELS_MAX} are allowed",
                self.id,
                self.labels.len()
            )));
        }
        for (key, value) in &self.labels {
            if key.is_empty() || key.len() > LABEL_KEY_LEN_MAX || value.len() > LABEL_VALUE_LEN_MAX
            {
                return Err(CatalogError::Invalid(format!(
                    "artifact {}: label {key:?} must have a key of 1 to {LABEL_KEY_LEN_MAX} bytes and a value of at most {LABEL_VALUE_LEN_MAX} bytes",
                    self.id
                )));
            }
        }
        if let Some(components) = &self.components
            && components.len() > COMPONENTS_MAX
        {
            return Err(CatalogError::Invalid(format!(
                "artifact {} lists {} components; at most {COMPONENTS_MAX} are allowed",
                self.id,
                components.len()
            )));
        }
        if self.fixes.len() > FIXES_MAX {
            return Err(CatalogError::Invalid(format!(
                "artifact {} declares {} fixes; at most {FIXES_MAX} are allowed",
                self.id,
                self.fixes.len()
            )));
        }
        if self.warnings.len() > WARNINGS_MAX
            || self.warnings.iter().any(|w| w.len() > WARNING_LEN_MAX)
        {
            return Err(CatalogError::Invalid(format!(
                "artifact {}: at most {WARNINGS_MAX} inventory warnings of {WARNING_LEN_MAX} bytes are kept",
                self.id
            )));
        }
        if self.parent.is_none() && self.relation.is_some() {
            return Err(CatalogError::Invalid(format!(
                "artifact {} names a relation but no parent",
                self.id
            )));
        }
        if self.parent.as_ref() == Some(&self.id) {
            return Err(CatalogError::Cycle {
                artifact: self.id.to_string(),
                parent: self.id.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_table_matches_the_product_brief() {
        use Kind::*;
        let allowed: Vec<(Kind, Kind)> = Kind::ALL
            .into_iter()
            .flat_map(|p| Kind::ALL.into_iter().map(move |c| (p, c)))
            .filter(|&(p, c)| Relation::between(p, c).is_some())
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Image, Image),
                (Image, Template),
                (Image, Instance),
                (Template, Replica),
                (Template, Instance),
                (Replica, Replica),
                (Replica, Instance),
                (Instance, Template),
            ]
        );
    }

    #[test]
    fn ids_refuse_whitespace_and_empty() {
        assert!(ArtifactId::new("web/v2.qcow2").is_ok());
        assert!(ArtifactId::new("").is_err());
        assert!(ArtifactId::new("a b").is_err());
        assert!(ArtifactId::new("a\u{0}").is_err());
        assert!(ArtifactId::new("x".repeat(257)).is_err());
    }
}
