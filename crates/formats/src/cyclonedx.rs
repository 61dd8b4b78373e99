//! CycloneDX SBOMs (JSON and XML, spec 1.2 to 1.7) to inventories.
//!
//! Reads a tolerant subset: `components` (recursively through nested
//! `components`) with `type`, `name`, `version`, `purl` and `properties`.
//! Real SBOMs break strict generated schemas (empty `type`, numbers where
//! strings belong), so everything else is ignored.
//!
//! Choices:
//! - `metadata.component` (the image or application the SBOM describes) is
//!   not a component of itself and is skipped, with its children.
//! - The first `operating-system` component gives the distro
//!   (`debian` + `12.5` gives `debian-12.5`); it is not a package.
//! - Components without a purl are skipped with one warning counting them.
//! - A deb/apk/rpm purl without `upstream` gets it from trivy's
//!   `aquasecurity:trivy:Src*` properties (`name@[epoch:]version[-release]`);
//!   syft already writes `upstream` into its purls.

use crate::error::{FormatError, Location};
use crate::inventory::{Builder, Hint, Inventory};
use crate::{sbom, text};
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use serde::Deserialize;

const JSON: &str = "cyclonedx-json";
const XML: &str = "cyclonedx-xml";

/// The part of a BOM this reader uses.
// Container renames only change serde's "expected struct X" wording in
// error messages, which users see.
#[derive(Debug, Deserialize)]
#[serde(rename = "bom", rename_all = "camelCase")]
struct Bom {
    #[serde(default, deserialize_with = "text::lenient_string")]
    bom_format: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    spec_version: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    components: Vec<Component>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename = "component")]
struct Component {
    #[serde(rename = "type", default, deserialize_with = "text::lenient_string")]
    ty: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    properties: Vec<Property>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    components: Vec<Component>,
    /// Line of `<purl>` in XML, for error messages.
    #[serde(skip)]
    purl_line: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename = "property")]
struct Property {
    #[serde(default, deserialize_with = "text::lenient_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    value: Option<String>,
}

/// Parses a CycloneDX JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Inventory, FormatError> {
    let bytes = text::strip_bom(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let text::Object(bom): text::Object<Bom> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FormatError::from_json_path(JSON, &e))?;
    de.end().map_err(|e| FormatError::from_json(JSON, &e))?;
    from_bom(bom)
}

/// Parses a CycloneDX document given as a JSON value (inline SBOM).
pub(crate) fn parse_value(value: &serde_json::Value) -> Result<Inventory, FormatError> {
    let text::Object(bom): text::Object<Bom> = serde_path_to_error::deserialize(value)
        .map_err(|e| FormatError::from_json_path(JSON, &e))?;
    from_bom(bom)
}

fn from_bom(bom: Bom) -> Result<Inventory, FormatError> {
    match bom.bom_format.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("CycloneDX") => {}
        Some(f) => {
            return Err(FormatError::new(
                JSON,
                format!("bomFormat is {:?}, not \"CycloneDX\"", text::excerpt(f)),
            )
            .at_path("bomFormat"));
        }
        None => {
            return Err(
                FormatError::new(JSON, "missing \"bomFormat\": not a CycloneDX document")
                    .at_path("bomFormat"),
            );
        }
    }
    let mut b = Builder::default();
    check_spec_version(JSON, bom.spec_version.as_deref(), &mut b)?;
    walk(JSON, &bom.components, &mut b)?;
    Ok(b.finish(&Hint::default()))
}

/// Versions whose component model this reader knows. Later 1.x versions
/// keep that model, so they are read with a warning; 2.x is refused.
fn check_spec_version(
    format: &'static str,
    version: Option<&str>,
    b: &mut Builder,
) -> Result<(), FormatError> {
    let Some(v) = version.map(str::trim) else {
        b.warn(None, "no specVersion; read as CycloneDX 1.x");
        return Ok(());
    };
    let minor = v.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(0..=7) => Ok(()),
        Some(_) => {
            b.warn(
                Some("specVersion".into()),
                format!("CycloneDX {v} is newer than this reader (1.7); read as 1.x"),
            );
            Ok(())
        }
        None => Err(FormatError::new(
            format,
            format!("unsupported CycloneDX specVersion {:?}", text::excerpt(v)),
        )
        .at_path("specVersion")),
    }
}

