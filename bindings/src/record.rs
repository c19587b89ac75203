//! Records, listings, history, conflicts and import reports as the foreign side sees them.

use std::collections::HashMap;
use std::time::SystemTime;

use crmsync::{RecordType, Value};

use crate::error::CrmError;
use crate::value::{FieldValue, parse_id, to_instant, to_usize};

/// The current value of a record.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Record {
    /// The record's id (a UUIDv7).
    pub id: String,
    /// Its type: `company`, `contact`, `deal`, `activity`, `case`, `order`, `product`,
    /// `campaign`, or a custom type.
    pub record_type: String,
    /// Field values by name; unset fields are absent.
    pub fields: HashMap<String, FieldValue>,
    /// When it was created.
    pub created_at: SystemTime,
    /// The device that created it (hex).
    pub created_by: String,
    /// Time of the latest change.
    pub updated_at: SystemTime,
    /// The device that made the latest change (hex).
    pub updated_by: String,
    /// Whether it is deleted (only records read from history or restore can be).
    pub deleted: bool,
}

impl From<crmsync::Record> for Record {
    fn from(r: crmsync::Record) -> Self {
        Record {
            id: r.id.to_string(),
            record_type: r.record_type.to_string(),
            fields: r
                .fields
                .into_iter()
                .map(|(k, v)| (k, FieldValue::from(v)))
                .collect(),
            created_at: to_instant(r.created_at),
            created_by: r.created_by.to_string(),
            updated_at: to_instant(r.updated_at),
            updated_by: r.updated_by.to_string(),
            deleted: r.deleted,
        }
    }
}

/// A record to create, for `create_many`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewRecord {
    /// Its type.
    pub record_type: String,
    /// Its field values.
    pub fields: HashMap<String, FieldValue>,
    /// The id to use (a UUID); minted when absent.
    #[uniffi(default = None)]
    pub id: Option<String>,
}

/// Field values as core values.
pub(crate) fn core_fields(
    fields: HashMap<String, FieldValue>,
) -> Result<std::collections::BTreeMap<String, Value>, CrmError> {
    fields
        .into_iter()
        .map(|(k, v)| Ok((k, Value::try_from(v)?)))
        .collect()
}

impl TryFrom<NewRecord> for crmsync::NewRecord {
    type Error = CrmError;
    fn try_from(r: NewRecord) -> Result<Self, CrmError> {
        Ok(crmsync::NewRecord {
            record_type: RecordType::from(r.record_type),
            fields: core_fields(r.fields)?,
            id: r.id.as_deref().map(parse_id).transpose()?,
        })
    }
}

/// One change in a record's history.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryEntry {
    /// The state right after this change; pass it to `get_at`.
    pub version: String,
    /// When the change was made (the author's clock).
    pub at: SystemTime,
    /// The device that made it (hex).
    pub by: String,
    /// Whether this change created the record.
    pub created: bool,
    /// `true` if it deleted the record, `false` if it restored it, absent otherwise.
    pub deleted: Option<bool>,
    /// The fields it set, edited or unset, sorted.
    pub fields: Vec<String>,
}

impl From<crmsync::HistoryEntry> for HistoryEntry {
    fn from(h: crmsync::HistoryEntry) -> Self {
        HistoryEntry {
            version: h.version.to_string(),
            at: to_instant(h.at),
            by: h.by.to_string(),
            created: h.created,
            deleted: h.deleted,
            fields: h.fields,
        }
    }
}

/// One value a field took in a record's history.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FieldChange {
    /// When the change was made.
    pub at: SystemTime,
    /// The device that made it (hex).
    pub by: String,
    /// The value right after the change; absent when it unset the field.
    pub value: Option<FieldValue>,
}

impl From<crmsync::FieldChange> for FieldChange {
    fn from(c: crmsync::FieldChange) -> Self {
        FieldChange {
            at: to_instant(c.at),
            by: c.by.to_string(),
            value: c.value.map(FieldValue::from),
        }
    }
}

/// A field that replicas set concurrently.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Conflict {
    /// The field.
    pub field: String,
    /// The value every replica shows.
    pub value: FieldValue,
    /// The concurrent values that lost.
    pub others: Vec<FieldValue>,
}

