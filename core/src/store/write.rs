//! Local writes: create, update, delete and restore, each one redb transaction.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::{Automerge, Change, ChangeHash};
use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::Store;
use super::error::{Result, StoreError};
use super::journal::{Mutation, Recorded};
use super::patch::{normalize_ops, preview};
use super::recorded::Tables;
use super::tables;
use crate::doc::{self, Facts};
use crate::events::{ChangeEvent, ChangeKind};
use crate::model::{
    FieldOp, NewRecord, Patch, Record, RecordId, RecordType, Schema, validate_record,
};

/// What a write transaction reads and changes: the journaled tables, which change only
/// through [`WriteCtx::apply`] (see [`super::recorded`]).
pub(super) struct WriteCtx<'t> {
    tables: Tables<'t>,
    next_seq: u64,
    compaction_threshold: u32,
}

/// How a document reached this write: brand new (with the bytes to store), or loaded with its
/// heads before the write and its count of appended change chunks.
pub(super) enum Origin {
    New(Vec<u8>),
    Loaded {
        heads: Vec<ChangeHash>,
        pending: u32,
    },
}

impl<'t> WriteCtx<'t> {
    pub fn open(txn: &'t WriteTransaction, compaction_threshold: u32) -> Result<Self> {
        let tables = Tables::open(txn)?;
        let next_seq = tables.log().last()?.map_or(0, |(k, _)| k.value()) + 1;
        Ok(Self {
            tables,
            next_seq,
            compaction_threshold,
        })
    }

    /// Makes one mutation of the tables and notes it for the journal.
    pub fn apply(&mut self, m: Mutation<'_>) -> Result<()> {
        self.tables.apply(m)
    }

    /// What the transaction changed, for the journal.
    pub fn finish(self) -> Recorded {
        self.tables.finish()
    }

    /// Whether a record of this id is stored (live or deleted).
    pub fn exists(&self, id: RecordId) -> Result<bool> {
        Ok(self.tables.rows().get(id.as_u128())?.is_some())
    }

    pub fn row(&self, id: RecordId) -> Result<Option<Record>> {
        let key = id.as_u128();
        self.tables
            .rows()
            .get(key)?
            .map(|b| tables::decode_row(key, b.value()))
            .transpose()
    }

    /// A record's stored heads and the facts kept with them; `None` if it is unknown here.
    pub fn heads_entry(&self, id: RecordId) -> Result<Option<(Vec<ChangeHash>, Option<Facts>)>> {
        self.tables
            .heads()
            .get(id.as_u128())?
            .map(|entry| tables::decode_heads_entry(entry.value()))
            .transpose()
    }

    pub fn load(&self, id: RecordId) -> Result<Option<(Automerge, u32)>> {
        tables::load_doc(self.tables.docs(), self.tables.changes(), id)
    }

    /// Stores a document's new state, its row, heads and type-index entry, and logs the write.
    pub fn persist(
        &mut self,
        doc: &Automerge,
        origin: Origin,
        record: &Record,
        kind: ChangeKind,
        facts: Option<Facts>,
    ) -> Result<ChangeEvent> {
        let key = record.id.as_u128();
        let heads_before = match origin {
            Origin::New(bytes) => {
                self.apply(Mutation::Doc(key, &bytes))?;
                Vec::new()
            }
            Origin::Loaded { heads, pending } if !self.room_for_chunk(pending) => {
                self.apply(Mutation::Doc(key, &doc.save()))?;
                for n in 0..pending {
                    self.apply(Mutation::DropChunk(key, n))?;
                }
                heads
            }
            Origin::Loaded { heads, pending } => {
                self.apply(Mutation::Chunk(key, pending, &doc.save_after(&heads)))?;
                heads
            }
        };
        self.index(record, kind, &heads_before, &doc.get_heads(), facts)
    }

    /// Stores a new record from its document's bytes and heads (the document itself is not
    /// needed, so a batch need not keep every document in memory).
    pub fn persist_new(
        &mut self,
        bytes: &[u8],
        heads: &[ChangeHash],
        (record, kind): (&Record, ChangeKind),
        facts: Facts,
    ) -> Result<ChangeEvent> {
        self.apply(Mutation::Doc(record.id.as_u128(), bytes))?;
        self.index(record, kind, &[], heads, Some(facts))
    }

