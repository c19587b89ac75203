//! The tasks that hold a node's state while they run (sessions in flight, pushes), counted so
//! that shutdown returns only once none does: a host's replicas stay open while any holds
//! them, and whoever shut the node down may reopen their files right after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The count of live tasks.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    live: AtomicUsize,
    idle: Notify,
}

/// One live task; dropping it ends the task's count. Drop it after everything the task holds.
#[derive(Debug)]
pub(super) struct Live(Arc<Tasks>);

impl Tasks {
    /// Counts a task until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Live {
        self.live.fetch_add(1, Ordering::SeqCst);
        Live(self.clone())
    }

    /// Waits until no task is live, at most `limit`; whether none is.
    pub async fn idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so a task ending in between still wakes us.
            let ended = self.idle.notified();
            if self.live.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.live.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_task() {
        let tasks = Arc::new(Tasks::default());
        assert!(tasks.idle(Duration::from_millis(1)).await);
        let live = tasks.enter();
        assert!(!tasks.idle(Duration::from_millis(20)).await);
        let ender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(live);
        });
        assert!(tasks.idle(Duration::from_secs(10)).await);
        ender.await.unwrap();
    }
}
