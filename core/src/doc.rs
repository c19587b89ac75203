//! Records as Automerge documents: writing fields and patches into a document, and reading a
//! document back into a [`Record`](crate::model::Record).
//!
//! Layout of a record document (root map):
//! - `type`: string; `created_at`: timestamp (ms); `created_by`: 16 bytes; `deleted`: bool.
//! - `f`: map of field name to value. Short text, enums, dates and links are strings; integers,
//!   bools and timestamps are the matching Automerge scalars; long text is an Automerge text
//!   object; lists are Automerge lists of strings; money and order lines are tagged byte
//!   strings, so each is one atomic register and concurrent edits never mix their parts.

mod chunks;
mod create;
mod forward;
mod fresh;
mod history;
mod local;
mod read;

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use chrono::{DateTime, Utc};

use crate::model::{DeviceId, FieldKind, FieldOp, RecordType, Schema, Value, format_value};

pub use chunks::{MAX_INFLATED_BYTES, check_chunks, split_changes};
pub use create::{creation_change, creation_facts};
pub use forward::{Facts, fast_forward};
pub use fresh::from_creation;
pub use history::{
    Conflict, FieldChange, HistoryEntry, Version, conflicts, field_history, history,
};
pub use local::{LocalEdit, edit_scalars};
pub(crate) use read::is_empty_container;
pub use read::{check_single_origin, materialize};

pub(crate) const TYPE: &str = "type";
pub(crate) const CREATED_AT: &str = "created_at";
pub(crate) const CREATED_BY: &str = "created_by";
pub(crate) const DELETED: &str = "deleted";
pub(crate) const FIELDS: &str = "f";
pub(crate) const MONEY_TAG: u8 = b'M';
pub(crate) const LINES_TAG: u8 = b'L';

/// A document that cannot be read as a record, or an edit Automerge refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// Automerge rejected the bytes or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The document has no valid `type`.
    #[error("the document has no record type")]
    MissingType,
    /// The document is missing metadata every record has.
    #[error("the document has no valid '{0}'")]
    MissingMeta(&'static str),
    /// A field holds a value of another kind than its declaration.
    #[error("field '{field}' holds {found}, but the schema declares {expected}")]
    WrongKind {
        /// Field name.
        field: String,
        /// Declared kind.
        expected: &'static str,
        /// What the document holds.
        found: String,
    },
    /// A long-text edit points past the end of the text.
    #[error("field '{field}': position {index} is beyond the text's {len} characters")]
    TextPosition {
        /// Field name.
        field: String,
        /// Position asked for.
        index: usize,
        /// Length of the text.
        len: usize,
    },
    /// Separately created records share the id.
    #[error("{0} records were created separately under this id; refusing to merge them")]
    SeveralOrigins(usize),
    /// The document depends on changes that are not present.
    #[error("the document lacks {0} change(s) its history depends on")]
    MissingChanges(usize),
    /// Change bytes from another replica are not whole, valid change chunks.
    #[error("malformed change bytes: {0}")]
    BadChunk(&'static str),
    /// Automerge failed on changes it accepted as well formed (it asserts some rules, such as
    /// each actor numbering its changes 1, 2, 3…, instead of checking them).
    #[error("changes that break Automerge's rules: {0}")]
    Refused(String),
}

/// Runs Automerge on bytes from another replica, turning a panic inside it into an error. The
/// document it worked on may be half changed and must be dropped. Effective where panics
/// unwind (the default); a build with `panic = "abort"` stops instead.
pub fn guarded<T, E: Into<DocError>>(work: impl FnOnce() -> Result<T, E>) -> Result<T, DocError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result.map_err(Into::into),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(DocError::Refused(
                reason.lines().next().unwrap_or_default().to_string(),
            ))
        }
    }
}

/// The Automerge actor for a device.
pub fn actor_for(device: DeviceId) -> ActorId {
    ActorId::from(&device.0[..])
}

fn commit(tx: automerge::transaction::Transaction<'_>, now: DateTime<Utc>) {
    tx.commit_with(CommitOptions::default().with_time(now.timestamp_millis()));
}

/// Creates the document of a new record; `fields` must already be validated and normalized.
/// The document holds an empty list or text for each such field of the type that `fields` lacks (see
/// [`creation_change`]).
pub fn create(
    device: DeviceId,
    schema: &Schema,
    record_type: &RecordType,
    fields: &BTreeMap<String, Value>,
    now: DateTime<Utc>,
) -> Result<Automerge, DocError> {
    let change = creation_change(
        device,
        record_type,
        fields,
        container_fields(schema, record_type),
        now,
    );
    let doc = Automerge::load(change.raw_bytes())?;
    Ok(doc.with_actor(actor_for(device)))
}

