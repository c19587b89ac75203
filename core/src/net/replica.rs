//! What the network needs of a replica it serves: the sync protocol's interface, the
//! workspace membership the replica holds, a place for revocations learnt from peers, and a
//! feed of its changes to push. The engine implements it; the network never sees the engine.

use std::sync::Arc;

use super::NetError;
use super::membership::{Membership, Revocation};
use crate::events::Subscription;
use crate::sync::Replica;

/// A replica the network can serve: [`Replica`] for sessions, plus membership.
pub trait SyncedReplica: Replica + Send + Sync + 'static {
    /// The replica's credential and the revocations it knows, read once per session.
    fn membership(&self) -> Result<Membership, NetError>;
    /// Stores revocations a peer passed on (each already checked against the workspace
    /// admin's key); those already known are ignored.
    fn add_revocations(&self, new: &[Revocation]) -> Result<(), NetError>;
    /// The replica's changes (local writes and merges) as they happen, for pushing them.
    fn subscribe(&self) -> Subscription;
}

/// A served replica, shared by the sessions that use it.
pub type SharedReplica = Arc<dyn SyncedReplica>;
