//! The [`Engine`] handle: one replica's records, for the foreign side.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use automerge::ChangeHash;
use crmsync::doc::Version;
use crmsync::{
    ChangeEvent, Conflict, EngineOptions, FieldChange, FieldOp, HistoryEntry, ImportOptions,
    ImportReport, NewRecord, Patch, Pipeline, Record, RecordType, Stage, StoreOptions,
};

use crate::error::CrmError;
use crate::listener::{ChangeListener, ListenerHandle};
use crate::net::Network;
use crate::record::{ChangeBatch, ListQuery};
use crate::runtime::run_blocking;
use crate::value::{FieldDef, FieldValue, Schema, parse_id, to_usize};

// The core splits these between `EngineOptions` and `SearchOptions`, with more knobs.
/// How to open an engine. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OpenOptions {
    /// The workspace a new database joins (a UUID); a new workspace when absent. Opening an
    /// existing file of another workspace with this set fails with `Store`.
    #[uniffi(default = None)]
    pub workspace_id: Option<String>,
    /// Whether to keep a full-text search index (default true). The index of a database file
    /// lives beside it, in `<file>.search`.
    #[uniffi(default = true)]
    pub search: bool,
}

impl TryFrom<OpenOptions> for (EngineOptions, crmsync::SearchOptions) {
    type Error = CrmError;
    fn try_from(o: OpenOptions) -> Result<Self, CrmError> {
        let workspace = o
            .workspace_id
            .as_deref()
            .map(uuid::Uuid::from_str)
            .transpose()
            .map_err(CrmError::input)?;
        let engine = EngineOptions {
            store: StoreOptions {
                workspace,
                ..StoreOptions::default()
            },
        };
        let search = crmsync::SearchOptions {
            enabled: o.search,
            ..crmsync::SearchOptions::default()
        };
        Ok((engine, search))
    }
}

/// One replica of a workspace's CRM records, in a database file or in memory.
///
/// Short calls (`get`, `create`, `update`, ...) run on the caller's thread; calls that may take
/// long (`list`, `search`, imports, exports, analytics) are `async`. Close the database with
/// [`Engine::close_database`] before opening its file again.
#[derive(Debug, uniffi::Object)]
pub struct Engine {
    /// `None` once closed.
    inner: RwLock<Option<crmsync::Engine>>,
    listeners: Mutex<Vec<Arc<ListenerHandle>>>,
    /// Networks enabled on this engine, shut down when it closes.
    networks: Mutex<Vec<Weak<Network>>>,
}

impl Engine {
    fn wrap(engine: crmsync::Engine) -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Some(engine)),
            listeners: Mutex::new(Vec::new()),
            networks: Mutex::new(Vec::new()),
        })
    }

    fn networks(&self) -> MutexGuard<'_, Vec<Weak<Network>>> {
        self.networks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a network enabled on this engine, to shut it down when the engine closes (at
    /// once, if it closed meanwhile).
    pub(crate) fn adopt_network(&self, network: &Arc<Network>) {
        {
            let mut networks = self.networks();
            if !self.is_closed() {
                networks.retain(|n| n.strong_count() > 0);
                networks.push(Arc::downgrade(network));
                return;
            }
        }
        network.shutdown_now(true);
    }

    /// The core engine (a cheap clone), or `Closed`.
    pub(crate) fn core(&self) -> Result<crmsync::Engine, CrmError> {
        // The lock only guards an Option swap: a poisoned one still holds a valid value.
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| CrmError::Closed {
            detail: "the engine is closed; open the database again".to_string(),
        })
    }

    fn listeners(&self) -> MutexGuard<'_, Vec<Arc<ListenerHandle>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn heads_to_strings(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(ToString::to_string).collect()
}

fn parse_heads(heads: &[String]) -> Result<Vec<ChangeHash>, CrmError> {
    heads
        .iter()
        .map(|h| {
            ChangeHash::from_str(h.trim())
                .map_err(|_| CrmError::input(format!("'{h}' is not a change hash (64 hex digits)")))
        })
        .collect()
}

