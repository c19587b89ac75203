//! Listing records: filters, sort and paging over materialized rows (no Automerge documents).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::model::{Record, RecordType, Value, format_value};

/// How a filter compares a field with its operand.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One condition on a field. Besides declared fields, `created_at` and `updated_at` can be
/// filtered and sorted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Field name.
    pub field: String,
    /// Comparison.
    pub op: FilterOp,
    /// Operand.
    pub value: Value,
}

/// Sort direction.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// A listing of one record type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// The type to list.
    pub record_type: RecordType,
    /// Conditions that must all hold.
    pub filters: Vec<Filter>,
    /// Sort field and direction; creation order (id) when `None`. Unset values sort last, and
    /// ties are broken by id so pages are stable.
    pub sort: Option<(String, SortOrder)>,
    /// Records to skip.
    pub offset: usize,
    /// Page size (default 50).
    pub limit: usize,
}

impl ListQuery {
    /// All records of a type, oldest first, first page of 50.
    pub fn new(record_type: impl Into<RecordType>) -> Self {
        Self {
            record_type: record_type.into(),
            filters: Vec::new(),
            sort: None,
            offset: 0,
            limit: 50,
        }
    }

    /// Adds a condition.
    pub fn filter(mut self, field: &str, op: FilterOp, value: impl Into<Value>) -> Self {
        self.filters.push(Filter {
            field: field.to_string(),
            op,
            value: value.into(),
        });
        self
    }

    /// Sorts by a field.
    pub fn sort_by(mut self, field: &str, order: SortOrder) -> Self {
        self.sort = Some((field.to_string(), order));
        self
    }

    /// Selects a page.
    pub fn page(mut self, offset: usize, limit: usize) -> Self {
        self.offset = offset;
        self.limit = limit;
        self
    }
}

/// The value a record has for a field or pseudo-field.
pub(crate) fn field_value(record: &Record, field: &str) -> Option<Value> {
    match field {
        "created_at" => Some(Value::Timestamp(record.created_at)),
        "updated_at" => Some(Value::Timestamp(record.updated_at)),
        _ => record.fields.get(field).cloned(),
    }
}

/// Orders two values of comparable kinds; `None` for kinds that do not compare (money in
/// different currencies, lists, mixed kinds).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value as V;
    match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Money(x), V::Money(y)) if x.currency == y.currency => Some(x.minor.cmp(&y.minor)),
        (V::Timestamp(x), V::Timestamp(y)) => Some(x.cmp(y)),
        (V::Date(x), V::Date(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Link(x), V::Link(y)) => Some(x.cmp(y)),
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
            _ => None,
        },
    }
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    let needle_text = format_value(needle).to_lowercase();
    match haystack {
        Value::List(items) => items.iter().any(|i| i.to_lowercase() == needle_text),
        Value::Links(ids) => {
            matches!(needle, Value::Link(id) if ids.contains(id))
                || ids.iter().any(|id| id.to_string() == needle_text)
        }
        other => format_value(other).to_lowercase().contains(&needle_text),
    }
}

/// Whether a record satisfies a filter.
pub fn matches(record: &Record, filter: &Filter) -> bool {
    let value = field_value(record, &filter.field);
    match (filter.op, value) {
        (FilterOp::Exists, v) => v.is_some(),
        (FilterOp::Missing, v) => v.is_none(),
        (FilterOp::Ne, None) => true,
        (_, None) => false,
        (FilterOp::Contains, Some(v)) => contains(&v, &filter.value),
        (op, Some(v)) => {
            let Some(ord) = compare(&v, &filter.value) else {
                return op == FilterOp::Ne;
            };
            match op {
                FilterOp::Eq => ord == Ordering::Equal,
                FilterOp::Ne => ord != Ordering::Equal,
                FilterOp::Lt => ord == Ordering::Less,
                FilterOp::Le => ord != Ordering::Greater,
                FilterOp::Gt => ord == Ordering::Greater,
                FilterOp::Ge => ord != Ordering::Less,
                _ => false,
            }
        }
    }
}

/// Sorts records by a field: unset values last, ties by id.
pub fn sort(records: &mut [Record], field: &str, order: SortOrder) {
    records.sort_by(|a, b| {
        let (va, vb) = (field_value(a, field), field_value(b, field));
        let ord = match (&va, &vb) {
            (Some(x), Some(y)) => {
                let o = compare(x, y).unwrap_or(Ordering::Equal);
                if order == SortOrder::Desc {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        ord.then_with(|| a.id.cmp(&b.id))
    });
}
