//! The merge path: exporting a record's changes and applying changes from another replica.
//! This is the narrow interface sync talks to.

use automerge::{Automerge, AutomergeError, ChangeHash, LoadOptions, OnPartialLoad, ReadDoc};
use redb::ReadableDatabase;

use std::sync::Arc;

use super::Store;
use super::error::{Result, StoreError};
use super::recorded::{DOC_CHANGES, DOCS};
use super::write::{Origin, WriteCtx};
use crate::doc::{self, DocError};
use crate::events::{ChangeEvent, ChangeKind};
use crate::model::{RecordId, Schema};

/// Refuses bytes that do not decode whole: `load_incremental` skips what it cannot decode, so
/// garbage or a truncated chunk would otherwise be "applied" as nothing, or in part.
fn check_whole(bytes: &[u8]) -> Result<(), DocError> {
    let strict = LoadOptions::new().on_partial_load(OnPartialLoad::Error);
    // This probe fails by design for nearly every edit of a known record (`MissingDeps`: the
    // changes build on what the receiver has), and Automerge logs every error of a load at
    // ERROR level. Under load that filled a relay's log with "change's deps should already be
    // in the document" for sessions that succeeded. Nothing the probe could log is news: a
    // real failure is returned and reported by the caller, so the probe runs unlogged.
    let probe = || doc::guarded(|| Automerge::load_with_options(bytes, strict));
    match tracing::dispatcher::with_default(&tracing::Dispatch::none(), probe) {
        // Changes that build on what we have do not load on their own; that is expected, and
        // whether the document ends up complete is checked after applying them.
        Ok(_) | Err(DocError::Automerge(AutomergeError::MissingDeps)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What [`Store::apply_changes_skipping_conflicts`] did.
#[derive(Debug)]
pub struct Merged {
    /// One event per record that changed.
    pub events: Vec<ChangeEvent>,
    /// Records left out, with the reason; the store holds them as before.
    pub skipped: Vec<(RecordId, StoreError)>,
}

impl Store {
    /// A record's document and its count of appended chunks, for a write in `ctx` (a merge or
    /// a local edit) to a record whose stored heads are `heads`: from the cache when it holds
    /// them, else decoded from the tables. The writer puts the document back once it has
    /// persisted it.
    pub(super) fn load_for_write(
        &self,
        ctx: &WriteCtx<'_>,
        id: RecordId,
        heads: &[ChangeHash],
    ) -> Result<Option<(Automerge, u32)>> {
        Self::cached_or_loaded(ctx, id, self.docs.take(id, heads))
    }

    /// A record's document for a write: `cached` (taken from the cache at the stored heads)
    /// if there is one, else decoded from the tables; with its count of appended chunks.
    pub(super) fn cached_or_loaded(
        ctx: &WriteCtx<'_>,
        id: RecordId,
        cached: Option<Arc<Automerge>>,
    ) -> Result<Option<(Automerge, u32)>> {
        let Some(doc) = cached else {
            return ctx.load(id);
        };
        let pending = ctx.pending_chunks(id)?;
        // Nobody else holds it unless a reader took it from the cache a moment ago.
        let doc = Arc::try_unwrap(doc).unwrap_or_else(|shared| (*shared).clone());
        Ok(Some((doc, pending)))
    }

    /// The changes of a record that a replica holding `have` (heads it already has) lacks, as
    /// bytes for [`Store::apply_changes`]. `None` if the record is unknown here.
    pub fn export_changes(&self, id: RecordId, have: &[ChangeHash]) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.stored_changes_after(id, have)? {
            return Ok(Some(bytes));
        }
        let Some(doc) = self.shared_doc(id)? else {
            return Ok(None);
        };
        // Heads the other side has that we do not know cannot narrow the export: drop them.
        let known: Vec<ChangeHash> = have
            .iter()
            .copied()
            .filter(|h| doc.get_change_by_hash(h).is_some())
            .collect();
        Ok(Some(doc.save_after(&known)))
    }

    /// A record's whole document as stored (base plus appended chunks), without loading it:
    /// what a replica that lacks the record needs. `None` if the record is unknown here.
    pub fn doc_bytes(&self, id: RecordId) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let docs = DOCS.read(&txn)?;
        let changes = DOC_CHANGES.read(&txn)?;
        let key = id.as_u128();
        let Some(base) = docs.get(key)? else {
            return Ok(None);
        };
        let mut bytes = base.value().to_vec();
        for entry in changes.range((key, 0)..=(key, u32::MAX))? {
            bytes.extend_from_slice(entry?.1.value());
        }
        Ok(Some(bytes))
    }

    /// Applies changes received from another replica, for many records in one transaction:
    /// either every record of the batch is merged or, on the first bad one, nothing is.
    /// Returns one event per record that changed.
    pub fn apply_changes(
        &self,
        schema: &Schema,
        batch: &[(RecordId, Vec<u8>)],
    ) -> Result<Vec<ChangeEvent>> {
        Ok(self.merge(schema, batch, false)?.events)
    }

    /// Applies a batch as [`Store::apply_changes`] does, except that a record which cannot be
    /// merged with the one stored here under its id — created separately under the same id,
    /// or of another record type — is left out and listed, and the rest of the batch is
    /// merged. Such a record is well formed on the replica that sent it; refusing the whole
    /// batch would stop every later session between the two replicas at the same record.
    /// Malformed or forged changes still refuse the whole batch.
    pub fn apply_changes_skipping_conflicts(
        &self,
        schema: &Schema,
        batch: &[(RecordId, Vec<u8>)],
    ) -> Result<Merged> {
        self.merge(schema, batch, true)
    }

    fn merge(&self, schema: &Schema, batch: &[(RecordId, Vec<u8>)], skip: bool) -> Result<Merged> {
        self.write(|ctx| {
            let mut events = Vec::new();
            let mut skipped = Vec::new();
            for (id, bytes) in batch {
                let id = *id;
                let stored = ctx.heads_entry(id)?;
                // Bytes that are change chunks are checked whole here, before Automerge sees
                // them (it asserts, and can abort, on some forged changes).
                let split = doc::split_changes(bytes).map_err(StoreError::doc(id))?;
                if split.is_none() {
                    // Automerge inflates compressed parts whole before checking anything.
                    doc::check_chunks(bytes).map_err(StoreError::doc(id))?;
                }
                if stored.is_none()
                    && let Some(changes) = &split
                    && let Some((record, facts)) = doc::from_creation(id, changes, schema)
                {
                    let heads = [changes[0].hash()];
                    let made = (&record, ChangeKind::Merged);
                    events.push(ctx.persist_new(bytes, &heads, made, facts)?);
                    continue;
                }
                if let (Some((heads, Some(facts))), Some(changes)) = (&stored, &split)
                    && let Some(event) =
                        Self::forward(ctx, schema, id, bytes, (heads, facts.clone()), changes)?
                {
                    events.push(event);
                    continue;
                }
                let existing = match &stored {
                    Some((heads, _)) => self.load_for_write(ctx, id, heads)?,
                    None => None,
                };
                let (doc, origin_heads, pending) = match existing {
                    Some((mut doc, pending)) => {
                        let heads = doc.get_heads();
                        match split.clone() {
                            Some(changes) => doc::guarded(|| doc.apply_changes(changes)),
                            None => {
                                check_whole(bytes).map_err(StoreError::doc(id))?;
                                doc::guarded(|| doc.load_incremental(bytes).map(drop))
                            }
                        }
                        .map_err(StoreError::doc(id))?;
                        (doc, Some(heads), pending)
                    }
                    // Strict load: a new record's bytes must be whole, so they can be stored
                    // as they are.
                    None => (
                        doc::guarded(|| Automerge::load(bytes)).map_err(StoreError::doc(id))?,
                        None,
                        0,
                    ),
                };
                if let Err(e) = doc::check_single_origin(&doc) {
                    let e = StoreError::doc(id)(e);
                    if !skip {
                        return Err(e);
                    }
                    skipped.push((id, e));
                    continue;
                }
                let missing = doc.get_missing_deps(&[]);
                if !missing.is_empty() {
                    return Err(StoreError::doc(id)(DocError::MissingChanges(missing.len())));
                }
                if origin_heads.as_ref().is_some_and(|h| *h == doc.get_heads()) {
                    // Nothing new: the document goes back as it was taken.
                    self.docs.put(id, doc.get_heads(), Arc::new(doc));
                    continue;
                }
                // A document Automerge built from forged changes can trip its own checks
                // when read or saved (seen with debug assertions on): refused like the rest.
                let record = doc::guarded(|| doc::materialize(&doc, id, schema))
                    .map_err(StoreError::doc(id))?;
                // Updated from what arrived when possible: reading them from the whole
                // document costs a walk over its history.
                let known = match &origin_heads {
                    Some(_) => stored.and_then(|s| s.1).zip(split),
                    // A new record's bytes are usually its changes: all it has.
                    None => split.map(|changes| (doc::Facts::default(), changes)),
                };
                let facts = match known {
                    Some((facts, changes)) => facts.after(
                        &doc,
                        record.created_by,
                        changes
                            .iter()
                            .map(|c| (c.actor_id().to_bytes().to_vec(), c.seq(), c.max_op())),
                    ),
                    None => doc::Facts::of(&doc, record.created_by),
                };
                let origin = match origin_heads {
                    Some(heads) => {
                        let row = ctx.row(id)?.ok_or_else(|| {
                            StoreError::corrupt(format!("record {id}"), "document without row")
                        })?;
                        if row.record_type != record.record_type {
                            let e = StoreError::TypeMismatch {
                                id,
                                expected: row.record_type.to_string(),
                                found: record.record_type.to_string(),
                            };
                            if !skip {
                                return Err(e);
                            }
                            skipped.push((id, e));
                            continue;
                        }
                        Origin::Loaded { heads, pending }
                    }
                    None => Origin::New(bytes.clone()),
                };
                let persisted = doc::guarded(|| {
                    Ok::<_, DocError>(ctx.persist(&doc, origin, &record, ChangeKind::Merged, facts))
                })
                .map_err(StoreError::doc(id))?;
                events.push(persisted?);
                // The next batch for this record (a relay hears the same records from many
                // devices) starts from here instead of decoding the document again. Should
                // the transaction not commit, these heads are not the stored ones and the
                // entry is never used.
                self.docs.put(id, doc.get_heads(), Arc::new(doc));
            }
            Ok(Merged { events, skipped })
        })
    }

    /// Merges changes that follow the record's stored heads straight into its row (see
    /// [`doc::fast_forward`]); `None` when they cannot be, and nothing was written.
    fn forward(
        ctx: &mut WriteCtx<'_>,
        schema: &Schema,
        id: RecordId,
        bytes: &[u8],
        (heads, facts): (&[ChangeHash], doc::Facts),
        changes: &[automerge::Change],
    ) -> Result<Option<ChangeEvent>> {
        let Some(last) = changes.last() else {
            return Ok(None);
        };
        let pending = ctx.pending_chunks(id)?;
        if !ctx.room_for_chunk(pending) {
            // Compaction needs the document.
            return Ok(None);
        }
        let Some(row) = ctx.row(id)? else {
            return Ok(None);
        };
        let Some((record, facts)) = doc::fast_forward(&row, heads, facts, changes, schema) else {
            return Ok(None);
        };
        let event = ctx.persist_forward(
            bytes,
            pending,
            (heads, &[last.hash()]),
            (&record, ChangeKind::Merged),
            facts,
        )?;
        Ok(Some(event))
    }
}
