//! Reading a record that arrives as a single creating change straight from that change.
//!
//! An initial sync sends most records as the one change that created them (imported records
//! and records never edited). Loading each into an Automerge document only to read it back and
//! drop it cost ~60 µs per record in automerge 0.12, most of an initial sync's work on the
//! receiving side. One change with no dependencies has no concurrency: every map key holds
//! what its op put, and a list or text whose items were appended one after the other reads in
//! that order. Such a change is read here, the way [`super::materialize`] would read its
//! document; anything else (a key set twice, deletions, items inserted elsewhere than at the
//! end, nested objects) goes the general way.

use std::collections::BTreeMap;

use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
use automerge::{Change, ObjType, ScalarValue};
use chrono::DateTime;

use super::forward::Facts;
use super::read::{change_stamp, checked, decode_field_scalar, list_value};
use super::{CREATED_AT, CREATED_BY, DELETED, FIELDS, TYPE, actor_for};
use crate::model::{DeviceId, Record, RecordId, RecordType, Schema, Value};

/// What a field of the creating change holds.
enum Slot {
    Scalar(ScalarValue),
    /// A list or text object: its kind, its items, and the last item's id (where the next
    /// append must point).
    Seq(ObjType, Vec<String>, Option<OpId>),
}

/// The record a single creating change makes, with its facts; `None` when `changes` is not
/// one such change read simply (the general path then loads it). `changes` must come from
/// [`super::split_changes`], which makes them safe to decode.
pub fn from_creation(id: RecordId, changes: &[Change], schema: &Schema) -> Option<(Record, Facts)> {
    let [change] = changes else {
        return None;
    };
    // A first change can name no other actor: none is known yet (Automerge panics on one).
    if !change.deps().is_empty()
        || change.seq() != 1
        || change.author().is_some()
        || !change.other_actor_ids().is_empty()
    {
        return None;
    }
    let actor = change.actor_id().clone();
    let mut root: BTreeMap<String, ScalarValue> = BTreeMap::new();
    let mut fields_map: Option<OpId> = None;
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    // Container object id → its field name.
    let mut containers: BTreeMap<u64, String> = BTreeMap::new();
    for (n, op) in change.decode().operations.into_iter().enumerate() {
        let op_id = OpId::new(change.start_op().get() + n as u64, &actor);
        match (&op.obj, op.key, op.action, op.insert) {
            (ObjectId::Root, Key::Map(key), OpType::Put(value), false) => {
                if root.insert(key.to_string(), value).is_some() {
                    return None;
                }
            }
            (ObjectId::Root, Key::Map(key), OpType::Make(ObjType::Map), false)
                if key == FIELDS && fields_map.is_none() =>
            {
                fields_map = Some(op_id);
            }
            (ObjectId::Id(map), Key::Map(key), action, false)
                if Some(map) == fields_map.as_ref() =>
            {
                let slot = match action {
                    OpType::Put(value) => Slot::Scalar(value),
                    OpType::Make(kind @ (ObjType::List | ObjType::Text)) => {
                        containers.insert(op_id.counter(), key.to_string());
                        Slot::Seq(kind, Vec::new(), None)
                    }
                    _ => return None,
                };
                if slots.insert(key.to_string(), slot).is_some() {
                    return None;
                }
            }
            (ObjectId::Id(obj), Key::Seq(after), OpType::Put(ScalarValue::Str(item)), true)
                if *obj.actor() == actor =>
            {
                let name = containers.get(&obj.counter())?;
                let Some(Slot::Seq(_, items, last)) = slots.get_mut(name) else {
                    return None;
                };
                let appends = match (&after, &last) {
                    (ElementId::Head, None) => true,
                    (ElementId::Id(prev), Some(last)) => prev == last,
                    _ => false,
                };
                if !appends {
                    return None;
                }
                items.push(item.to_string());
                *last = Some(op_id);
            }
            _ => return None,
        }
    }
    let record_type = match root.get(TYPE)? {
        ScalarValue::Str(s) if !s.is_empty() => RecordType::from(s.as_str()),
        _ => return None,
    };
    let created_at = match root.get(CREATED_AT)? {
        ScalarValue::Timestamp(ms) => DateTime::from_timestamp_millis(*ms)?,
        _ => return None,
    };
    let created_by = match root.get(CREATED_BY)? {
        ScalarValue::Bytes(b) if b.len() == 16 => DeviceId::from_actor_bytes(b),
        _ => return None,
    };
    // A root `f` put as a value as well as made as a map: leave it to Automerge.
    if root.contains_key(FIELDS) {
        return None;
    }
    let fields_map = fields_map?;
    // Facts need the fields map made by the record's creator, as the general path checks.
    if *fields_map.actor() != actor_for(created_by) {
        return None;
    }
    let mut fields = BTreeMap::new();
    for (name, slot) in slots {
        let kind = schema.field(&record_type, &name).map(|f| &f.kind);
        let value = match slot {
            Slot::Scalar(value) => decode_field_scalar(&name, &value, kind).ok()?,
            Slot::Seq(ObjType::Text, items, _) => {
                checked(&name, Value::LongText(items.concat()), kind).ok()?
            }
            Slot::Seq(_, items, _) => {
                checked(&name, list_value(&name, items, kind).ok()?, kind).ok()?
            }
        };
        if !super::is_empty_container(&value) {
            fields.insert(name, value);
        }
    }
    let (updated_at, updated_by) = change_stamp(change.timestamp(), change.actor_id().to_bytes())
        .unwrap_or((created_at, created_by));
    let record = Record {
        id,
        record_type,
        fields,
        created_at,
        created_by,
        updated_at,
        updated_by,
        deleted: matches!(root.get(DELETED), Some(ScalarValue::Boolean(true))),
    };
    let facts = Facts {
        max_op: change.max_op(),
        fields_counter: fields_map.counter(),
        seqs: vec![(change.actor_id().to_bytes().try_into().ok()?, 1)],
    };
    Some((record, facts))
}