/// The fields of a type that a new record's document holds as (initially empty) objects: lists
/// (lists, emails, links) and long text, with the object each one is.
pub fn container_fields<'s>(
    schema: &'s Schema,
    record_type: &RecordType,
) -> impl Iterator<Item = (&'s str, ObjType)> + Clone {
    schema
        .type_def(record_type)
        .into_iter()
        .flat_map(|t| &t.fields)
        .filter_map(|(name, f)| {
            let kind = match f.kind {
                FieldKind::List | FieldKind::Emails | FieldKind::Links(_) => ObjType::List,
                FieldKind::LongText => ObjType::Text,
                _ => return None,
            };
            Some((name.as_str(), kind))
        })
}

/// Applies field ops (already validated and normalized) to a document as one change.
pub fn apply_ops(
    doc: &mut Automerge,
    device: DeviceId,
    ops: &[FieldOp],
    now: DateTime<Utc>,
) -> Result<(), DocError> {
    doc.set_actor(actor_for(device));
    let mut tx = doc.transaction();
    let map = fields_obj_tx(&mut tx)?;
    for op in ops {
        apply_op(&mut tx, &map, op)?;
    }
    commit(tx, now);
    Ok(())
}

/// Marks a record deleted or restores it, as one change.
pub fn set_deleted(
    doc: &mut Automerge,
    device: DeviceId,
    deleted: bool,
    now: DateTime<Utc>,
) -> Result<(), DocError> {
    doc.set_actor(actor_for(device));
    let mut tx = doc.transaction();
    tx.put(ROOT, DELETED, deleted)?;
    commit(tx, now);
    Ok(())
}

fn fields_obj_tx(tx: &mut automerge::transaction::Transaction<'_>) -> Result<ObjId, DocError> {
    match tx.get(ROOT, FIELDS)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Ok(tx.put_object(ROOT, FIELDS, ObjType::Map)?),
    }
}

pub(crate) fn encode_scalar(value: &Value) -> ScalarValue {
    match value {
        Value::Int(i) => ScalarValue::Int(*i),
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Timestamp(t) => ScalarValue::Timestamp(t.timestamp_millis()),
        Value::Money(m) => {
            let mut bytes = Vec::with_capacity(12);
            bytes.push(MONEY_TAG);
            bytes.extend_from_slice(m.currency.code().as_bytes());
            bytes.extend_from_slice(&m.minor.to_be_bytes());
            ScalarValue::Bytes(bytes)
        }
        Value::Lines(lines) => {
            let mut bytes = vec![LINES_TAG];
            // Vec<u8> output never fails for plain data.
            bytes.extend(postcard::to_allocvec(lines).unwrap_or_default());
            ScalarValue::Bytes(bytes)
        }
        // Strings, enums, dates and links are stored as their text form.
        other => ScalarValue::Str(format_value(other).into()),
    }
}

fn put_value(
    tx: &mut automerge::transaction::Transaction<'_>,
    map: &ObjId,
    name: &str,
    value: &Value,
) -> Result<(), DocError> {
    match value {
        Value::LongText(text) => {
            let obj = tx.put_object(map, name, ObjType::Text)?;
            tx.splice_text(&obj, 0, 0, text)?;
        }
        Value::List(_) | Value::Links(_) => {
            let list = tx.put_object(map, name, ObjType::List)?;
            for (i, item) in list_items(value).into_iter().enumerate() {
                tx.insert(&list, i, item)?;
            }
        }
        scalar => tx.put(map, name, encode_scalar(scalar))?,
    }
    Ok(())
}

fn list_items(value: &Value) -> Vec<String> {
    match value {
        Value::List(items) => items.clone(),
        Value::Links(ids) => ids.iter().map(|id| id.to_string()).collect(),
        Value::Link(id) => vec![id.to_string()],
        other => vec![format_value(other)],
    }
}

fn existing(
    tx: &automerge::transaction::Transaction<'_>,
    map: &ObjId,
    name: &str,
    kind: ObjType,
) -> Result<Option<ObjId>, DocError> {
    Ok(match tx.get(map, name)? {
        Some((automerge::Value::Object(t), id)) if t == kind => Some(id),
        _ => None,
    })
}

