//! Peer-to-peer sync over iroh: QUIC connections authenticated by node keys, workspace
//! membership checked before any record moves, and a background mode that keeps syncing with
//! known peers.
//!
//! Every session is one bi-directional QUIC stream on a connection that is reused for later
//! sessions with the same peer. A session opens with the membership handshake (credential,
//! revocations, verdicts) and continues with the transport-agnostic [`crate::sync`] protocol on
//! the same stream. The device's node key is kept in the store, so the device keeps its
//! identity across restarts.
//!
//! ```no_run
//! # async fn run() -> Result<(), crmsync::net::NetError> {
//! use crmsync::Engine;
//! use crmsync::net::{NetOptions, Role};
//!
//! // The admin's device creates the workspace's admin key and invites a colleague's phone.
//! let admin = Engine::open("admin.redb")?;
//! admin.init_admin()?;
//! # let phone_node_id = admin.node_id()?;
//! let invite = admin.invite_device(phone_node_id, Role::Member, None)?;
//! // ... the phone scans `invite.to_string()` as a QR code and calls `join` with it ...
//!
//! let network = admin.enable_network(NetOptions::default()).await?;
//! # let phone_addr = network.addr();
//! let report = network.sync_with(phone_addr).await?;
//! println!("{} records received", report.records_received);
//! # Ok(())
//! # }
//! ```

mod background;
mod fanout;
mod handshake;
mod limits;
pub(crate) mod membership;
mod node;
mod observer;
mod replica;
mod session;
mod tasks;

use std::net::SocketAddr;
use std::time::Duration;

pub use iroh::{EndpointAddr, EndpointId, PublicKey, RelayUrl, TransportAddr};
pub use membership::{Credential, Membership, Refusal, Revocation, Role};
pub use node::{NetStatus, Network, PeerStatus, WorkspaceHost};
pub use observer::{ConnectedPeer, Direction, SessionEvent};
pub use replica::{SharedReplica, SyncedReplica};

use crate::sync::{SyncError, SyncOptions};

/// The ALPN of crmsync sessions; the version changes when the session format does.
pub const ALPN: &[u8] = b"crmsync/sync/2";

/// How the network runs. The default binds all interfaces on a random port with no relay;
/// [`NetOptions::loopback`] binds 127.0.0.1 only (tests, examples, benchmarks).
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Local UDP address to bind (default `0.0.0.0:0`).
    pub bind_addr: SocketAddr,
    /// A relay server (e.g. the team's self-hosted one) used to reach peers behind NATs and
    /// to be reached through. `None` (default): direct addresses only. Public relays are never
    /// used unless configured here.
    pub relay_url: Option<RelayUrl>,
    /// Find peers on the local network by multicast (mDNS-style), so they can be dialed by
    /// node id alone. Needs the `lan-discovery` cargo feature; off by default, because it
    /// announces the device to everyone on the LAN.
    pub lan_discovery: bool,
    /// Session limits and tuning.
    pub sync: SyncOptions,
    /// Background mode: sync each known peer at least this often, even with no local
    /// change (default 30 s). Local changes are pushed at once.
    pub poll_interval: Duration,
    /// Background mode: the first wait after a failed attempt, doubled per failure (default
    /// 500 ms)...
    pub backoff_min: Duration,
    /// ...up to this (default 60 s).
    pub backoff_max: Duration,
    /// How long to wait for a connection to a peer (default 10 s).
    pub connect_timeout: Duration,
    /// Sessions peers may run with this node at once (default 64). A slot is given only to a
    /// peer whose credential checked out; one more is refused with [`Refusal::Busy`]. This
    /// node's own sessions take no slot (one per peer at a time).
    pub max_sessions: usize,
    /// Sessions one peer may run with this node at once (default 2).
    pub max_sessions_per_peer: usize,
    /// Handshakes in progress at once, from peers not yet authenticated (default 32; each
    /// peer 2). Past it a new stream is reset before anything is read from it.
    pub max_handshakes: usize,
    /// How long a peer has to complete the membership handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// The longest a session may run, however busy (default 1 h); a slow peer cannot keep a
    /// slot for ever. Batches applied before it stay.
    pub session_deadline: Duration,
    /// Connections open at once, all peers together (default 1,024); more are refused.
    pub max_connections: usize,
    /// Connections one peer (node id) may have open at once (default 4).
    pub max_connections_per_peer: usize,
    /// Bytes each peer may move per minute, both directions together (default: no limit).
    /// A peer over its budget is refused with [`Refusal::RateLimited`], and a session that
    /// exceeds it is cut; what it applied stays, and a later session resumes.
    pub peer_bytes_per_minute: Option<u64>,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            relay_url: None,
            lan_discovery: false,
            sync: SyncOptions::default(),
            poll_interval: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_sessions: 64,
            max_sessions_per_peer: 2,
            max_handshakes: 32,
            handshake_timeout: Duration::from_secs(10),
            session_deadline: Duration::from_secs(3600),
            max_connections: 1024,
            max_connections_per_peer: 4,
            peer_bytes_per_minute: None,
        }
    }
}

impl NetOptions {
    /// Binds 127.0.0.1 on a random port: nothing leaves the machine.
    pub fn loopback() -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default()
        }
    }
}

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// This device has no credential: call [`crate::Engine::join`] (or
    /// [`crate::Engine::init_admin`] on the admin's device) first.
    #[error("this device is not a member of a workspace yet; join with a credential first")]
    NotJoined,
    /// This device already holds a credential.
    #[error("this device already belongs to the workspace")]
    AlreadyJoined,
    /// Only the admin device (holding the workspace's admin key) may do this.
    #[error("only the workspace admin's device can invite or revoke devices")]
    NotAdmin,
    /// A credential's text does not parse or verify.
    #[error("invalid credential: {0}")]
    InvalidCredential(String),
    /// The credential is for another workspace than the store's, which holds records.
    #[error(
        "the credential is for workspace {credential}, but this database holds records of \
         {store}; join from a new database"
    )]
    WrongWorkspace {
        /// The credential's workspace.
        credential: uuid::Uuid,
        /// The store's workspace.
        store: uuid::Uuid,
    },
    /// The credential was issued to another device.
    #[error("the credential was issued to node {issued_to}, not this device ({this_device})")]
    NotForThisDevice {
        /// Its node id.
        issued_to: String,
        /// Ours.
        this_device: String,
    },
    /// We refused the peer: its membership check failed. Nothing was exchanged.
    #[error("refused the peer: {0}")]
    PeerRefused(Refusal),
    /// The peer refused us. Nothing was exchanged.
    #[error("the peer refused this device: {0}")]
    RefusedByPeer(Refusal),
    /// The membership handshake broke (malformed or oversized frame).
    #[error("handshake: {0}")]
    Handshake(String),
    /// The endpoint could not be set up.
    #[error("cannot start networking: {0}")]
    Bind(String),
    /// No connection to the peer could be made.
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The connection failed mid-session; the next session resumes where this one stopped.
    #[error("connection: {0}")]
    Connection(String),
    /// The session ran past [`NetOptions::session_deadline`] and was cut; what it applied
    /// stays, and the next session resumes.
    #[error("the session ran past its deadline of {0:?}")]
    Deadline(Duration),
    /// The operation does not apply to this kind of network.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The network was shut down.
    #[error("the network was shut down")]
    Closed,
    /// The sync session failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl From<std::io::Error> for NetError {
    fn from(e: std::io::Error) -> Self {
        NetError::Connection(e.to_string())
    }
}
