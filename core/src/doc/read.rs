//! Reading a record document back into a [`Record`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use chrono::{DateTime, NaiveDate, Utc};

use super::{CREATED_AT, CREATED_BY, DELETED, DocError, FIELDS, LINES_TAG, MONEY_TAG, TYPE};
use crate::model::{
    Currency, DeviceId, FieldKind, Money, OrderLine, Record, RecordId, RecordType, Schema, Value,
};

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn scalar<'a>(doc: &'a Automerge, obj: &ObjId, key: &str) -> Option<Cow<'a, ScalarValue>> {
    match doc.get(obj, key).ok().flatten()? {
        (automerge::Value::Scalar(s), _) => Some(s),
        _ => None,
    }
}

/// The record type stored in a document.
pub fn record_type(doc: &Automerge) -> Result<RecordType, DocError> {
    match scalar(doc, &ROOT, TYPE).as_deref() {
        Some(ScalarValue::Str(s)) if !s.is_empty() => Ok(RecordType::from(s.as_str())),
        _ => Err(DocError::MissingType),
    }
}

/// Checks that a document has one origin: its `type` was set once, by one creating change. Two
/// records created separately under the same id merge into a document with a conflicting type;
/// merging such a document would silently mix two records, so it is refused.
pub fn check_single_origin(doc: &Automerge) -> Result<(), DocError> {
    let origins = doc.get_all(ROOT, TYPE)?.len();
    if origins > 1 {
        return Err(DocError::SeveralOrigins(origins));
    }
    Ok(())
}

/// Reads the current value of a record from its document. Declared fields must hold their
/// declared kind; fields this replica does not know are read by the shape Automerge stores.
pub fn materialize(doc: &Automerge, id: RecordId, schema: &Schema) -> Result<Record, DocError> {
    let record_type = record_type(doc)?;
    let created_at = match scalar(doc, &ROOT, CREATED_AT).as_deref() {
        Some(ScalarValue::Timestamp(ms)) => millis(*ms),
        _ => None,
    }
    .ok_or(DocError::MissingMeta(CREATED_AT))?;
    let created_by = match scalar(doc, &ROOT, CREATED_BY).as_deref() {
        Some(ScalarValue::Bytes(b)) if b.len() == 16 => DeviceId::from_actor_bytes(b),
        _ => return Err(DocError::MissingMeta(CREATED_BY)),
    };
    let deleted = matches!(
        scalar(doc, &ROOT, DELETED).as_deref(),
        Some(ScalarValue::Boolean(true))
    );
    let mut fields = BTreeMap::new();
    if let Some((automerge::Value::Object(ObjType::Map), map)) = doc.get(ROOT, FIELDS)? {
        // One pass over the map's winning values: looking each key up again costs a seek
        // through the op set per field.
        for item in doc.map_range(&map, ..) {
            let obj = item.id();
            let key = item.key;
            let kind = schema.field(&record_type, &key).map(|f| &f.kind);
            let value = decode(doc, &key, item.value.into_value(), &obj, kind)?;
            // An empty list or text is no value: records are created with them (so that
            // first items or first text added concurrently merge), and an emptied one
            // reads the same.
            if !is_empty_container(&value) {
                fields.insert(key.into_owned(), value);
            }
        }
    }
    let (updated_at, updated_by) = latest_change(doc).unwrap_or((created_at, created_by));
    Ok(Record {
        id,
        record_type,
        fields,
        created_at,
        created_by,
        updated_at,
        updated_by,
        deleted,
    })
}

/// Whether a value is a list (of strings or links) with no items or an empty long text,
/// which records treat as no value.
pub(crate) fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::List(items) => items.is_empty(),
        Value::Links(ids) => ids.is_empty(),
        Value::LongText(text) => text.is_empty(),
        _ => false,
    }
}

/// Time and device of the newest change among the document's heads. Replicas holding the same
/// changes have the same heads, so they agree on this.
fn latest_change(doc: &Automerge) -> Option<(DateTime<Utc>, DeviceId)> {
    doc.get_heads()
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .map(|m| (m.timestamp, DeviceId::from_actor_bytes(m.actor.to_bytes())))
        .max()
        .and_then(|(ms, device)| Some((millis(ms)?, device)))
}

/// Time and device of a record's last change, read as [`materialize`] reads them when that
/// change is the document's one head.
pub(crate) fn change_stamp(timestamp: i64, actor: &[u8]) -> Option<(DateTime<Utc>, DeviceId)> {
    Some((millis(timestamp)?, DeviceId::from_actor_bytes(actor)))
}

fn wrong(field: &str, expected: &'static str, found: impl std::fmt::Debug) -> DocError {
    let mut found = format!("{found:?}");
    found.truncate(80);
    DocError::WrongKind {
        field: field.to_string(),
        expected,
        found,
    }
}

