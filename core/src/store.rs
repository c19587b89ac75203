//! The store: redb tables holding Automerge documents, materialized rows, heads and the local
//! change log. The source of truth; every write is one redb transaction.

mod commit;
mod doc_cache;
mod error;
mod export;
mod journal;
mod merge;
mod meta;
pub use merge::Merged;
mod patch;
mod recorded;
mod stamp;
mod tables;
mod write;

use std::path::Path;

use automerge::{Automerge, ChangeHash};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use crate::events::{ChangeEvent, ChangeKind};
use crate::model::{DeviceId, Record, RecordId, RecordType};
use error::Result;
pub use error::StoreError;
use recorded::{BY_TYPE, DOC_CHANGES, DOCS, HEADS, LOG, ROWS};
use tables::META;

/// On-disk format version this build writes and reads. 1: the first. 2: peer cursors carry
/// the session they were recorded in, and the device id writes go under is kept apart from
/// the file's identity. 3: journal records carry a version byte (a build of format 2 would
/// not recognize them and skip acknowledged writes left by a crash). A file of an older
/// version is brought to this one when opened, so a build too old for it refuses it
/// ([`StoreError::NewerFormat`]) instead of misreading it or losing writes.
pub const FORMAT_VERSION: u32 = 3;

const META_FORMAT: &str = "format";
const META_DEVICE: &str = "device";
/// The device id this replica writes changes under now (see [`Store::device`]); absent in a
/// file that was always closed cleanly since before it existed: the device id above then.
const META_ACTOR: &str = "actor";
const META_WORKSPACE: &str = "workspace";
const META_SCHEMA: &str = "schema";
const META_PEER_PREFIX: &str = "peer:";
const META_SETTING_PREFIX: &str = "set:";
/// Raised by each checkpoint: journal records of older epochs are in the file already.
const META_JOURNAL_EPOCH: &str = "journal_epoch";

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Appended change chunks per record before they are folded into its document (default 32).
    pub compaction_threshold: u32,
    /// The workspace a new file joins (default: a new workspace with a random id). Opening an
    /// existing file of another workspace with this set is an error.
    pub workspace: Option<Uuid>,
    /// Bytes of pages redb keeps cached in memory (default 32 MiB, sized for phones).
    pub cache_size: usize,
    /// Verify the whole file when opening it (default true), so a file damaged outside
    /// crmsync is refused with an error. Without it redb trusts a cleanly closed file and may
    /// panic on damage; the check costs a read of the file and one fsync per open. It is
    /// skipped for a file this library closed cleanly and that is unchanged since: its size,
    /// times and inode match the stamp left beside it at close (`<file>.closed`).
    pub verify_on_open: bool,
    /// Bytes of the write-ahead journal beside the file (`<file>.wal`, default 4 MiB), through
    /// which a small write is made durable with one flush of a page or two; a checkpoint
    /// empties it when full. 0 turns it off: every write is then a durable redb commit, which
    /// flushes every page the write touched (an edit takes about twice as long). A journal
    /// left by an earlier open is replayed either way.
    pub journal_bytes: u64,
    /// Documents kept decoded for sync, so one record sent to many peers is decoded once
    /// (default 1,024; 0 turns it off). Each holds one record's history, typically a few KB.
    pub doc_cache: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compaction_threshold: 32,
            workspace: None,
            cache_size: 32 << 20,
            verify_on_open: true,
            doc_cache: 1024,
            journal_bytes: 4 << 20,
        }
    }
}

/// How far a replica's sync with one peer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCursor {
    /// The local log sequence up to which everything reached the peer.
    pub seq: u64,
    /// The session that got there, recorded by both sides: a peer that holds another one for
    /// us went back in time (restored from a backup, or lost its last writes) or never
    /// finished recording it, and its claims are checked by comparing whole sets instead.
    pub session: [u8; 16],
}

/// Storage of one replica.
pub struct Store {
    db: Database,
    /// Dropped after `db` (fields drop in order): stamps the file once it is closed. Set only
    /// once an open has succeeded.
    _stamp: Option<stamp::CloseStamp>,
    /// The id this replica writes its changes under (its Automerge actor).
    device: DeviceId,
    /// The id the file was created with, which never changes: it ties the journal and the
    /// search index to this database.
    identity: DeviceId,
    /// Changes only while the replica is empty (a new device joining a workspace).
    workspace: std::sync::RwLock<Uuid>,
    options: StoreOptions,
    docs: doc_cache::DocCache,
    /// `None` for a store in memory, whose commits cost no flush anyway.
    journal: commit::SharedJournal,
    replayed: usize,
}