const TRIVY: &str = "aquasecurity:trivy:";

/// Depth-first, parents before children, in document order. Iterative so a
/// deeply nested document cannot overflow the stack.
fn walk(format: &'static str, top: &[Component], b: &mut Builder) -> Result<(), FormatError> {
    let mut stack: Vec<(&Component, String)> = top
        .iter()
        .enumerate()
        .rev()
        .map(|(i, c)| (c, format!("components[{i}]")))
        .collect();
    let mut without_purl = Vec::new();
    while let Some((c, path)) = stack.pop() {
        for (j, child) in c.components.iter().enumerate().rev() {
            stack.push((child, format!("{path}.components[{j}]")));
        }
        if c.ty.as_deref() == Some("operating-system") {
            if b.distro.is_none() {
                b.distro = sbom::distro(c.name.as_deref(), c.version.as_deref());
            }
            continue;
        }
        let Some(purl_text) = c.purl.as_deref().filter(|p| !p.trim().is_empty()) else {
            without_purl.push(c.name.clone().unwrap_or_else(|| path.clone()));
            continue;
        };
        let location = Location {
            line: c.purl_line,
            column: None,
            path: Some(format!("{path}.purl")),
        };
        let mut purl = match sbom::parse_component(format, purl_text, location.clone()) {
            Ok(purl) => purl,
            Err(e) => {
                b.skip(e);
                continue;
            }
        };
        let prop = |key: &str| {
            c.properties
                .iter()
                .find(|p| {
                    p.name
                        .as_deref()
                        .and_then(|n| n.strip_prefix(TRIVY))
                        .is_some_and(|n| n == key)
                })
                .and_then(|p| p.value.as_deref())
        };
        if let Some(src) = prop("SrcName") {
            let version =
                sbom::full_version(prop("SrcEpoch"), prop("SrcVersion"), prop("SrcRelease"));
            sbom::add_upstream(&mut purl, Some(src), version.as_deref());
        }
        b.push(purl, &location);
    }
    if let Some(msg) = sbom::missing_purl_warning("components", &without_purl) {
        b.warn(None, msg);
    }
    Ok(())
}

/// XML elements are nested at most this deep; deeper input is refused
/// rather than risking the stack on drop.
const MAX_DEPTH: usize = 256;

/// What an open XML element is, for the reader's state machine.
#[derive(Debug)]
enum Elem {
    Bom,
    Components,
    Component,
    Field(Field, usize),
    Properties,
    Property(Option<String>),
    Other,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Purl,
    Name,
    Version,
}