    /// Appends changes that follow a record's stored heads as its next chunk, with the row
    /// they make (see [`doc::fast_forward`]). `pending` is the record's count of chunks, which
    /// must leave room for one more before compaction.
    pub fn persist_forward(
        &mut self,
        bytes: &[u8],
        pending: u32,
        (heads_before, heads_after): (&[ChangeHash], &[ChangeHash]),
        (record, kind): (&Record, ChangeKind),
        facts: Facts,
    ) -> Result<ChangeEvent> {
        self.apply(Mutation::Chunk(record.id.as_u128(), pending, bytes))?;
        self.index(record, kind, heads_before, heads_after, Some(facts))
    }

    /// A record's stored changes and its count of appended chunks; `None` when it is not
    /// stored as plain change chunks (a compacted document, say).
    pub fn stored_changes(&self, id: RecordId) -> Result<Option<(Vec<Change>, u32)>> {
        let key = id.as_u128();
        let Some(base) = self.tables.docs().get(key)? else {
            return Ok(None);
        };
        let Ok(Some(mut changes)) = doc::split_changes(base.value()) else {
            return Ok(None);
        };
        let mut pending = 0;
        for entry in self.tables.changes().range((key, 0)..=(key, u32::MAX))? {
            let (_, bytes) = entry?;
            let Ok(Some(more)) = doc::split_changes(bytes.value()) else {
                return Ok(None);
            };
            changes.extend(more);
            pending += 1;
        }
        Ok(Some((changes, pending)))
    }

    /// How many change chunks a record has appended since its last compaction.
    pub fn pending_chunks(&self, id: RecordId) -> Result<u32> {
        let key = id.as_u128();
        let mut pending = 0;
        for entry in self.tables.changes().range((key, 0)..=(key, u32::MAX))? {
            entry?;
            pending += 1;
        }
        Ok(pending)
    }

    /// Whether a record with `pending` chunks takes one more without compaction.
    pub fn room_for_chunk(&self, pending: u32) -> bool {
        pending + 1 < self.compaction_threshold
    }

    /// Writes the row, heads, type-index entry and log entry of a record just stored.
    fn index(
        &mut self,
        record: &Record,
        kind: ChangeKind,
        heads_before: &[ChangeHash],
        heads_after: &[ChangeHash],
        facts: Option<Facts>,
    ) -> Result<ChangeEvent> {
        let key = record.id.as_u128();
        self.apply(Mutation::Row(key, &tables::encode_row(record)))?;
        let entry = tables::encode_heads_entry(heads_after, facts.as_ref());
        self.apply(Mutation::Heads(key, &entry))?;
        // Rewriting an entry that is already there copies its B-tree path all the same, and
        // every page a commit writes lengthens its fsync: most edits leave the entry as it is.
        // A record stored for the first time (no heads before) has none yet, so an import
        // does not look it up.
        let type_key = (record.record_type.as_str(), key);
        let listed = !heads_before.is_empty() && self.tables.by_type().get(type_key)?.is_some();
        if record.deleted && listed {
            self.apply(Mutation::Unlist(type_key.0, key))?;
        } else if !record.deleted && !listed {
            self.apply(Mutation::List(type_key.0, key))?;
        }
        let seq = self.next_seq;
        let entry = tables::encode_log(key, kind.code(), heads_before);
        self.apply(Mutation::Log(seq, &entry))?;
        self.next_seq += 1;
        Ok(ChangeEvent {
            seq,
            id: record.id,
            record_type: record.record_type.clone(),
            kind,
        })
    }
}

