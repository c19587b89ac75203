//! A record as the app sees it, and the patches that edit one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{DeviceId, RecordId};
use super::record_type::RecordType;
use super::value::Value;

/// The current value of a record, as materialized from its Automerge document.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's id.
    pub id: RecordId,
    /// The record's type.
    pub record_type: RecordType,
    /// Field values by name (absent fields are unset).
    pub fields: BTreeMap<String, Value>,
    /// When the record was created.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// The device that created it.
    pub created_by: DeviceId,
    /// Time of the latest change (the newest of the document's current heads).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
    /// The device that made the latest change.
    pub updated_by: DeviceId,
    /// Whether the record is deleted (a tombstone that keeps merging).
    pub deleted: bool,
}

impl Record {
    /// The value of a field, if set.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// A text-like field as a string slice.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    /// A human-readable title: name, subject, or first and last name.
    pub fn title(&self) -> String {
        if let Some(name) = self.text("name").or_else(|| self.text("subject")) {
            return name.to_string();
        }
        let parts: Vec<&str> = ["first_name", "last_name"]
            .iter()
            .filter_map(|f| self.text(f))
            .collect();
        if parts.is_empty() {
            self.id.to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// One edit of a field.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldOp {
    /// Sets a field. Long text set this way is diffed against the current text, so concurrent
    /// edits elsewhere in the text survive.
    Set {
        /// Field name.
        field: String,
        /// New value.
        value: Value,
    },
    /// Removes a field's value.
    Unset {
        /// Field name.
        field: String,
    },
    /// Edits long text in place: deletes `delete` characters at `index` (Unicode code points)
    /// and inserts `insert` there.
    SpliceText {
        /// Field name.
        field: String,
        /// Position in Unicode code points.
        index: usize,
        /// How many characters to delete.
        delete: usize,
        /// Text to insert.
        insert: String,
    },
    /// Adds an item to a list of strings or of links (no-op if present).
    AddItem {
        /// Field name.
        field: String,
        /// A `Value::Text` for string lists, a `Value::Link` for lists of links.
        item: Value,
    },
    /// Removes an item from a list (no-op if absent).
    RemoveItem {
        /// Field name.
        field: String,
        /// The item to remove.
        item: Value,
    },
}

impl FieldOp {
    /// The field this op edits.
    pub fn field(&self) -> &str {
        match self {
            FieldOp::Set { field, .. }
            | FieldOp::Unset { field }
            | FieldOp::SpliceText { field, .. }
            | FieldOp::AddItem { field, .. }
            | FieldOp::RemoveItem { field, .. } => field,
        }
    }
}

/// A set of edits applied to one record in one change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The edits, applied in order.
    pub ops: Vec<FieldOp>,
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a field.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.ops.push(FieldOp::Set {
            field: field.to_string(),
            value: value.into(),
        });
        self
    }

    /// Unsets a field.
    pub fn unset(mut self, field: &str) -> Self {
        self.ops.push(FieldOp::Unset {
            field: field.to_string(),
        });
        self
    }

    /// Edits long text in place.
    pub fn splice_text(mut self, field: &str, index: usize, delete: usize, insert: &str) -> Self {
        self.ops.push(FieldOp::SpliceText {
            field: field.to_string(),
            index,
            delete,
            insert: insert.to_string(),
        });
        self
    }

    /// Adds a tag to the `tags` field.
    pub fn add_tag(self, tag: &str) -> Self {
        self.add("tags", tag)
    }

    /// Removes a tag from the `tags` field.
    pub fn remove_tag(self, tag: &str) -> Self {
        self.remove("tags", tag)
    }

    /// Adds an item to a list field.
    pub fn add(mut self, field: &str, item: impl Into<Value>) -> Self {
        self.ops.push(FieldOp::AddItem {
            field: field.to_string(),
            item: item.into(),
        });
        self
    }

    /// Removes an item from a list field.
    pub fn remove(mut self, field: &str, item: impl Into<Value>) -> Self {
        self.ops.push(FieldOp::RemoveItem {
            field: field.to_string(),
            item: item.into(),
        });
        self
    }
}

/// The fields of a record to create.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Its type.
    pub record_type: RecordType,
    /// Its field values.
    pub fields: BTreeMap<String, Value>,
    /// The id to use; minted when `None`.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub id: Option<RecordId>,
}

impl NewRecord {
    /// An empty record of this type.
    pub fn new(record_type: impl Into<RecordType>) -> Self {
        Self {
            record_type: record_type.into(),
            fields: BTreeMap::new(),
            id: None,
        }
    }

    /// Sets a field.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(field.to_string(), value.into());
        self
    }
}