fn list_strings(tx: &automerge::transaction::Transaction<'_>, list: &ObjId) -> Vec<Option<String>> {
    tx.list_range(list, ..)
        .map(|item| match item.value {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

fn apply_op(
    tx: &mut automerge::transaction::Transaction<'_>,
    map: &ObjId,
    op: &FieldOp,
) -> Result<(), DocError> {
    match op {
        FieldOp::Set { field, value } => set_field(tx, map, field, value),
        // A list or text is emptied in place, not removed: the object stays the one every
        // replica edits, so text or items another replica adds meanwhile survive the merge.
        FieldOp::Unset { field } => match tx.get(map, field.as_str())? {
            Some((automerge::Value::Object(ObjType::Text), text)) => {
                let len = tx.length(&text);
                Ok(tx.splice_text(&text, 0, len as isize, "")?)
            }
            Some((automerge::Value::Object(ObjType::List), list)) => {
                for i in (0..tx.length(&list)).rev() {
                    tx.delete(&list, i)?;
                }
                Ok(())
            }
            _ => Ok(tx.delete(map, field.as_str())?),
        },
        FieldOp::SpliceText {
            field,
            index,
            delete,
            insert,
        } => {
            let text = match existing(tx, map, field, ObjType::Text)? {
                Some(obj) => obj,
                None => tx.put_object(map, field.as_str(), ObjType::Text)?,
            };
            let len = tx.length(&text);
            if *index > len {
                return Err(DocError::TextPosition {
                    field: field.clone(),
                    index: *index,
                    len,
                });
            }
            let delete = (*delete).min(len - index);
            tx.splice_text(&text, *index, delete as isize, insert)?;
            Ok(())
        }
        FieldOp::AddItem { field, item } => {
            let list = match existing(tx, map, field, ObjType::List)? {
                Some(obj) => obj,
                None => tx.put_object(map, field.as_str(), ObjType::List)?,
            };
            let item = list_items(item).remove(0);
            let items = list_strings(tx, &list);
            if !items.iter().any(|i| i.as_deref() == Some(&item)) {
                tx.insert(&list, items.len(), item)?;
            }
            Ok(())
        }
        FieldOp::RemoveItem { field, item } => {
            if let Some(list) = existing(tx, map, field, ObjType::List)? {
                let item = list_items(item).remove(0);
                let items = list_strings(tx, &list);
                for (i, _) in items
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, v)| v.as_deref() == Some(&item))
                {
                    tx.delete(&list, i)?;
                }
            }
            Ok(())
        }
    }
}

fn set_field(
    tx: &mut automerge::transaction::Transaction<'_>,
    map: &ObjId,
    field: &str,
    value: &Value,
) -> Result<(), DocError> {
    match value {
        Value::LongText(text) => {
            if let Some(obj) = existing(tx, map, field, ObjType::Text)? {
                // Diff against the current text so concurrent edits elsewhere survive.
                tx.update_text(&obj, text)?;
                return Ok(());
            }
        }
        Value::List(_) | Value::Links(_) => {
            if let Some(list) = existing(tx, map, field, ObjType::List)?
                && edit_list_in_place(tx, &list, &list_items(value))?
            {
                return Ok(());
            }
        }
        _ => {}
    }
    put_value(tx, map, field, value)
}

/// Turns the list into `wanted` by deleting and inserting items, so that concurrent additions
/// on another replica survive. Returns false (and changes nothing) when the kept items would
/// need reordering, in which case the caller replaces the list.
fn edit_list_in_place(
    tx: &mut automerge::transaction::Transaction<'_>,
    list: &ObjId,
    wanted: &[String],
) -> Result<bool, DocError> {
    let current = list_strings(tx, list);
    let kept: Vec<&String> = current
        .iter()
        .flatten()
        .filter(|c| wanted.contains(c))
        .collect();
    let kept_in_wanted_order: Vec<&String> = wanted.iter().filter(|w| kept.contains(w)).collect();
    if kept != kept_in_wanted_order {
        return Ok(false);
    }
    for (i, item) in current.iter().enumerate().rev() {
        let keep = item.as_ref().is_some_and(|s| wanted.contains(s));
        if !keep {
            tx.delete(list, i)?;
        }
    }
    // Insert the missing items at their position in `wanted`; the kept ones already sit in order.
    for (i, item) in wanted.iter().enumerate() {
        let present = list_strings(tx, list);
        if present.get(i).and_then(|p| p.as_ref()) != Some(item) {
            tx.insert(list, i, item.as_str())?;
        }
    }
    Ok(true)
}
