//! Live fan-out on a host (the relay): when a session brings changes into a workspace, every
//! other device of that workspace with an open connection gets a session pushed to it at once,
//! on the connection it opened, so devices that stay connected see each other's edits within
//! moments and without polling.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use iroh::EndpointId;
use tokio::sync::Notify;

use super::NetError;
use super::background::DEBOUNCE;
use super::limits::Traffic;
use super::node::{Home, Shared, cursor_of, lock};
use super::observer::{Direction, SessionEvent};
use crate::sync::SyncReport;

impl Shared {
    /// After a session of a host's `workspace`: push to the workspace's other
    /// connected devices if the session may have brought changes (a failed session may have
    /// applied some batches before it broke).
    pub(super) fn after_session(
        self: &Arc<Self>,
        workspace: uuid::Uuid,
        report: Option<&SyncReport>,
    ) {
        if !matches!(self.home, Home::Host(_)) {
            return;
        }
        if report.is_some_and(|r| r.records_received == 0) {
            return;
        }
        self.fan_out(workspace);
    }

    /// Wakes the push task of every connected device of `workspace` that lacks some of the
    /// replica's changes.
    fn fan_out(self: &Arc<Self>, workspace: uuid::Uuid) {
        let Home::Host(host) = &self.home else { return };
        let Some(engine) = host.replica(workspace) else {
            return;
        };
        let Ok(last_seq) = engine.last_seq() else {
            return;
        };
        let behind: Vec<EndpointId> = lock(&self.members)
            .iter()
            .filter(|(_, m)| m.workspace == workspace)
            .filter(|(id, _)| {
                let cursor = engine
                    .peer_cursor(&cursor_of(id))
                    .ok()
                    .flatten()
                    .map_or(0, |c| c.seq);
                cursor < last_seq
            })
            .map(|(id, _)| *id)
            .collect();
        for peer in behind {
            self.wake_pusher(peer);
        }
    }

    fn wake_pusher(self: &Arc<Self>, peer: EndpointId) {
        let wake = lock(&self.pushers)
            .entry(peer)
            .or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                tokio::spawn(push_loop(Arc::downgrade(self), peer, wake.clone()));
                wake
            })
            .clone();
        wake.notify_one();
    }
}

/// Pushes to one connected device each time it is woken, until its connection closes.
async fn push_loop(shared: Weak<Shared>, peer: EndpointId, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        // Changes arriving together go out in one session.
        tokio::time::sleep(DEBOUNCE).await;
        let Some(s) = shared.upgrade() else { return };
        let live = s.tasks.enter();
        // `push` owns the state and the replica, and lets go of them before the count ends.
        let more = push(s, peer, &wake).await;
        drop(live);
        if !more {
            return;
        }
    }
}

/// One push session to `peer`; whether the device is still there to push to later.
async fn push(s: Arc<Shared>, peer: EndpointId, wake: &Arc<Notify>) -> bool {
    let still_ours = lock(&s.pushers)
        .get(&peer)
        .is_some_and(|w| Arc::ptr_eq(w, wake));
    let member = lock(&s.members).get(&peer).copied();
    let (Some(conn), Some(member), true) = (s.open_connection(&peer), member, still_ours) else {
        return false; // the device went away; a new connection gets a new task
    };
    let Home::Host(host) = &s.home else {
        return false;
    };
    let Some(engine) = host.replica(member.workspace) else {
        return false;
    };
    let Ok(_push_slot) = s.push_slots.acquire().await else {
        return false;
    };
    let _one_at_a_time = s.outgoing_gate(peer).await;
    let traffic = Arc::new(Traffic::default());
    let outcome = match conn.open_bi().await {
        Ok(streams) => s.dialed_session(&*engine, &peer, streams, &traffic).await,
        Err(e) => Err(NetError::Connection(e.to_string())),
    };
    if let Err(e) = &outcome {
        tracing::info!(%peer, error = %e, "push to a connected device failed");
    }
    s.observe(SessionEvent {
        peer,
        workspace: Some(member.workspace),
        direction: Direction::Outgoing,
        bytes_received: traffic.received.load(Ordering::Relaxed),
        bytes_sent: traffic.sent.load(Ordering::Relaxed),
        outcome: outcome.as_ref(),
    });
    // The device may have sent edits of its own back: they go to the others.
    s.after_session(member.workspace, outcome.as_ref().ok());
    true
}
