//! VEX documents in and out: OpenVEX (v0.2.0) and CycloneDX VEX (the
//! `vulnerabilities[].analysis` of a CycloneDX 1.4+ BOM).
//!
//! Reading turns each statement into a [`Statement`]: the vulnerability's
//! names, the products it names as written, and a [`Verdict`] — what
//! patchline records for it (`not_affected` or `acknowledged`), or why the
//! statement is skipped (`fixed` is read from inventories, not from VEX).
//! One bad statement does not sink the document; a document that is not
//! VEX at all is an error.
//!
//! Writing takes a tenant's decisions ([`Decision`]) and renders them in
//! either format with that format's own words: the justification is kept
//! as it was given (OpenVEX's five or CycloneDX's nine) and translated only
//! when the other format is asked for ([`Justification::openvex`],
//! [`Justification::cyclonedx`]).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::FormatError;
use crate::text;

const OPENVEX: &str = "openvex";
const CYCLONEDX: &str = "cyclonedx-vex";

/// Most statements one document may carry (a larger one is refused).
pub const STATEMENTS_MAX: usize = 10_000;
/// Most products (OpenVEX) or `affects` (CycloneDX) one statement may name.
pub const PRODUCTS_MAX: usize = 1_000;

/// Why a product is not affected, in OpenVEX's words (the first five) or
/// CycloneDX's (the other nine). Kept as given; each maps onto the other
/// format's nearest word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Justification {
    ComponentNotPresent,
    VulnerableCodeNotPresent,
    VulnerableCodeNotInExecutePath,
    VulnerableCodeCannotBeControlledByAdversary,
    InlineMitigationsAlreadyExist,
    CodeNotPresent,
    CodeNotReachable,
    RequiresConfiguration,
    RequiresDependency,
    RequiresEnvironment,
    ProtectedByCompiler,
    ProtectedAtRuntime,
    ProtectedAtPerimeter,
    ProtectedByMitigatingControl,
}

impl Justification {
    pub const ALL: [Justification; 14] = [
        Justification::ComponentNotPresent,
        Justification::VulnerableCodeNotPresent,
        Justification::VulnerableCodeNotInExecutePath,
        Justification::VulnerableCodeCannotBeControlledByAdversary,
        Justification::InlineMitigationsAlreadyExist,
        Justification::CodeNotPresent,
        Justification::CodeNotReachable,
        Justification::RequiresConfiguration,
        Justification::RequiresDependency,
        Justification::RequiresEnvironment,
        Justification::ProtectedByCompiler,
        Justification::ProtectedAtRuntime,
        Justification::ProtectedAtPerimeter,
        Justification::ProtectedByMitigatingControl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Justification::ComponentNotPresent => "component_not_present",
            Justification::VulnerableCodeNotPresent => "vulnerable_code_not_present",
            Justification::VulnerableCodeNotInExecutePath => "vulnerable_code_not_in_execute_path",
            Justification::VulnerableCodeCannotBeControlledByAdversary => {
                "vulnerable_code_cannot_be_controlled_by_adversary"
            }
            Justification::InlineMitigationsAlreadyExist => "inline_mitigations_already_exist",
            Justification::CodeNotPresent => "code_not_present",
            Justification::CodeNotReachable => "code_not_reachable",
            Justification::RequiresConfiguration => "requires_configuration",
            Justification::RequiresDependency => "requires_dependency",
            Justification::RequiresEnvironment => "requires_environment",
            Justification::ProtectedByCompiler => "protected_by_compiler",
            Justification::ProtectedAtRuntime => "protected_at_runtime",
            Justification::ProtectedAtPerimeter => "protected_at_perimeter",
            Justification::ProtectedByMitigatingControl => "protected_by_mitigating_control",
        }
    }

    /// Either format's word (exact, lower case).
    pub fn parse(text: &str) -> Option<Justification> {
        Justification::ALL.into_iter().find(|j| j.as_str() == text)
    }

    /// The comma-separated list of every word, for messages.
    pub fn names() -> String {
        Justification::ALL
            .iter()
            .map(|j| j.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// OpenVEX's word for it: itself for OpenVEX's five; for CycloneDX's,
    /// the one that says the same or more generally.
    pub fn openvex(self) -> &'static str {
        use Justification::*;
        match self {
            ComponentNotPresent
            | VulnerableCodeNotPresent
            | VulnerableCodeNotInExecutePath
            | VulnerableCodeCannotBeControlledByAdversary
            | InlineMitigationsAlreadyExist => self.as_str(),
            CodeNotPresent => VulnerableCodeNotPresent.as_str(),
            CodeNotReachable => VulnerableCodeNotInExecutePath.as_str(),
            RequiresConfiguration | RequiresDependency | RequiresEnvironment => {
                VulnerableCodeCannotBeControlledByAdversary.as_str()
            }
            ProtectedByCompiler
            | ProtectedAtRuntime
            | ProtectedAtPerimeter
            | ProtectedByMitigatingControl => InlineMitigationsAlreadyExist.as_str(),
        }
    }

    /// CycloneDX's word for it: itself for CycloneDX's nine; for OpenVEX's,
    /// the nearest (a component that is not there has no code there).
    pub fn cyclonedx(self) -> &'static str {
        use Justification::*;
        match self {
            ComponentNotPresent | VulnerableCodeNotPresent => CodeNotPresent.as_str(),
            VulnerableCodeNotInExecutePath => CodeNotReachable.as_str(),
            VulnerableCodeCannotBeControlledByAdversary => RequiresEnvironment.as_str(),
            InlineMitigationsAlreadyExist => ProtectedByMitigatingControl.as_str(),
            _ => self.as_str(),
        }
    }
}

