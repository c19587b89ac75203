//! Runs a [`SyncMachine`] over a byte stream: frames and their size limit, the idle timeout,
//! writing while reading, and store work kept off the async runtime's other tasks. The
//! protocol itself lives in the machine.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{FrameReader, FrameWriter};
use super::machine::SyncMachine;
use super::{Message, Replica, SyncError, SyncOptions, SyncReport};

/// How long a failed session looks for the peer's abort message.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// Store work that may wait on the disk or on another writer (a durable commit, loading
/// documents, listing heads). On a multi-threaded runtime tokio hands this worker's other
/// tasks to another thread meanwhile: a relay serving hundreds of connections on two workers
/// otherwise stalls every one of them, QUIC timers included, behind each fsync. A
/// single-threaded runtime has nowhere to hand them, so the work runs inline there.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Runs one session over `reader` / `writer` (the two halves of one connection) and returns
/// what it did. Both peers call this; neither needs to know in advance who the other is.
pub async fn sync<P, R, W>(
    replica: &P,
    reader: R,
    writer: W,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError>
where
    P: Replica + ?Sized,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut rx = FrameReader::new(reader, options.max_frame);
    let mut tx = FrameWriter::new(writer, options.max_frame);
    let nonce = *uuid::Uuid::new_v4().as_bytes();
    let mut machine = blocking(|| SyncMachine::new(replica, options.clone(), nonce))?;
    match drive(&mut machine, &mut rx, &mut tx, options.idle_timeout).await {
        Ok(mut report) => {
            // The peer may already have closed its side; our part is done either way.
            let _ = tx.finish().await;
            // The peer records the session (its cursor for us) after the last message and
            // only then closes its side. Waiting for that close means a session that returns
            // is recorded on both sides, so one started right after, either way, starts from
            // the cursors instead of comparing whole sets.
            let _ = tokio::time::timeout(ABORT_GRACE, rx.closed()).await;
            report.bytes_sent = tx.bytes;
            report.bytes_received = rx.bytes();
            report.duration = started.elapsed();
            Ok(report)
        }
        Err(SyncError::Io(io)) => {
            // A peer that gives up stops reading, so our write may fail before we read the
            // reason it sent: look for it briefly, it is what the user needs to see.
            // Frames it sent before giving up (its own batch of the exchange, say) come first.
            let abort = async {
                loop {
                    match rx.recv().await {
                        Ok(Message::Abort { code, message }) => return Some((code, message)),
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            };
            let e = match tokio::time::timeout(ABORT_GRACE, abort).await {
                Ok(Some((code, message))) => SyncError::Remote { code, message },
                _ => SyncError::Io(io),
            };
            blocking(|| machine.fail(&e));
            tracing::warn!(error = %e, "sync session failed");
            Err(e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sync session failed");
            if let Some(abort) = blocking(|| machine.fail(&e)) {
                // Bounded: a peer that stopped reading must not hold the session open.
                let tell = async {
                    let _ = tx.send(&abort).await;
                    let _ = tx.finish().await;
                };
                let _ = tokio::time::timeout(ABORT_GRACE, tell).await;
            }
            Err(e)
        }
    }
}

/// Moves messages between the machine and the stream until the session completes. Reading
/// goes on while a frame is written, so two peers writing at once never wait on each
/// other's full buffers. The session times out when nothing moved either way for
/// `idle_timeout`.
async fn drive<P, R, W>(
    machine: &mut SyncMachine<'_, P>,
    rx: &mut FrameReader<R>,
    tx: &mut FrameWriter<W>,
    idle_timeout: Duration,
) -> Result<SyncReport, SyncError>
where
    P: Replica + ?Sized,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut idle_until = tokio::time::Instant::now() + idle_timeout;
    loop {
        if !tx.is_busy() {
            // Only batches are produced from the store; other messages are waiting already.
            let message = if machine.transmit_reads_store() {
                blocking(|| machine.poll_transmit())?
            } else {
                machine.poll_transmit()?
            };
            if let Some(message) = message {
                tx.queue(&message)?;
            }
        }
        if !tx.is_busy()
            && let Some(report) = machine.report()
        {
            return Ok(report.clone());
        }
        let busy = tx.is_busy();
        // Reading goes on while one frame is written (both sides write at once in the
        // exchange), but not while more wait behind it: answers never pile up for a peer
        // that does not read them.
        let listening = !machine.is_finished() && !machine.has_queued();
        tokio::select! {
            written = tx.write_some(), if busy => written?,
            message = rx.recv(), if listening => {
                let message = message?;
                blocking(|| machine.handle(message))?;
            }
            () = tokio::time::sleep_until(idle_until) => {
                return Err(SyncError::Timeout(idle_timeout));
            }
        }
        idle_until = tokio::time::Instant::now() + idle_timeout;
    }
}
