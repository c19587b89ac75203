//! Records, listings, history, conflicts and import reports: the core's own types, except the
//! listing query, whose foreign shape differs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crmsync::doc::Version;
use crmsync::{
    Conflict, DeviceId, FieldChange, FilterOp, HistoryEntry, ImportReport, NewRecord, Record,
    RecordId, RecordType, RowError, SortOrder, Value,
};

use crate::error::CrmError;
use crate::value::{FieldValue, to_usize};

crmsync::uniffi_remote_Record!();
crmsync::uniffi_remote_NewRecord!();
crmsync::uniffi_remote_HistoryEntry!();
crmsync::uniffi_remote_FieldChange!();
crmsync::uniffi_remote_Conflict!();
crmsync::uniffi_remote_FilterOp!();
crmsync::uniffi_remote_SortOrder!();
crmsync::uniffi_remote_RowError!();
crmsync::uniffi_remote_ImportReport!();

// Copy of the core's `Filter`, whose operand is not optional.
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

// The core's `ListQuery` holds the sort as a tuple, and counts in `usize`: both are copies.
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
            out = out.filter(&f.field, f.op, value);
        }
        if let Some(sort) = q.sort {
            out = out.sort_by(&sort.field, sort.order);
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