impl From<crmsync::Conflict> for Conflict {
    fn from(c: crmsync::Conflict) -> Self {
        Conflict {
            field: c.field,
            value: c.value.into(),
            others: c.others.into_iter().map(FieldValue::from).collect(),
        }
    }
}

/// A CSV row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RowError {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// Why the row was refused.
    pub message: String,
}

impl From<crmsync::RowError> for RowError {
    fn from(e: crmsync::RowError) -> Self {
        RowError {
            line: e.line,
            message: e.message,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportReport {
    /// Ids of the records created, in file order.
    pub created: Vec<String>,
    /// Rows refused, in file order.
    pub errors: Vec<RowError>,
}

impl From<crmsync::ImportReport> for ImportReport {
    fn from(r: crmsync::ImportReport) -> Self {
        ImportReport {
            created: r.created.iter().map(ToString::to_string).collect(),
            errors: r.errors.into_iter().map(RowError::from).collect(),
        }
    }
}

/// How a filter compares a field with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FilterOp {
    /// Equal (text compares case-insensitively).
    Eq,
    /// Not equal (or unset).
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Text contains the operand (case-insensitive), or a list holds it.
    Contains,
    /// The field is set (operand ignored).
    Exists,
    /// The field is unset (operand ignored).
    Missing,
}

impl From<FilterOp> for crmsync::FilterOp {
    fn from(op: FilterOp) -> Self {
        use crmsync::FilterOp as F;
        match op {
            FilterOp::Eq => F::Eq,
            FilterOp::Ne => F::Ne,
            FilterOp::Lt => F::Lt,
            FilterOp::Le => F::Le,
            FilterOp::Gt => F::Gt,
            FilterOp::Ge => F::Ge,
            FilterOp::Contains => F::Contains,
            FilterOp::Exists => F::Exists,
            FilterOp::Missing => F::Missing,
        }
    }
}

/// One condition on a field (`created_at` and `updated_at` can be filtered on too).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Filter {
    /// Field name.
    pub field: String,
    /// Comparison.
    pub op: FilterOp,
    /// Operand; ignored by `Exists` and `Missing`, which may leave it absent.
    #[uniffi(default = None)]
    pub value: Option<FieldValue>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// A sort field and direction. Unset values sort last; ties are ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Sort {
    /// Field name (or `created_at`, `updated_at`).
    pub field: String,
    /// Direction.
    pub order: SortOrder,
}

/// A listing of one record type: filters, sort and a page.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ListQuery {
    /// The type to list.
    pub record_type: String,
    /// Conditions that must all hold.
    #[uniffi(default)]
    pub filters: Vec<Filter>,
    /// Sort; creation order when absent.
    #[uniffi(default = None)]
    pub sort: Option<Sort>,
    /// Records to skip.
    #[uniffi(default = 0)]
    pub offset: u64,
    /// Page size.
    #[uniffi(default = 50)]
    pub limit: u64,
}

impl TryFrom<ListQuery> for crmsync::ListQuery {
    type Error = CrmError;
    fn try_from(q: ListQuery) -> Result<Self, CrmError> {
        let mut out =
            crmsync::ListQuery::new(q.record_type).page(to_usize(q.offset)?, to_usize(q.limit)?);
        for f in q.filters {
            let value = match (f.value, f.op) {
                (Some(v), _) => Value::try_from(v)?,
                // The core ignores the operand of these two; any value stands in for it.
                (None, FilterOp::Exists | FilterOp::Missing) => Value::Bool(true),
                (None, op) => {
                    return Err(CrmError::input(format!(
                        "filter on '{}' with {op:?} needs a value",
                        f.field
                    )));
                }
            };
            out = out.filter(&f.field, f.op.into(), value);
        }
        if let Some(sort) = q.sort {
            let order = match sort.order {
                SortOrder::Asc => crmsync::SortOrder::Asc,
                SortOrder::Desc => crmsync::SortOrder::Desc,
            };
            out = out.sort_by(&sort.field, order);
        }
        Ok(out)
    }
}

/// The changes of one record, as `export_changes` gives them and `apply_changes` takes them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChangeBatch {
    /// The record id.
    pub id: String,
    /// Automerge changes (opaque bytes).
    pub changes: Vec<u8>,
}
