//! The public handle: one replica's records, with validation, history, merge and change
//! subscriptions.

mod analytics;
mod export;
mod import;
mod membership;
mod network;
mod replica;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use automerge::ChangeHash;
use uuid::Uuid;

use crate::doc::{self, Conflict, FieldChange, HistoryEntry, Version};
use crate::error::{Error, Result};
use crate::events::{Broadcaster, ChangeEvent, Subscription};
use crate::model::{
    DeviceId, FieldDef, NewRecord, Patch, Pipeline, Record, RecordId, RecordType, Schema,
};
use crate::query::{self, ListQuery};
use crate::search::{Page, SearchError, SearchFilters, SearchIndex, SearchOptions, SearchResults};
use crate::store::{Store, StoreOptions};

/// Options for opening an engine. The defaults suit phones and laptops.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Storage tuning.
    pub store: StoreOptions,
}

/// One replica of a workspace's CRM records. Cheap to clone; clones share the database.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Declared first: dropped (indexer stopped) before the rest.
    search: Option<SearchIndex>,
    store: Arc<Store>,
    schema: RwLock<Schema>,
    events: Broadcaster,
}

impl Engine {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, EngineOptions::default())
    }

    /// Opens (or creates) the database file at `path` with options.
    pub fn open_with(path: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        Self::open_with_search(path, options, SearchOptions::default())
    }

    /// Opens (or creates) the database file at `path`, with search options. The search index
    /// lives in the directory [`Engine::search_dir`] names.
    pub fn open_with_search(
        path: impl AsRef<Path>,
        options: EngineOptions,
        search: SearchOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let store = Store::open(path, options.store)?;
        Self::from_store(store, Some(&Self::search_dir(path)), &search)
    }

    /// The search index directory of the database file at `path`: beside it, named after it
    /// (`crm.redb` → `crm.redb.search`). Deleting it is safe: it is rebuilt on the next open.
    pub fn search_dir(path: impl AsRef<Path>) -> PathBuf {
        let mut name = path.as_ref().as_os_str().to_owned();
        name.push(".search");
        PathBuf::from(name)
    }

    /// An engine whose database lives in memory only.
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with(EngineOptions::default())
    }

    /// An in-memory engine with options.
    pub fn in_memory_with(options: EngineOptions) -> Result<Self> {
        Self::in_memory_with_search(options, SearchOptions::default())
    }

    /// An in-memory engine with options and search options (its index is in memory too).
    pub fn in_memory_with_search(options: EngineOptions, search: SearchOptions) -> Result<Self> {
        Self::from_store(Store::in_memory(options.store)?, None, &search)
    }

    fn from_store(store: Store, search_dir: Option<&Path>, search: &SearchOptions) -> Result<Self> {
        let schema = match store.load_customizations()? {
            Some(c) => Schema::from_customizations(c)?,
            None => Schema::default(),
        };
        let store = Arc::new(store);
        let search = if search.enabled {
            Some(SearchIndex::open(store.clone(), search_dir, search)?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                search,
                store,
                schema: RwLock::new(schema),
                events: Broadcaster::default(),
            }),
        })
    }

    /// This replica's device id: the actor recorded on every change it makes.
    pub fn device_id(&self) -> DeviceId {
        self.inner.store.device()
    }

    /// The workspace id stored in this replica.
    pub fn workspace_id(&self) -> Uuid {
        self.inner.store.workspace()
    }

    /// The underlying store, for the engine's own modules.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    fn schema_guard(&self) -> RwLockReadGuard<'_, Schema> {
        // Schema writes replace the value whole, so a poisoned lock still holds a valid schema.
        self.inner.schema.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current schema.
    pub fn schema(&self) -> Schema {
        self.schema_guard().clone()
    }

    fn change_schema(&self, f: impl FnOnce(&mut Schema) -> Result<()>) -> Result<()> {
        let mut guard = self.inner.schema.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        f(&mut next)?;
        self.inner
            .store
            .save_customizations(&next.customizations())?;
        *guard = next;
        Ok(())
    }

    /// Declares (or redeclares) a custom field on a record type.
    pub fn define_field(
        &self,
        record_type: &RecordType,
        name: &str,
        field: FieldDef,
    ) -> Result<()> {
        self.change_schema(|s| Ok(s.define_field(record_type, name, field)?))
    }

    /// Declares a custom record type.
    pub fn define_type(
        &self,
        name: &str,
        fields: std::collections::BTreeMap<String, FieldDef>,
    ) -> Result<RecordType> {
        let mut out = None;
        self.change_schema(|s| {
            out = Some(s.define_type(name, fields)?);
            Ok(())
        })?;
        Ok(out.unwrap_or_else(|| RecordType::from(name)))
    }

    /// Replaces the deal pipeline.
    pub fn set_pipeline(&self, pipeline: Pipeline) -> Result<()> {
        self.change_schema(|s| {
            s.set_pipeline(pipeline);
            Ok(())
        })
    }

    fn publish(&self, events: &[ChangeEvent]) {
        if let (Some(search), Some(seq)) = (&self.inner.search, events.iter().map(|e| e.seq).max())
        {
            search.notify(seq);
        }
        self.inner.events.publish(events);
    }

    /// Validates and stores a new record.
    pub fn create(&self, record: NewRecord) -> Result<Record> {
        let events = self.create_many(vec![record])?;
        let id = events
            .first()
            .ok_or_else(|| Error::corrupt("create", "no record written"))?;
        self.inner.store.get(*id)?.ok_or(Error::NotFound(*id))
    }

    /// Validates and stores many records in one transaction (all or none). Links may point at
    /// records of the same batch.
    pub fn create_many(&self, records: Vec<NewRecord>) -> Result<Vec<RecordId>> {
        let events = self
            .inner
            .store
            .create_many(&self.schema_guard(), records)?;
        self.publish(&events);
        Ok(events.iter().map(|e| e.id).collect())
    }

    /// The current value of a live record; `None` if it does not exist or is deleted.
    pub fn get(&self, id: RecordId) -> Result<Option<Record>> {
        Ok(self.inner.store.get(id)?.filter(|r| !r.deleted))
    }

    /// A record as stored, deleted or not: a tombstone comes back with `deleted` set. `None`
    /// only if no record has this id here.
    pub fn get_including_deleted(&self, id: RecordId) -> Result<Option<Record>> {
        Ok(self.inner.store.get(id)?)
    }

    /// How many records this replica holds, tombstones included.
    pub fn record_count(&self) -> Result<u64> {
        Ok(self.inner.store.record_count()?)
    }

    /// Takes every write so far into the database file itself with one durable commit, so
    /// the file alone holds everything acknowledged (its journal, `<file>.wal`, starts over).
    /// Runs on its own as the journal fills and at close; call it before copying a file that
    /// stays open.
    pub fn checkpoint(&self) -> Result<()> {
        Ok(self.inner.store.checkpoint()?)
    }

    /// How many journaled writes opening the file replayed: writes acknowledged before the
    /// process ended without closing the engine (a crash, a kill), which the database file
    /// itself lacked. For diagnostics; nothing was lost.
    pub fn replayed_writes(&self) -> usize {
        self.inner.store.replayed_writes()
    }

    /// Applies a patch as one change and returns the new value.
    pub fn update(&self, id: RecordId, patch: Patch) -> Result<Record> {
        let (record, event) = self.inner.store.update(&self.schema_guard(), id, &patch)?;
        self.publish(&[event]);
        Ok(record)
    }

    /// Deletes a record (a tombstone: it disappears from reads and lists, keeps merging, and
    /// wins over concurrent edits). Deleting a deleted record does nothing.
    pub fn delete(&self, id: RecordId) -> Result<()> {
        let event = self
            .inner
            .store
            .set_deleted(&self.schema_guard(), id, true)?;
        self.publish(event.as_slice());
        Ok(())
    }

    /// Brings a deleted record back.
    pub fn restore(&self, id: RecordId) -> Result<Record> {
        let event = self
            .inner
            .store
            .set_deleted(&self.schema_guard(), id, false)?;
        self.publish(event.as_slice());
        self.inner.store.get(id)?.ok_or(Error::NotFound(id))
    }

    /// Lists live records of a type with filters, sort and paging.
    pub fn list(&self, q: &ListQuery) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        if q.sort.is_none() {
            // Creation order is the index order: stop as soon as the page is full.
            let mut skipped = 0;
            self.inner.store.scan_type(&q.record_type, |r| {
                if q.filters.iter().all(|f| query::matches(&r, f)) {
                    if skipped < q.offset {
                        skipped += 1;
                    } else {
                        out.push(r);
                    }
                }
                out.len() < q.limit
            })?;
            return Ok(out);
        }
        self.inner.store.scan_type(&q.record_type, |r| {
            if q.filters.iter().all(|f| query::matches(&r, f)) {
                out.push(r);
            }
            true
        })?;
        if let Some((field, order)) = &q.sort {
            query::sort(&mut out, field, *order);
        }
        Ok(out.into_iter().skip(q.offset).take(q.limit).collect())
    }

    /// Number of live records of a type.
    pub fn count(&self, record_type: &RecordType) -> Result<u64> {
        Ok(self.inner.store.count_type(record_type)?)
    }

    fn load_doc(&self, id: RecordId) -> Result<automerge::Automerge> {
        self.inner.store.doc(id)?.ok_or(Error::NotFound(id))
    }

    /// Every change of a record, oldest first: who, when, which fields.
    pub fn history(&self, id: RecordId) -> Result<Vec<HistoryEntry>> {
        Ok(doc::history(&self.load_doc(id)?))
    }

    /// The record as it was at a version taken from its history.
    pub fn get_at(&self, id: RecordId, version: &Version) -> Result<Record> {
        let doc = self.load_doc(id)?;
        let past = doc
            .fork_at(&version.0)
            .map_err(|e| Error::doc(id)(e.into()))?;
        doc::materialize(&past, id, &self.schema_guard()).map_err(Error::doc(id))
    }

    /// The successive values of one field of a record (e.g. a deal's stage), oldest first.
    pub fn field_history(&self, id: RecordId, field: &str) -> Result<Vec<FieldChange>> {
        doc::field_history(&self.load_doc(id)?, &self.schema_guard(), field).map_err(Error::doc(id))
    }

    /// Fields that replicas set concurrently, with the value shown and the ones that lost.
    pub fn conflicts(&self, id: RecordId) -> Result<Vec<Conflict>> {
        doc::conflicts(&self.load_doc(id)?, &self.schema_guard()).map_err(Error::doc(id))
    }

    /// A live feed of changes (local writes and merges) committed from now on.
    pub fn subscribe(&self) -> Subscription {
        self.inner.events.subscribe()
    }

    /// Log entries after `seq` (at most `limit`), to catch up before or after subscribing.
    pub fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        Ok(self.inner.store.changes_since(seq, limit)?)
    }

    /// The record's current Automerge heads.
    pub fn heads(&self, id: RecordId) -> Result<Vec<ChangeHash>> {
        Ok(self.inner.store.heads(id)?)
    }

    /// The changes of a record a replica with heads `have` lacks; `None` if unknown here.
    pub fn export_changes(&self, id: RecordId, have: &[ChangeHash]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.store.export_changes(id, have)?)
    }

    /// Full-text search over live records: `query` in the search syntax (words match as
    /// prefixes and with typos, `"phrases"`, `email:` / `tag:` / `name:` ... scopes, `-word`
    /// excludes, phone numbers in any format), restricted by `filters`, ranked by relevance
    /// with ties ordered by id. Sees every write committed before the call. A malformed query
    /// is [`SearchError::Syntax`] or [`SearchError::UnknownField`], naming the position.
    pub fn search(
        &self,
        query: &str,
        filters: &SearchFilters,
        page: Page,
    ) -> Result<SearchResults> {
        let index = self.inner.search.as_ref().ok_or(SearchError::Disabled)?;
        Ok(index.search(&self.inner.store, query, filters, page)?)
    }

    /// Merges changes from another replica, all records of the batch in one transaction.
    pub fn apply_changes(&self, batch: &[(RecordId, Vec<u8>)]) -> Result<Vec<ChangeEvent>> {
        let events = self
            .inner
            .store
            .apply_changes(&self.schema_guard(), batch)?;
        self.publish(&events);
        Ok(events)
    }

    /// Merges changes as [`Engine::apply_changes`] does, leaving out the records that cannot
    /// be merged with the record stored under their id (see
    /// [`crate::Store::apply_changes_skipping_conflicts`]): what sync uses.
    pub fn apply_changes_skipping_conflicts(
        &self,
        batch: &[(RecordId, Vec<u8>)],
    ) -> Result<crate::store::Merged> {
        let merged = self
            .inner
            .store
            .apply_changes_skipping_conflicts(&self.schema_guard(), batch)?;
        self.publish(&merged.events);
        Ok(merged)
    }
}
