//! One sync session between two replicas, driven over a framed byte stream.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use automerge::{Automerge, ChangeHash};
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{FrameReader, FrameWriter};
use super::message::{Batch, Changed, Hello, Message, Need, PROTOCOL_VERSION};
use super::reconcile::{Differences, ItemSet, from_raw};
use super::{AbortCode, PeerRef, ReconcileMode, Replica, SyncError, SyncOptions, SyncReport};
use crate::model::RecordId;
use crate::store::PeerCursor;

/// Recent change hashes sent with a request, so the answer can start close to what we have.
const RECENT_HASHES: usize = 16;

/// What we know of the peer's state of a differing record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Theirs {
    /// It lacks the record.
    Absent,
    /// It has the record with these heads.
    Heads(Vec<ChangeHash>),
    /// It has at least these heads (our state at the last completed sync) and changed nothing.
    Since(Vec<ChangeHash>),
    /// Both sides changed it since the last sync: each asks the other.
    Concurrent,
    /// Only the peer changed it: the peer sends.
    PeerSends,
}

/// How long a failed session looks for the peer's abort message.
const ABORT_GRACE: Duration = Duration::from_millis(500);

struct Counters {
    records_sent: usize,
    records_received: usize,
    round_trips: u32,
    merged_seqs: BTreeSet<u64>,
    skipped: Vec<RecordId>,
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
    let mut peer = None;
    let outcome = run(replica, &mut rx, &mut tx, options, started, &mut peer).await;
    if let (Err(e), Some(peer)) = (&outcome, peer)
        && distrusts_cursors(e)
    {
        // Changes that did not apply may have been chosen from a cursor that claims more than
        // the receiver has: the next session compares whole sets instead of failing the same
        // way for ever.
        let _ = blocking(|| replica.forget_peer_cursor(&peer));
    }
    match outcome {
        Ok(report) => {
            // The peer may already have closed its side; our part is done either way.
            let _ = tx.finish().await;
            // The peer records the session (its cursor for us) after the last message and
            // only then closes its side. Waiting for that close means a session that returns
            // is recorded on both sides, so one started right after, either way, starts from
            // the cursors instead of comparing whole sets.
            let _ = tokio::time::timeout(ABORT_GRACE, rx.closed()).await;
            Ok(report)
        }
        Err(SyncError::Io(io)) => {
            // A peer that gives up stops reading, so our write may fail before we read the
            // reason it sent: look for it briefly, it is what the user needs to see.
            // Frames it sent before giving up (its own batch of the exchange, say) come first.
            let abort = async {
                loop {
                    match rx.recv::<Message>().await {
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
            tracing::warn!(error = %e, "sync session failed");
            Err(e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sync session failed");
            if !matches!(
                e,
                SyncError::Remote { .. } | SyncError::Io(_) | SyncError::Truncated
            ) {
                let abort = Message::Abort {
                    code: e.abort_code(),
                    message: e.to_string(),
                };
                let _ = tx.send(&abort).await;
                let _ = tx.finish().await;
            }
            Err(e)
        }
    }
}

/// Whether a failed session casts doubt on the cursors: a batch did not apply here or there.
fn distrusts_cursors(e: &SyncError) -> bool {
    match e {
        SyncError::Remote { code, .. } => *code == AbortCode::Apply,
        SyncError::Store(e) => matches!(
            **e,
            crate::Error::Doc { .. } | crate::Error::TypeMismatch { .. }
        ),
        _ => false,
    }
}

/// The id both sides give the session, from both sides' nonces.
fn session_id(ours: &[u8; 16], theirs: &[u8; 16]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let (low, high) = if ours <= theirs {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    let mut hasher = Sha256::new();
    hasher.update(b"crmsync session\0");
    hasher.update(low);
    hasher.update(high);
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

async fn recv<R: AsyncRead + Unpin>(
    rx: &mut FrameReader<R>,
    options: &SyncOptions,
) -> Result<Message, SyncError> {
    let message = tokio::time::timeout(options.idle_timeout, rx.recv())
        .await
        .map_err(|_| SyncError::Timeout(options.idle_timeout))??;
    if let Message::Abort { code, message } = message {
        return Err(SyncError::Remote { code, message });
    }
    Ok(message)
}

/// Sends one message while receiving one, so two peers writing at once never wait on each
/// other's full buffers.
async fn swap<R, W>(
    rx: &mut FrameReader<R>,
    tx: &mut FrameWriter<W>,
    message: &Message,
    options: &SyncOptions,
) -> Result<Message, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (_, received) = tokio::try_join!(tx.send(message), recv(rx, options))?;
    Ok(received)
}

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

fn unexpected(phase: &str, got: &Message) -> SyncError {
    let kind = match got {
        Message::Hello(_) => "hello",
        Message::Reconcile(_) => "reconcile",
        Message::Changed { .. } => "changed",
        Message::Batch(_) => "batch",
        Message::Done => "done",
        Message::Abort { .. } => "abort",
    };
    SyncError::Protocol(format!("expected {phase}, got {kind}"))
}

async fn run<P, R, W>(
    replica: &P,
    rx: &mut FrameReader<R>,
    tx: &mut FrameWriter<W>,
    options: &SyncOptions,
    started: Instant,
    peer_out: &mut Option<PeerRef>,
) -> Result<SyncReport, SyncError>
where
    P: Replica + ?Sized,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let me = replica.replica_id();
    let start_seq = replica.last_seq()?;
    let nonce = *uuid::Uuid::new_v4().as_bytes();
    let hello = Message::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        workspace: replica.workspace(),
        replica: me,
        nonce,
        accepts_changes: options.accept_changes,
    });
    let theirs = match swap(rx, tx, &hello, options).await? {
        Message::Hello(h) => h,
        other => return Err(unexpected("hello", &other)),
    };
    if theirs.protocol != PROTOCOL_VERSION {
        return Err(SyncError::Version {
            ours: PROTOCOL_VERSION,
            theirs: theirs.protocol,
        });
    }
    if theirs.workspace != replica.workspace() {
        return Err(SyncError::Workspace {
            ours: replica.workspace(),
            theirs: theirs.workspace,
        });
    }
    if theirs.replica == me {
        return Err(SyncError::SameReplica);
    }
    // A peer that takes no changes now is sent none; they go in a later session (with no
    // cursor kept, that session finds them).
    let held_back = options.send_changes && !theirs.accepts_changes;
    let mut options = options.clone();
    options.send_changes &= theirs.accepts_changes;
    let options = &options;
    // Cursors are kept under what the transport authenticated, when it did.
    let peer = PeerRef::of(options, theirs.replica);
    *peer_out = Some(peer);
    let session = session_id(&nonce, &theirs.nonce);
    let mut counters = Counters {
        records_sent: 0,
        records_received: 0,
        round_trips: 1,
        merged_seqs: BTreeSet::new(),
        skipped: Vec::new(),
    };

    // With a cursor, offer what changed since; without, say so and fall back to ranges.
    let cursor = blocking(|| replica.peer_cursor(&peer))?;
    let my_changes = match cursor {
        Some(cursor) => Some(blocking(|| replica.changed_since(cursor.seq))?),
        None => None,
    };
    counters.round_trips += 1;
    let offer = Message::Changed(Changed {
        session: cursor.map(|c| c.session),
        records: my_changes
            .as_ref()
            .map(|list| list.iter().map(|(id, _)| *id).collect()),
    });
    let their_offer = match swap(rx, tx, &offer, options).await? {
        Message::Changed(changed) => changed,
        other => return Err(unexpected("changed", &other)),
    };
    // A cursor says what the peer has; it is believed only when the peer recorded the same
    // session. A replica restored from a backup (or that lost its last writes in a crash)
    // holds an older session, so both sides compare whole sets instead of trusting claims
    // the restored side no longer meets.
    let same_session =
        their_offer.session.is_some() && their_offer.session == cursor.map(|c| c.session);
    let their_changes = their_offer.records.filter(|_| same_session);
    let my_changes = my_changes.filter(|_| same_session);
    // Both sides must agree on whether an exchange follows: with cursors, whenever either
    // listed something; with ranges, the differences found are the same on both sides.
    let (mode, diffs, exchange_follows) = match (my_changes, their_changes) {
        (Some(mine), Some(theirs)) => {
            let follows = !mine.is_empty() || !theirs.is_empty();
            (ReconcileMode::Cursor, cursor_diffs(mine, &theirs), follows)
        }
        _ => {
            let set = ItemSet::new(blocking(|| replica.all_heads())?);
            let initiator = me < theirs.replica;
            let found = reconcile(&set, initiator, rx, tx, options, &mut counters).await?;
            let diffs: BTreeMap<RecordId, Theirs> = found
                .into_iter()
                .map(|(id, heads)| (id, heads.map_or(Theirs::Absent, Theirs::Heads)))
                .collect();
            let follows = !diffs.is_empty();
            (ReconcileMode::Ranges, diffs, follows)
        }
    };

    if exchange_follows {
        exchange(replica, &diffs, rx, tx, options, &mut counters).await?;
        counters.round_trips += 1;
        match swap(rx, tx, &Message::Done, options).await? {
            Message::Done => {}
            other => return Err(unexpected("done", &other)),
        }
    }

    // Everything we had at the start, and what this session merged, has reached the peer.
    let mut cursor = start_seq;
    while counters.merged_seqs.contains(&(cursor + 1)) {
        cursor += 1;
    }
    // A side that sends nothing keeps no cursor: its local edits did not reach the peer, and
    // with no cursor the next session compares whole sets and finds them again.
    if options.send_changes {
        let cursor = PeerCursor {
            seq: cursor,
            session,
        };
        blocking(|| replica.set_peer_cursor(&peer, cursor))?;
    }
    Ok(SyncReport {
        peer: theirs.replica,
        mode,
        differing: diffs.len(),
        records_sent: counters.records_sent,
        records_received: counters.records_received,
        skipped: counters.skipped,
        changes_held_back: held_back,
        bytes_sent: tx.bytes,
        bytes_received: rx.bytes,
        round_trips: counters.round_trips,
        duration: started.elapsed(),
    })
}

/// With cursors: what we changed and they did not, they have as of our last sync; what both
/// changed needs asking; what only they changed, they send.
fn cursor_diffs(
    mine: Vec<(RecordId, Vec<ChangeHash>)>,
    theirs: &[RecordId],
) -> BTreeMap<RecordId, Theirs> {
    let theirs: HashSet<RecordId> = theirs.iter().copied().collect();
    let mut diffs: BTreeMap<RecordId, Theirs> =
        theirs.iter().map(|id| (*id, Theirs::PeerSends)).collect();
    for (id, heads_before) in mine {
        let state = if theirs.contains(&id) {
            Theirs::Concurrent
        } else {
            Theirs::Since(heads_before)
        };
        diffs.insert(id, state);
    }
    diffs
}

/// Range-based set reconciliation, driven by the `initiator` (the peer with the smaller id) as
/// request / response rounds until a round finds nothing left to compare.
async fn reconcile<R, W>(
    set: &ItemSet,
    initiator: bool,
    rx: &mut FrameReader<R>,
    tx: &mut FrameWriter<W>,
    options: &SyncOptions,
    counters: &mut Counters,
) -> Result<Differences, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut diffs = Differences::new();
    let mut rounds = 0u32;
    // A peer that keeps answering with ranges that never settle is cut off.
    let mut next_round = || {
        rounds += 1;
        if rounds > options.max_reconcile_rounds {
            return Err(SyncError::Protocol(format!(
                "set reconciliation did not settle within {} rounds",
                options.max_reconcile_rounds
            )));
        }
        Ok(())
    };
    // Each answer is bounded by what a frame may carry, and refused before it is sent.
    let answer = |ranges: &[super::message::Range], diffs: &mut Differences| {
        set.answer(ranges, diffs, options.max_frame)
            .map_err(SyncError::Protocol)
    };
    if initiator {
        let mut outgoing = set.opening();
        loop {
            let done = outgoing.is_empty();
            tx.send(&Message::Reconcile(outgoing)).await?;
            if done {
                return Ok(diffs);
            }
            next_round()?;
            counters.round_trips += 1;
            let reply = match recv(rx, options).await? {
                Message::Reconcile(ranges) => ranges,
                other => return Err(unexpected("reconcile", &other)),
            };
            outgoing = answer(&reply, &mut diffs)?;
        }
    }
    loop {
        let request = match recv(rx, options).await? {
            Message::Reconcile(ranges) => ranges,
            other => return Err(unexpected("reconcile", &other)),
        };
        if request.is_empty() {
            return Ok(diffs);
        }
        next_round()?;
        counters.round_trips += 1;
        let reply = answer(&request, &mut diffs)?;
        tx.send(&Message::Reconcile(reply)).await?;
    }
}

/// Up to [`RECENT_HASHES`] change hashes of a document, newest first (heads, then their
/// dependencies, breadth first).
fn recent_hashes(doc: &Automerge) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut queue: VecDeque<ChangeHash> = doc.get_heads().into();
    while let Some(hash) = queue.pop_front() {
        if out.len() >= RECENT_HASHES {
            break;
        }
        if !seen.insert(hash) {
            continue;
        }
        out.push(hash.0);
        if let Some(meta) = doc.get_change_meta_by_hash(&hash) {
            queue.extend(meta.deps.iter().copied());
        }
    }
    out
}