/// Decodes one stored field value as its declared kind when there is one. A value that does
/// not fit the declaration (a field another device declared with another kind, written before
/// the two agree) is read by the shape Automerge stores, as an undeclared field is: the record
/// is kept and syncs on, and nothing that arrives can make a replica refuse it for ever.
pub(crate) fn decode(
    doc: &Automerge,
    field: &str,
    value: automerge::Value<'_>,
    obj: &ObjId,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    match decode_declared(doc, field, value.clone(), obj, kind) {
        Err(DocError::WrongKind { expected, .. }) if kind.is_some() => {
            tracing::debug!(
                field,
                expected,
                "a value of another kind; read by its shape"
            );
            decode_declared(doc, field, value, obj, None)
        }
        decoded => decoded,
    }
}

/// Decodes one stored field value, refusing one that is not of the declared kind.
fn decode_declared(
    doc: &Automerge,
    field: &str,
    value: automerge::Value<'_>,
    obj: &ObjId,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    let expected = kind.map_or("a known kind", FieldKind::name);
    let decoded = match value {
        automerge::Value::Object(ObjType::Text) => Value::LongText(doc.text(obj)?),
        automerge::Value::Object(ObjType::List) => {
            let mut items = Vec::new();
            for item in doc.list_range(obj, ..) {
                match item.value {
                    automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => {
                        items.push(s.to_string());
                    }
                    other => return Err(wrong(field, expected, other)),
                }
            }
            list_value(field, items, kind)?
        }
        automerge::Value::Object(other) => return Err(wrong(field, expected, other)),
        automerge::Value::Scalar(s) => decode_scalar(field, &s, kind)?,
    };
    checked(field, decoded, kind)
}

/// A list's value from its items in order: each item once, as links when the field declares
/// links.
pub(crate) fn list_value(
    field: &str,
    items: Vec<String>,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    let mut unique: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    Ok(match kind {
        Some(links @ FieldKind::Links(_)) => Value::Links(
            unique
                .iter()
                .map(|s| s.parse().map_err(|_| wrong(field, links.name(), s)))
                .collect::<Result<_, _>>()?,
        ),
        _ => Value::List(unique),
    })
}

/// Decodes a scalar field value as [`decode`] does, for a value read from a change.
pub(crate) fn decode_field_scalar(
    field: &str,
    value: &ScalarValue,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    checked(field, decode_scalar(field, value, kind)?, kind)
}

/// A decoded value, refused if it is not of the declared kind.
pub(crate) fn checked(
    field: &str,
    decoded: Value,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    match kind {
        Some(kind) if !kind.accepts(&decoded) => Err(wrong(field, kind.name(), decoded)),
        _ => Ok(decoded),
    }
}

fn decode_scalar(
    field: &str,
    s: &ScalarValue,
    kind: Option<&FieldKind>,
) -> Result<Value, DocError> {
    let expected = kind.map_or("a known kind", FieldKind::name);
    let bad = || wrong(field, expected, s);
    Ok(match (s, kind) {
        (ScalarValue::Str(text), Some(FieldKind::Enum(_))) => Value::Enum(text.to_string()),
        (ScalarValue::Str(text), Some(FieldKind::Date)) => {
            Value::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?)
        }
        (ScalarValue::Str(text), Some(FieldKind::Link(_))) => {
            Value::Link(text.parse().map_err(|_| bad())?)
        }
        (ScalarValue::Str(text), _) => Value::Text(text.to_string()),
        (ScalarValue::Int(i), _) => Value::Int(*i),
        (ScalarValue::Uint(u), _) => Value::Int(i64::try_from(*u).map_err(|_| bad())?),
        (ScalarValue::Boolean(b), _) => Value::Bool(*b),
        (ScalarValue::Timestamp(ms), _) => Value::Timestamp(millis(*ms).ok_or_else(bad)?),
        (ScalarValue::Bytes(b), _) if b.len() == 12 && b[0] == MONEY_TAG => {
            let code = std::str::from_utf8(&b[1..4]).map_err(|_| bad())?;
            let currency = Currency::new(code).map_err(|_| bad())?;
            let mut minor = [0u8; 8];
            minor.copy_from_slice(&b[4..12]);
            Value::Money(Money {
                minor: i64::from_be_bytes(minor),
                currency,
            })
        }
        (ScalarValue::Bytes(b), _) if b.first() == Some(&LINES_TAG) => {
            let lines: Vec<OrderLine> = postcard::from_bytes(&b[1..]).map_err(|_| bad())?;
            Value::Lines(lines)
        }
        _ => return Err(bad()),
    })
}
