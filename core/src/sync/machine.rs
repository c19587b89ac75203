//! The sync protocol as a state machine: no I/O, no clock, no async. It is given the messages
//! the peer sent, one at a time ([`SyncMachine::handle`]), and asked for the messages to send
//! ([`SyncMachine::poll_transmit`]); it reads and writes the replica directly. A driver moves
//! the messages (see [`super::sync`] for the one over byte streams); a test can move them by
//! hand, in any interleaving, and see exactly what each side does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::exchange::{Round, Theirs, cursor_diffs};
use super::message::{Changed, Hello, Message, PROTOCOL_VERSION, Range};
use super::reconcile::{Differences, ItemSet};
use super::{AbortCode, PeerRef, ReconcileMode, Replica, SyncError, SyncOptions, SyncReport};
use crate::model::{DeviceId, RecordId};
use crate::store::PeerCursor;

/// Where a session is.
enum Phase {
    /// Our hello is out; waiting for the peer's.
    Hello,
    /// Our offer is out; waiting for the peer's.
    Changed {
        cursor: Option<PeerCursor>,
        mine: Option<Vec<(RecordId, Vec<automerge::ChangeHash>)>>,
    },
    /// Set reconciliation: waiting for the peer's next ranges.
    Reconcile {
        set: ItemSet,
        diffs: Differences,
        initiator: bool,
    },
    /// Batches both ways.
    Exchange(Round),
    /// Our `Done` is out; waiting for the peer's.
    Done,
    /// The session completed; the report is ready.
    Finished(SyncReport),
    /// The session failed; nothing more happens.
    Failed,
}

/// What the peer said in its hello, and what follows from it.
struct Peer {
    hello: Hello,
    cursor_ref: PeerRef,
    session: [u8; 16],
}

/// One side of one session.
pub struct SyncMachine<'r, P: Replica + ?Sized> {
    replica: &'r P,
    options: SyncOptions,
    nonce: [u8; 16],
    start_seq: u64,
    phase: Phase,
    outbox: VecDeque<Message>,
    peer: Option<Peer>,
    held_back: bool,
    mode: ReconcileMode,
    differing: usize,
    rounds: u32,
    round_trips: u32,
    records_sent: usize,
    records_received: usize,
    merged_seqs: BTreeSet<u64>,
    skipped: Vec<RecordId>,
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