fn knows_all(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    heads
        .iter()
        .all(|h| doc.get_change_meta_by_hash(h).is_some())
}

/// What to send a peer for one record in the first exchange round.
enum Plan {
    /// Bytes to send.
    Send(Vec<u8>),
    /// Ask for changes.
    Ask(Need),
    /// Nothing (the peer will send, or ask).
    Nothing,
}

fn plan<P: Replica + ?Sized>(
    replica: &P,
    id: RecordId,
    theirs: &Theirs,
) -> Result<Plan, SyncError> {
    let send = |bytes: Vec<u8>| {
        if bytes.is_empty() {
            Plan::Nothing
        } else {
            Plan::Send(bytes)
        }
    };
    Ok(match theirs {
        Theirs::PeerSends => Plan::Nothing,
        Theirs::Absent => replica.doc_bytes(id)?.map_or(Plan::Nothing, send),
        Theirs::Since(heads) if heads.is_empty() => {
            replica.doc_bytes(id)?.map_or(Plan::Nothing, send)
        }
        Theirs::Since(heads) | Theirs::Heads(heads)
            if let Some(bytes) = replica.stored_changes_after(id, heads)? =>
        {
            send(bytes)
        }
        Theirs::Since(heads) => match replica.doc(id)? {
            Some(doc) => send(doc.save_after(heads)),
            None => Plan::Nothing,
        },
        Theirs::Concurrent => match replica.doc(id)? {
            Some(doc) => Plan::Ask(Need {
                id,
                recent: recent_hashes(&doc),
            }),
            None => Plan::Ask(Need {
                id,
                recent: Vec::new(),
            }),
        },
        Theirs::Heads(their_heads) => match replica.doc(id)? {
            // We lack it: the peer sees us absent and sends it whole.
            None => Plan::Nothing,
            Some(doc) if knows_all(&doc, their_heads) => send(doc.save_after(their_heads)),
            Some(doc) => Plan::Ask(Need {
                id,
                recent: recent_hashes(&doc),
            }),
        },
    })
}