/// Parses a CycloneDX XML document (namespace
/// `http://cyclonedx.org/schema/bom/1.x`).
pub fn parse_xml(bytes: &[u8]) -> Result<Inventory, FormatError> {
    let src = text::utf8(XML, bytes)?;
    let xml_err = |msg: String, offset: u64| {
        let line = text::line_of_offset(src, usize::try_from(offset).unwrap_or(usize::MAX));
        FormatError::new(XML, msg).at_line(line)
    };

    let mut reader = NsReader::from_str(src);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut open: Vec<Component> = Vec::new();
    let mut top: Vec<Component> = Vec::new();
    let mut buf = String::new();
    let mut bom_ns: Option<String> = None;
    let mut seen_root = false;

    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                let offset = reader.error_position();
                return Err(xml_err(format!("malformed XML: {e}"), offset));
            }
        };
        // Owned facts about the namespace, so the reader can be used again.
        let ns_uri: Option<String> = match ns {
            ResolveResult::Bound(Namespace(uri)) => Some(uri.to_string()),
            _ => None,
        };
        let here = reader.buffer_position();
        match event {
            Event::Start(e) => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                if stack.is_empty() {
                    if seen_root {
                        return Err(xml_err("content after the root element".into(), here));
                    }
                    seen_root = true;
                    let uri = ns_uri.unwrap_or_default();
                    if local != "bom" || !uri.starts_with("http://cyclonedx.org/schema/bom/") {
                        return Err(xml_err(
                            format!(
                                "not a CycloneDX document: root element <{local}> in namespace {:?} \
                                 (expected <bom> in http://cyclonedx.org/schema/bom/1.x)",
                                text::excerpt(&uri)
                            ),
                            here,
                        ));
                    }
                    bom_ns = Some(uri);
                    stack.push(Elem::Bom);
                    continue;
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_err(
                        format!("elements nested deeper than {MAX_DEPTH}"),
                        here,
                    ));
                }
                let in_bom = ns_uri.is_some() && ns_uri == bom_ns;
                let attr = |name: &str| -> Result<Option<String>, FormatError> {
                    match e.try_get_attribute(name) {
                        Ok(Some(a)) => a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map(|v| Some(v.into_owned()))
                            .map_err(|err| xml_err(format!("bad attribute {name:?}: {err}"), here)),
                        Ok(None) => Ok(None),
                        Err(err) => Err(xml_err(format!("bad attributes: {err}"), here)),
                    }
                };
                let elem = match (in_bom, local, stack.last()) {
                    (true, "components", Some(Elem::Bom | Elem::Component)) => Elem::Components,
                    (true, "component", Some(Elem::Components)) => {
                        open.push(Component {
                            ty: attr("type")?,
                            ..Component::default()
                        });
                        Elem::Component
                    }
                    (true, "purl" | "name" | "version", Some(Elem::Component)) => {
                        buf.clear();
                        let field = match local {
                            "purl" => Field::Purl,
                            "name" => Field::Name,
                            _ => Field::Version,
                        };
                        Elem::Field(field, text::line_of_offset(src, here as usize))
                    }
                    (true, "properties", Some(Elem::Component)) => Elem::Properties,
                    (true, "property", Some(Elem::Properties)) => {
                        buf.clear();
                        Elem::Property(attr("name")?)
                    }
                    _ => Elem::Other,
                };
                stack.push(elem);
            }
            Event::End(_) => match stack.pop() {
                Some(Elem::Field(field, line)) => {
                    if let Some(c) = open.last_mut() {
                        let value = Some(buf.trim().to_string());
                        match field {
                            Field::Purl => {
                                c.purl = value;
                                c.purl_line = Some(line);
                            }
                            Field::Name => c.name = value,
                            Field::Version => c.version = value,
                        }
                    }
                }
                Some(Elem::Property(name)) => {
                    if let Some(c) = open.last_mut() {
                        c.properties.push(Property {
                            name,
                            value: Some(buf.clone()),
                        });
                    }
                }
                Some(Elem::Component) => {
                    if let Some(c) = open.pop() {
                        match open.last_mut() {
                            Some(parent) => parent.components.push(c),
                            None => top.push(c),
                        }
                    }
                }
                _ => {}
            },
            Event::Text(t) => {
                if collecting(&stack) {
                    buf.push_str(&t.xml10_content());
                } else if stack.is_empty() && !t.trim().is_empty() {
                    return Err(xml_err("text outside the root element".into(), here));
                }
            }
            Event::CData(t) if collecting(&stack) => buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => {
                        quick_xml::escape::resolve_predefined_entity(&r).map(str::to_string)
                    }
                    Err(err) => {
                        return Err(xml_err(format!("bad character reference: {err}"), here));
                    }
                };
                let Some(s) = resolved else {
                    return Err(xml_err(
                        format!("unknown entity &{};", text::excerpt(&r)),
                        here,
                    ));
                };
                if collecting(&stack) {
                    buf.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(FormatError::new(XML, "no root element: empty document"));
    }
    if !stack.is_empty() {
        return Err(xml_err(
            "truncated document: elements left open at the end".into(),
            src.len() as u64,
        ));
    }

    let version = bom_ns
        .as_deref()
        .and_then(|ns| ns.strip_prefix("http://cyclonedx.org/schema/bom/"));
    let mut b = Builder::default();
    check_spec_version(XML, version, &mut b)?;
    walk(XML, &top, &mut b)?;
    Ok(b.finish(&Hint::default()))
}

fn collecting(stack: &[Elem]) -> bool {
    matches!(stack.last(), Some(Elem::Field(..) | Elem::Property(_)))
}
