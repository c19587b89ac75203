//! What a host learns about each session it ran: for a relay's logs and metrics.

use iroh::EndpointId;
use uuid::Uuid;

use super::NetError;
use crate::sync::SyncReport;

/// Which side opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer opened it.
    Incoming,
    /// This node opened it (a relay pushing changes to a connected device).
    Outgoing,
}

/// A finished session, as [`super::WorkspaceHost::session_ended`] sees it.
#[derive(Debug)]
pub struct SessionEvent<'a> {
    /// The peer's node id (authenticated by the connection).
    pub peer: EndpointId,
    /// The workspace whose replica the session ran on; `None` when the peer was refused
    /// before one was chosen (no credential, a workspace not served here, busy, rate-limited).
    pub workspace: Option<Uuid>,
    /// Who opened it.
    pub direction: Direction,
    /// Bytes read from the peer, handshake included.
    pub bytes_received: u64,
    /// Bytes written to the peer, handshake included.
    pub bytes_sent: u64,
    /// What the session exchanged, or why it failed or was refused.
    pub outcome: Result<&'a SyncReport, &'a NetError>,
}

/// A peer with an open connection to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedPeer {
    /// Its node id.
    pub node_id: EndpointId,
    /// The workspace it was last accepted in, once a session was accepted on the connection.
    pub workspace: Option<Uuid>,
}