/// The two VEX formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VexFormat {
    OpenVex,
    CycloneDx,
}

impl VexFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VexFormat::OpenVex => "openvex",
            VexFormat::CycloneDx => "cyclonedx",
        }
    }

    pub fn parse(text: &str) -> Option<VexFormat> {
        match text {
            "openvex" => Some(VexFormat::OpenVex),
            "cyclonedx" => Some(VexFormat::CycloneDx),
            _ => None,
        }
    }
}

/// What patchline records for a statement, or why it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `not_affected` (OpenVEX), `not_affected` or `false_positive`
    /// (CycloneDX): the notice closes as not affected.
    NotAffected,
    /// `affected`, `under_investigation` (OpenVEX), `exploitable`,
    /// `in_triage` (CycloneDX): the tenant knows; the notice is
    /// acknowledged.
    Acknowledged,
    /// Not applied, and why.
    Skip(String),
}

/// One statement of a VEX document about one vulnerability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Where it is in the document (`statements[3]`, `vulnerabilities[0]`).
    pub path: String,
    /// The vulnerability's name first, then its aliases (as written).
    pub names: Vec<String>,
    /// The products it names, as written (OpenVEX `@id` and identifiers;
    /// CycloneDX `affects[].ref` that are not packages, a BOM-Link's
    /// fragment).
    pub products: Vec<String>,
    /// The packages it is about (purls: OpenVEX subcomponents, CycloneDX
    /// `affects` naming a component by purl or by the `bom-ref` of a
    /// component of the document that has one): the statement says
    /// nothing of the records of other packages.
    pub packages: Vec<String>,
    pub verdict: Verdict,
    pub justification: Option<Justification>,
    /// The free text with the decision: OpenVEX `impact_statement`,
    /// `action_statement` or `status_notes`; CycloneDX `analysis.detail`.
    pub detail: Option<String>,
}

/// A VEX document read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VexDocument {
    pub format: VexFormat,
    /// What the document is about as a whole (CycloneDX
    /// `metadata.component`'s `bom-ref` and name): the product of the
    /// statements whose `affects` name components inside it.
    pub subject: Vec<String>,
    pub statements: Vec<Statement>,
}

/// Reads an OpenVEX or CycloneDX VEX document (told apart by OpenVEX's
/// `@context` and CycloneDX's `bomFormat`).
pub fn parse(bytes: &[u8]) -> Result<VexDocument, FormatError> {
    let bytes = text::strip_bom(bytes);
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| FormatError::from_json("vex", &e))?;
    parse_value(value)
}