impl<'r, P: Replica + ?Sized> SyncMachine<'r, P> {
    /// Starts a session of `replica`; `nonce` is this side's random value for the session
    /// (fresh for every session: with the peer's, it names the session both record with
    /// their cursors). The hello is the first message to send.
    pub fn new(replica: &'r P, options: SyncOptions, nonce: [u8; 16]) -> Result<Self, SyncError> {
        let start_seq = replica.last_seq()?;
        let hello = Message::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            workspace: replica.workspace(),
            replica: replica.replica_id(),
            nonce,
            accepts_changes: options.accept_changes,
        });
        Ok(Self {
            replica,
            options,
            nonce,
            start_seq,
            phase: Phase::Hello,
            outbox: VecDeque::from([hello]),
            peer: None,
            held_back: false,
            mode: ReconcileMode::Ranges,
            differing: 0,
            rounds: 0,
            round_trips: 1,
            records_sent: 0,
            records_received: 0,
            merged_seqs: BTreeSet::new(),
            skipped: Vec::new(),
        })
    }

    /// The next message to send, if any is ready. In the exchange, batches are produced
    /// here as they are asked for, reading the replica a slice of records at a time.
    pub fn poll_transmit(&mut self) -> Result<Option<Message>, SyncError> {
        if let Some(message) = self.outbox.pop_front() {
            return Ok(Some(message));
        }
        let Phase::Exchange(round) = &mut self.phase else {
            return Ok(None);
        };
        let batch = round.next_batch(self.replica, &self.options);
        let batch = self.guard(batch)?;
        let Some(batch) = batch else {
            return Ok(None);
        };
        let message = Message::Batch(batch);
        let advanced = self.after_round_step();
        self.guard(advanced)?;
        Ok(Some(message))
    }

    /// Whether messages wait to be sent (besides any the driver is writing). A driver stops
    /// reading meanwhile: a peer that sends requests without reading the answers then stalls
    /// itself instead of making them pile up here.
    pub fn has_queued(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Whether [`Self::poll_transmit`] would read the replica to produce the next message
    /// (a driver on an async runtime then runs it where blocking is allowed).
    pub fn transmit_reads_store(&self) -> bool {
        self.outbox.is_empty() && matches!(&self.phase, Phase::Exchange(round) if !round.sent_last)
    }

    /// Takes one message from the peer.
    pub fn handle(&mut self, message: Message) -> Result<(), SyncError> {
        let result = self.step(message);
        self.guard(result)
    }

    /// Whether the session completed.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// Whether the session failed.
    pub fn is_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// What the session did, once it completed. The machine has no clock and sees no bytes:
    /// the driver fills in [`SyncReport::bytes_sent`], [`SyncReport::bytes_received`] and
    /// [`SyncReport::duration`].
    pub fn report(&self) -> Option<&SyncReport> {
        match &self.phase {
            Phase::Finished(report) => Some(report),
            _ => None,
        }
    }

    /// Ends the session with `error` (raised here, by the transport, or by the peer's abort):
    /// forgets the peer's cursor if the error casts doubt on it, and returns the abort message
    /// to send the peer, if one is owed.
    pub fn fail(&mut self, error: &SyncError) -> Option<Message> {
        self.phase = Phase::Failed;
        self.outbox.clear();
        if let Some(peer) = &self.peer
            && distrusts_cursors(error)
        {
            // Changes that did not apply may have been chosen from a cursor that claims more
            // than the receiver has: the next session compares whole sets instead of failing
            // the same way for ever.
            let _ = self.replica.forget_peer_cursor(&peer.cursor_ref);
        }
        match error {
            SyncError::Remote { .. } | SyncError::Io(_) | SyncError::Truncated => None,
            e => Some(Message::Abort {
                code: e.abort_code(),
                message: e.to_string(),
            }),
        }
    }

    /// A failure anywhere leaves the machine failed (the driver then calls [`Self::fail`]).
    fn guard<T>(&mut self, result: Result<T, SyncError>) -> Result<T, SyncError> {
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn step(&mut self, message: Message) -> Result<(), SyncError> {
        if let Message::Abort { code, message } = message {
            return Err(SyncError::Remote { code, message });
        }
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Hello => match message {
                Message::Hello(hello) => self.on_hello(hello),
                other => Err(unexpected("hello", &other)),
            },
            Phase::Changed { cursor, mine } => match message {
                Message::Changed(theirs) => self.on_changed(cursor, mine, theirs),
                other => Err(unexpected("changed", &other)),
            },
            Phase::Reconcile {
                set,
                diffs,
                initiator,
            } => match message {
                Message::Reconcile(ranges) => self.on_ranges(set, diffs, initiator, ranges),
                other => Err(unexpected("reconcile", &other)),
            },
            Phase::Exchange(round) => match message {
                Message::Batch(batch) => self.on_batch(round, batch),
                other => Err(unexpected("batch", &other)),
            },
            Phase::Done => match message {
                Message::Done => self.finish(),
                other => Err(unexpected("done", &other)),
            },
            Phase::Finished(_) | Phase::Failed => Err(SyncError::Protocol(
                "a message after the session ended".to_string(),
            )),
        }
    }

    fn on_hello(&mut self, theirs: Hello) -> Result<(), SyncError> {
        let me: DeviceId = self.replica.replica_id();
        if theirs.protocol != PROTOCOL_VERSION {
            return Err(SyncError::Version {
                ours: PROTOCOL_VERSION,
                theirs: theirs.protocol,
            });
        }
        if theirs.workspace != self.replica.workspace() {
            return Err(SyncError::Workspace {
                ours: self.replica.workspace(),
                theirs: theirs.workspace,
            });
        }
        if theirs.replica == me {
            return Err(SyncError::SameReplica);
        }
        // A peer that takes no changes now is sent none; they go in a later session (with no
        // cursor kept, that session finds them).
        self.held_back = self.options.send_changes && !theirs.accepts_changes;
        self.options.send_changes &= theirs.accepts_changes;
        // Cursors are kept under what the transport authenticated, when it did.
        let cursor_ref = PeerRef::of(&self.options, theirs.replica);
        let session = session_id(&self.nonce, &theirs.nonce);
        self.peer = Some(Peer {
            hello: theirs,
            cursor_ref,
            session,
        });
        // With a cursor, offer what changed since; without, say so and fall back to ranges.
        let cursor = self.replica.peer_cursor(&cursor_ref)?;
        let mine = match cursor {
            Some(cursor) => Some(self.replica.changed_since(cursor.seq)?),
            None => None,
        };
        self.round_trips += 1;
        self.outbox.push_back(Message::Changed(Changed {
            session: cursor.map(|c| c.session),
            records: mine
                .as_ref()
                .map(|list| list.iter().map(|(id, _)| *id).collect()),
        }));
        self.phase = Phase::Changed { cursor, mine };
        Ok(())
    }

    fn on_changed(
        &mut self,
        cursor: Option<PeerCursor>,
        mine: Option<Vec<(RecordId, Vec<automerge::ChangeHash>)>>,
        theirs: Changed,
    ) -> Result<(), SyncError> {
        // A cursor says what the peer has; it is believed only when the peer recorded the
        // same session. A replica restored from a backup (or that lost its last writes in a
        // crash) holds an older session, so both sides compare whole sets instead of trusting
        // claims the restored side no longer meets.
        let same_session = theirs.session.is_some() && theirs.session == cursor.map(|c| c.session);
        let their_changes = theirs.records.filter(|_| same_session);
        let my_changes = mine.filter(|_| same_session);
        // Both sides must agree on whether an exchange follows: with cursors, whenever either
        // listed something; with ranges, the differences found are the same on both sides.
        if let (Some(mine), Some(theirs)) = (my_changes, their_changes) {
            self.mode = ReconcileMode::Cursor;
            let follows = !mine.is_empty() || !theirs.is_empty();
            let diffs = cursor_diffs(mine, &theirs);
            return if follows {
                self.start_exchange(diffs)
            } else {
                self.finish()
            };
        }
        self.mode = ReconcileMode::Ranges;
        let set = ItemSet::new(self.replica.all_heads()?);
        let me = self.replica.replica_id();
        let initiator = self.peer.as_ref().is_some_and(|p| me < p.hello.replica);
        if initiator {
            let opening = set.opening();
            return self.send_ranges(set, Differences::new(), opening);
        }
        self.phase = Phase::Reconcile {
            set,
            diffs: Differences::new(),
            initiator,
        };
        Ok(())
    }

    /// A peer that keeps answering with ranges that never settle is cut off.
    fn next_round(&mut self) -> Result<(), SyncError> {
        self.rounds += 1;
        if self.rounds > self.options.max_reconcile_rounds {
            return Err(SyncError::Protocol(format!(
                "set reconciliation did not settle within {} rounds",
                self.options.max_reconcile_rounds
            )));
        }
        self.round_trips += 1;
        Ok(())
    }

    /// The initiator sends ranges until it has nothing left to compare (an empty message).
    fn send_ranges(
        &mut self,
        set: ItemSet,
        diffs: Differences,
        ranges: Vec<Range>,
    ) -> Result<(), SyncError> {
        let done = ranges.is_empty();
        self.outbox.push_back(Message::Reconcile(ranges));
        if done {
            return self.found(diffs);
        }
        self.next_round()?;
        self.phase = Phase::Reconcile {
            set,
            diffs,
            initiator: true,
        };
        Ok(())
    }

    fn on_ranges(
        &mut self,
        set: ItemSet,
        mut diffs: Differences,
        initiator: bool,
        ranges: Vec<Range>,
    ) -> Result<(), SyncError> {
        // Each answer is bounded by what a frame may carry, and refused before it is sent.
        let max_frame = self.options.max_frame;
        if initiator {
            let reply = set
                .answer(&ranges, &mut diffs, max_frame)
                .map_err(SyncError::Protocol)?;
            return self.send_ranges(set, diffs, reply);
        }
        if ranges.is_empty() {
            return self.found(diffs);
        }
        self.next_round()?;
        let reply = set
            .answer(&ranges, &mut diffs, max_frame)
            .map_err(SyncError::Protocol)?;
        self.outbox.push_back(Message::Reconcile(reply));
        self.phase = Phase::Reconcile {
            set,
            diffs,
            initiator,
        };
        Ok(())
    }

    /// Set reconciliation found these differences (the same on both sides).
    fn found(&mut self, found: Differences) -> Result<(), SyncError> {
        let diffs: BTreeMap<RecordId, Theirs> = found
            .into_iter()
            .map(|(id, heads)| (id, heads.map_or(Theirs::Absent, Theirs::Heads)))
            .collect();
        if diffs.is_empty() {
            return self.finish();
        }
        self.start_exchange(diffs)
    }

    fn start_exchange(&mut self, diffs: BTreeMap<RecordId, Theirs>) -> Result<(), SyncError> {
        self.differing = diffs.len();
        self.round_trips += 1;
        self.phase = Phase::Exchange(Round::first(diffs));
        Ok(())
    }

    fn on_batch(
        &mut self,
        mut round: Round,
        batch: super::message::Batch,
    ) -> Result<(), SyncError> {
        if round.received_last {
            return Err(unexpected("done", &Message::Batch(batch)));
        }
        if !batch.changes.is_empty() {
            if !self.options.accept_changes {
                return Err(SyncError::ReadOnlyPeer);
            }
            let applied = self.replica.apply(&batch.changes)?;
            self.records_received += applied.seqs.len();
            self.merged_seqs.extend(applied.seqs);
            self.skipped.extend(applied.skipped);
        }
        if round.second && !batch.needs.is_empty() {
            return Err(SyncError::Protocol(
                "requests in the answering round".to_string(),
            ));
        }
        round.their_needs.extend(batch.needs);
        round.received_last = batch.last;
        self.phase = Phase::Exchange(round);
        self.after_round_step()
    }

    /// Once both sides sent their last batch of a round: a second round if anyone asked,
    /// else `Done`.
    fn after_round_step(&mut self) -> Result<(), SyncError> {
        let Phase::Exchange(round) = &mut self.phase else {
            return Ok(());
        };
        if !(round.sent_last && round.received_last) {
            return Ok(());
        }
        self.records_sent += round.sent.len();
        if !round.second && (round.asked() || !round.their_needs.is_empty()) {
            let needs = if self.options.send_changes {
                std::mem::take(&mut round.their_needs)
            } else {
                Vec::new()
            };
            let second = Round::second(needs, &round.sent);
            self.round_trips += 1;
            self.phase = Phase::Exchange(second);
            return Ok(());
        }
        self.round_trips += 1;
        self.outbox.push_back(Message::Done);
        self.phase = Phase::Done;
        Ok(())
    }

    /// Everything we had at the start, and what this session merged, has reached the peer.
    fn finish(&mut self) -> Result<(), SyncError> {
        let Some(peer) = &self.peer else {
            return Err(SyncError::Protocol("finished before the hello".to_string()));
        };
        let mut seq = self.start_seq;
        while self.merged_seqs.contains(&(seq + 1)) {
            seq += 1;
        }
        // A side that sends nothing keeps no cursor: its local edits did not reach the peer,
        // and with no cursor the next session compares whole sets and finds them again.
        if self.options.send_changes {
            let cursor = PeerCursor {
                seq,
                session: peer.session,
            };
            self.replica.set_peer_cursor(&peer.cursor_ref, cursor)?;
        }
        self.phase = Phase::Finished(SyncReport {
            peer: peer.hello.replica,
            mode: self.mode,
            differing: self.differing,
            records_sent: self.records_sent,
            records_received: self.records_received,
            skipped: std::mem::take(&mut self.skipped),
            changes_held_back: self.held_back,
            bytes_sent: 0,
            bytes_received: 0,
            round_trips: self.round_trips,
            duration: Duration::ZERO,
        });
        Ok(())
    }
}
