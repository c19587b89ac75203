//! The sync protocol: two replicas converge by exchanging only what differs, over any reliable
//! in-order byte stream (an in-memory duplex in tests, a QUIC stream in the network layer).
//!
//! A session has four phases, both sides running the same code:
//! 1. **hello**: protocol version, workspace id and replica id; a mismatch ends the session.
//! 2. **reconcile**: find the records whose heads differ. With a peer both sides completed a
//!    sync with before, each sends the records written since its cursor for the other. With a
//!    new peer, range-based set reconciliation over (id, heads) (see [`reconcile`]).
//! 3. **exchange**: each side sends, per differing record, the whole document if the other
//!    lacks it, the exact changes after the other's heads if it has all of them, or else asks
//!    for changes with its recent change hashes; a second round answers those requests. Changes
//!    travel many records per frame and each received frame is applied in one transaction.
//! 4. **done**: after an exchange each side confirms it applied everything it received; only
//!    then are cursors moved past what was exchanged, and a [`SyncReport`] is returned.
//!
//! An interrupted session leaves every applied batch in place; the next one finds those records
//! equal and does not send them again. A frame that is truncated, too large, does not decode,
//! or carries changes that do not apply ends the session with a [`SyncError`], and the batch it
//! carried changes nothing.
//!
//! The protocol is a state machine with no I/O ([`SyncMachine`]): it is handed the peer's
//! messages and asked for the ones to send, and reads and writes the [`Replica`] itself.
//! [`sync`] drives it over any `AsyncRead`/`AsyncWrite` pair (frames, size limits, the idle
//! timeout, store work kept off the runtime's other tasks); tests and fuzzers drive it by hand.
//!
//! ```
//! use crmsync::sync::{FrameDecoder, SyncMachine, SyncOptions, encode_frame};
//! use crmsync::{Engine, EngineOptions, NewRecord, RecordType};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let workspace = uuid::Uuid::new_v4();
//! let open = || {
//!     let mut options = EngineOptions::default();
//!     options.store.workspace = Some(workspace);
//!     Engine::in_memory_with(options)
//! };
//! let (laptop, phone) = (open()?, open()?);
//! laptop.create(NewRecord::new(RecordType::Company).with("name", "Acme"))?;
//!
//! let mut a = SyncMachine::new(&laptop, SyncOptions::default(), [1; 16])?;
//! let mut b = SyncMachine::new(&phone, SyncOptions::default(), [2; 16])?;
//! // Any transport will do: here, frames handed over in memory.
//! let (mut to_b, mut to_a) = (FrameDecoder::new(1 << 20), FrameDecoder::new(1 << 20));
//! while !(a.is_finished() && b.is_finished()) {
//!     while let Some(message) = a.poll_transmit()? {
//!         to_b.push(&encode_frame(&message)?);
//!     }
//!     while let Some(message) = b.poll_transmit()? {
//!         to_a.push(&encode_frame(&message)?);
//!     }
//!     while let Some(message) = to_b.next_message()? {
//!         b.handle(message)?;
//!     }
//!     while let Some(message) = to_a.next_message()? {
//!         a.handle(message)?;
//!     }
//! }
//! assert_eq!(phone.count(&RecordType::Company)?, 1);
//! # Ok(())
//! # }
//! ```

mod driver;
mod exchange;
mod frame;
pub mod machine;
pub mod message;
pub mod reconcile;
mod replica;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use driver::blocking;
pub use driver::sync;
pub use frame::{FrameDecoder, decode_frame, encode_frame};
pub use machine::SyncMachine;
pub use message::{AbortCode, Message, PROTOCOL_VERSION};
pub use replica::{Applied, Replica};

/// Limits and tuning of a session. The defaults suit phones on slow links.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Largest frame accepted or sent (default 16 MiB).
    pub max_frame: usize,
    /// Changes per batch frame are cut at this many bytes (default 1 MiB).
    pub batch_bytes: usize,
    /// ...or at this many records (default 1,000).
    pub batch_records: usize,
    /// How long to wait for the peer's next frame (default 30 s).
    pub idle_timeout: Duration,
    /// Whether this side sends its records' changes (default true). A read-only member sets
    /// it to false: it receives, and its local edits stay local.
    pub send_changes: bool,
    /// Whether the peer's changes are applied (default true). With a read-only peer it is
    /// false: the peer is never asked for changes, and a batch of changes from it ends the
    /// session with [`SyncError::ReadOnlyPeer`] before anything is applied.
    pub accept_changes: bool,
    /// The peer's identity as the transport authenticated it (the network layer sets its node
    /// id). When set, the cursor for the peer is kept under it, never under the replica id
    /// the peer announces: a member announcing another device's id cannot move that device's
    /// cursor. `None` (default) trusts the announced id, for streams that are trusted as a
    /// whole (two replicas of one app over a pipe, tests).
    pub authenticated_peer: Option<[u8; 32]>,
    /// Set reconciliation rounds a session may take before it is ended as runaway (default
    /// 64; two replicas need about log16 of their record count, plus a few).
    pub max_reconcile_rounds: u32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            max_frame: 16 << 20,
            batch_bytes: 1 << 20,
            batch_records: 1000,
            idle_timeout: Duration::from_secs(30),
            send_changes: true,
            accept_changes: true,
            authenticated_peer: None,
            max_reconcile_rounds: 64,
        }
    }
}

