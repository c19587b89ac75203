//! Running one session on a stream: the handshake (who the peer is, which replica it gets),
//! then the sync protocol, metered and bounded in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use iroh::EndpointId;
use iroh::endpoint::{RecvStream, SendStream};

use super::handshake::{self, Agreed};
use super::limits::{Metered, Traffic};
use super::node::{Home, LINGER, Member, Shared, lock};
use super::observer::SessionEvent;
use super::replica::{SharedReplica, SyncedReplica};
use super::{NetError, Refusal, Revocation};
use crate::sync::{self, SyncError, SyncOptions, SyncReport};

impl Shared {
    /// The session on a stream this node opened: handshake as the dialing side, then sync.
    /// Outgoing sessions take no incoming slot: whatever peers do, this node's own syncs run
    /// (one per peer at a time, see `outgoing_gate`).
    pub(super) async fn dialed_session(
        &self,
        engine: &dyn SyncedReplica,
        peer: &EndpointId,
        (send, recv): (SendStream, RecvStream),
        traffic: &Arc<Traffic>,
    ) -> Result<SyncReport, NetError> {
        let _running = Running::count(&self.outgoing_sessions);
        let (mut send, mut recv) = self.meter(peer, send, recv, traffic);
        let agreed = self
            .within_handshake_timeout(handshake::dial(engine, peer, &mut recv, &mut send))
            .await?;
        self.joined(peer, engine.workspace());
        self.cut_off(&agreed.learned);
        self.within_deadline(run_session(
            engine,
            peer,
            agreed,
            &self.options.sync,
            (send, recv),
        ))
        .await
    }

    fn meter(
        &self,
        peer: &EndpointId,
        send: SendStream,
        recv: RecvStream,
        traffic: &Arc<Traffic>,
    ) -> (Metered<SendStream>, Metered<RecvStream>) {
        (
            Metered::new(send, *peer, self.budgets.clone(), traffic.clone()),
            Metered::new(recv, *peer, self.budgets.clone(), traffic.clone()),
        )
    }

    /// Remembers that `peer` was accepted in `workspace` on its current connection.
    fn joined(&self, peer: &EndpointId, workspace: uuid::Uuid) {
        lock(&self.members).insert(*peer, Member { workspace });
    }

    /// Closes the connections of devices that were just revoked: their sessions end now, and
    /// the next ones are refused.
    fn cut_off(&self, revoked: &[Revocation]) {
        for r in revoked {
            if let Some(conn) = self.open_connection(&r.device()) {
                tracing::warn!(peer = %r.device(), "revoked: closing its connection");
                conn.close(1u32.into(), b"revoked");
            }
        }
    }

