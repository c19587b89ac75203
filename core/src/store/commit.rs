//! How a write transaction becomes durable: through the journal when it is small, by a
//! durable redb commit (a checkpoint) otherwise; and the replay of the journal on open.

use std::sync::{Mutex, MutexGuard};

use redb::{Database, Durability, ReadableDatabase, WriteTransaction};

use super::error::{Result, StoreError};
use super::journal::{self, Journal, Recorded};
use super::recorded::Tables;
use super::tables::META;
use super::write::WriteCtx;
use super::{META_JOURNAL_EPOCH, Store};
use crate::model::DeviceId;

fn read_epoch(db: &Database) -> Result<u64> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let Some(bytes) = meta.get(META_JOURNAL_EPOCH)? else {
        return Ok(0);
    };
    <[u8; 8]>::try_from(bytes.value())
        .map(u64::from_le_bytes)
        .map_err(|_| StoreError::corrupt("journal epoch", "not 8 bytes"))
}

/// Commits `txn` durably as a checkpoint: the epoch it records voids every journal record so
/// far, which the commit has taken into the database.
fn commit_checkpoint(mut txn: WriteTransaction, journal: &mut Journal) -> Result<()> {
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::corrupt("checkpoint", e))?;
    let epoch = journal.epoch() + 1;
    txn.open_table(META)?
        .insert(META_JOURNAL_EPOCH, epoch.to_le_bytes().as_slice())?;
    txn.commit()?;
    journal.restart(epoch);
    Ok(())
}

/// Opens the journal of a database file and replays what the database lacks of it. Returns
/// the journal (none if `capacity` is 0: a journal left by an earlier open is replayed and
/// removed) and how many writes were replayed.
pub(super) fn recover(
    db: &Database,
    path: &std::path::Path,
    (device, capacity): (DeviceId, u64),
) -> Result<(Option<Journal>, usize)> {
    let file = journal::journal_path(path);
    if capacity == 0 && !file.exists() {
        return Ok((None, 0));
    }
    let (journal, replayed) = replay(db, path, (device, capacity))?;
    if capacity > 0 {
        return Ok((Some(journal), replayed));
    }
    drop(journal);
    std::fs::remove_file(&file).map_err(|source| StoreError::Journal {
        path: file,
        what: "removing",
        source,
    })?;
    Ok((None, replayed))
}

fn replay(
    db: &Database,
    path: &std::path::Path,
    (device, capacity): (DeviceId, u64),
) -> Result<(Journal, usize)> {
    let (mut journal, records) = Journal::open(path, capacity, (device, read_epoch(db)?))?;
    if records.is_empty() {
        return Ok((journal, 0));
    }
    let txn = db.begin_write()?;
    {
        let mut tables = Tables::open(&txn)?;
        for record in &records {
            journal::decode(record, |m| tables.apply(m))?;
        }
    }
    commit_checkpoint(txn, &mut journal)?;
    journal.ensure_capacity()?;
    Ok((journal, records.len()))
}

impl Store {
    fn journal(&self) -> Option<MutexGuard<'_, Journal>> {
        self.journal
            .as_ref()
            .map(|j| j.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` in one write transaction, committed only if it returns Ok, and durable when
    /// this returns Ok.
    pub(super) fn write<T>(&self, f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T>) -> Result<T> {
        // Held until the commit, so journal records are in commit order.
        let mut journal = self.journal();
        let mut txn = self.db.begin_write()?;
        let (out, recorded) = {
            let mut ctx = WriteCtx::open(&txn, self.options.compaction_threshold)?;
            let out = f(&mut ctx)?;
            (out, ctx.finish())
        };
        let record = match recorded {
            // The tables change only through `WriteCtx::apply`, so the transaction holds
            // nothing: no journal record, no flush, no commit (a sync that received only what
            // it had, an undo of nothing).
            Recorded::Nothing => {
                txn.abort()?;
                return Ok(out);
            }
            Recorded::Payload(record) => Some(record),
            Recorded::TooLarge => None,
        };
        let Some(journal) = journal.as_deref_mut() else {
            txn.commit()?;
            return Ok(out);
        };
        let record = record.filter(|r| journal.has_room(r.len()));
        let Some(record) = record else {
            commit_checkpoint(txn, journal)?;
            return Ok(out);
        };
        // The record reaches the disk before the transaction becomes visible: nobody (a sync
        // peer, say) sees a write that a crash could still take back.
        if txn.set_durability(Durability::None).is_err() || journal.append(&record).is_err() {
            // No journal to rely on: the commit itself is made durable.
            commit_checkpoint(txn, journal)?;
            return Ok(out);
        }
        if let Err(e) = txn.commit() {
            if journal.retract(record.len()).is_err() {
                let _ = self.checkpoint_locked(journal);
            }
            return Err(e.into());
        }
        Ok(out)
    }

    /// Takes every journaled write into the database file with one durable commit, so the
    /// journal starts over. Runs on its own when the journal fills and when the store closes.
    pub fn checkpoint(&self) -> Result<()> {
        match self.journal() {
            Some(mut journal) => self.checkpoint_locked(&mut journal),
            None => Ok(()),
        }
    }

    fn checkpoint_locked(&self, journal: &mut Journal) -> Result<()> {
        if journal.records() == 0 {
            return Ok(());
        }
        commit_checkpoint(self.db.begin_write()?, journal)
    }

    /// How many journaled writes the open replayed: writes acknowledged before the process
    /// ended without closing the store (a crash, a kill), which the database file lacked.
    pub fn replayed_writes(&self) -> usize {
        self.replayed
    }
}

/// The journal, shared by the writers of one store.
pub(super) type SharedJournal = Option<Mutex<Journal>>;