/// [`parse`] of a document already read as JSON.
pub fn parse_value(value: Value) -> Result<VexDocument, FormatError> {
    let Some(obj) = value.as_object() else {
        return Err(FormatError::new("vex", "expected a JSON object"));
    };
    let context = obj.get("@context").and_then(Value::as_str);
    if context.is_some_and(|c| c.starts_with("https://openvex.dev/ns")) {
        return openvex(value);
    }
    if obj.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX") {
        return cyclonedx(value);
    }
    Err(FormatError::new(
        "vex",
        "neither OpenVEX (an \"@context\" of https://openvex.dev/ns/…) nor CycloneDX \
         (\"bomFormat\": \"CycloneDX\")",
    ))
}

fn typed<T: for<'de> Deserialize<'de>>(
    format: &'static str,
    value: Value,
) -> Result<T, FormatError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = crate::error::path_string(e.path());
        let mut err = FormatError::new(format, e.inner().to_string());
        if let Some(p) = path {
            err = err.at_path(p);
        }
        err
    })
}

#[derive(Deserialize)]
struct OpenVexDoc {
    #[serde(default)]
    statements: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct OpenVexStatement {
    vulnerability: OpenVexVulnerability,
    #[serde(default)]
    products: Vec<OpenVexProduct>,
    /// Where OpenVEX v0.0.x put them: beside the products.
    #[serde(default)]
    subcomponents: Vec<OpenVexProduct>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    action_statement: Option<String>,
    #[serde(default)]
    status_notes: Option<String>,
}

#[derive(Deserialize)]
struct OpenVexVulnerability {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
}

/// A product: an object (v0.2.0) or, as earlier OpenVEX documents
/// write it, its id alone.
#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexProduct {
    Id(String),
    Object(OpenVexComponent),
}

#[derive(Deserialize)]
struct OpenVexComponent {
    #[serde(default, rename = "@id")]
    id: Option<String>,
    #[serde(default)]
    identifiers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    subcomponents: Vec<OpenVexProduct>,
}

impl OpenVexProduct {
    /// Its id and identifiers.
    fn names(&self) -> Vec<String> {
        match self {
            OpenVexProduct::Id(id) => vec![id.clone()],
            OpenVexProduct::Object(c) => {
                c.id.iter()
                    .cloned()
                    .chain(c.identifiers.iter().flat_map(|i| i.values().cloned()))
                    .collect()
            }
        }
    }
}

/// Products (artifacts) apart from packages (purls).
fn classify(names: Vec<String>, products: &mut Vec<String>, packages: &mut Vec<String>) {
    for n in names {
        if is_purl(&n) {
            packages.push(n);
        } else {
            products.push(n);
        }
    }
}

fn is_purl(text: &str) -> bool {
    text.starts_with("pkg:") && text.parse::<crate::purl::Purl>().is_ok()
}

fn openvex(value: Value) -> Result<VexDocument, FormatError> {
    let doc: OpenVexDoc = typed(OPENVEX, value)?;
    let raw = doc
        .statements
        .ok_or_else(|| FormatError::new(OPENVEX, "no \"statements\""))?;
    if raw.len() > STATEMENTS_MAX {
        return Err(FormatError::new(
            OPENVEX,
            format!(
                "{} statements; at most {STATEMENTS_MAX} in one document",
                raw.len()
            ),
        ));
    }
    let mut statements = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let path = format!("statements[{i}]");
        let s: OpenVexStatement = typed(OPENVEX, s).map_err(|e| nest(e, &path))?;
        let (mut products, mut packages) = (Vec::new(), Vec::new());
        for p in &s.products {
            // A product is what the statement is about as a whole (an
            // image, even named by its purl); its subcomponents are the
            // packages inside it that the statement is about.
            products.extend(p.names());
            if let OpenVexProduct::Object(c) = p {
                for sub in &c.subcomponents {
                    packages.extend(sub.names().into_iter().filter(|n| is_purl(n)));
                }
            }
        }
        for sub in &s.subcomponents {
            packages.extend(sub.names().into_iter().filter(|n| is_purl(n)));
        }
        check_products(OPENVEX, &path, products.len() + packages.len())?;
        let mut names = vec![s.vulnerability.name];
        names.extend(s.vulnerability.aliases);
        let (justification, bad) = justification_of(s.justification.as_deref());
        let (verdict, detail) = match s.status.as_str() {
            "not_affected" => {
                let detail = s.impact_statement.or(s.status_notes);
                let verdict = match (bad, justification, &detail) {
                    (Some(w), _, _) => Verdict::Skip(unknown_justification(&w)),
                    (None, None, None) => Verdict::Skip(
                        "not_affected needs a justification or an impact_statement".into(),
                    ),
                    _ => Verdict::NotAffected,
                };
                (verdict, detail)
            }
            "affected" => (Verdict::Acknowledged, s.action_statement.or(s.status_notes)),
            "under_investigation" => (Verdict::Acknowledged, s.status_notes),
            "fixed" => (Verdict::Skip(FIXED.into()), s.status_notes),
            other => (
                Verdict::Skip(format!(
                    "status {:?} is none of not_affected, affected, fixed, under_investigation",
                    text::excerpt(other)
                )),
                None,
            ),
        };
        statements.push(Statement {
            path,
            names,
            products,
            packages,
            verdict,
            justification,
            detail,
        });
    }
    Ok(VexDocument {
        format: VexFormat::OpenVex,
        subject: Vec::new(),
        statements,
    })
}