/// Imports CSV from `csv` into records of `record_type`.
fn import(
    engine: &crmsync::Engine,
    csv: impl std::io::Read,
    record_type: String,
    strict: bool,
) -> Result<ImportReport, CrmError> {
    let options = ImportOptions { strict };
    Ok(engine.import_csv(csv, &RecordType::from(record_type), &options)?)
}

/// The search index directory of the database file at `path`: beside it, named after it
/// (`crm.redb` → `crm.redb.search`). An app that deletes or moves a database file does the same
/// with this directory; deleting it alone is safe, the index is rebuilt on the next open.
#[uniffi::export]
pub fn search_dir(path: String) -> String {
    crmsync::Engine::search_dir(path)
        .to_string_lossy()
        .into_owned()
}

#[uniffi::export]
impl Engine {
    /// Opens (or creates) the database file at `path`.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>, CrmError> {
        Ok(Self::wrap(crmsync::Engine::open(path)?))
    }

    /// Opens (or creates) the database file at `path` with options.
    #[uniffi::constructor]
    pub fn open_with(path: String, options: OpenOptions) -> Result<Arc<Self>, CrmError> {
        let (engine, search) = options.try_into()?;
        Ok(Self::wrap(crmsync::Engine::open_with_search(
            path, engine, search,
        )?))
    }

    /// An engine whose database lives in memory only (for tests and previews).
    #[uniffi::constructor]
    pub fn in_memory() -> Result<Arc<Self>, CrmError> {
        Ok(Self::wrap(crmsync::Engine::in_memory()?))
    }

    /// An in-memory engine with options.
    #[uniffi::constructor]
    pub fn in_memory_with(options: OpenOptions) -> Result<Arc<Self>, CrmError> {
        let (engine, search) = options.try_into()?;
        Ok(Self::wrap(crmsync::Engine::in_memory_with_search(
            engine, search,
        )?))
    }

    /// Closes the database now: stops the listeners, shuts down the networks enabled on it
    /// and releases the file, so it can be opened again. `async` calls still running keep it open until they return. Every later call
    /// fails with `Closed`; closing twice is fine. (Not `close`: Kotlin handles have a
    /// `close()` of their own, which frees the handle; the database closes when the last
    /// handle is freed, or here.)
    pub fn close_database(&self) {
        // Under the listeners' lock, so a concurrent `register_listener` either ends before
        // (and is stopped here) or sees the engine closed. The listeners are stopped after the
        // lock is released: stopping waits for a call in progress, which may call the engine.
        let (stopping, networks): (Vec<_>, Vec<_>) = {
            let mut listeners = self.listeners();
            let mut networks = self.networks();
            *self.inner.write().unwrap_or_else(|p| p.into_inner()) = None;
            (listeners.drain(..).collect(), networks.drain(..).collect())
        };
        for listener in stopping {
            listener.unregister();
        }
        for network in networks.iter().filter_map(Weak::upgrade) {
            network.shutdown_now(true);
        }
    }

    /// Whether [`Engine::close_database`] was called.
    pub fn is_closed(&self) -> bool {
        self.core().is_err()
    }

    /// This replica's device id (hex): the author recorded on every change it makes.
    pub fn device_id(&self) -> Result<String, CrmError> {
        Ok(self.core()?.device_id().to_string())
    }

    /// The workspace id (a UUID) this replica belongs to.
    pub fn workspace_id(&self) -> Result<String, CrmError> {
        Ok(self.core()?.workspace_id().to_string())
    }

    /// Validates and stores a new record of `record_type`.
    pub fn create(
        &self,
        record_type: String,
        fields: HashMap<String, FieldValue>,
    ) -> Result<Record, CrmError> {
        let mut record = NewRecord::new(record_type);
        for (name, value) in fields {
            record.fields.insert(name, value.try_into()?);
        }
        Ok(self.core()?.create(record)?)
    }

    /// Validates and stores many records in one transaction (all or none); returns their ids
    /// in order. Links may point at records of the same batch.
    pub async fn create_many(&self, records: Vec<NewRecord>) -> Result<Vec<String>, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let ids = engine.create_many(records)?;
            Ok(ids.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// The current value of a live record; absent if it does not exist or is deleted.
    pub fn get(&self, id: String) -> Result<Option<Record>, CrmError> {
        Ok(self.core()?.get(parse_id(&id)?)?)
    }

    /// Applies the edits as one change and returns the new value.
    pub fn update(&self, id: String, ops: Vec<FieldOp>) -> Result<Record, CrmError> {
        Ok(self.core()?.update(parse_id(&id)?, Patch { ops })?)
    }

    /// Deletes a record (a tombstone that keeps merging and wins over concurrent edits).
    /// Deleting a deleted record does nothing.
    pub fn delete(&self, id: String) -> Result<(), CrmError> {
        Ok(self.core()?.delete(parse_id(&id)?)?)
    }

    /// Brings a deleted record back.
    pub fn restore(&self, id: String) -> Result<Record, CrmError> {
        Ok(self.core()?.restore(parse_id(&id)?)?)
    }

    /// Lists live records of a type with filters, sort and paging.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<Record>, CrmError> {
        let engine = self.core()?;
        let query = crmsync::ListQuery::try_from(query)?;
        run_blocking(move || Ok(engine.list(&query)?)).await
    }

    /// Number of live records of a type.
    pub fn count(&self, record_type: String) -> Result<u64, CrmError> {
        Ok(self.core()?.count(&RecordType::from(record_type))?)
    }

    /// Every change of a record, oldest first: who, when, which fields.
    pub fn history(&self, id: String) -> Result<Vec<HistoryEntry>, CrmError> {
        Ok(self.core()?.history(parse_id(&id)?)?)
    }

    /// The record as it was at a `version` taken from its history.
    pub fn get_at(&self, id: String, version: String) -> Result<Record, CrmError> {
        let version = Version::from_str(&version).map_err(CrmError::input)?;
        Ok(self.core()?.get_at(parse_id(&id)?, &version)?)
    }

    /// The successive values of one field of a record (e.g. a deal's stage), oldest first.
    pub fn field_history(&self, id: String, field: String) -> Result<Vec<FieldChange>, CrmError> {
        Ok(self.core()?.field_history(parse_id(&id)?, &field)?)
    }

    /// Fields that replicas set concurrently: the value shown everywhere and the ones that
    /// lost.
    pub fn conflicts(&self, id: String) -> Result<Vec<Conflict>, CrmError> {
        Ok(self.core()?.conflicts(parse_id(&id)?)?)
    }

    /// Declares (or redeclares) a custom field on a record type. Persisted.
    pub fn define_field(
        &self,
        record_type: String,
        name: String,
        field: FieldDef,
    ) -> Result<(), CrmError> {
        Ok(self
            .core()?
            .define_field(&RecordType::from(record_type), &name, field.into())?)
    }

    /// Declares a custom record type with its fields. Persisted.
    pub fn define_type(
        &self,
        name: String,
        fields: HashMap<String, FieldDef>,
    ) -> Result<String, CrmError> {
        let fields: BTreeMap<String, crmsync::FieldDef> =
            fields.into_iter().map(|(k, v)| (k, v.into())).collect();
        Ok(self.core()?.define_type(&name, fields)?.to_string())
    }

    /// Every record type with its fields (built-in and custom) and the deal pipeline.
    pub fn schema(&self) -> Result<Schema, CrmError> {
        Ok(self.core()?.schema().into())
    }

    /// The deal pipeline's stages, in order.
    pub fn pipeline(&self) -> Result<Vec<Stage>, CrmError> {
        Ok(self.core()?.schema().pipeline().stages.clone())
    }

    /// Replaces the deal pipeline (and with it the allowed values of a deal's `stage`).
    pub fn set_pipeline(&self, stages: Vec<Stage>) -> Result<(), CrmError> {
        Ok(self.core()?.set_pipeline(Pipeline { stages })?)
    }

    /// Imports records of one type from CSV text: headers are field names, bad rows are
    /// reported by line (or, with `strict`, refuse the whole file with `Import`).
    #[uniffi::method(default(strict = false))]
    pub async fn import_csv(
        &self,
        record_type: String,
        csv: String,
        strict: bool,
    ) -> Result<ImportReport, CrmError> {
        let engine = self.core()?;
        run_blocking(move || import(&engine, csv.as_bytes(), record_type, strict)).await
    }

    /// Imports records of one type from a CSV file.
    #[uniffi::method(default(strict = false))]
    pub async fn import_csv_file(
        &self,
        record_type: String,
        path: String,
        strict: bool,
    ) -> Result<ImportReport, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let file = File::open(&path).map_err(|e| CrmError::Io {
                detail: format!("cannot open {path}: {e}"),
            })?;
            import(&engine, file, record_type, strict)
        })
        .await
    }

    /// Every live record of a type as CSV text (`id`, the declared fields, `created_at`,
    /// `updated_at`); it imports back with `import_csv`.
    pub async fn export_csv(&self, record_type: String) -> Result<String, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let mut out = Vec::new();
            engine.export_csv(&RecordType::from(record_type), &mut out)?;
            String::from_utf8(out).map_err(CrmError::internal)
        })
        .await
    }

    /// Every live record of a type as a JSON array of objects.
    pub async fn export_json(&self, record_type: String) -> Result<String, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let mut out = Vec::new();
            engine.export_json(&RecordType::from(record_type), &mut out)?;
            String::from_utf8(out).map_err(CrmError::internal)
        })
        .await
    }

    /// Change-log entries after `seq` (at most `limit`), to catch up on changes missed while
    /// no listener was registered.
    #[uniffi::method(default(limit = 1000))]
    pub fn changes_since(&self, seq: u64, limit: u64) -> Result<Vec<ChangeEvent>, CrmError> {
        Ok(self.core()?.changes_since(seq, to_usize(limit)?)?)
    }

    /// Registers a listener told which records changed (local writes and merges), on a
    /// background thread, until the returned handle is unregistered or the engine closed.
    pub fn register_listener(
        &self,
        listener: Box<dyn ChangeListener>,
    ) -> Result<Arc<ListenerHandle>, CrmError> {
        let mut listeners = self.listeners();
        let subscription = self.core()?.subscribe();
        let handle = Arc::new(ListenerHandle::start(subscription, listener)?);
        listeners.retain(|l| l.is_active());
        listeners.push(handle.clone());
        Ok(handle)
    }

    /// A record's current heads (hex change hashes): what a replica has of it.
    pub fn heads(&self, id: String) -> Result<Vec<String>, CrmError> {
        Ok(heads_to_strings(&self.core()?.heads(parse_id(&id)?)?))
    }

    /// The changes of a record that a replica whose heads are `have` lacks (all of them when
    /// `have` is empty); absent when the record is unknown here. For apps that move changes
    /// over their own transport.
    pub fn export_changes(
        &self,
        id: String,
        have: Vec<String>,
    ) -> Result<Option<ChangeBatch>, CrmError> {
        let changes = self
            .core()?
            .export_changes(parse_id(&id)?, &parse_heads(&have)?)?;
        Ok(changes.map(|changes| ChangeBatch { id, changes }))
    }

    /// Merges changes from another replica, all records in one transaction (all or none);
    /// returns what changed here. Listeners see them as `Merged`.
    pub fn apply_changes(&self, batch: Vec<ChangeBatch>) -> Result<Vec<ChangeEvent>, CrmError> {
        let batch = batch
            .into_iter()
            .map(|b| Ok((parse_id(&b.id)?, b.changes)))
            .collect::<Result<Vec<_>, CrmError>>()?;
        Ok(self.core()?.apply_changes(&batch)?)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let stopping: Vec<_> = self.listeners().drain(..).collect();
        for listener in stopping {
            listener.unregister();
        }
    }
}
