//! CSV import of records, columns mapped by header.
//!
//! Headers are field names (case and spaces ignored; `email` and `phone` also name a contact's
//! `emails` and `phones`). Cells are read by the field's kind (see [`crate::model::parse_value`]).
//! A link cell holds a record id, or the name of a company (for links to companies), matched
//! case-insensitively against companies stored here or earlier in the same file.

use serde::{Deserialize, Serialize};

use crate::model::{RecordId, RecordType, Schema};

/// How to import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Store nothing if any row is bad (default: store the good rows, report the bad ones).
    pub strict: bool,
}

/// A row that was not imported.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// Why the row was refused.
    pub message: String,
}

/// What an import did.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Ids of the records created, in file order.
    pub created: Vec<RecordId>,
    /// Rows refused, in file order.
    pub errors: Vec<RowError>,
}

/// One line describing a list of bad rows.
pub(crate) fn summary(errors: &[RowError]) -> String {
    match errors.first() {
        Some(first) => format!(
            "{} bad row(s), first at line {}: {}",
            errors.len(),
            first.line,
            first.message
        ),
        None => "no bad rows".to_string(),
    }
}

pub(crate) fn normalize_header(header: &str) -> String {
    header.trim().to_lowercase().replace([' ', '-'], "_")
}

pub(crate) fn map_header(
    schema: &Schema,
    record_type: &RecordType,
    header: &str,
) -> Option<String> {
    let name = normalize_header(header);
    if schema.field(record_type, &name).is_some() {
        return Some(name);
    }
    let alias = match name.as_str() {
        "email" => "emails",
        "phone" => "phones",
        "tag" => "tags",
        _ => return None,
    };
    schema.field(record_type, alias).map(|_| alias.to_string())
}