/// The answer to a peer's request: the changes after the hashes of its we know.
fn answer<P: Replica + ?Sized>(replica: &P, need: &Need) -> Result<Option<Vec<u8>>, SyncError> {
    if need.recent.is_empty() {
        return Ok(replica.doc_bytes(need.id)?);
    }
    let Some(doc) = replica.doc(need.id)? else {
        return Ok(None);
    };
    let known: Vec<ChangeHash> = from_raw(&need.recent)
        .into_iter()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .collect();
    let bytes = doc.save_after(&known);
    Ok((!bytes.is_empty()).then_some(bytes))
}

/// One item of a round: changes for a record, or a request for a record's changes.
enum Outgoing {
    Send(RecordId, Vec<u8>),
    Ask(Need),
}

/// Records planned per trip to the store: small enough that the first batch leaves, and the
/// peer starts applying it, while later records are still being read here.
const PLAN_CHUNK: usize = 64;

/// The first round's items, planned lazily a slice of records at a time.
fn first_round<'a, P: Replica + ?Sized>(
    replica: &'a P,
    diffs: &'a BTreeMap<RecordId, Theirs>,
    options: &'a SyncOptions,
) -> impl Iterator<Item = Result<Outgoing, SyncError>> + 'a {
    let mut pending = diffs.iter();
    let mut ready = VecDeque::new();
    std::iter::from_fn(move || {
        loop {
            if let Some(item) = ready.pop_front() {
                return Some(item);
            }
            let chunk: Vec<_> = pending.by_ref().take(PLAN_CHUNK).collect();
            if chunk.is_empty() {
                return None;
            }
            blocking(|| {
                for (id, theirs) in chunk {
                    let item = match plan(replica, *id, theirs) {
                        Err(e) => Err(e),
                        Ok(Plan::Send(_)) if !options.send_changes => continue,
                        // A read-only peer is never asked: whatever it has that we lack is its
                        // own edit.
                        Ok(Plan::Ask(_)) if !options.accept_changes => continue,
                        Ok(Plan::Send(bytes)) => Ok(Outgoing::Send(*id, bytes)),
                        Ok(Plan::Ask(need)) => Ok(Outgoing::Ask(need)),
                        Ok(Plan::Nothing) => continue,
                    };
                    let failed = item.is_err();
                    ready.push_back(item);
                    if failed {
                        break;
                    }
                }
            });
        }
    })
}

