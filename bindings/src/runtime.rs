//! The one tokio runtime the `async` exports run on.
//!
//! Core calls are blocking (redb transactions, tantivy searches), so an `async` export runs its
//! call with `spawn_blocking` on this runtime and awaits the join handle. The foreign side
//! polls that future from its own executor (Kotlin coroutines, Swift tasks, Python asyncio):
//! the caller's thread is never blocked, and no foreign thread needs a tokio context. The
//! network's async calls run as tasks of the same runtime ([`run_async`]), and its background
//! tasks (accepting peers, background mode) live there.

use std::sync::LazyLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::CrmError;

/// Started on first use, with two workers: network sessions do store work between awaits, and
/// two peers in one process must not wait on one worker. A runtime that cannot start (no threads left) makes every `async`
/// call fail with `Internal` instead of aborting the app.
static RUNTIME: LazyLock<Result<Runtime, String>> = LazyLock::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("crmsync-ffi")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the crmsync runtime: {e}"))
});

/// Runs a blocking core call on the shared runtime's blocking pool.
pub(crate) async fn run_blocking<T, F>(call: F) -> Result<T, CrmError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CrmError> + Send + 'static,
{
    runtime()?
        .spawn_blocking(call)
        .await
        .map_err(|e| CrmError::internal(format!("background call failed: {e}")))?
}

/// The shared runtime, or `Internal` if it could not start.
pub(crate) fn runtime() -> Result<&'static Runtime, CrmError> {
    RUNTIME.as_ref().map_err(CrmError::internal)
}

/// Runs an async core call (the network's) as a task of the shared runtime, where iroh finds
/// its reactor and timers, and awaits it from the foreign executor.
pub(crate) async fn run_async<T, F>(call: F) -> Result<T, CrmError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, CrmError>> + Send + 'static,
{
    runtime()?
        .spawn(call)
        .await
        .map_err(|e| CrmError::internal(format!("background call failed: {e}")))?
}
