//! The messages of the sync protocol.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{DeviceId, RecordId};

/// Version of the protocol this build speaks. Peers must speak the same.
pub const PROTOCOL_VERSION: u32 = 2;

/// The first message of each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub protocol: u32,
    /// Workspace the sender belongs to.
    pub workspace: Uuid,
    /// The sender's replica (device) id, as it says. Informational: nothing is keyed by it
    /// when the transport authenticated the peer (see [`super::SyncOptions::authenticated_peer`]).
    pub replica: DeviceId,
    /// A random value of the sender's for this session; with the peer's, it names the session
    /// both record with their cursors.
    pub nonce: [u8; 16],
    /// Whether the sender takes changes in this session. A relay whose workspace is over its
    /// storage quota says no: the receiver then sends none (they stay, and go next time)
    /// while it still receives.
    pub accepts_changes: bool,
}

/// The second message of each side: what it changed since its last completed session with the
/// receiver, and which session that was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The session the sender recorded its cursor for the receiver in (`None`: no cursor).
    /// Cursors are used only when both sides name the same session.
    pub session: Option<[u8; 16]>,
    /// The records written since that session, or `None` without a cursor.
    pub records: Option<Vec<RecordId>>,
}

/// A record's state: its id and Automerge heads (raw 32-byte hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Record id.
    pub id: RecordId,
    /// Its heads.
    pub heads: Vec<[u8; 32]>,
}

/// One range `[lower, upper)` of record ids in set reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Range {
    /// The sender's fingerprint of the range: compare, and answer if it differs.
    Fingerprint {
        /// Lower bound (inclusive).
        lower: u128,
        /// Upper bound (exclusive).
        upper: u128,
        /// Sum of the item hashes in the range.
        fingerprint: u128,
        /// Number of items in the range.
        count: u64,
    },
    /// All of the sender's items in the range; answer with the differences.
    Items {
        /// Lower bound (inclusive).
        lower: u128,
        /// Upper bound (exclusive).
        upper: u128,
        /// The sender's items.
        items: Vec<Item>,
    },
    /// The answer to `Items`: the sender's items that differ, and the ids it lacks.
    Differences {
        /// The sender's items whose state differs (or that the other side lacked).
        items: Vec<Item>,
        /// Ids the other side listed that the sender does not have.
        absent: Vec<RecordId>,
    },
}

/// A request for the changes of a record: the requester has the record in a state whose
/// recent change hashes (heads first) are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// Record id.
    pub id: RecordId,
    /// Recent change hashes of the requester (empty: it lacks the record).
    pub recent: Vec<[u8; 32]>,
}

/// Changes for many records, and requests for more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Automerge changes (or whole documents) per record.
    pub changes: Vec<(RecordId, Vec<u8>)>,
    /// Records the sender needs changes for.
    pub needs: Vec<Need>,
    /// Whether this is the sender's last batch of the phase.
    pub last: bool,
}

/// Why a peer ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortCode {
    /// Protocol versions differ.
    Version,
    /// The peers belong to different workspaces.
    Workspace,
    /// A message broke the protocol.
    Protocol,
    /// Changes could not be applied.
    Apply,
    /// The peer failed locally.
    Internal,
    /// The sender is read-only here and sent changes anyway.
    ReadOnly,
}

/// A frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Who is speaking.
    Hello(Hello),
    /// A round of range-based set reconciliation (empty: nothing left to compare).
    Reconcile(Vec<Range>),
    /// The records changed since the sender's last completed sync with the receiver, and
    /// that sync's session; set reconciliation follows unless both sides name one session.
    Changed(Changed),
    /// Changes and requests.
    Batch(Batch),
    /// The sender applied everything the peer sent in the exchange. Only after receiving it
    /// does a side move its cursor: a peer that crashed mid-apply is sent the rest next time.
    Done,
    /// The sender gives up; the session ends.
    Abort {
        /// Category.
        code: AbortCode,
        /// Human-readable reason.
        message: String,
    },
}