/// What one side sent in a round.
struct Sent {
    /// Records whose changes went out.
    records: Vec<RecordId>,
    /// Requests made (they travel in the last batch).
    asked: usize,
}

/// Sends a round in batches as the items are produced; requests go in the last batch.
async fn send_batches<W, I>(
    tx: &mut FrameWriter<W>,
    outgoing: I,
    options: &SyncOptions,
) -> Result<Sent, SyncError>
where
    W: AsyncWrite + Unpin,
    I: Iterator<Item = Result<Outgoing, SyncError>>,
{
    let mut records = Vec::new();
    let mut needs = Vec::new();
    let mut batch = Batch::default();
    let mut size = 0;
    for item in outgoing {
        let (id, bytes) = match item? {
            Outgoing::Send(id, bytes) => (id, bytes),
            Outgoing::Ask(need) => {
                needs.push(need);
                continue;
            }
        };
        size += bytes.len() + 24;
        batch.changes.push((id, bytes));
        records.push(id);
        if size >= options.batch_bytes || batch.changes.len() >= options.batch_records {
            tx.send(&Message::Batch(std::mem::take(&mut batch))).await?;
            size = 0;
        }
    }
    let asked = needs.len();
    batch.needs = needs;
    batch.last = true;
    tx.send(&Message::Batch(batch)).await?;
    Ok(Sent { records, asked })
}

