//! A local edit of scalar fields, made into a change without loading the record's document.
//!
//! Loading a document (~40–80 µs in automerge 0.12 for a typical record), applying the edit and
//! reading the record back took about half of a durable edit. For the common edit — set or
//! clear a few scalar fields — the change is fully determined by little: the stored heads (its
//! dependencies), this device's next sequence number, the next op counter, the fields map's id
//! and, per field touched, the ops whose value it replaces (its predecessors). All of it is read
//! here from the record's stored changes (the facts only say which map to expect), and the
//! change is built the way an Automerge transaction would build it, including its no-op rules.
//! Anything else
//! (lists, text, a field holding a container, a conflict to resolve by writing the value that
//! already wins, a record stored as a compacted document) goes the general way.

use std::collections::BTreeMap;

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{Change, ChangeHash, ExpandedChange, ObjType, ScalarValue};
use chrono::{DateTime, Utc};

use super::forward::Facts;
use super::read::{change_stamp, decode_field_scalar};
use super::{FIELDS, actor_for, encode_scalar};
use crate::model::{DeviceId, FieldOp, Record, Schema, Value};

/// The change a local edit makes, the record after it and the facts after it.
#[derive(Debug)]
pub struct LocalEdit {
    /// The new change; its raw bytes are the record's next chunk, its hash the only head.
    pub change: Change,
    /// The record with the edit applied, as reading the document would give it.
    pub record: Record,
    /// The facts of the document with the change.
    pub facts: Facts,
}

/// A value of a field in the stored document that no op has overwritten.
struct Visible {
    id: OpId,
    /// `None` for an object (a list or text).
    value: Option<ScalarValue>,
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::LongText(_) | Value::List(_) | Value::Links(_))
}

/// The edit `ops` (already validated) by `device` at `now` of a record whose stored row, heads
/// and facts are given and whose stored changes (all of them, from
/// [`super::split_changes`]) are `stored`. `None` when the edit is not one this handles.
pub fn edit_scalars(
    row: &Record,
    (heads, facts): (&[ChangeHash], &Facts),
    stored: &[Change],
    (device, now): (DeviceId, DateTime<Utc>),
    ops: &[FieldOp],
    schema: &Schema,
) -> Option<LocalEdit> {
    let fields_map = OpId::new(facts.fields_counter, &actor_for(row.created_by));
    let mut touched: BTreeMap<&str, Vec<Visible>> = BTreeMap::new();
    for op in ops {
        match op {
            FieldOp::Set { field, value } if is_scalar(value) => {}
            FieldOp::Unset { .. } => {}
            _ => return None,
        }
        touched.insert(op.field(), Vec::new());
    }
    let actor = actor_for(device);
    // The numbering comes from the changes themselves, not from the facts, so that a change
    // made here can never reuse an op id or a sequence number.
    let (mut max_op, mut last_seq) = (0, 0);
    // The root's `f` ops, each with whether it made a map: the fields map must be the one
    // the facts name, and the only one.
    let mut maps: Vec<(OpId, bool)> = Vec::new();
    // An op is visible unless another op on its key names it as a predecessor; the order the
    // changes are read in does not matter.
    let mut overwritten: Vec<OpId> = Vec::new();
    for change in stored {
        max_op = max_op.max(change.max_op());
        if change.actor_id() == &actor {
            last_seq = last_seq.max(change.seq());
        }
        for (n, op) in change.decode().operations.into_iter().enumerate() {
            let id = OpId::new(change.start_op().get() + n as u64, change.actor_id());
            let visible = match (&op.obj, &op.key) {
                (ObjectId::Root, Key::Map(key)) if key == FIELDS => {
                    if !matches!(op.action, OpType::Delete) {
                        maps.push((id, matches!(op.action, OpType::Make(ObjType::Map))));
                    }
                    overwritten.extend(op.pred);
                    continue;
                }
                (ObjectId::Id(obj), Key::Map(key)) if *obj == fields_map => {
                    match touched.get_mut(key.as_str()) {
                        Some(visible) => visible,
                        None => continue,
                    }
                }
                _ => continue,
            };
            match op.action {
                OpType::Put(value) => visible.push(Visible {
                    id,
                    value: Some(value),
                }),
                OpType::Make(_) => visible.push(Visible { id, value: None }),
                OpType::Delete => {}
                // Counters and marks have rules of their own.
                _ => return None,
            }
            overwritten.extend(op.pred);
        }
    }
    maps.retain(|(id, _)| !overwritten.contains(id));
    if maps != [(fields_map.clone(), true)] {
        return None;
    }
    for visible in touched.values_mut() {
        visible.retain(|v| !overwritten.contains(&v.id));
        if visible.iter().any(|v| v.value.is_none()) {
            return None;
        }
    }

    let start_op = max_op + 1;
    let mut record = row.clone();
    let mut out: Vec<Op> = Vec::new();
    for op in ops {
        let field = op.field();
        let visible = touched.get_mut(field)?;
        let pred: SortedVec<OpId> = visible.iter().map(|v| v.id.clone()).collect();
        let action = match op {
            FieldOp::Set { value, .. } => {
                let scalar = encode_scalar(value);
                if let [only] = visible.as_slice()
                    && only.value.as_ref() == Some(&scalar)
                {
                    // Automerge writes nothing for the value a field holds already.
                    continue;
                }
                if visible.iter().any(|v| v.value.as_ref() == Some(&scalar)) {
                    // Writing a value in conflict resolves it in a way of Automerge's own.
                    return None;
                }
                let kind = schema.field(&row.record_type, field).map(|f| &f.kind);
                let decoded = decode_field_scalar(field, &scalar, kind).ok()?;
                record.fields.insert(field.to_string(), decoded);
                OpType::Put(scalar)
            }
            _ if visible.is_empty() => continue,
            _ => {
                record.fields.remove(field);
                OpType::Delete
            }
        };
        let id = OpId::new(start_op + out.len() as u64, &actor);
        *visible = match &action {
            OpType::Put(value) => vec![Visible {
                id,
                value: Some(value.clone()),
            }],
            _ => Vec::new(),
        };
        out.push(Op {
            action,
            obj: ObjectId::Id(fields_map.clone()),
            key: Key::Map(field.into()),
            pred,
            insert: false,
        });
    }
    if out.is_empty() {
        return None;
    }
    let max_op = start_op + out.len() as u64 - 1;
    let seq = last_seq + 1;
    // As Automerge does, a change also names its actor's previous change, even where the heads
    // name it only through others'.
    let mut deps = heads.to_vec();
    if seq > 1 {
        let previous = stored
            .iter()
            .find(|c| c.actor_id() == &actor && c.seq() == seq - 1)?
            .hash();
        if !deps.contains(&previous) {
            deps.push(previous);
        }
    }
    deps.sort_unstable();
    let change = Change::from(ExpandedChange {
        operations: out,
        actor_id: actor.clone(),
        hash: None,
        seq,
        start_op: std::num::NonZeroU64::new(start_op)?,
        time: now.timestamp_millis(),
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    });
    (record.updated_at, record.updated_by) = change_stamp(change.timestamp(), actor.to_bytes())?;
    let mut facts = facts.clone();
    facts.note(actor.to_bytes(), seq, max_op)?;
    Some(LocalEdit {
        change,
        record,
        facts,
    })
}
