//! Change events: what the store's log records, and what subscribers receive.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use serde::{Deserialize, Serialize};

use crate::model::{RecordId, RecordType};

/// What happened to a record.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Created on this device.
    Created,
    /// Edited on this device.
    Updated,
    /// Deleted on this device.
    Deleted,
    /// Restored on this device.
    Restored,
    /// Changed by changes merged from another replica.
    Merged,
}

impl ChangeKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            ChangeKind::Created => 0,
            ChangeKind::Updated => 1,
            ChangeKind::Deleted => 2,
            ChangeKind::Restored => 3,
            ChangeKind::Merged => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ChangeKind::Created,
            1 => ChangeKind::Updated,
            2 => ChangeKind::Deleted,
            3 => ChangeKind::Restored,
            4 => ChangeKind::Merged,
            _ => return None,
        })
    }
}

/// One entry of the local change log.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[cfg_attr(feature = "uniffi", uniffi(name = "Change"))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Local log sequence number (increases with every write on this replica).
    pub seq: u64,
    /// The record.
    pub id: RecordId,
    /// Its type.
    pub record_type: RecordType,
    /// What happened.
    pub kind: ChangeKind,
}

/// A live feed of change events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    receiver: Receiver<ChangeEvent>,
}

impl Subscription {
    /// Waits for the next event; `None` once the engine is gone.
    pub fn recv(&self) -> Option<ChangeEvent> {
        self.receiver.recv().ok()
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<ChangeEvent> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<ChangeEvent> {
        self.receiver.try_recv().ok()
    }

    /// Every event waiting now.
    pub fn drain(&self) -> Vec<ChangeEvent> {
        self.receiver.try_iter().collect()
    }
}

/// Fans committed events out to subscribers.
#[derive(Debug, Default)]
pub(crate) struct Broadcaster {
    senders: Mutex<Vec<Sender<ChangeEvent>>>,
}

impl Broadcaster {
    pub fn subscribe(&self) -> Subscription {
        let (sender, receiver) = channel();
        self.lock().push(sender);
        Subscription { receiver }
    }

    pub fn publish(&self, events: &[ChangeEvent]) {
        if events.is_empty() {
            return;
        }
        // Subscribers whose receiver is gone are dropped here.
        self.lock()
            .retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<ChangeEvent>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }
}
