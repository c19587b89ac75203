//! Background mode: one task per known peer syncs whenever this replica changes, at least
//! every poll interval, and backs off while the peer is unreachable or refuses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use iroh::EndpointId;
use tokio::sync::{Notify, watch};

use super::node::Shared;

/// Local writes arriving within this window are sent in one session.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(20);
/// How often the change-feed thread checks whether background mode was stopped.
const FEED_POLL: Duration = Duration::from_millis(250);

/// A running background mode; dropping it stops every task.
pub(super) struct Background {
    stop: watch::Sender<bool>,
    feed_stop: Arc<AtomicBool>,
    peers_changed: Arc<Notify>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.feed_stop.store(true, Ordering::Relaxed);
    }
}

impl Background {
    pub fn start(shared: &Arc<Shared>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let feed_stop = Arc::new(AtomicBool::new(false));
        let peers_changed = Arc::new(Notify::new());
        let local = change_feed(shared, feed_stop.clone());
        tokio::spawn(supervise(
            Arc::downgrade(shared),
            local,
            stop_rx,
            peers_changed.clone(),
        ));
        Self {
            stop,
            feed_stop,
            peers_changed,
        }
    }

    pub fn peers_changed(&self) {
        self.peers_changed.notify_one();
    }
}

/// The engine's change events, reduced to "the newest local sequence", on a watch channel.
/// The engine's subscription blocks, so a thread reads it.
fn change_feed(shared: &Arc<Shared>, stop: Arc<AtomicBool>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let Some(engine) = shared.device() else {
        return rx; // a host has no local writes of its own to push
    };
    let subscription = engine.subscribe();
    std::thread::Builder::new()
        .name("crmsync-net-feed".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
                if let Some(event) = subscription.recv_timeout(FEED_POLL) {
                    tx.send_replace(event.seq);
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the change feed"));
    rx
}

/// Starts a task for every known peer, and for peers added later.
async fn supervise(
    shared: Weak<Shared>,
    local: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    peers_changed: Arc<Notify>,
) {
    let mut running: HashSet<EndpointId> = HashSet::new();
    loop {
        let Some(s) = shared.upgrade() else { return };
        for (peer, _) in s.known_peers() {
            if running.insert(peer) {
                tokio::spawn(peer_loop(shared.clone(), peer, local.clone(), stop.clone()));
            }
        }
        drop(s);
        tokio::select! {
            _ = peers_changed.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn peer_loop(
    shared: Weak<Shared>,
    peer: EndpointId,
    mut local: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let (poll, backoff_min, backoff_max) = match shared.upgrade() {
        Some(s) => (
            s.options.poll_interval,
            s.options.backoff_min,
            s.options.backoff_max,
        ),
        None => return,
    };
    let mut backoff = backoff_min;
    let mut due = true;
    loop {
        if !due {
            tokio::select! {
                changed = local.changed() => {
                    if changed.is_err() { return }
                    tokio::time::sleep(DEBOUNCE).await;
                }
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => return,
            }
        }
        local.borrow_and_update();
        if *stop.borrow() {
            return;
        }
        let Some(s) = shared.upgrade() else { return };
        let Some(addr) = s.peer_addr(&peer) else {
            return;
        };
        let outcome = s.sync_with(addr).await;
        drop(s);
        match outcome {
            Ok(report) => {
                tracing::debug!(%peer, received = report.records_received, sent = report.records_sent, "background sync");
                backoff = backoff_min;
                due = false;
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, retry_in = ?backoff, "background sync failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(backoff_max);
                due = true;
            }
        }
    }
}