/// Whom a replica keeps a cursor for: the name its cursor is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRef {
    /// The replica id a peer announced, on a stream trusted as a whole.
    Announced(crate::model::DeviceId),
    /// A peer's key (an iroh node id) as the transport authenticated it.
    Authenticated([u8; 32]),
}

impl PeerRef {
    /// The peer of a session run with `options`, whose hello announced `announced`.
    pub fn of(options: &SyncOptions, announced: crate::model::DeviceId) -> Self {
        match options.authenticated_peer {
            Some(key) => PeerRef::Authenticated(key),
            None => PeerRef::Announced(announced),
        }
    }

    /// The name its cursor is stored under. Announced ids keep the name they always had.
    pub fn cursor_name(&self) -> String {
        match self {
            PeerRef::Announced(id) => id.to_string(),
            PeerRef::Authenticated(key) => {
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                format!("node:{hex}")
            }
        }
    }
}

/// How the differing records were found.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconcileMode {
    /// From both sides' cursors (the peers synced to completion before).
    Cursor,
    /// By range-based set reconciliation (a new pairing, or a cursor was missing).
    Ranges,
}

/// What a session did.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The peer's replica id.
    pub peer: crate::model::DeviceId,
    /// How differences were found.
    pub mode: ReconcileMode,
    /// Records whose state differed.
    pub differing: usize,
    /// Records this side sent changes for.
    pub records_sent: usize,
    /// Records whose received changes changed something here.
    pub records_received: usize,
    /// Records the peer sent that could not be merged with the record stored here under the
    /// same id (created separately under that id, or of another type). They were left out
    /// and the session went on; see [`crate::Store::apply_changes_skipping_conflicts`].
    pub skipped: Vec<crate::model::RecordId>,
    /// The peer took no changes in this session (a relay whose workspace is over its storage
    /// quota): this side's changes stay local and go in a later session.
    pub changes_held_back: bool,
    /// Bytes written, framing included.
    pub bytes_sent: u64,
    /// Bytes read, framing included.
    pub bytes_received: u64,
    /// Request/response rounds, hello included.
    pub round_trips: u32,
    /// Wall time of the session.
    pub duration: Duration,
}

/// Why a session ended early. The store keeps every batch applied before the error and
/// nothing of the batch that caused it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The stream failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended in the middle of a frame or before the session was done.
    #[error("the peer's stream ended mid-session (truncated frame or closed connection)")]
    Truncated,
    /// A frame announced more bytes than allowed.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A frame does not decode to a message.
    #[error("malformed message: {0}")]
    Decode(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A message came out of order.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}; update the older app")]
    Version {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The peer belongs to another workspace.
    #[error("the peer belongs to workspace {theirs}, not ours ({ours})")]
    Workspace {
        /// Ours.
        ours: uuid::Uuid,
        /// Theirs.
        theirs: uuid::Uuid,
    },
    /// The peer is this replica.
    #[error("refusing to sync a replica with itself")]
    SameReplica,
    /// The peer gave up.
    #[error("the peer aborted ({code:?}): {message}")]
    Remote {
        /// Its reason's category.
        code: AbortCode,
        /// Its message.
        message: String,
    },
    /// A read-only peer sent changes; none were applied.
    #[error("the peer is a read-only member; its changes are refused")]
    ReadOnlyPeer,
    /// The peer did not send anything for too long.
    #[error("the peer sent nothing for {0:?}")]
    Timeout(Duration),
    /// The local store failed, or refused the peer's changes.
    #[error("store: {0}")]
    Store(#[from] Box<crate::Error>),
}

impl From<crate::Error> for SyncError {
    fn from(e: crate::Error) -> Self {
        SyncError::Store(Box::new(e))
    }
}

impl SyncError {
    fn abort_code(&self) -> AbortCode {
        match self {
            SyncError::Version { .. } => AbortCode::Version,
            SyncError::Workspace { .. } => AbortCode::Workspace,
            SyncError::ReadOnlyPeer => AbortCode::ReadOnly,
            SyncError::Store(e)
                if matches!(
                    **e,
                    crate::Error::Doc { .. } | crate::Error::TypeMismatch { .. }
                ) =>
            {
                AbortCode::Apply
            }
            SyncError::Store(_) | SyncError::Io(_) | SyncError::Encode(_) => AbortCode::Internal,
            _ => AbortCode::Protocol,
        }
    }
}
