//! Running one session on a stream: the handshake (who the peer is, which replica it gets),
//! then the sync protocol, metered and bounded in time.

use std::sync::Arc;

use iroh::EndpointId;
use iroh::endpoint::{RecvStream, SendStream};

use super::handshake::{self, Agreed};
use super::limits::{Metered, Traffic};
use super::node::{Home, LINGER, Member, Shared, lock};
use super::observer::SessionEvent;
use super::{NetError, Refusal};
use crate::engine::Engine;
use crate::sync::{self, SyncError, SyncOptions, SyncReport};

impl Shared {
    /// The session on a stream this node opened: handshake as the dialing side, then sync.
    pub(super) async fn dialed_session(
        &self,
        engine: &Engine,
        peer: &EndpointId,
        (send, recv): (SendStream, RecvStream),
        traffic: &Arc<Traffic>,
    ) -> Result<SyncReport, NetError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| NetError::Closed)?;
        let (mut send, mut recv) = self.meter(peer, send, recv, traffic);
        let agreed = self
            .within_idle_timeout(handshake::dial(engine, peer, &mut recv, &mut send))
            .await?;
        self.joined(peer, engine.workspace_id());
        run_session(engine, agreed, &self.options.sync, send, recv).await
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
        let mut members = lock(&self.members);
        let member = members.entry(*peer).or_insert(Member {
            workspace,
            replica: None,
        });
        if member.workspace != workspace {
            *member = Member {
                workspace,
                replica: None,
            };
        }
    }

    /// Serves one session a peer opened: refuses it when the node is at its session limit
    /// or the peer over its byte budget, else picks the replica the peer's credential names.
    /// Returns the workspace it ran on, if one was picked.
    pub(super) async fn incoming_session(
        &self,
        remote: &EndpointId,
        (send, recv): (SendStream, RecvStream),
        traffic: &Arc<Traffic>,
    ) -> (Option<uuid::Uuid>, Result<SyncReport, NetError>) {
        let permit = self.sessions.try_acquire().ok();
        let (mut send, mut recv) = self.meter(remote, send, recv, traffic);
        let mut picked = None;
        let pick = |claimed: Option<uuid::Uuid>| -> Result<Engine, Refusal> {
            if permit.is_none() {
                let max_sessions = u32::try_from(self.options.max_sessions).unwrap_or(u32::MAX);
                return Err(Refusal::Busy { max_sessions });
            }
            self.budgets.admit(remote)?;
            let engine = match (&self.home, claimed) {
                (Home::Device(engine), _) => engine.clone(),
                (Home::Host(_), None) => return Err(Refusal::NoCredential),
                (Home::Host(host), Some(workspace)) => host
                    .replica(workspace)
                    .ok_or(Refusal::UnknownWorkspace { workspace })?,
            };
            picked = Some(engine.workspace_id());
            Ok(engine)
        };
        // A peer that opens a stream and goes silent must not hold a session slot for ever.
        let handshake = handshake::accept(pick, remote, &mut recv, &mut send);
        let outcome = match self.within_idle_timeout(handshake).await {
            Ok((engine, agreed)) => {
                self.joined(remote, engine.workspace_id());
                run_session(&engine, agreed, &self.options.sync, send, recv).await
            }
            Err(e) => Err(e),
        };
        (picked, outcome)
    }

    async fn within_idle_timeout<T>(
        &self,
        step: impl Future<Output = Result<T, NetError>>,
    ) -> Result<T, NetError> {
        let limit = self.options.sync.idle_timeout;
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| NetError::Handshake(format!("the peer sent nothing for {limit:?}")))?
    }

    /// Tells a host about a finished session.
    pub(super) fn observe(&self, event: SessionEvent<'_>) {
        if let Home::Host(host) = &self.home {
            host.session_ended(&event);
        }
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
    engine: &Engine,
    agreed: Agreed,
    options: &SyncOptions,
    mut send: Metered<SendStream>,
    mut recv: Metered<RecvStream>,
) -> Result<SyncReport, NetError> {
    send.enforce_budget();
    recv.enforce_budget();
    let mut options = options.clone();
    options.send_changes = agreed.ours.can_write();
    options.accept_changes = agreed.theirs.can_write();
    let report = sync::sync(engine, &mut recv, &mut send, &options).await?;
    // Let the peer read our last frames before the stream goes away.
    let _ = tokio::time::timeout(LINGER, send.into_inner().stopped()).await;
    Ok(report)
}