const FIXED: &str = "a fixed product is read from its inventory, not from VEX: \
                     send the new inventory (or declare the fix with `fixes`)";

fn unknown_justification(word: &str) -> String {
    format!(
        "justification {:?} is none of {}",
        text::excerpt(word),
        Justification::names()
    )
}

/// The justification, or the unknown word given.
fn justification_of(word: Option<&str>) -> (Option<Justification>, Option<String>) {
    match word {
        None => (None, None),
        Some(w) => match Justification::parse(w) {
            Some(j) => (Some(j), None),
            None => (None, Some(w.to_string())),
        },
    }
}

fn check_products(format: &'static str, path: &str, n: usize) -> Result<(), FormatError> {
    if n > PRODUCTS_MAX {
        return Err(FormatError::new(
            format,
            format!("{n} products; at most {PRODUCTS_MAX} in one statement"),
        )
        .at_path(path.to_string()));
    }
    Ok(())
}

/// An error of a part, placed under the part's path.
fn nest(mut e: FormatError, path: &str) -> FormatError {
    let inner = e.location.take().and_then(|l| l.path);
    let full = match inner {
        Some(p) if p.starts_with('[') => format!("{path}{p}"),
        Some(p) => format!("{path}.{p}"),
        None => path.to_string(),
    };
    e.at_path(full)
}

