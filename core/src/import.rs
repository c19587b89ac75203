//! CSV import of records, columns mapped by header.
//!
//! Headers are field names (case and spaces ignored; `email` and `phone` also name a contact's
//! `emails` and `phones`). Cells are read by the field's kind (see [`crate::model::parse_value`]).
//! A link cell holds a record id, or the name of a company (for links to companies), matched
//! case-insensitively against companies stored here or earlier in the same file.

use std::collections::HashMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{
    FieldKind, NewRecord, Reason, RecordId, RecordType, Schema, ValidationError, Value,
    parse_value, validate_record,
};

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

fn normalize_header(header: &str) -> String {
    header.trim().to_lowercase().replace([' ', '-'], "_")
}

fn map_header(schema: &Schema, record_type: &RecordType, header: &str) -> Option<String> {
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

impl Engine {
    /// Imports records of one type from CSV. See the module docs for the format.
    pub fn import_csv(
        &self,
        input: impl Read,
        record_type: &RecordType,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let schema = self.schema();
        if schema.type_def(record_type).is_none() {
            return Err(ValidationError::record(record_type, Reason::UnknownType).into());
        }
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
        let headers = reader.headers()?.clone();
        let mut columns = Vec::with_capacity(headers.len());
        for header in headers.iter() {
            let field = map_header(&schema, record_type, header).ok_or_else(|| {
                ValidationError::field(record_type, &normalize_header(header), Reason::UnknownField)
            })?;
            columns.push(field);
        }
        let mut companies = self.company_names()?;
        let mut batch_types: HashMap<RecordId, RecordType> = HashMap::new();
        let mut good = Vec::new();
        let mut report = ImportReport::default();
        for row in reader.records() {
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    report.errors.push(RowError {
                        line,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let line = row.position().map_or(0, |p| p.line());
            let parsed = self.parse_row(&schema, record_type, &columns, &row, &companies);
            let outcome = parsed.and_then(|mut new| {
                let lookup = |id: RecordId| {
                    batch_types
                        .get(&id)
                        .cloned()
                        .or_else(|| self.get(id).ok().flatten().map(|r| r.record_type))
                };
                validate_record(&schema, record_type, &mut new.fields, None, &lookup)?;
                Ok(new)
            });
            match outcome {
                Ok(mut new) => {
                    let id = RecordId::new();
                    new.id = Some(id);
                    batch_types.insert(id, record_type.clone());
                    if *record_type == RecordType::Company
                        && let Some(name) = new.fields.get("name").and_then(Value::as_str)
                    {
                        companies.entry(name.to_lowercase()).or_insert(id);
                    }
                    good.push(new);
                }
                Err(e) => report.errors.push(RowError {
                    line,
                    message: e.to_string(),
                }),
            }
        }
        if options.strict && !report.errors.is_empty() {
            return Err(Error::Import(report.errors));
        }
        report.created = self.create_many(good)?;
        Ok(report)
    }

    /// Live companies by lower-cased name (the first one wins on duplicates).
    fn company_names(&self) -> Result<HashMap<String, RecordId>> {
        let mut names = HashMap::new();
        self.store().scan_type(&RecordType::Company, |r| {
            if let Some(name) = r.text("name") {
                names.entry(name.to_lowercase()).or_insert(r.id);
            }
            true
        })?;
        Ok(names)
    }

    fn parse_row(
        &self,
        schema: &Schema,
        record_type: &RecordType,
        columns: &[String],
        row: &csv::StringRecord,
        companies: &HashMap<String, RecordId>,
    ) -> Result<NewRecord, ValidationError> {
        let mut new = NewRecord::new(record_type.clone());
        for (field, cell) in columns.iter().zip(row.iter()) {
            if cell.trim().is_empty() {
                continue;
            }
            let Some(def) = schema.field(record_type, field) else {
                continue;
            };
            let by_name = |name: &str| companies.get(&name.trim().to_lowercase()).copied();
            let value = match &def.kind {
                FieldKind::Link(targets)
                    if targets.contains(&RecordType::Company)
                        && cell.trim().parse::<RecordId>().is_err() =>
                {
                    Value::Link(by_name(cell).ok_or_else(|| {
                        ValidationError::field(
                            record_type,
                            field,
                            Reason::Unparsable {
                                value: cell.to_string(),
                                kind: "company name or id known here",
                            },
                        )
                    })?)
                }
                kind => parse_value(kind, cell)
                    .map_err(|reason| ValidationError::field(record_type, field, reason))?,
            };
            new.fields.insert(field.clone(), value);
        }
        Ok(new)
    }
}
