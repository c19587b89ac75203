//! The tables a journal record covers, and the one way a write transaction changes them.
//!
//! A small write is durable only through its journal record, so a change to one of these
//! tables that no record holds would be lost in a crash even though the write returned Ok.
//! That is why their definitions live here and nowhere else: other modules open them read-only
//! in a read transaction ([`RecordedTable::read`]), and in a write transaction they get a
//! [`Tables`], which lends its tables out only by shared reference (redb's `ReadableTable`
//! methods; inserting and removing take `&mut`) and changes them only in [`Tables::apply`],
//! which records each mutation. The `meta` table ([`super::tables::META`]) is not journaled:
//! its writes commit durably on their own (or, for sync cursors, are deliberately allowed to be
//! lost).

use redb::{
    Key, ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, Value,
    WriteTransaction,
};

use super::error::Result;
use super::journal::{Mutation, Recorded, Recorder};

/// A journaled table: open for reading anywhere, for writing only through [`Tables`].
pub(super) struct RecordedTable<K: Key + 'static, V: Value + 'static>(
    TableDefinition<'static, K, V>,
);

impl<K: Key + 'static, V: Value + 'static> RecordedTable<K, V> {
    /// The table as of the read transaction `txn`.
    pub fn read(&self, txn: &ReadTransaction) -> Result<ReadOnlyTable<K, V>> {
        Ok(txn.open_table(self.0)?)
    }
}

/// Record id → Automerge document bytes as of the last compaction.
pub(super) const DOCS: RecordedTable<u128, &[u8]> = RecordedTable(TableDefinition::new("docs"));
/// (record id, n) → incremental Automerge changes appended since the last compaction.
pub(super) const DOC_CHANGES: RecordedTable<(u128, u32), &[u8]> =
    RecordedTable(TableDefinition::new("doc_changes"));
/// Record id → materialized record (postcard, see [`super::tables::encode_row`]).
pub(super) const ROWS: RecordedTable<u128, &[u8]> = RecordedTable(TableDefinition::new("rows"));
/// Record id → current Automerge heads (concatenated 32-byte hashes), optionally followed by
/// the document's facts (see [`super::tables::encode_heads_entry`]).
pub(super) const HEADS: RecordedTable<u128, &[u8]> = RecordedTable(TableDefinition::new("heads"));
/// Local sequence number → record id, change kind and the record's heads before the write
/// (see [`super::tables::encode_log`]). The heads let sync send a known peer exactly what it
/// lacks.
pub(super) const LOG: RecordedTable<u64, &[u8]> = RecordedTable(TableDefinition::new("log"));
/// (record type, record id) → () for live (not deleted) records: lists by type in id order.
pub(super) const BY_TYPE: RecordedTable<(&str, u128), ()> =
    RecordedTable(TableDefinition::new("by_type"));

/// Creates the journaled tables of a new file, empty, so readers never meet a missing one.
pub(super) fn create(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(DOCS.0)?;
    txn.open_table(DOC_CHANGES.0)?;
    txn.open_table(ROWS.0)?;
    txn.open_table(HEADS.0)?;
    txn.open_table(LOG.0)?;
    txn.open_table(BY_TYPE.0)?;
    Ok(())
}

/// Whether the file holds any record's document, as of the write transaction `txn`.
pub(super) fn holds_records(txn: &WriteTransaction) -> Result<bool> {
    Ok(txn.open_table(DOCS.0)?.first()?.is_some())
}

/// The journaled tables of one write transaction, and the record of what it changed.
pub(super) struct Tables<'t> {
    docs: Table<'t, u128, &'static [u8]>,
    changes: Table<'t, (u128, u32), &'static [u8]>,
    rows: Table<'t, u128, &'static [u8]>,
    heads: Table<'t, u128, &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
    by_type: Table<'t, (&'static str, u128), ()>,
    recorder: Recorder,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Self {
            docs: txn.open_table(DOCS.0)?,
            changes: txn.open_table(DOC_CHANGES.0)?,
            rows: txn.open_table(ROWS.0)?,
            heads: txn.open_table(HEADS.0)?,
            log: txn.open_table(LOG.0)?,
            by_type: txn.open_table(BY_TYPE.0)?,
            recorder: Recorder::default(),
        })
    }

    pub fn docs(&self) -> &Table<'t, u128, &'static [u8]> {
        &self.docs
    }

    pub fn changes(&self) -> &Table<'t, (u128, u32), &'static [u8]> {
        &self.changes
    }

    pub fn rows(&self) -> &Table<'t, u128, &'static [u8]> {
        &self.rows
    }

    pub fn heads(&self) -> &Table<'t, u128, &'static [u8]> {
        &self.heads
    }

    pub fn log(&self) -> &Table<'t, u64, &'static [u8]> {
        &self.log
    }

    pub fn by_type(&self) -> &Table<'t, (&'static str, u128), ()> {
        &self.by_type
    }

    /// Makes one mutation of the tables and notes it for the journal: the only way they
    /// change, so a journal record holds all a transaction did.
    pub fn apply(&mut self, m: Mutation<'_>) -> Result<()> {
        match m {
            Mutation::Doc(id, v) => {
                self.docs.insert(id, v)?;
            }
            Mutation::Chunk(id, n, v) => {
                self.changes.insert((id, n), v)?;
            }
            Mutation::DropChunk(id, n) => {
                self.changes.remove((id, n))?;
            }
            Mutation::Row(id, v) => {
                self.rows.insert(id, v)?;
            }
            Mutation::Heads(id, v) => {
                self.heads.insert(id, v)?;
            }
            Mutation::Log(seq, v) => {
                self.log.insert(seq, v)?;
            }
            Mutation::List(t, id) => {
                self.by_type.insert((t, id), ())?;
            }
            Mutation::Unlist(t, id) => {
                self.by_type.remove((t, id))?;
            }
        }
        self.recorder.record(&m);
        Ok(())
    }

    /// What the transaction changed, for the journal; closes the tables.
    pub fn finish(self) -> Recorded {
        self.recorder.finish()
    }
}