/// Receives batches until the peer's last one, applying each in one transaction.
async fn receive_batches<P, R>(
    replica: &P,
    rx: &mut FrameReader<R>,
    options: &SyncOptions,
) -> Result<(Vec<Need>, super::Applied), SyncError>
where
    P: Replica + ?Sized,
    R: AsyncRead + Unpin,
{
    let mut needs = Vec::new();
    let mut applied = super::Applied::default();
    loop {
        let batch = match recv(rx, options).await? {
            Message::Batch(batch) => batch,
            other => return Err(unexpected("batch", &other)),
        };
        if !batch.changes.is_empty() {
            if !options.accept_changes {
                return Err(SyncError::ReadOnlyPeer);
            }
            let done = blocking(|| replica.apply(&batch.changes))?;
            applied.seqs.extend(done.seqs);
            applied.skipped.extend(done.skipped);
        }
        needs.extend(batch.needs);
        if batch.last {
            return Ok((needs, applied));
        }
    }
}

/// The exchange: a first round of changes and requests both ways at once, then, if anyone
/// asked, a second round of answers.
async fn exchange<P, R, W>(
    replica: &P,
    diffs: &BTreeMap<RecordId, Theirs>,
    rx: &mut FrameReader<R>,
    tx: &mut FrameWriter<W>,
    options: &SyncOptions,
    counters: &mut Counters,
) -> Result<(), SyncError>
where
    P: Replica + ?Sized,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    counters.round_trips += 1;
    let (first, (their_needs, applied)) = tokio::try_join!(
        send_batches(tx, first_round(replica, diffs, options), options),
        receive_batches(replica, rx, options)
    )?;
    let seqs = applied.seqs;
    counters.skipped.extend(applied.skipped);
    let asked = first.asked > 0;
    let sent = first.records.len();
    let sent_first: HashSet<RecordId> = first.records.into_iter().collect();
    counters.records_sent += sent;
    counters.records_received += seqs.len();
    counters.merged_seqs.extend(seqs);
    if !asked && their_needs.is_empty() {
        return Ok(());
    }
    counters.round_trips += 1;
    let answers = their_needs
        .iter()
        .filter(|_| options.send_changes)
        .filter(|need| !sent_first.contains(&need.id))
        .filter_map(|need| match blocking(|| answer(replica, need)) {
            Ok(Some(bytes)) => Some(Ok(Outgoing::Send(need.id, bytes))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        });
    let (answered, (extra_needs, applied)) = tokio::try_join!(
        send_batches(tx, answers, options),
        receive_batches(replica, rx, options)
    )?;
    let seqs = applied.seqs;
    counters.skipped.extend(applied.skipped);
    if !extra_needs.is_empty() {
        return Err(SyncError::Protocol(
            "requests in the answering round".to_string(),
        ));
    }
    counters.records_sent += answered.records.len();
    counters.records_received += seqs.len();
    counters.merged_seqs.extend(seqs);
    Ok(())
}