/// Makes a local edit of scalar fields without the record's document (see
/// [`doc::edit_scalars`]); `None` when the edit or the record's stored state is not one that
/// allows it, and the caller takes the general way.
fn edit_without_doc(
    ctx: &mut WriteCtx<'_>,
    row: &Record,
    (heads, facts): (&[ChangeHash], &Facts),
    (schema, device): (&Schema, crate::model::DeviceId),
    ops: &[FieldOp],
    now: DateTime<Utc>,
) -> Result<Option<(Record, ChangeEvent)>> {
    let Some((stored, pending)) = ctx.stored_changes(row.id)? else {
        return Ok(None);
    };
    if !ctx.room_for_chunk(pending) {
        return Ok(None);
    }
    let Some(edit) = doc::edit_scalars(row, (heads, facts), &stored, (device, now), ops, schema)
    else {
        return Ok(None);
    };
    let event = ctx.persist_forward(
        edit.change.raw_bytes(),
        pending,
        (heads, &[edit.change.hash()]),
        (&edit.record, ChangeKind::Updated),
        edit.facts,
    )?;
    Ok(Some((edit.record, event)))
}

/// The facts of a document just changed here, from the stored ones (`before`) when there are
/// some: the local change is the document's one head.
fn local_facts(doc: &Automerge, record: &Record, before: Option<Facts>) -> Option<Facts> {
    let Some(before) = before else {
        return Facts::of(doc, record.created_by);
    };
    let added = doc
        .get_heads()
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .map(|m| (m.actor.to_bytes().to_vec(), m.seq, m.max_op))
        .collect::<Vec<_>>();
    before.after(doc, record.created_by, added)
}