#[derive(Deserialize)]
struct CdxDoc {
    #[serde(default)]
    metadata: Option<CdxMetadata>,
    #[serde(default)]
    components: Vec<CdxComponent>,
    #[serde(default)]
    vulnerabilities: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct CdxMetadata {
    #[serde(default)]
    component: Option<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxComponent {
    #[serde(default, rename = "bom-ref")]
    bom_ref: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct CdxVulnerability {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    references: Vec<CdxReference>,
    #[serde(default)]
    analysis: Option<CdxAnalysis>,
    #[serde(default)]
    affects: Vec<CdxAffects>,
}

#[derive(Deserialize)]
struct CdxReference {
    id: String,
}

#[derive(Deserialize)]
struct CdxAnalysis {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct CdxAffects {
    #[serde(rename = "ref")]
    reference: String,
}

fn cyclonedx(value: Value) -> Result<VexDocument, FormatError> {
    let doc: CdxDoc = typed(CYCLONEDX, value)?;
    let raw = doc.vulnerabilities.ok_or_else(|| {
        FormatError::new(CYCLONEDX, "no \"vulnerabilities\": this BOM states nothing")
    })?;
    if raw.len() > STATEMENTS_MAX {
        return Err(FormatError::new(
            CYCLONEDX,
            format!(
                "{} vulnerabilities; at most {STATEMENTS_MAX} in one document",
                raw.len()
            ),
        ));
    }
    let subject = doc
        .metadata
        .and_then(|m| m.component)
        .map(|c| c.bom_ref.into_iter().chain(c.name).collect())
        .unwrap_or_default();
    // The purl of each component of the document, by its bom-ref.
    let purls: std::collections::HashMap<String, String> = doc
        .components
        .into_iter()
        .filter_map(|c| Some((c.bom_ref?, c.purl?)))
        .collect();
    let mut statements = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let path = format!("vulnerabilities[{i}]");
        let v: CdxVulnerability = typed(CYCLONEDX, v).map_err(|e| nest(e, &path))?;
        check_products(CYCLONEDX, &path, v.affects.len())?;
        let (mut products, mut packages) = (Vec::new(), Vec::new());
        for a in v.affects {
            // A BOM-Link (`urn:cdx:serial/version#bom-ref`) names a
            // component of another BOM by its bom-ref.
            let reference = match a.reference.split_once('#') {
                Some((_, fragment)) if a.reference.starts_with("urn:cdx:") => fragment.to_string(),
                _ => a.reference,
            };
            let reference = purls.get(&reference).cloned().unwrap_or(reference);
            classify(vec![reference], &mut products, &mut packages);
        }
        let mut names: Vec<String> = v.id.into_iter().collect();
        names.extend(v.references.into_iter().map(|r| r.id));
        let Some(analysis) = v.analysis else {
            statements.push(Statement {
                path,
                names,
                products,
                packages,
                verdict: Verdict::Skip("no analysis: a CycloneDX VEX states one".into()),
                justification: None,
                detail: None,
            });
            continue;
        };
        let (justification, bad) = justification_of(analysis.justification.as_deref());
        let detail = analysis.detail;
        let verdict = match (analysis.state.as_deref(), bad) {
            (_, Some(w)) => Verdict::Skip(unknown_justification(&w)),
            (Some("not_affected"), None) if justification.is_none() && detail.is_none() => {
                Verdict::Skip("not_affected needs a justification or a detail".into())
            }
            (Some("not_affected" | "false_positive"), None) => Verdict::NotAffected,
            (Some("exploitable" | "in_triage"), None) => Verdict::Acknowledged,
            (Some("resolved" | "resolved_with_pedigree"), None) => Verdict::Skip(FIXED.into()),
            (Some(other), None) => Verdict::Skip(format!(
                "analysis.state {:?} is none of resolved, resolved_with_pedigree, \
                 exploitable, in_triage, false_positive, not_affected",
                text::excerpt(other)
            )),
            (None, None) => Verdict::Skip("analysis has no state".into()),
        };
        // A false positive without a word of its own still says why.
        let detail = match (&verdict, analysis.state.as_deref(), detail) {
            (Verdict::NotAffected, Some("false_positive"), None) => {
                Some("false positive (CycloneDX analysis.state)".into())
            }
            (_, _, d) => d,
        };
        let verdict = if names.is_empty() {
            Verdict::Skip("the vulnerability has no id".into())
        } else {
            verdict
        };
        statements.push(Statement {
            path,
            names,
            products,
            packages,
            verdict,
            justification,
            detail,
        });
    }
    Ok(VexDocument {
        format: VexFormat::CycloneDx,
        subject,
        statements,
    })
}

/// A tenant's decision on one (record, artifact), as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The record's id.
    pub vulnerability: String,
    /// The record's aliases (CVE ids, …).
    pub aliases: Vec<String>,
    /// The artifact's id.
    pub artifact: String,
    /// `true`: not affected; `false`: acknowledged.
    pub not_affected: bool,
    pub justification: Option<Justification>,
    pub detail: Option<String>,
    /// When the decision was made (RFC 3339).
    pub at: String,
}

/// How an artifact is named as a product: OpenVEX wants an IRI.
pub fn product_iri(artifact: &str) -> String {
    format!("urn:patchline:artifact:{artifact}")
}

/// The artifact a product names: the way patchline writes them
/// (`urn:patchline:artifact:ID`, CycloneDX `artifact:ID`), the prefix
/// always taken off once (an artifact whose id begins so is named with the
/// prefix once more), or by its bare id.
pub fn product_artifact(product: &str) -> &str {
    product
        .strip_prefix("urn:patchline:artifact:")
        .or_else(|| product.strip_prefix("artifact:"))
        .unwrap_or(product)
}

/// Decisions with the same vulnerability and the same words, so that one
/// statement names every artifact they share.
fn grouped(decisions: &[Decision]) -> Vec<(&Decision, Vec<&str>)> {
    let mut out: Vec<(&Decision, Vec<&str>)> = Vec::new();
    let mut index: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    for d in decisions {
        let key = (
            d.vulnerability.as_str(),
            d.not_affected,
            d.justification,
            d.detail.as_deref(),
        );
        match index.get(&key) {
            Some(&i) => out[i].1.push(&d.artifact),
            None => {
                index.insert(key, out.len());
                out.push((d, vec![&d.artifact]));
            }
        }
    }
    out
}

/// An OpenVEX v0.2.0 document of the decisions: `not_affected` with the
/// justification in OpenVEX's words and the detail as `impact_statement`;
/// an acknowledgement is `under_investigation` (the tenant knows, and has
/// not said it is not affected) with the detail as `status_notes`.
pub fn openvex_document(
    decisions: &[Decision],
    id: &str,
    author: &str,
    timestamp: &str,
    tooling: &str,
) -> Value {
    let statements: Vec<Value> = grouped(decisions)
        .into_iter()
        .map(|(d, artifacts)| {
            let mut vulnerability = json!({"name": d.vulnerability});
            if !d.aliases.is_empty() {
                vulnerability["aliases"] = json!(d.aliases);
            }
            let mut s = json!({
                "vulnerability": vulnerability,
                "timestamp": d.at,
                "products": artifacts
                    .iter()
                    .map(|a| json!({"@id": product_iri(a)}))
                    .collect::<Vec<_>>(),
            });
            if d.not_affected {
                s["status"] = json!("not_affected");
                if let Some(j) = d.justification {
                    s["justification"] = json!(j.openvex());
                }
                if let Some(text) = &d.detail {
                    s["impact_statement"] = json!(text);
                }
            } else {
                s["status"] = json!("under_investigation");
                if let Some(text) = &d.detail {
                    s["status_notes"] = json!(text);
                }
            }
            s
        })
        .collect();
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": id,
        "author": author,
        "timestamp": timestamp,
        "version": 1,
        "tooling": tooling,
        "statements": statements,
    })
}

