//! String schemas with their constraints, for the generated document:
//! utoipa cannot derive length or pattern bounds on newtypes, so these are
//! written out once and named in `value_type = ...` where fields use them.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// The id character class of the README ("Ids").
pub const ID_PATTERN: &str = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$";

fn string(
    pattern: Option<&str>,
    min: Option<usize>,
    max: Option<usize>,
    doc: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .min_length(min)
        .max_length(max)
        .description(Some(doc))
        .into()
}

/// An id: 1 to 256 bytes of ASCII letters, digits and `. _ - : / @ + ~ = ,`.
#[derive(Debug)]
pub struct Id;

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        string(
            Some(ID_PATTERN),
            None,
            None,
            "1 to 256 bytes of ASCII letters, digits and . _ - : / @ + ~ = ,",
        )
    }
}
impl ToSchema for Id {}

/// A package URL, at most 2 KiB.
#[derive(Debug)]
pub struct Purl;

impl PartialSchema for Purl {
    fn schema() -> RefOr<Schema> {
        string(
            Some(r"^pkg:[A-Za-z.+-]+/[^@]+@.+$"),
            None,
            Some(2048),
            "A package URL with a version (pkg:type/namespace/name@version?qualifiers)",
        )
    }
}
impl ToSchema for Purl {}

/// A path on the server.
#[derive(Debug)]
pub struct FilePath;

impl PartialSchema for FilePath {
    fn schema() -> RefOr<Schema> {
        string(None, Some(1), Some(4096), "A file or folder on the server")
    }
}
impl ToSchema for FilePath {}