/// Now, truncated to the millisecond precision that documents and rows store.
pub(crate) fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Encodes the creating change of each new record: the bytes to store as its document, and
/// its hash (the document's one head). Encoding is the costly part of a batch, so it is spread
/// over the cores.
fn build_docs(
    device: crate::model::DeviceId,
    schema: &Schema,
    records: &[Record],
    now: DateTime<Utc>,
) -> Vec<(Vec<u8>, ChangeHash, Facts)> {
    let build = |record: &Record| {
        let containers = doc::container_fields(schema, &record.record_type);
        let change =
            doc::creation_change(device, &record.record_type, &record.fields, containers, now);
        (
            change.raw_bytes().to_vec(),
            change.hash(),
            doc::creation_facts(device, &change),
        )
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || records.len() < 256 {
        return records.iter().map(build).collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(build).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for handle in handles {
            match handle.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

impl Store {
    /// Validates and creates records in one transaction; links may point at records of the
    /// same batch. Either all are stored or none.
    pub fn create_many(
        &self,
        schema: &Schema,
        records: Vec<NewRecord>,
    ) -> Result<Vec<ChangeEvent>> {
        let now = now_ms();
        let device = self.device;
        let batch_types: HashMap<RecordId, RecordType> = records
            .iter()
            .filter_map(|r| r.id.map(|id| (id, r.record_type.clone())))
            .collect();
        self.write(|ctx| {
            // Validation reads the transaction (links), so it runs in order; building the
            // Automerge documents, the costly part, is spread over the cores.
            let mut valid = Vec::with_capacity(records.len());
            let mut minted: HashMap<RecordId, RecordType> = HashMap::new();
            for new in records {
                let id = new.id.unwrap_or_default();
                if ctx.exists(id)? || minted.contains_key(&id) {
                    return Err(StoreError::AlreadyExists(id));
                }
                let mut fields = new.fields;
                {
                    let lookup = |target: RecordId| {
                        batch_types.get(&target).cloned().or_else(|| {
                            ctx.row(target)
                                .ok()
                                .flatten()
                                .filter(|r| !r.deleted)
                                .map(|r| r.record_type)
                        })
                    };
                    validate_record(schema, &new.record_type, &mut fields, None, &lookup)?;
                }
                // As the document will read back: an empty list or text is no value.
                fields.retain(|_, v| !doc::is_empty_container(v));
                minted.insert(id, new.record_type.clone());
                valid.push(Record {
                    id,
                    record_type: new.record_type,
                    fields,
                    created_at: now,
                    created_by: device,
                    updated_at: now,
                    updated_by: device,
                    deleted: false,
                });
            }
            let docs = build_docs(device, schema, &valid, now);
            let mut events = Vec::with_capacity(valid.len());
            for (record, (bytes, head, facts)) in valid.iter().zip(docs) {
                events.push(ctx.persist_new(
                    &bytes,
                    &[head],
                    (record, ChangeKind::Created),
                    facts,
                )?);
            }
            Ok(events)
        })
    }

    /// Applies a patch to a live record as one change.
    pub fn update(
        &self,
        schema: &Schema,
        id: RecordId,
        patch: &Patch,
    ) -> Result<(Record, ChangeEvent)> {
        let now = now_ms();
        let device = self.device;
        self.write(|ctx| {
            let row = ctx.row(id)?.ok_or(StoreError::NotFound(id))?;
            if row.deleted {
                return Err(StoreError::Deleted(id));
            }
            let ops = normalize_ops(schema, &row.record_type, patch)?;
            let mut fields = row.fields.clone();
            preview(&row.record_type, &mut fields, &ops)?;
            let touched: Vec<String> = ops.iter().map(|op| op.field().to_string()).collect();
            {
                let lookup = |target: RecordId| {
                    ctx.row(target)
                        .ok()
                        .flatten()
                        .filter(|r| !r.deleted)
                        .map(|r| r.record_type)
                };
                validate_record(
                    schema,
                    &row.record_type,
                    &mut fields,
                    Some(&touched),
                    &lookup,
                )?;
            }
            let missing = || StoreError::corrupt(format!("record {id}"), "row without document");
            let (stored, before) = ctx.heads_entry(id)?.ok_or_else(missing)?;
            // A document decoded by the last edit (typing into a note) is quicker to edit.
            let cached = self.docs.take(id, &stored);
            if cached.is_none()
                && let Some(facts) = &before
                && let Some(done) =
                    edit_without_doc(ctx, &row, (&stored, facts), (schema, device), &ops, now)?
            {
                return Ok(done);
            }
            let (mut doc, pending) =
                Self::cached_or_loaded(ctx, id, cached)?.ok_or_else(missing)?;
            let heads = doc.get_heads();
            doc::apply_ops(&mut doc, device, &ops, now).map_err(StoreError::doc(id))?;
            let record = doc::materialize(&doc, id, schema).map_err(StoreError::doc(id))?;
            let event = ctx.persist(
                &doc,
                Origin::Loaded { heads, pending },
                &record,
                ChangeKind::Updated,
                local_facts(&doc, &record, before),
            )?;
            // The next edit of this record (typing into a note, say) starts from here. Should
            // the transaction not commit, these heads are not the stored ones and the entry is
            // never used.
            self.docs.put(id, doc.get_heads(), Arc::new(doc));
            Ok((record, event))
        })
    }

    /// Deletes (tombstones) or restores a record. Doing what is already done changes nothing.
    pub fn set_deleted(
        &self,
        schema: &Schema,
        id: RecordId,
        deleted: bool,
    ) -> Result<Option<ChangeEvent>> {
        let now = now_ms();
        let device = self.device;
        self.write(|ctx| {
            let row = ctx.row(id)?.ok_or(StoreError::NotFound(id))?;
            if row.deleted == deleted {
                return Ok(None);
            }
            let missing = || StoreError::corrupt(format!("record {id}"), "row without document");
            let (stored, before) = ctx.heads_entry(id)?.ok_or_else(missing)?;
            let (mut doc, pending) = self.load_for_write(ctx, id, &stored)?.ok_or_else(missing)?;
            let heads = doc.get_heads();
            doc::set_deleted(&mut doc, device, deleted, now).map_err(StoreError::doc(id))?;
            let record = doc::materialize(&doc, id, schema).map_err(StoreError::doc(id))?;
            let kind = if deleted {
                ChangeKind::Deleted
            } else {
                ChangeKind::Restored
            };
            let facts = local_facts(&doc, &record, before);
            let event = ctx.persist(
                &doc,
                Origin::Loaded { heads, pending },
                &record,
                kind,
                facts,
            )?;
            self.docs.put(id, doc.get_heads(), Arc::new(doc));
            Ok(Some(event))
        })
    }
}
