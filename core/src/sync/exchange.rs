//! The exchange phase of a session, without I/O: what to send for each differing record,
//! how items are cut into batches, and what a round has sent and received.

use std::collections::{BTreeMap, HashSet, VecDeque};

use automerge::{Automerge, ChangeHash};

use super::message::{Batch, Need};
use super::reconcile::from_raw;
use super::{Replica, SyncError, SyncOptions};
use crate::model::RecordId;

/// Recent change hashes sent with a request, so the answer can start close to what we have.
const RECENT_HASHES: usize = 16;

/// Records planned per call into the store: small enough that the first batch leaves, and
/// the peer starts applying it, while later records are still to be read here.
const PLAN_CHUNK: usize = 64;

/// What we know of the peer's state of a differing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Theirs {
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

/// With cursors: what we changed and they did not, they have as of our last sync; what both
/// changed needs asking; what only they changed, they send.
pub(super) fn cursor_diffs(
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

/// One item of a round: changes for a record, or a request for a record's changes.
pub(super) enum Outgoing {
    Send(RecordId, Vec<u8>),
    Ask(Need),
}

/// What to send a peer for one record in the first round (`None`: nothing, the peer sends
/// or asks).
fn plan<P: Replica + ?Sized>(
    replica: &P,
    id: RecordId,
    theirs: &Theirs,
) -> Result<Option<Outgoing>, SyncError> {
    let send = |bytes: Vec<u8>| (!bytes.is_empty()).then_some(Outgoing::Send(id, bytes));
    let ask = |doc: Option<&Automerge>| {
        Some(Outgoing::Ask(Need {
            id,
            recent: doc.map(recent_hashes).unwrap_or_default(),
        }))
    };
    Ok(match theirs {
        Theirs::PeerSends => None,
        Theirs::Absent => replica.doc_bytes(id)?.and_then(send),
        Theirs::Since(heads) if heads.is_empty() => replica.doc_bytes(id)?.and_then(send),
        Theirs::Since(heads) | Theirs::Heads(heads)
            if let Some(bytes) = replica.stored_changes_after(id, heads)? =>
        {
            send(bytes)
        }
        Theirs::Since(heads) => replica.doc(id)?.and_then(|doc| send(doc.save_after(heads))),
        Theirs::Concurrent => ask(replica.doc(id)?.as_deref()),
        Theirs::Heads(their_heads) => match replica.doc(id)? {
            // We lack it: the peer sees us absent and sends it whole.
            None => None,
            Some(doc) if knows_all(&doc, their_heads) => send(doc.save_after(their_heads)),
            Some(doc) => ask(Some(&doc)),
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

/// Where a round's items come from: the first round plans the differing records, the second
/// answers the peer's requests.
enum Source {
    Plan(std::vec::IntoIter<(RecordId, Theirs)>),
    Answer {
        needs: std::vec::IntoIter<Need>,
        /// Records whose changes went out in the first round: asked again, they are not resent.
        sent_first: HashSet<RecordId>,
    },
}

/// One round of the exchange: batches out, produced a slice of records at a time, and
/// batches in, until both sides sent their last.
pub(super) struct Round {
    pub second: bool,
    source: Source,
    ready: VecDeque<Outgoing>,
    batch: Batch,
    size: usize,
    /// Requests made (they travel in the last batch).
    needs: Vec<Need>,
    asked: bool,
    /// Records whose changes went out.
    pub sent: Vec<RecordId>,
    pub sent_last: bool,
    pub received_last: bool,
    /// The peer's requests received in this round.
    pub their_needs: Vec<Need>,
}

impl Round {
    fn with(source: Source, second: bool) -> Self {
        Self {
            second,
            source,
            ready: VecDeque::new(),
            batch: Batch::default(),
            size: 0,
            needs: Vec::new(),
            asked: false,
            sent: Vec::new(),
            sent_last: false,
            received_last: false,
            their_needs: Vec::new(),
        }
    }

    /// The first round over the differing records.
    pub fn first(diffs: BTreeMap<RecordId, Theirs>) -> Self {
        Self::with(
            Source::Plan(diffs.into_iter().collect::<Vec<_>>().into_iter()),
            false,
        )
    }

    /// The second round, answering `needs` (none if this side sends nothing).
    pub fn second(needs: Vec<Need>, sent_first: &[RecordId]) -> Self {
        let source = Source::Answer {
            needs: needs.into_iter(),
            sent_first: sent_first.iter().copied().collect(),
        };
        Self::with(source, true)
    }

    /// Whether this side asked for anything in the round.
    pub fn asked(&self) -> bool {
        self.asked
    }

    /// Fills `ready` with the items of the next slice of records; false when none are left.
    fn refill<P: Replica + ?Sized>(
        &mut self,
        replica: &P,
        options: &SyncOptions,
    ) -> Result<bool, SyncError> {
        match &mut self.source {
            Source::Plan(pending) => {
                let mut any = false;
                for (id, theirs) in pending.by_ref().take(PLAN_CHUNK) {
                    any = true;
                    match plan(replica, id, &theirs)? {
                        Some(Outgoing::Send(..)) if !options.send_changes => {}
                        // A read-only peer is never asked: whatever it has that we lack is
                        // its own edit.
                        Some(Outgoing::Ask(_)) if !options.accept_changes => {}
                        Some(item) => self.ready.push_back(item),
                        None => {}
                    }
                }
                Ok(any)
            }
            Source::Answer { needs, sent_first } => {
                for need in needs.by_ref() {
                    if !options.send_changes || sent_first.contains(&need.id) {
                        continue;
                    }
                    if let Some(bytes) = answer(replica, &need)? {
                        self.ready.push_back(Outgoing::Send(need.id, bytes));
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// The next batch to send: full, or the last one of the round (with the requests).
    /// `None` once the last one went.
    pub fn next_batch<P: Replica + ?Sized>(
        &mut self,
        replica: &P,
        options: &SyncOptions,
    ) -> Result<Option<Batch>, SyncError> {
        if self.sent_last {
            return Ok(None);
        }
        loop {
            let Some(item) = self.ready.pop_front() else {
                if self.refill(replica, options)? {
                    continue;
                }
                let mut batch = std::mem::take(&mut self.batch);
                self.asked = !self.needs.is_empty();
                batch.needs = std::mem::take(&mut self.needs);
                batch.last = true;
                self.sent_last = true;
                return Ok(Some(batch));
            };
            let (id, bytes) = match item {
                Outgoing::Send(id, bytes) => (id, bytes),
                Outgoing::Ask(need) => {
                    self.needs.push(need);
                    continue;
                }
            };
            self.size += bytes.len() + 24;
            self.batch.changes.push((id, bytes));
            self.sent.push(id);
            if self.size >= options.batch_bytes || self.batch.changes.len() >= options.batch_records
            {
                self.size = 0;
                return Ok(Some(std::mem::take(&mut self.batch)));
            }
        }
    }
}