    /// Serves one session a peer opened. Before the peer is authenticated it holds only a
    /// handshake place (few, a small share per peer, bounded in time) and small frames; only
    /// a member whose credential checked out is given a session slot (refused as busy when
    /// none is free or it holds its share) and a byte budget. Returns the workspace it ran
    /// on, if one was picked.
    pub(super) async fn incoming_session(
        &self,
        remote: &EndpointId,
        (send, recv): (SendStream, RecvStream),
        traffic: &Arc<Traffic>,
    ) -> (Option<uuid::Uuid>, Result<SyncReport, NetError>) {
        let (mut send, mut recv) = self.meter(remote, send, recv, traffic);
        let Some(handshake_place) = self.handshakes.try_enter(remote) else {
            // Nothing is read from it: the peer hears it is busy (a member's background mode
            // retries with backoff), in the little time a refusal may take.
            tracing::debug!(peer = %remote, "no handshake place free");
            let refusal = self.busy();
            let refused = handshake::refuse_unread(refusal.clone(), &mut send);
            let _ = tokio::time::timeout(REFUSAL_TIME, refused).await;
            return (None, Err(NetError::PeerRefused(refusal)));
        };
        let mut picked = None;
        let pick = |claimed: Option<uuid::Uuid>| -> Result<SharedReplica, Refusal> {
            let engine = match (&self.home, claimed) {
                (Home::Device(engine), _) => engine.clone(),
                (Home::Host(_), None) => return Err(Refusal::NoCredential),
                (Home::Host(host), Some(workspace)) => host
                    .replica(workspace)
                    .ok_or(Refusal::UnknownWorkspace { workspace })?,
            };
            picked = Some(engine.workspace());
            Ok(engine)
        };
        let admit = || {
            self.budgets.admit(remote)?;
            self.sessions.try_enter(remote).ok_or_else(|| self.busy())
        };
        let handshake = handshake::accept(pick, admit, remote, &mut recv, &mut send);
        let outcome = match self.within_handshake_timeout(handshake).await {
            Ok((engine, agreed, _slot)) => {
                drop(handshake_place);
                self.joined(remote, engine.workspace());
                self.cut_off(&agreed.learned);
                let mut options = self.options.sync.clone();
                if let Home::Host(host) = &self.home
                    && !host.accepts_changes(engine.workspace())
                {
                    tracing::warn!(peer = %remote, workspace = %engine.workspace(),
                        "workspace over its storage quota: taking no changes");
                    options.accept_changes = false;
                }
                let session = run_session(&*engine, remote, agreed, &options, (send, recv));
                self.within_deadline(session).await
            }
            Err(e) => Err(e),
        };
        (picked, outcome)
    }

    /// The refusal of a peer that finds no place free.
    fn busy(&self) -> Refusal {
        let max_sessions = u32::try_from(self.options.max_sessions).unwrap_or(u32::MAX);
        Refusal::Busy { max_sessions }
    }

    async fn within_handshake_timeout<T>(
        &self,
        step: impl Future<Output = Result<T, NetError>>,
    ) -> Result<T, NetError> {
        let limit = self.options.handshake_timeout;
        tokio::time::timeout(limit, step).await.map_err(|_| {
            NetError::Handshake(format!("the handshake did not finish within {limit:?}"))
        })?
    }

    async fn within_deadline(
        &self,
        session: impl Future<Output = Result<SyncReport, NetError>>,
    ) -> Result<SyncReport, NetError> {
        let limit = self.options.session_deadline;
        tokio::time::timeout(limit, session)
            .await
            .map_err(|_| NetError::Deadline(limit))?
    }

    /// Tells a host about a finished session.
    pub(super) fn observe(&self, event: SessionEvent<'_>) {
        if let Home::Host(host) = &self.home {
            host.session_ended(&event);
        }
    }
}

/// How long a refusal sent without a handshake place may take to write.
const REFUSAL_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Counts a running outgoing session while it lives.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn count(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a session's failure says the connection under it is broken (as opposed to a
/// refusal or a protocol error, which a new connection would meet again).
pub(super) fn breaks_connection(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Connection(_)
            | NetError::Handshake(_)
            | NetError::Sync(SyncError::Io(_) | SyncError::Timeout(_) | SyncError::Truncated)
    )
}

/// The sync protocol on a stream whose handshake agreed on the roles.
async fn run_session(
    engine: &dyn SyncedReplica,
    peer: &EndpointId,
    agreed: Agreed,
    options: &SyncOptions,
    (mut send, mut recv): (Metered<SendStream>, Metered<RecvStream>),
) -> Result<SyncReport, NetError> {
    send.enforce_budget();
    recv.enforce_budget();
    let mut options = options.clone();
    options.send_changes = agreed.ours.can_write();
    options.accept_changes &= agreed.theirs.can_write();
    // The replica id in the peer's hello is its word; its node id was proven by the
    // connection (and its credential names it): cursors are kept under that.
    options.authenticated_peer = Some(*peer.as_bytes());
    let report = sync::sync(engine, &mut recv, &mut send, &options).await?;
    // Let the peer read our last frames before the stream goes away.
    let _ = tokio::time::timeout(LINGER, send.into_inner().stopped()).await;
    Ok(report)
}
