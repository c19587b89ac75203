//! The narrow interface between sync and the store.

use std::sync::Arc;

use automerge::{Automerge, ChangeHash};
use uuid::Uuid;

use super::PeerRef;
use crate::error::Result;
use crate::model::{DeviceId, RecordId};
use crate::store::PeerCursor;

/// What the sync protocol needs of a replica: list heads, read changes, apply changes, and
/// remember how far it got with each peer. [`crate::Engine`] implements it; so can any store that
/// keeps Automerge documents per record.
pub trait Replica {
    /// The workspace the replica belongs to.
    fn workspace(&self) -> Uuid;
    /// The replica's own id.
    fn replica_id(&self) -> DeviceId;
    /// Newest local log sequence number.
    fn last_seq(&self) -> Result<u64>;
    /// Every record with its heads (tombstones included).
    fn all_heads(&self) -> Result<Vec<(RecordId, Vec<ChangeHash>)>>;
    /// Records written after a log sequence number, with their heads before the first such
    /// write (what a peer that got everything up to `seq` has at least).
    fn changed_since(&self, seq: u64) -> Result<Vec<(RecordId, Vec<ChangeHash>)>>;
    /// A record's heads (empty if unknown).
    fn heads(&self, id: RecordId) -> Result<Vec<ChangeHash>>;
    /// A record's document, shared: a session pushing one edit to many peers reads it once.
    fn doc(&self, id: RecordId) -> Result<Option<Arc<Automerge>>>;
    /// The changes of a record after `have` when the replica can read them without decoding
    /// the document (see [`crate::Store::stored_changes_after`]); `None` otherwise, and the
    /// caller falls back to [`Replica::doc`].
    fn stored_changes_after(&self, _id: RecordId, _have: &[ChangeHash]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// A record's whole document as bytes, for a peer that lacks it.
    fn doc_bytes(&self, id: RecordId) -> Result<Option<Vec<u8>>>;
    /// Applies changes for many records atomically, leaving out (and listing) records that
    /// cannot be merged with the one stored under their id (see
    /// [`crate::Store::apply_changes_skipping_conflicts`]).
    fn apply(&self, batch: &[(RecordId, Vec<u8>)]) -> Result<Applied>;
    /// How far the last completed sync with `peer` got.
    fn peer_cursor(&self, peer: &PeerRef) -> Result<Option<PeerCursor>>;
    /// Remembers that everything up to `cursor.seq` reached `peer` in session `cursor.session`.
    fn set_peer_cursor(&self, peer: &PeerRef, cursor: PeerCursor) -> Result<()>;
    /// Forgets the cursor for `peer` (its claims could not be trusted): the next session
    /// compares whole sets.
    fn forget_peer_cursor(&self, peer: &PeerRef) -> Result<()>;
}

/// What [`Replica::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The log sequence numbers written.
    pub seqs: Vec<u64>,
    /// Records left out because they cannot be merged with the stored record of their id.
    pub skipped: Vec<RecordId>,
}
