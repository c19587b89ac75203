//! The change that creates a record, encoded directly from its fields.
//!
//! Building an Automerge document only to take its first change back out costs ~65 µs per
//! record in automerge 0.12 (the op set is built, the change encoded on commit and dropped, then
//! encoded again from the op set). A new record's document is exactly one change whose content
//! is known up front, so it is written here as that change's ops and encoded once: an import
//! stores these bytes as the document. The layout is the one `init_root_from_hydrate` writes
//! (objects made first, then filled breadth-first, one op per text character).

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Change, ExpandedChange, ObjType, ScalarValue};
use chrono::{DateTime, Utc};

use super::forward::Facts;
use super::{CREATED_AT, CREATED_BY, DELETED, FIELDS, TYPE, actor_for, encode_scalar, list_items};
use crate::model::{DeviceId, RecordType, Value};

/// Ops of one change by one actor, numbered from 1 in the order they are pushed.
struct Ops {
    actor: ActorId,
    ops: Vec<Op>,
}

impl Ops {
    fn push(&mut self, obj: ObjectId, key: Key, action: OpType, insert: bool) -> OpId {
        let id = OpId::new(self.ops.len() as u64 + 1, &self.actor);
        self.ops.push(Op {
            action,
            obj,
            key,
            pred: SortedVec::new(),
            insert,
        });
        id
    }

    fn put(&mut self, obj: &ObjectId, key: &str, value: ScalarValue) {
        self.push(obj.clone(), Key::Map(key.into()), OpType::Put(value), false);
    }

    fn make(&mut self, obj: &ObjectId, key: &str, kind: ObjType) -> ObjectId {
        ObjectId::Id(self.push(obj.clone(), Key::Map(key.into()), OpType::Make(kind), false))
    }

    /// Appends items to an empty list or text object, each after the previous one.
    fn fill(&mut self, obj: &ObjectId, items: impl Iterator<Item = ScalarValue>) {
        let mut after = ElementId::Head;
        for item in items {
            let id = self.push(obj.clone(), Key::Seq(after), OpType::Put(item), true);
            after = ElementId::Id(id);
        }
    }
}

/// Counter of the op making the fields map in a creating change: the fifth, after the four
/// metadata values.
const FIELDS_COUNTER: u64 = 5;

/// The [`Facts`] of a document that is just its creating change, made by `device`.
pub fn creation_facts(device: DeviceId, change: &Change) -> Facts {
    Facts {
        max_op: change.max_op(),
        fields_counter: FIELDS_COUNTER,
        seqs: vec![(device.0, change.seq())],
    }
}

/// The change creating a record: its metadata, its `fields` (validated and normalized), and an
/// empty object (list or text) for each field of `containers` that `fields` lacks.
///
/// The empty objects exist so that replicas adding a record's first list item, or writing its
/// first text, concurrently edit the same object: were each to create it, Automerge would keep
/// only one of them and the other replica's items or text would be lost.
pub fn creation_change<'a>(
    device: DeviceId,
    record_type: &RecordType,
    fields: &BTreeMap<String, Value>,
    containers: impl IntoIterator<Item = (&'a str, ObjType)>,
    now: DateTime<Utc>,
) -> Change {
    let mut ops = Ops {
        actor: actor_for(device),
        ops: Vec::with_capacity(8 + 2 * fields.len()),
    };
    let root = ObjectId::Root;
    ops.put(&root, TYPE, ScalarValue::Str(record_type.as_str().into()));
    ops.put(
        &root,
        CREATED_AT,
        ScalarValue::Timestamp(now.timestamp_millis()),
    );
    ops.put(&root, CREATED_BY, ScalarValue::Bytes(device.0.to_vec()));
    ops.put(&root, DELETED, ScalarValue::Boolean(false));
    let map = ops.make(&root, FIELDS, ObjType::Map);
    debug_assert!(matches!(&map, ObjectId::Id(id) if id.counter() == FIELDS_COUNTER));
    let mut contents: Vec<(ObjectId, &Value)> = Vec::new();
    for (name, value) in fields {
        match value {
            Value::LongText(_) => contents.push((ops.make(&map, name, ObjType::Text), value)),
            Value::List(_) | Value::Links(_) => {
                contents.push((ops.make(&map, name, ObjType::List), value));
            }
            scalar => ops.put(&map, name, encode_scalar(scalar)),
        }
    }
    for (name, kind) in containers {
        if !fields.contains_key(name) {
            ops.make(&map, name, kind);
        }
    }
    for (obj, value) in contents {
        match value {
            Value::LongText(text) => ops.fill(
                &obj,
                text.chars()
                    .map(|c| ScalarValue::Str(c.encode_utf8(&mut [0; 4]).into())),
            ),
            list => ops.fill(
                &obj,
                list_items(list)
                    .into_iter()
                    .map(|item| ScalarValue::Str(item.into())),
            ),
        }
    }
    Change::from(ExpandedChange {
        operations: ops.ops,
        actor_id: ops.actor,
        hash: None,
        seq: 1,
        start_op: NonZeroU64::MIN,
        time: now.timestamp_millis(),
        message: None,
        deps: Vec::new(),
        extra_bytes: Vec::new(),
        author: None,
    })
}