/// A CycloneDX 1.6 VEX of the decisions: each artifact a `platform`
/// component (`bom-ref` `artifact:ID`), each decision a vulnerability
/// whose `analysis` uses CycloneDX's states (`not_affected`, and
/// `in_triage` for an acknowledgement) and justifications.
pub fn cyclonedx_document(
    decisions: &[Decision],
    serial_number: &str,
    timestamp: &str,
    tool: (&str, &str),
) -> Value {
    let mut artifacts: Vec<&str> = decisions.iter().map(|d| d.artifact.as_str()).collect();
    artifacts.sort_unstable();
    artifacts.dedup();
    let components: Vec<Value> = artifacts
        .iter()
        .map(|a| json!({"type": "platform", "bom-ref": format!("artifact:{a}"), "name": a}))
        .collect();
    let vulnerabilities: Vec<Value> = grouped(decisions)
        .into_iter()
        .map(|(d, artifacts)| {
            let mut analysis = json!({
                "state": if d.not_affected { "not_affected" } else { "in_triage" },
                "lastUpdated": d.at,
            });
            if d.not_affected
                && let Some(j) = d.justification
            {
                analysis["justification"] = json!(j.cyclonedx());
            }
            if let Some(text) = &d.detail {
                analysis["detail"] = json!(text);
            }
            let mut v = json!({
                "id": d.vulnerability,
                "analysis": analysis,
                "affects": artifacts
                    .iter()
                    .map(|a| json!({"ref": format!("artifact:{a}")}))
                    .collect::<Vec<_>>(),
            });
            if !d.aliases.is_empty() {
                v["references"] = json!(
                    d.aliases
                        .iter()
                        .map(|a| json!({"id": a, "source": {"name": "alias"}}))
                        .collect::<Vec<_>>()
                );
            }
            v
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number,
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": tool.0, "version": tool.1}]},
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_maps_into_the_other_format_and_back_to_itself() {
        for j in Justification::ALL {
            assert_eq!(Justification::parse(j.as_str()), Some(j));
            let o = Justification::parse(j.openvex()).unwrap();
            let c = Justification::parse(j.cyclonedx()).unwrap();
            assert!(Justification::ALL[..5].contains(&o), "{j:?}");
            assert!(Justification::ALL[5..].contains(&c), "{j:?}");
            // Within its own format a word stays itself.
            if Justification::ALL[..5].contains(&j) {
                assert_eq!(o, j);
            } else {
                assert_eq!(c, j);
            }
        }
    }

    #[test]
    fn openvex_statements_read_with_their_verdicts() {
        let doc = br#"{
          "@context": "https://openvex.dev/ns/v0.2.0",
          "@id": "https://example.com/vex/1", "author": "a", "timestamp": "2026-01-01T00:00:00Z",
          "version": 1,
          "statements": [
            {"vulnerability": {"name": "CVE-2023-45803", "aliases": ["PYSEC-2023-212"]},
             "products": [{"@id": "web-template"}, {"identifiers": {"purl": "pkg:oci/web"}}],
             "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path",
             "impact_statement": "urllib3 is only used for local calls"},
            {"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "x"}], "status": "affected",
             "action_statement": "upgrade on Monday"},
            {"vulnerability": {"name": "CVE-2"}, "status": "fixed"},
            {"vulnerability": {"name": "CVE-3"}, "status": "not_affected"},
            {"vulnerability": {"name": "CVE-4"}, "status": "not_affected", "justification": "because"},
            {"vulnerability": {"name": "CVE-5"}, "products": ["web-vm"], "status": "under_investigation"},
            {"vulnerability": {"name": "CVE-6"}, "status": "under_investigation",
             "products": [{"@id": "web-vm", "subcomponents": [{"@id": "pkg:deb/debian/curl@7.88.1-10"},
                                                               {"identifiers": {"purl": "pkg:deb/debian/openssl@3.0.11-1"}}]}]},
            {"vulnerability": {"name": "CVE-7"}, "status": "under_investigation",
             "products": ["web-vm"], "subcomponents": ["pkg:deb/debian/zlib1g@1.2.13"]}
          ]}"#;
        let d = parse(doc).unwrap();
        assert_eq!(d.format, VexFormat::OpenVex);
        let s = &d.statements;
        assert_eq!(s[0].names, ["CVE-2023-45803", "PYSEC-2023-212"]);
        assert_eq!(s[0].products, ["web-template", "pkg:oci/web"]);
        assert!(s[0].packages.is_empty());
        assert_eq!(s[0].verdict, Verdict::NotAffected);
        assert_eq!(
            s[0].justification,
            Some(Justification::VulnerableCodeNotInExecutePath)
        );
        assert_eq!(
            s[0].detail.as_deref(),
            Some("urllib3 is only used for local calls")
        );
        assert_eq!(s[1].verdict, Verdict::Acknowledged);
        assert_eq!(s[1].detail.as_deref(), Some("upgrade on Monday"));
        assert!(matches!(&s[2].verdict, Verdict::Skip(m) if m.contains("inventory")));
        assert!(matches!(&s[3].verdict, Verdict::Skip(m) if m.contains("justification")));
        assert!(matches!(&s[4].verdict, Verdict::Skip(m) if m.contains("\"because\"")));
        // Products as bare ids (earlier OpenVEX); subcomponents are packages.
        assert_eq!(s[5].products, ["web-vm"]);
        assert_eq!(s[6].products, ["web-vm"]);
        assert_eq!(
            s[6].packages,
            [
                "pkg:deb/debian/curl@7.88.1-10",
                "pkg:deb/debian/openssl@3.0.11-1"
            ]
        );
        // Beside the products, as OpenVEX v0.0.x placed them.
        assert_eq!(s[7].packages, ["pkg:deb/debian/zlib1g@1.2.13"]);
    }

    #[test]
    fn cyclonedx_vulnerabilities_read_with_their_verdicts() {
        let doc = br#"{
          "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
          "metadata": {"component": {"type": "container", "bom-ref": "web-vm", "name": "web"}},
          "components": [{"type": "library", "bom-ref": "c1", "name": "zlib",
                          "purl": "pkg:deb/debian/zlib1g@1.2.13"}],
          "vulnerabilities": [
            {"id": "CVE-2023-45803", "references": [{"id": "GHSA-g4mx-q9vg-27p4", "source": {"name": "GitHub"}}],
             "analysis": {"state": "not_affected", "justification": "code_not_reachable", "detail": "no proxy"},
             "affects": [{"ref": "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:pypi/urllib3@1.26.5"}]},
            {"id": "CVE-1", "analysis": {"state": "false_positive"}},
            {"id": "CVE-2", "analysis": {"state": "resolved"}},
            {"id": "CVE-3"},
            {"id": "CVE-4", "analysis": {"state": "in_triage", "detail": "looking"},
             "affects": [{"ref": "c1"}, {"ref": "web-vm"}]}
          ]}"#;
        let d = parse(doc).unwrap();
        assert_eq!(d.format, VexFormat::CycloneDx);
        assert_eq!(d.subject, ["web-vm", "web"]);
        let s = &d.statements;
        assert_eq!(s[0].names, ["CVE-2023-45803", "GHSA-g4mx-q9vg-27p4"]);
        assert!(s[0].products.is_empty());
        assert_eq!(s[0].packages, ["pkg:pypi/urllib3@1.26.5"]);
        assert_eq!(s[0].verdict, Verdict::NotAffected);
        assert_eq!(s[0].justification, Some(Justification::CodeNotReachable));
        assert_eq!(s[1].verdict, Verdict::NotAffected);
        assert!(s[1].detail.as_deref().unwrap().contains("false positive"));
        assert!(matches!(&s[2].verdict, Verdict::Skip(_)));
        assert!(matches!(&s[3].verdict, Verdict::Skip(m) if m.contains("analysis")));
        assert_eq!(s[4].verdict, Verdict::Acknowledged);
        // A bom-ref of a component of the document names its purl.
        assert_eq!(s[4].packages, ["pkg:deb/debian/zlib1g@1.2.13"]);
        assert_eq!(s[4].products, ["web-vm"]);
    }

    #[test]
    fn what_is_not_vex_is_an_error_that_says_where() {
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"bomFormat": "CycloneDX", "components": []}"#).is_err());
        let e = parse(
            br#"{"@context": "https://openvex.dev/ns/v0.2.0",
                 "statements": [{"vulnerability": {"name": "X"}, "status": "fixed"},
                                {"vulnerability": {}, "status": "fixed"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("statements[1].vulnerability"), "{e}");
        let e = parse(br#"{"hello": 1}"#).unwrap_err();
        assert!(e.to_string().contains("OpenVEX"), "{e}");
    }

    #[test]
    fn written_documents_read_back_as_the_same_decisions() {
        let decisions = vec![
            Decision {
                vulnerability: "PYSEC-2023-212".into(),
                aliases: vec!["CVE-2023-45803".into()],
                artifact: "web-template".into(),
                not_affected: true,
                justification: Some(Justification::VulnerableCodeNotInExecutePath),
                detail: Some("local calls only".into()),
                at: "2026-11-29T00:00:00Z".into(),
            },
            Decision {
                vulnerability: "PYSEC-2023-212".into(),
                aliases: vec!["CVE-2023-45803".into()],
                artifact: "web-vm".into(),
                not_affected: true,
                justification: Some(Justification::VulnerableCodeNotInExecutePath),
                detail: Some("local calls only".into()),
                at: "2026-11-29T00:00:00Z".into(),
            },
            Decision {
                vulnerability: "USN-1".into(),
                aliases: vec![],
                artifact: "db-vm".into(),
                not_affected: false,
                justification: None,
                detail: Some("patching Monday".into()),
                at: "2026-11-29T00:00:00Z".into(),
            },
        ];
        let o = openvex_document(&decisions, "urn:x", "acme", "2026-11-29T00:00:00Z", "t");
        let c = cyclonedx_document(
            &decisions,
            "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
            "2026-11-29T00:00:00Z",
            ("patchline", "0"),
        );
        for doc in [o, c] {
            let read = parse_value(doc).unwrap();
            assert_eq!(
                read.statements.len(),
                2,
                "one statement per shared decision"
            );
            let s = &read.statements[0];
            assert_eq!(s.verdict, Verdict::NotAffected);
            let artifacts: Vec<&str> = s.products.iter().map(|p| product_artifact(p)).collect();
            assert_eq!(artifacts, ["web-template", "web-vm"]);
            assert_eq!(s.names, ["PYSEC-2023-212", "CVE-2023-45803"]);
            assert_eq!(s.detail.as_deref(), Some("local calls only"));
            let j = s.justification.unwrap();
            assert_eq!(j.openvex(), "vulnerable_code_not_in_execute_path");
            let s = &read.statements[1];
            assert_eq!(s.verdict, Verdict::Acknowledged);
            assert_eq!(s.detail.as_deref(), Some("patching Monday"));
        }
    }
}
