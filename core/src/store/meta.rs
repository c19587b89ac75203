//! What the store keeps beside the records, in its `meta` table: the app's schema
//! customizations, a cursor per sync peer, and the settings of the layers above (membership,
//! node key). Each is read and written in a transaction of its own.

use redb::ReadableDatabase;

use super::error::{Result, StoreError};
use super::tables::META;
use super::{META_PEER_PREFIX, META_SCHEMA, META_SETTING_PREFIX, PeerCursor, Store};
use crate::model::Customizations;

impl Store {
    /// The app's schema customizations, if any were saved.
    pub fn load_customizations(&self) -> Result<Option<Customizations>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(bytes) = meta.get(META_SCHEMA)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| StoreError::corrupt("schema", e))
    }

    /// Saves the app's schema customizations.
    pub fn save_customizations(&self, customizations: &Customizations) -> Result<()> {
        // Customizations are plain data: encoding them cannot fail, short of memory.
        let bytes =
            serde_json::to_vec(customizations).map_err(|e| StoreError::corrupt("schema", e))?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_SCHEMA, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// How far the last completed sync with `peer` (a name the sync layer chooses) got: `None`
    /// if there was none, or if it was recorded by an older version without a session id.
    pub fn peer_cursor(&self, peer: &str) -> Result<Option<PeerCursor>> {
        let Some(bytes) = self.get_meta(&format!("{META_PEER_PREFIX}{peer}"))? else {
            return Ok(None);
        };
        match <[u8; 24]>::try_from(bytes.as_slice()) {
            Ok(b) => {
                let (seq, session) = b.split_at(8);
                Ok(Some(PeerCursor {
                    seq: u64::from_le_bytes(seq.try_into().unwrap_or_default()),
                    session: session.try_into().unwrap_or_default(),
                }))
            }
            // Written before cursors carried their session: no proof that the peer still has
            // what it says, so the next session compares whole sets.
            Err(_) if bytes.len() == 8 => Ok(None),
            Err(_) => Err(StoreError::corrupt(
                format!("sync cursor of {peer}"),
                "not 24 bytes",
            )),
        }
    }

    /// Records that everything up to local sequence `cursor.seq` has reached `peer`, in the
    /// session `cursor.session`.
    ///
    /// Not flushed to disk on its own (it reaches the disk with the next durable commit): a
    /// cursor lost in a crash is an older one, whose session no longer matches the peer's, so
    /// the next session with that peer compares whole sets and sends only what differs. Saving
    /// the flush matters on a relay, where every session ends with a cursor update.
    pub fn set_peer_cursor(&self, peer: &str, cursor: PeerCursor) -> Result<()> {
        let mut value = [0u8; 24];
        value[..8].copy_from_slice(&cursor.seq.to_le_bytes());
        value[8..].copy_from_slice(&cursor.session);
        self.write_peer_cursor(peer, Some(&value))
    }

    /// Forgets the cursor for `peer`: the next session with it compares whole sets.
    pub fn forget_peer_cursor(&self, peer: &str) -> Result<()> {
        self.write_peer_cursor(peer, None)
    }

    fn write_peer_cursor(&self, peer: &str, value: Option<&[u8]>) -> Result<()> {
        // Not flushed: see `set_peer_cursor`.
        self.put_meta(&format!("{META_PEER_PREFIX}{peer}"), value, false)
    }

    /// Writes (or with `None` removes) a meta value in a transaction of its own, flushed to
    /// disk when `durable`. Where redb cannot skip the flush (a database shared between
    /// processes), the commit simply stays durable.
    pub(super) fn put_meta(&self, key: &str, value: Option<&[u8]>, durable: bool) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            let _ = txn.set_durability(redb::Durability::None);
        }
        {
            let mut meta = txn.open_table(META)?;
            match value {
                Some(value) => {
                    meta.insert(key, value)?;
                }
                None => {
                    meta.remove(key)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A value the layers above keep beside the records (membership, node key), by key.
    /// Keys of the store's own (format, ids, cursors) are not reachable through this.
    pub fn setting(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_meta(&format!("{META_SETTING_PREFIX}{key}"))
    }

    /// A meta value, read in a transaction of its own.
    pub(super) fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Stores (durably) or, with `None`, removes a value set by the layers above.
    pub fn set_setting(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
        self.put_meta(&format!("{META_SETTING_PREFIX}{key}"), value, true)
    }
}
