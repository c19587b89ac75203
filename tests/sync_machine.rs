//! The sync state machine driven by hand, with no runtime and no stream: a simulated transport
//! delivers each side's bytes in pieces of random size, at random moments, and can cut the
//! connection anywhere. Every run is reproducible from its seed.

use std::collections::VecDeque;

use crmsync::DeviceId;
use crmsync::sync::Replica;
use crmsync::sync::message::{Batch, Changed, Hello, Item, Range};
use crmsync::sync::{
    AbortCode, FrameDecoder, Message, PeerRef, ReconcileMode, SyncError, SyncMachine, SyncOptions,
    SyncReport, encode_frame,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::mem_replica::MemReplica;
use crate::sync_fixture::{id, options, replicas, scenario, workspace};

/// One side: its machine, the bytes it sent that the other has not received yet, and the
/// decoder of what it receives.
struct Side<'a> {
    machine: SyncMachine<'a, MemReplica>,
    outgoing: VecDeque<u8>,
    incoming: FrameDecoder,
    error: Option<SyncError>,
}

impl<'a> Side<'a> {
    fn new(replica: &'a MemReplica, options: SyncOptions, nonce: u8) -> Self {
        let max = options.max_frame;
        Side {
            machine: SyncMachine::new(replica, options, [nonce; 16]).unwrap(),
            outgoing: VecDeque::new(),
            incoming: FrameDecoder::new(max),
            error: None,
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.machine.is_finished()
    }

    /// Moves the machine's next message onto the wire; false if it had none.
    fn transmit(&mut self) -> bool {
        if self.done() && !self.machine.is_finished() {
            return false;
        }
        match self.machine.poll_transmit() {
            Ok(Some(message)) => {
                self.outgoing.extend(encode_frame(&message).unwrap());
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.error = Some(e);
                true
            }
        }
    }

    /// Takes bytes from the wire and hands every whole message to the machine.
    fn receive(&mut self, bytes: &[u8]) {
        self.incoming.push(bytes);
        while self.error.is_none() {
            match self.incoming.next_message() {
                Ok(Some(message)) => {
                    if let Err(e) = self.machine.handle(message) {
                        self.error = Some(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// What a simulated session ended with.
struct Ended {
    a: Result<SyncReport, String>,
    b: Result<SyncReport, String>,
    /// Bytes that crossed the wire, both ways.
    bytes: usize,
}

fn outcome(side: &mut Side<'_>) -> Result<SyncReport, String> {
    if let Some(report) = side.machine.report() {
        return Ok(report.clone());
    }
    let error = side.error.take().unwrap_or(SyncError::Truncated);
    side.machine.fail(&error);
    Err(error.to_string())
}

/// Runs a session between `a` and `b`, choosing at random which side acts next and how many
/// bytes of a wire arrive, until both are done or `cut` bytes have crossed (then the
/// connection is gone).
fn simulate(a: &MemReplica, b: &MemReplica, seed: u64, cut: Option<usize>) -> Ended {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Side::new(a, options(), 1 + (seed % 200) as u8);
    let mut y = Side::new(b, options(), 2 + (seed % 200) as u8);
    let mut crossed = 0usize;
    let budget = cut.unwrap_or(usize::MAX);
    let mut idle = 0;
    while !(x.done() && y.done() && x.outgoing.is_empty() && y.outgoing.is_empty()) {
        assert!(idle < 1000, "seed {seed}: neither side can move");
        let moved = match rng.random_range(0..4) {
            0 => x.transmit(),
            1 => y.transmit(),
            k => {
                let (from, to) = if k == 2 {
                    (&mut x, &mut y)
                } else {
                    (&mut y, &mut x)
                };
                let room = budget - crossed;
                if from.outgoing.is_empty() || room == 0 {
                    false
                } else {
                    let n = rng
                        .random_range(1..=from.outgoing.len().min(3000))
                        .min(room);
                    let piece: Vec<u8> = from.outgoing.drain(..n).collect();
                    crossed += n;
                    to.receive(&piece);
                    true
                }
            }
        };
        idle = if moved { 0 } else { idle + 1 };
        if crossed == budget && idle > 50 {
            break;
        }
    }
    Ended {
        a: outcome(&mut x),
        b: outcome(&mut y),
        bytes: crossed,
    }
}

#[test]
fn any_interleaving_and_any_split_of_the_stream_converges() {
    for seed in 0..40 {
        let (a, b) = replicas();
        scenario(0, &a, &b);
        let ended = simulate(&a, &b, seed, None);
        let (ra, rb) = (ended.a.unwrap(), ended.b.unwrap());
        assert_eq!(a.contents(), b.contents(), "seed {seed}");
        assert_eq!(
            (ra.mode, rb.mode),
            (ReconcileMode::Ranges, ReconcileMode::Ranges)
        );
        assert_eq!(
            ra.differing, rb.differing,
            "both found the same differences"
        );
        assert_eq!(ra.peer, b.replica_id());
        // Both recorded the session: the next one goes from the cursors.
        scenario(1, &a, &b);
        let ended = simulate(&a, &b, seed + 1000, None);
        let (ra, rb) = (ended.a.unwrap(), ended.b.unwrap());
        assert_eq!(
            (ra.mode, rb.mode),
            (ReconcileMode::Cursor, ReconcileMode::Cursor)
        );
        assert_eq!(a.contents(), b.contents(), "seed {seed}, second session");
        assert_eq!(a.field(id(120), "owner").as_deref(), Some("jane"));
        assert_eq!(b.field(id(120), "stage").as_deref(), Some("won"));
    }
}

#[test]
fn a_connection_cut_anywhere_keeps_what_was_applied_and_the_next_session_completes() {
    let full = {
        let (a, b) = replicas();
        scenario(0, &a, &b);
        simulate(&a, &b, 7, None).bytes
    };
    for step in 1..20 {
        let cut = full * step / 20;
        let (a, b) = replicas();
        scenario(0, &a, &b);
        let ended = simulate(&a, &b, 7, Some(cut));
        assert!(
            ended.a.is_err() || ended.b.is_err(),
            "cut at {cut} of {full} bytes, yet both completed"
        );
        // A side whose session did not complete keeps no cursor: it claims nothing the
        // peer may not have.
        for (side, other, result) in [(&a, &b, &ended.a), (&b, &a, &ended.b)] {
            let cursor = side.cursor(&PeerRef::Announced(other.replica_id()));
            assert_eq!(cursor.is_some(), result.is_ok(), "cut at {cut}");
        }
        let resumed = simulate(&a, &b, 8, None);
        resumed.a.unwrap();
        resumed.b.unwrap();
        assert_eq!(a.contents(), b.contents(), "cut at {cut}");
        assert!(
            resumed.bytes <= full + 4096,
            "the resumed session sent {} bytes, a whole session {full}",
            resumed.bytes
        );
    }
}

fn hello_from(replica: DeviceId) -> Message {
    Message::Hello(Hello {
        protocol: crmsync::sync::PROTOCOL_VERSION,
        workspace: workspace(),
        replica,
        nonce: [9; 16],
        accepts_changes: true,
    })
}

/// Feeds messages to a fresh machine of `b` and returns the error it ends with.
fn refused(messages: Vec<Message>, options: SyncOptions) -> (SyncError, Option<Message>) {
    let (_, b) = replicas();
    scenario(0, &MemReplica::new(workspace(), DeviceId([0; 16])), &b);
    let mut machine = SyncMachine::new(&b, options, [3; 16]).unwrap();
    for message in messages {
        while machine.poll_transmit().unwrap().is_some() {}
        if let Err(e) = machine.handle(message) {
            assert!(machine.is_failed());
            let abort = machine.fail(&e);
            assert!(
                machine.handle(Message::Done).is_err(),
                "a failed machine stays failed"
            );
            return (e, abort);
        }
    }
    panic!("the machine took every message");
}

#[test]
fn messages_out_of_turn_or_from_elsewhere_end_the_session_with_a_reason() {
    let (e, abort) = refused(vec![Message::Done], SyncOptions::default());
    assert!(matches!(e, SyncError::Protocol(_)), "{e}");
    assert!(matches!(
        abort,
        Some(Message::Abort {
            code: AbortCode::Protocol,
            ..
        })
    ));

    let mut other = hello_from(DeviceId([0x11; 16]));
    if let Message::Hello(h) = &mut other {
        h.workspace = uuid::Uuid::from_u128(1);
    }
    let (e, abort) = refused(vec![other], SyncOptions::default());
    assert!(matches!(e, SyncError::Workspace { .. }), "{e}");
    assert!(matches!(
        abort,
        Some(Message::Abort {
            code: AbortCode::Workspace,
            ..
        })
    ));

    let (e, _) = refused(
        vec![hello_from(DeviceId([0xb2; 16]))],
        SyncOptions::default(),
    );
    assert!(matches!(e, SyncError::SameReplica), "{e}");

    let (e, abort) = refused(
        vec![Message::Abort {
            code: AbortCode::Internal,
            message: "disk full".into(),
        }],
        SyncOptions::default(),
    );
    assert!(matches!(e, SyncError::Remote { .. }), "{e}");
    assert!(abort.is_none(), "a peer that gave up is not sent an abort");

    // Changes from a peer that may not write: refused before anything is applied.
    let (_, b) = replicas();
    let before = {
        scenario(0, &MemReplica::new(workspace(), DeviceId([0; 16])), &b);
        b.contents()
    };
    let read_only = SyncOptions {
        accept_changes: false,
        ..SyncOptions::default()
    };
    let mut machine = SyncMachine::new(&b, read_only, [3; 16]).unwrap();
    let a_doc = {
        let a = MemReplica::new(workspace(), DeviceId([0xa1; 16]));
        a.put(id(999), "name", "planted");
        a.doc_bytes(id(999)).unwrap().unwrap()
    };
    machine.handle(hello_from(DeviceId([0xa1; 16]))).unwrap();
    machine
        .handle(Message::Changed(Changed {
            session: None,
            records: None,
        }))
        .unwrap();
    // The initiator lists a record the responder lacks, so an exchange follows.
    machine
        .handle(Message::Reconcile(vec![Range::Items {
            lower: 0,
            upper: u128::MAX,
            items: vec![Item {
                id: id(999),
                heads: vec![[7; 32]],
            }],
        }]))
        .unwrap();
    machine.handle(Message::Reconcile(Vec::new())).unwrap();
    let e = machine
        .handle(Message::Batch(Batch {
            changes: vec![(id(999), a_doc)],
            needs: Vec::new(),
            last: true,
        }))
        .unwrap_err();
    assert!(matches!(e, SyncError::ReadOnlyPeer), "{e}");
    assert_eq!(b.contents(), before, "nothing of the batch was applied");
}

#[test]
fn a_peer_whose_ranges_never_settle_is_cut_off_after_the_round_limit() {
    let mut messages = vec![
        hello_from(DeviceId([0x01; 16])),
        Message::Changed(Changed {
            session: None,
            records: None,
        }),
    ];
    // Always a different fingerprint for the whole id space: the responder keeps splitting.
    for round in 0..100u128 {
        messages.push(Message::Reconcile(vec![Range::Fingerprint {
            lower: 0,
            upper: u128::MAX,
            fingerprint: round,
            count: 1,
        }]));
    }
    let options = SyncOptions {
        max_reconcile_rounds: 10,
        ..SyncOptions::default()
    };
    let (e, _) = refused(messages, options);
    assert!(
        e.to_string().contains("did not settle within 10 rounds"),
        "{e}"
    );
}
