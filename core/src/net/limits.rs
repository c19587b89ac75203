//! Limits a node puts on its peers: how many sessions run at once, and how many bytes each
//! peer may move per minute. Both are checked when a session opens, so a peer that hits one is
//! refused with a reason it can show its user; the byte budget is also enforced while a
//! session runs, so one long session cannot exceed it.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use iroh::EndpointId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Refusal;

/// Per-peer byte budgets: a token bucket per node id holding up to one minute's allowance,
/// refilled continuously, so a peer that was quiet may burst one minute's worth.
#[derive(Debug)]
pub(super) struct ByteBudgets {
    per_minute: Option<u64>,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_peer: HashMap<EndpointId, Bucket>,
    pruned: Instant,
}

/// How often buckets that refilled completely are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes still allowed; negative once a session overran.
    tokens: f64,
    refilled: Instant,
}

impl ByteBudgets {
    pub fn new(per_minute: Option<u64>) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(Buckets {
                by_peer: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// Refuses a new session if `peer` has no budget left.
    pub fn admit(&self, peer: &EndpointId) -> Result<(), Refusal> {
        let Some(limit) = self.per_minute else {
            return Ok(());
        };
        // A session needs at least a second's allowance to be worth starting; a peer whose
        // session was just cut for overrunning waits until the overrun is paid back.
        let per_sec = limit as f64 / 60.0;
        let tokens = self.update(peer, 0);
        if tokens >= per_sec {
            return Ok(());
        }
        let retry_after_secs = ((per_sec - tokens) / per_sec)
            .ceil()
            .min(f64::from(u32::MAX)) as u32;
        Err(Refusal::RateLimited {
            bytes_per_minute: limit,
            retry_after_secs: retry_after_secs.max(1),
        })
    }

    /// Charges `bytes` to `peer`; false once its budget is exhausted.
    fn charge(&self, peer: &EndpointId, bytes: u64) -> bool {
        self.per_minute.is_none() || self.update(peer, bytes) >= 0.0
    }

    fn update(&self, peer: &EndpointId, bytes: u64) -> f64 {
        let Some(limit) = self.per_minute else {
            return f64::INFINITY;
        };
        let capacity = limit as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // A full bucket is the same as none: dropping them now and then keeps the map as
        // small as the set of recently active peers.
        if now.duration_since(buckets.pruned) >= PRUNE_EVERY {
            buckets
                .by_peer
                .retain(|_, b| refill(b, now, capacity) < capacity);
            buckets.pruned = now;
        }
        let bucket = buckets.by_peer.entry(*peer).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        bucket.tokens = refill(bucket, now, capacity) - bytes as f64;
        bucket.refilled = now;
        bucket.tokens
    }
}

fn refill(bucket: &Bucket, now: Instant, capacity: f64) -> f64 {
    let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
    (bucket.tokens + elapsed * capacity / 60.0).min(capacity)
}

/// A bounded set of places (handshakes, or incoming sessions): at most `total` at once, and at
/// most `per_peer` held by one node. A place is given back when its [`Pass`] drops.
#[derive(Debug)]
pub(super) struct Gate {
    total: Arc<tokio::sync::Semaphore>,
    per_peer: Arc<Mutex<HashMap<EndpointId, usize>>>,
    per_peer_max: usize,
    capacity: usize,
}

/// One place taken at a [`Gate`].
#[derive(Debug)]
pub(super) struct Pass {
    _permit: tokio::sync::OwnedSemaphorePermit,
    peer: EndpointId,
    per_peer: Arc<Mutex<HashMap<EndpointId, usize>>>,
}

impl Gate {
    pub fn new(total: usize, per_peer_max: usize) -> Self {
        Self {
            total: Arc::new(tokio::sync::Semaphore::new(total)),
            per_peer: Arc::default(),
            per_peer_max: per_peer_max.max(1),
            capacity: total,
        }
    }

    /// A place for `peer`, if one is free and the peer holds fewer than its share.
    pub fn try_enter(&self, peer: &EndpointId) -> Option<Pass> {
        let mut held = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.entry(*peer).or_default();
        if *mine >= self.per_peer_max {
            return None;
        }
        let permit = self.total.clone().try_acquire_owned().ok()?;
        *mine += 1;
        Some(Pass {
            _permit: permit,
            peer: *peer,
            per_peer: self.per_peer.clone(),
        })
    }

    /// Places taken now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.total.available_permits()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut held = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// Bytes a session moved, both ways.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

/// One half of a session's stream, counting its bytes and charging them to the peer's budget.
pub(super) struct Metered<S> {
    inner: S,
    peer: EndpointId,
    budgets: Arc<ByteBudgets>,
    traffic: Arc<Traffic>,
    /// The handshake is charged but never cut: a peer over its budget must still hear why
    /// it is refused.
    enforcing: bool,
}

impl<S> Metered<S> {
    pub fn new(
        inner: S,
        peer: EndpointId,
        budgets: Arc<ByteBudgets>,
        traffic: Arc<Traffic>,
    ) -> Self {
        Self {
            inner,
            peer,
            budgets,
            traffic,
            enforcing: false,
        }
    }

    /// From now on, an exhausted budget fails reads and writes.
    pub fn enforce_budget(&mut self) {
        self.enforcing = true;
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn charge(&self, bytes: usize, counter: &AtomicU64) -> io::Result<()> {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        if self.budgets.charge(&self.peer, bytes as u64) || !self.enforcing {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "peer {} exceeded its limit of {} bytes per minute",
                self.peer.fmt_short(),
                self.budgets.per_minute.unwrap_or(0)
            )))
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len() - before;
            let traffic = self.traffic.clone();
            self.charge(read, &traffic.received)?;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            let traffic = self.traffic.clone();
            self.charge(written, &traffic.sent)?;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> EndpointId {
        iroh::SecretKey::generate().public()
    }

    #[test]
    fn a_peer_over_its_budget_is_refused_with_the_wait() {
        let budgets = ByteBudgets::new(Some(6_000));
        let p = peer();
        assert!(budgets.admit(&p).is_ok());
        assert!(budgets.charge(&p, 5_000));
        assert!(budgets.admit(&p).is_ok(), "a second's allowance is left");
        assert!(!budgets.charge(&p, 2_000), "1,000 bytes over");
        match budgets.admit(&p) {
            Err(Refusal::RateLimited {
                bytes_per_minute,
                retry_after_secs,
            }) => {
                assert_eq!(bytes_per_minute, 6_000);
                // 1,000 bytes to win back, plus a second's allowance, at 100 bytes/s.
                assert!((11..=12).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        // Other peers keep their own budget.
        assert!(budgets.admit(&peer()).is_ok());
    }

    #[test]
    fn a_gate_caps_places_in_total_and_per_peer() {
        let gate = Gate::new(3, 2);
        let (p, q) = (peer(), peer());
        let first = gate.try_enter(&p).expect("free");
        let _second = gate.try_enter(&p).expect("free");
        assert!(gate.try_enter(&p).is_none(), "p holds its share");
        let _third = gate.try_enter(&q).expect("q has its own share");
        assert!(gate.try_enter(&peer()).is_none(), "all three taken");
        assert_eq!(gate.in_use(), 3);
        drop(first);
        assert!(gate.try_enter(&p).is_some(), "given back on drop");
    }

    #[test]
    fn no_limit_admits_everything() {
        let budgets = ByteBudgets::new(None);
        let p = peer();
        assert!(budgets.charge(&p, u64::MAX));
        assert!(budgets.admit(&p).is_ok());
    }
}
