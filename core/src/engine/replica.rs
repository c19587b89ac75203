//! The engine as a replica for the sync protocol and for the network.

use std::sync::Arc;

use automerge::{Automerge, ChangeHash};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::Result;
use crate::events::Subscription;
use crate::model::{DeviceId, RecordId};
use crate::net::membership::{Membership, Revocation};
use crate::net::{NetError, SyncedReplica};
use crate::store::PeerCursor;
use crate::sync::{Applied, PeerRef, Replica};

impl Replica for Engine {
    fn workspace(&self) -> Uuid {
        self.workspace_id()
    }

    fn replica_id(&self) -> DeviceId {
        self.device_id()
    }

    fn last_seq(&self) -> Result<u64> {
        Ok(self.store().last_seq()?)
    }

    fn all_heads(&self) -> Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        Ok(self.store().all_heads()?)
    }

    fn changed_since(&self, seq: u64) -> Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        Ok(self.store().changed_since(seq)?)
    }

    fn heads(&self, id: RecordId) -> Result<Vec<ChangeHash>> {
        Ok(self.store().heads(id)?)
    }

    fn doc(&self, id: RecordId) -> Result<Option<Arc<Automerge>>> {
        Ok(self.store().shared_doc(id)?)
    }

    fn stored_changes_after(&self, id: RecordId, have: &[ChangeHash]) -> Result<Option<Vec<u8>>> {
        Ok(self.store().stored_changes_after(id, have)?)
    }

    fn doc_bytes(&self, id: RecordId) -> Result<Option<Vec<u8>>> {
        Ok(self.store().doc_bytes(id)?)
    }

    fn apply(&self, batch: &[(RecordId, Vec<u8>)]) -> Result<Applied> {
        // Through the engine, so subscribers (and everything fed by them) hear of the merge.
        let merged = self.apply_changes_skipping_conflicts(batch)?;
        for (id, reason) in &merged.skipped {
            tracing::warn!(record = %id, %reason, "left a received record out");
        }
        Ok(Applied {
            seqs: merged.events.iter().map(|e| e.seq).collect(),
            skipped: merged.skipped.into_iter().map(|(id, _)| id).collect(),
        })
    }

    fn peer_cursor(&self, peer: &PeerRef) -> Result<Option<PeerCursor>> {
        Ok(self.store().peer_cursor(&peer.cursor_name())?)
    }

    fn set_peer_cursor(&self, peer: &PeerRef, cursor: PeerCursor) -> Result<()> {
        Ok(self.store().set_peer_cursor(&peer.cursor_name(), cursor)?)
    }

    fn forget_peer_cursor(&self, peer: &PeerRef) -> Result<()> {
        Ok(self.store().forget_peer_cursor(&peer.cursor_name())?)
    }
}

impl SyncedReplica for Engine {
    fn membership(&self) -> Result<Membership, NetError> {
        self.stored_membership()
    }

    fn add_revocations(&self, new: &[Revocation]) -> Result<(), NetError> {
        self.store_revocations(new)
    }

    fn subscribe(&self) -> Subscription {
        Engine::subscribe(self)
    }
}