impl Drop for Store {
    fn drop(&mut self) {
        // The next open then has nothing to replay (and the close stamp can vouch for a file
        // that holds everything).
        if let Err(e) = self.checkpoint() {
            tracing::warn!(
                "closing the store: checkpoint failed, the journal keeps the writes: {e}"
            );
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device)
            .field("workspace", &self.workspace())
            .finish_non_exhaustive()
    }
}

fn parse_format(bytes: &[u8]) -> Result<u32> {
    <[u8; 4]>::try_from(bytes)
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::corrupt("format version", "not 4 bytes"))
}

fn check_format(bytes: &[u8]) -> Result<()> {
    let found = parse_format(bytes)?;
    if found > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn parse_device(bytes: Vec<u8>) -> Result<DeviceId> {
    bytes
        .try_into()
        .map(DeviceId)
        .map_err(|_| StoreError::corrupt("device id", "not 16 bytes"))
}

fn parse_workspace(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::corrupt("workspace id", "not 16 bytes"))
}

impl Store {
    /// Opens the database file, creating it (with a new device id) if it does not exist.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self> {
        let unchanged = stamp::take(path);
        let mut builder = Database::builder();
        builder
            .set_cache_size(options.cache_size)
            .set_check_integrity_on_open(options.verify_on_open && !unchanged);
        // `create` opens a valid file and initializes a missing or empty one (an empty file is
        // what a crash between creating the file and writing its header leaves).
        let db = builder.create(path)?;
        let mut store = Self::init(db, options)?;
        let (journal, replayed) = commit::recover(
            &store.db,
            path,
            (store.identity, store.options.journal_bytes),
        )?;
        store.journal = journal.map(std::sync::Mutex::new);
        store.replayed = replayed;
        store.upgrade_format()?;
        store.device = store.actor_for_this_run(unchanged)?;
        // Only an open that succeeded stamps the file when it closes: one that failed (a
        // journal it cannot replay, say) must not pass an unclean file off as closed cleanly.
        store._stamp = Some(stamp::CloseStamp::new(path));
        Ok(store)
    }

    /// A store held in memory only (tests, scratch replicas).
    pub fn in_memory(options: StoreOptions) -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, options)
    }

    fn init(db: Database, options: StoreOptions) -> Result<Self> {
        // Opening an initialized file only reads: no write transaction, so no fsync on open.
        let (device, workspace) = match Self::read_identity(&db)? {
            Some(identity) => identity,
            None => Self::initialize(&db, options.workspace)?,
        };
        if let Some(requested) = options.workspace
            && requested != workspace
        {
            return Err(StoreError::WorkspaceMismatch {
                file: workspace,
                requested,
            });
        }
        Ok(Self {
            db,
            _stamp: None,
            device,
            identity: device,
            workspace: std::sync::RwLock::new(workspace),
            docs: doc_cache::DocCache::new(options.doc_cache),
            options,
            journal: None,
            replayed: 0,
        })
    }

    /// Device and workspace ids of an initialized file; `None` for a new one.
    fn read_identity(db: &Database) -> Result<Option<(DeviceId, Uuid)>> {
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let get =
            |key| -> Result<Option<Vec<u8>>> { Ok(meta.get(key)?.map(|v| v.value().to_vec())) };
        match get(META_FORMAT)? {
            Some(bytes) => check_format(&bytes)?,
            None => return Ok(None),
        }
        match (get(META_DEVICE)?, get(META_WORKSPACE)?) {
            (Some(device), Some(workspace)) => {
                Ok(Some((parse_device(device)?, parse_workspace(&workspace)?)))
            }
            _ => Ok(None),
        }
    }

    /// Creates the tables and identity of a new file (or completes a half-initialized one).
    fn initialize(db: &Database, workspace: Option<Uuid>) -> Result<(DeviceId, Uuid)> {
        let txn = db.begin_write()?;
        let identity = {
            recorded::create(&txn)?;
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(META_FORMAT)?.map(|v| v.value().to_vec());
            match stored {
                Some(bytes) => check_format(&bytes)?,
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())?;
                }
            }
            let stored = meta.get(META_DEVICE)?.map(|v| v.value().to_vec());
            let device = match stored {
                Some(bytes) => parse_device(bytes)?,
                None => {
                    let device = DeviceId::random();
                    meta.insert(META_DEVICE, device.0.as_slice())?;
                    device
                }
            };
            let stored = meta.get(META_WORKSPACE)?.map(|v| v.value().to_vec());
            let workspace = match stored {
                Some(bytes) => parse_workspace(&bytes)?,
                None => {
                    let workspace = workspace.unwrap_or_else(Uuid::new_v4);
                    meta.insert(META_WORKSPACE, workspace.as_bytes().as_slice())?;
                    workspace
                }
            };
            (device, workspace)
        };
        txn.commit()?;
        Ok(identity)
    }

    /// The device id this replica writes its changes under (its Automerge actor, the
    /// `created_by` / `updated_by` of what it writes).
    ///
    /// A file opened after it was not closed cleanly by this library — a crash, or a copy
    /// restored from a backup over it — takes a new one. A restored file no longer knows the
    /// changes it made after the backup, which peers may hold; writing under the old id would
    /// number new changes like those, and the two could never merge. The file's own identity
    /// ([`Store::identity`]) stays.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The id the file was created with; it never changes.
    pub fn identity(&self) -> DeviceId {
        self.identity
    }

    /// Marks a file of an older format version with this one (what it holds is read the same;
    /// what this build writes next is not for older builds).
    fn upgrade_format(&self) -> Result<()> {
        let found = match self.get_meta(META_FORMAT)? {
            Some(bytes) => parse_format(&bytes)?,
            None => 0,
        };
        if found < FORMAT_VERSION {
            self.put_meta(META_FORMAT, Some(&FORMAT_VERSION.to_le_bytes()), true)?;
        }
        Ok(())
    }

    /// The device id to write under in this run: the stored one after a clean close, a new
    /// one (stored durably before any write uses it) otherwise.
    fn actor_for_this_run(&self, closed_cleanly: bool) -> Result<DeviceId> {
        match self.get_meta(META_ACTOR)? {
            Some(bytes) if closed_cleanly => return parse_device(bytes),
            None if closed_cleanly => return Ok(self.identity),
            _ => {}
        }
        let actor = DeviceId::random();
        self.put_meta(META_ACTOR, Some(actor.0.as_slice()), true)?;
        Ok(actor)
    }

    /// The workspace this replica belongs to.
    pub fn workspace(&self) -> Uuid {
        *self.workspace.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves a replica that holds no record yet into `workspace`: a new device opens its
    /// database, shows its node id to be invited, and joins the workspace the credential
    /// names. Refused once the replica holds records of its own workspace.
    pub fn adopt_workspace(&self, workspace: Uuid) -> Result<()> {
        let mut current = self.workspace.write().unwrap_or_else(|p| p.into_inner());
        if *current == workspace {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            if recorded::holds_records(&txn)? {
                return Err(StoreError::WorkspaceMismatch {
                    file: *current,
                    requested: workspace,
                });
            }
            txn.open_table(META)?
                .insert(META_WORKSPACE, workspace.as_bytes().as_slice())?;
        }
        txn.commit()?;
        *current = workspace;
        Ok(())
    }

    /// The materialized record, including tombstoned ones.
    pub fn get(&self, id: RecordId) -> Result<Option<Record>> {
        let txn = self.db.begin_read()?;
        let rows = ROWS.read(&txn)?;
        let key = id.as_u128();
        rows.get(key)?
            .map(|bytes| tables::decode_row(key, bytes.value()))
            .transpose()
    }

    /// Several records read in one transaction (a page of search hits), in the order asked.
    pub fn get_many(&self, ids: &[RecordId]) -> Result<Vec<Option<Record>>> {
        let txn = self.db.begin_read()?;
        let rows = ROWS.read(&txn)?;
        ids.iter()
            .map(|id| {
                let key = id.as_u128();
                rows.get(key)?
                    .map(|bytes| tables::decode_row(key, bytes.value()))
                    .transpose()
            })
            .collect()
    }

    /// The record's Automerge document.
    pub fn doc(&self, id: RecordId) -> Result<Option<Automerge>> {
        let txn = self.db.begin_read()?;
        let docs = DOCS.read(&txn)?;
        let changes = DOC_CHANGES.read(&txn)?;
        Ok(tables::load_doc(&docs, &changes, id)?.map(|(doc, _)| doc))
    }

    /// The record's document, shared: from the cache if it holds the record at its current
    /// heads, else loaded and cached.
    pub fn shared_doc(&self, id: RecordId) -> Result<Option<std::sync::Arc<Automerge>>> {
        let txn = self.db.begin_read()?;
        let heads = match HEADS.read(&txn)?.get(id.as_u128())? {
            Some(bytes) => tables::decode_heads_value(bytes.value())?,
            None => return Ok(None),
        };
        if let Some(doc) = self.docs.get(id, &heads) {
            return Ok(Some(doc));
        }
        let docs = DOCS.read(&txn)?;
        let changes = DOC_CHANGES.read(&txn)?;
        let Some((doc, _)) = tables::load_doc(&docs, &changes, id)? else {
            return Ok(None);
        };
        let doc = std::sync::Arc::new(doc);
        self.docs.put(id, heads, doc.clone());
        Ok(Some(doc))
    }

    /// The record's current Automerge heads (empty if the record is unknown here).
    pub fn heads(&self, id: RecordId) -> Result<Vec<ChangeHash>> {
        let txn = self.db.begin_read()?;
        let heads = HEADS.read(&txn)?;
        match heads.get(id.as_u128())? {
            Some(bytes) => tables::decode_heads_value(bytes.value()),
            None => Ok(Vec::new()),
        }
    }

    /// How many records the replica holds (tombstones included), without reading them.
    pub fn record_count(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(HEADS.read(&txn)?.len()?)
    }

    /// Every record id with its heads, in id order (what sync reconciles).
    pub fn all_heads(&self) -> Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        let txn = self.db.begin_read()?;
        let heads = HEADS.read(&txn)?;
        let mut out = Vec::with_capacity(heads.len()? as usize);
        for entry in heads.iter()? {
            let (k, v) = entry?;
            out.push((
                RecordId::from_u128(k.value()),
                tables::decode_heads_value(v.value())?,
            ));
        }
        Ok(out)
    }

    /// Visits the live records of a type in id (creation) order until `visit` returns false.
    pub fn scan_type(
        &self,
        record_type: &RecordType,
        mut visit: impl FnMut(Record) -> bool,
    ) -> Result<()> {
        let txn = self.db.begin_read()?;
        let by_type = BY_TYPE.read(&txn)?;
        let rows = ROWS.read(&txn)?;
        let name = record_type.as_str();
        for entry in by_type.range((name, 0u128)..=(name, u128::MAX))? {
            let (key, _) = entry?;
            let id = key.value().1;
            let Some(bytes) = rows.get(id)? else {
                return Err(StoreError::corrupt(
                    format!("type index of {}", RecordId::from_u128(id)),
                    "row missing",
                ));
            };
            if !visit(tables::decode_row(id, bytes.value())?) {
                break;
            }
        }
        Ok(())
    }

    /// Visits every record, deleted ones included, in id (creation) order until `visit`
    /// returns false.
    pub fn scan_all(&self, mut visit: impl FnMut(Record) -> bool) -> Result<()> {
        let txn = self.db.begin_read()?;
        let rows = ROWS.read(&txn)?;
        for entry in rows.iter()? {
            let (key, bytes) = entry?;
            if !visit(tables::decode_row(key.value(), bytes.value())?) {
                break;
            }
        }
        Ok(())
    }

    /// Number of live records of a type.
    pub fn count_type(&self, record_type: &RecordType) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let by_type = BY_TYPE.read(&txn)?;
        let name = record_type.as_str();
        let mut n = 0;
        for entry in by_type.range((name, 0u128)..=(name, u128::MAX))? {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    /// The newest local log sequence number (0 when nothing was written).
    pub fn last_seq(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let log = LOG.read(&txn)?;
        Ok(log.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Log entries after `seq`, oldest first, at most `limit`.
    pub fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        let txn = self.db.begin_read()?;
        let log = LOG.read(&txn)?;
        let rows = ROWS.read(&txn)?;
        let mut out = Vec::new();
        for entry in log.range(seq.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            let (id, code, _) = tables::decode_log(k.value(), v.value())?;
            let kind = ChangeKind::from_code(code).ok_or_else(|| {
                StoreError::corrupt(format!("log entry {}", k.value()), "unknown kind")
            })?;
            let record_type = match rows.get(id)? {
                Some(bytes) => tables::decode_row(id, bytes.value())?.record_type,
                None => {
                    return Err(StoreError::corrupt(
                        format!("log entry {}", k.value()),
                        "row missing",
                    ));
                }
            };
            out.push(ChangeEvent {
                seq: k.value(),
                id: RecordId::from_u128(id),
                record_type,
                kind,
            });
        }
        Ok(out)
    }

    /// The records written (locally or by merges) after log sequence `seq`, each once, in the
    /// order of their first such write, with their heads just before it: the state a peer that
    /// received everything up to `seq` has at least.
    pub fn changed_since(&self, seq: u64) -> Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        let txn = self.db.begin_read()?;
        let log = LOG.read(&txn)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for entry in log.range(seq.saturating_add(1)..)? {
            let (k, v) = entry?;
            let (id, _, heads_before) = tables::decode_log(k.value(), v.value())?;
            if seen.insert(id) {
                out.push((RecordId::from_u128(id), heads_before));
            }
        }
        Ok(out)
    }
}
