//! Change listeners: a foreign callback fed from [`crmsync::Engine::subscribe`] on a thread of
//! its own.
//!
//! Each registration owns one delivery thread that reads the engine's subscription and hands
//! the listener every change waiting, as one batch. [`ListenerHandle::unregister`] stops it:
//! once it returns, the listener is not called again (a call in progress is waited for, unless
//! `unregister` is called from inside the listener itself).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crmsync::{ChangeEvent, ChangeKind, RecordId, RecordType, Subscription};

use crate::error::CrmError;

/// How often an idle delivery thread checks whether it was unregistered. It does not delay
/// `unregister` (which takes effect at once); it only bounds how long a stopped thread lingers.
pub(crate) const IDLE_CHECK: Duration = Duration::from_millis(250);

crmsync::uniffi_remote_ChangeKind!();
crmsync::uniffi_remote_ChangeEvent!();

/// Implemented by the app to be told which records changed: local writes and merges from
/// other replicas, after they are committed. Called on a background thread (never the thread
/// that wrote), with the changes in commit order; switch to the UI thread before touching views.
/// An exception thrown here is logged and does not stop later calls.
#[uniffi::export(callback_interface)]
pub trait ChangeListener: Send + Sync {
    /// Records changed.
    fn on_change(&self, changes: Vec<ChangeEvent>) -> Result<(), CrmError>;
}

/// A registered [`ChangeListener`] (or [`crate::NetStatusListener`]);
/// [`ListenerHandle::unregister`] stops it. Dropping the
/// handle does not (Kotlin and Swift may drop it late or early): unregister explicitly, or close
/// the engine.
#[derive(Debug, uniffi::Object)]
pub struct ListenerHandle {
    shared: Arc<Shared>,
    /// The delivery thread, so a listener that unregisters itself does not wait on itself.
    thread: ThreadId,
}

/// The state a delivery thread shares with its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set once unregistered.
    stopped: AtomicBool,
    /// Held by the delivery thread while the listener runs, so `unregister` can wait for a call
    /// in progress.
    gate: Mutex<()>,
}

impl Shared {
    /// Whether the listener was unregistered.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Held while the listener runs; check [`Shared::stopped`] again once it is held.
    pub(crate) fn gate(&self) -> MutexGuard<'_, ()> {
        // A unit cannot be left inconsistent by a panic.
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ListenerHandle {
    /// Starts delivering the events of `subscription` to `listener`.
    pub(crate) fn start(
        subscription: Subscription,
        listener: Box<dyn ChangeListener>,
    ) -> Result<Self, CrmError> {
        Self::spawn("crmsync-listener", move |shared| {
            deliver(&subscription, listener.as_ref(), shared)
        })
    }

    /// Runs `deliver` on a thread of its own; it returns once [`Shared::stopped`] is set (or
    /// its source is gone), and holds [`Shared::gate`] around every call of the listener.
    pub(crate) fn spawn(
        name: &str,
        deliver: impl FnOnce(&Shared) + Send + 'static,
    ) -> Result<Self, CrmError> {
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || deliver(&for_thread))
            .map_err(|e| CrmError::internal(format!("cannot start a listener thread: {e}")))?;
        Ok(Self {
            shared,
            thread: thread.thread().id(),
        })
    }
}

fn deliver(subscription: &Subscription, listener: &dyn ChangeListener, shared: &Shared) {
    while !shared.stopped() {
        let waited = Instant::now();
        let Some(first) = subscription.recv_timeout(IDLE_CHECK) else {
            // Idle, or the engine is gone, which `recv_timeout` reports at once and the same
            // way: never spin, wait out the interval before checking the flag again.
            if let Some(rest) = IDLE_CHECK.checked_sub(waited.elapsed()) {
                thread::sleep(rest);
            }
            continue;
        };
        let mut batch = vec![first];
        batch.extend(subscription.drain());
        let _gate = shared.gate();
        if shared.stopped() {
            return;
        }
        if let Err(e) = listener.on_change(batch) {
            tracing::warn!("crmsync change listener failed: {e}");
        }
    }
}

#[uniffi::export]
impl ListenerHandle {
    /// Stops the listener: after this returns it is not called again (a call in progress on
    /// another thread is waited for). Calling it twice, or from inside the listener, is fine.
    pub fn unregister(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if thread::current().id() != self.thread {
            drop(self.shared.gate());
        }
    }

    /// Whether the listener is still registered.
    pub fn is_active(&self) -> bool {
        !self.shared.stopped()
    }
}
