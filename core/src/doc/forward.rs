//! Merging changes that follow a record's stored state into its row without its document.
//!
//! Most changes a replica receives from a peer it knows build directly on what it already has:
//! their dependencies are the record's stored heads. When such changes only set scalar fields
//! (or the tombstone), the merged record is the stored row with those values written over it:
//! each op's counter is above every op in the document, so Automerge's rule (the greatest op id
//! wins among concurrent values) picks it whatever its predecessors. Decoding the document,
//! applying the changes and reading the document back cost ~75 µs per record in automerge 0.12;
//! this costs a few. Anything else (lists, text, deletions of fields, a change that does not
//! follow the heads) goes the general way.

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, Change, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue};

use super::read::{change_stamp, decode_field_scalar};
use super::{DELETED, FIELDS, actor_for};
use crate::model::{DeviceId, Record, Schema};

/// What a record's stored state must say about its document for changes to be merged into
/// its row directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The highest op counter in the document.
    pub max_op: u64,
    /// Counter of the op that made the fields map (`f`), made by the record's creator.
    pub fields_counter: u64,
    /// Each actor that wrote the document, with the sequence number of its last change.
    /// Automerge asserts that an actor's changes arrive numbered 1, 2, 3…; a change breaking
    /// that must never be stored.
    pub seqs: Vec<([u8; 16], u64)>,
}

impl Facts {
    /// The facts of a document, read from all its changes; `None` if its fields map was not
    /// made by `creator`, or an actor is not a device id (a document this code did not make).
    pub fn of(doc: &Automerge, creator: DeviceId) -> Option<Facts> {
        let mut facts = Facts {
            max_op: 0,
            fields_counter: fields_counter(doc, creator)?,
            seqs: Vec::new(),
        };
        for change in doc.get_changes_meta(&[]) {
            facts.note(change.actor.to_bytes(), change.seq, change.max_op)?;
        }
        Some(facts)
    }

    /// Notes a change by `actor` numbered `seq` whose highest op is `max_op`. `None` if the
    /// actor is not a device id.
    pub(super) fn note(&mut self, actor: &[u8], seq: u64, max_op: u64) -> Option<()> {
        let actor: [u8; 16] = actor.try_into().ok()?;
        self.max_op = self.max_op.max(max_op);
        match self.seqs.iter_mut().find(|(a, _)| *a == actor) {
            Some((_, last)) => *last = (*last).max(seq),
            None => self.seqs.push((actor, seq)),
        }
        Some(())
    }

    /// The sequence number of `actor`'s last change (0 if it wrote none).
    pub(super) fn seq(&self, actor: &[u8]) -> u64 {
        self.seqs
            .iter()
            .find(|(a, _)| a.as_slice() == actor)
            .map_or(0, |(_, seq)| *seq)
    }

    /// The facts of `doc` after changes — each its actor, sequence number and highest op —
    /// were added to the document these facts described. The fields map is read again: a
    /// change may have replaced it.
    pub fn after(
        mut self,
        doc: &Automerge,
        creator: DeviceId,
        added: impl IntoIterator<Item = (Vec<u8>, u64, u64)>,
    ) -> Option<Facts> {
        for (actor, seq, max_op) in added {
            self.note(&actor, seq, max_op)?;
        }
        self.fields_counter = fields_counter(doc, creator)?;
        Some(self)
    }
}

/// Counter of the op that made a document's fields map, if `creator` made it.
fn fields_counter(doc: &Automerge, creator: DeviceId) -> Option<u64> {
    match doc.get(ROOT, FIELDS).ok()?? {
        (automerge::Value::Object(ObjType::Map), automerge::ObjId::Id(counter, actor, _))
            if actor == actor_for(creator) =>
        {
            Some(counter)
        }
        _ => None,
    }
}

/// The record after `changes`, computed from its row, when the changes follow `heads` (the
/// stored heads) one after the other and only put scalar values into fields or the tombstone.
/// `None` when they do not, or when a value does not decode as its field declares (the general
/// path then reports it). `changes` must come from [`super::split_changes`], which makes them
/// safe to decode.
pub fn fast_forward(
    row: &Record,
    heads: &[ChangeHash],
    mut facts: Facts,
    changes: &[Change],
    schema: &Schema,
) -> Option<(Record, Facts)> {
    let last = changes.last()?;
    let mut record = row.clone();
    let fields_map = actor_for(row.created_by);
    let mut follows = heads.to_vec();
    for change in changes {
        let mut deps = change.deps().to_vec();
        deps.sort_unstable();
        follows.sort_unstable();
        let actor = change.actor_id().to_bytes();
        // Its ops must outnumber every op already there, so that they win; its number must
        // be its actor's next, as Automerge requires; an author footer has rules of its own.
        // Every other actor it lists must have written the document already: Automerge
        // panics loading a change that lists one it does not know (a forged change would
        // store fine here and leave the record unreadable).
        if deps != follows
            || change.start_op().get() <= facts.max_op
            || change.seq() != facts.seq(actor) + 1
            || change.author().is_some()
            || !change
                .other_actor_ids()
                .iter()
                .all(|other| facts.seq(other.to_bytes()) > 0)
        {
            return None;
        }
        for op in change.decode().operations {
            if op.insert {
                return None;
            }
            let (Key::Map(key), OpType::Put(value)) = (&op.key, &op.action) else {
                return None;
            };
            match &op.obj {
                ObjectId::Root if key == DELETED => {
                    record.deleted = matches!(value, ScalarValue::Boolean(true));
                }
                ObjectId::Id(id)
                    if id.counter() == facts.fields_counter && *id.actor() == fields_map =>
                {
                    let kind = schema.field(&row.record_type, key).map(|f| &f.kind);
                    let decoded = decode_field_scalar(key, value, kind).ok()?;
                    record.fields.insert(key.to_string(), decoded);
                }
                _ => return None,
            }
        }
        follows = vec![change.hash()];
        facts.note(actor, change.seq(), change.max_op())?;
    }
    (record.updated_at, record.updated_by) =
        change_stamp(last.timestamp(), last.actor_id().to_bytes())
            .unwrap_or((row.created_at, row.created_by));
    Some((record, facts))
}
