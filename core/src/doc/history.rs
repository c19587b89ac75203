//! History and conflicts of a record document.

use std::fmt;
use std::str::FromStr;

use automerge::{Automerge, ChangeHash, ObjType, PatchAction, Prop, ROOT, ReadDoc};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::read::{decode, record_type};
use super::{DELETED, DocError, FIELDS, TYPE};
use crate::model::{DeviceId, Schema, Value};

/// A point in a record's history: the Automerge heads of that state. Printed as comma-separated
/// hex hashes, and parsed back from that form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub Vec<ChangeHash>);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hashes: Vec<String> = self.0.iter().map(ChangeHash::to_string).collect();
        f.write_str(&hashes.join(","))
    }
}

/// Text that is not a [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a version (comma-separated 64-digit hex change hashes)")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(|h| h.trim().parse::<ChangeHash>())
            .collect::<Result<Vec<_>, _>>()
            .map(Version)
            .map_err(|_| ParseVersionError(s.to_string()))
    }
}

/// One change in a record's history.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The state right after this change, as its author saw it; pass to `get_at`.
    pub version: Version,
    /// When the change was made (the author's clock).
    pub at: DateTime<Utc>,
    /// The device that made it.
    pub by: DeviceId,
    /// Whether this change created the record.
    pub created: bool,
    /// `Some(true)` if it deleted the record, `Some(false)` if it restored it.
    pub deleted: Option<bool>,
    /// The fields it set, edited or unset, sorted.
    pub fields: Vec<String>,
}

/// Every change of a document in causal order, with the fields each one touched.
pub fn history(doc: &Automerge) -> Vec<HistoryEntry> {
    let metas: Vec<_> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| m.into_owned())
        .collect();
    let mut entries = Vec::with_capacity(metas.len());
    for meta in metas {
        let mut entry = HistoryEntry {
            version: Version(vec![meta.hash]),
            at: DateTime::from_timestamp_millis(meta.timestamp).unwrap_or_default(),
            by: DeviceId::from_actor_bytes(meta.actor.to_bytes()),
            created: false,
            deleted: None,
            fields: Vec::new(),
        };
        for patch in doc.diff(&meta.deps, &[meta.hash]) {
            let field = match patch.path.as_slice() {
                [] => {
                    match &patch.action {
                        PatchAction::PutMap { key, value, .. } if key == TYPE => {
                            let _ = value;
                            entry.created = true;
                        }
                        PatchAction::PutMap { key, value, .. } if key == DELETED => {
                            entry.deleted = Some(matches!(
                                &value.0,
                                automerge::Value::Scalar(s)
                                    if matches!(s.as_ref(), automerge::ScalarValue::Boolean(true))
                            ));
                        }
                        _ => {}
                    }
                    None
                }
                [(_, Prop::Map(f))] if f == FIELDS => match &patch.action {
                    // A new list or text counts through its contents: the empty ones a record
                    // is created with (and any that stays empty) are no value, so no change.
                    PatchAction::PutMap { value, .. }
                        if matches!(
                            value.0,
                            automerge::Value::Object(ObjType::List | ObjType::Text)
                        ) =>
                    {
                        None
                    }
                    PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                        Some(key.clone())
                    }
                    PatchAction::Conflict {
                        prop: Prop::Map(key),
                    } => Some(key.clone()),
                    _ => None,
                },
                [(_, Prop::Map(f)), (_, Prop::Map(field)), ..] if f == FIELDS => {
                    Some(field.clone())
                }
                _ => None,
            };
            if let Some(field) = field
                && !entry.fields.contains(&field)
            {
                entry.fields.push(field);
            }
        }
        if entry.created {
            // The creating change sets every initial field; list them, not the metadata.
            entry.deleted = None;
        }
        entry.fields.sort();
        entries.push(entry);
    }
    entries
}

/// One value a field took in a record's history.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// When the change was made (the author's clock).
    pub at: DateTime<Utc>,
    /// The device that made it.
    pub by: DeviceId,
    /// The field's value right after the change, as its author saw it (`None`: unset).
    pub value: Option<Value>,
}

/// The successive values of one field, in causal order of the changes that wrote it (what
/// funnel analytics reads for a deal's stage).
pub fn field_history(
    doc: &Automerge,
    schema: &Schema,
    field: &str,
) -> Result<Vec<FieldChange>, DocError> {
    let record_type = record_type(doc)?;
    let kind = schema.field(&record_type, field).map(|f| &f.kind);
    let mut out = Vec::new();
    for entry in history(doc) {
        if !entry.fields.iter().any(|f| f == field) {
            continue;
        }
        let heads = &entry.version.0;
        let value = match doc.get_at(ROOT, FIELDS, heads)? {
            Some((automerge::Value::Object(ObjType::Map), map)) => {
                match doc.get_at(&map, field, heads)? {
                    Some((value, obj)) => Some(decode_at(doc, field, value, &obj, kind, heads)?),
                    None => None,
                }
            }
            _ => None,
        };
        out.push(FieldChange {
            at: entry.at,
            by: entry.by,
            value,
        });
    }
    Ok(out)
}

fn decode_at(
    doc: &Automerge,
    field: &str,
    value: automerge::Value<'_>,
    obj: &automerge::ObjId,
    kind: Option<&crate::model::FieldKind>,
    heads: &[ChangeHash],
) -> Result<Value, DocError> {
    match value {
        // Objects (text, lists) are read from a fork at those heads; scalars need no history.
        automerge::Value::Object(_) => {
            let past = doc.fork_at(heads)?;
            let (value, obj) = past
                .get(ROOT, FIELDS)?
                .and_then(|(_, map)| past.get(&map, field).ok().flatten())
                .ok_or(DocError::MissingMeta("field at version"))?;
            decode(&past, field, value, &obj, kind)
        }
        scalar => decode(doc, field, scalar, obj, kind),
    }
}

/// A field that two replicas set concurrently: every replica shows the same `value`, and the
/// other values stay visible here until someone writes the field again.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The field.
    pub field: String,
    /// The value every replica shows.
    pub value: Value,
    /// The concurrent values that lost.
    pub others: Vec<Value>,
}

/// The fields of a document with concurrent values.
pub fn conflicts(doc: &Automerge, schema: &Schema) -> Result<Vec<Conflict>, DocError> {
    let record_type = record_type(doc)?;
    let Some((automerge::Value::Object(ObjType::Map), map)) = doc.get(ROOT, FIELDS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for key in doc.keys(&map) {
        let all = doc.get_all(&map, key.as_str())?;
        if all.len() < 2 {
            continue;
        }
        let kind = schema.field(&record_type, &key).map(|f| &f.kind);
        let Some((winner, winner_obj)) = doc.get(&map, key.as_str())? else {
            continue;
        };
        let value = decode(doc, &key, winner, &winner_obj, kind)?;
        let mut others = Vec::new();
        for (v, obj) in all {
            if obj != winner_obj {
                others.push(decode(doc, &key, v, &obj, kind)?);
            }
        }
        out.push(Conflict {
            field: key,
            value,
            others,
        });
    }
    Ok(out)
}
