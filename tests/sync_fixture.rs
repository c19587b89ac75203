//! The wire format does not change under a refactoring of the protocol's code: a session
//! recorded from the build before the sans-I/O state machine (commit dd7c6ce, protocol 2) is
//! replayed against the current code, one side at a time, and the current code must send the
//! same frames, byte for byte, and end in the same state.
//!
//! The recording is `tests/fixtures/sync_v2_sessions.json`: two sessions between replicas
//! whose every id, actor, timestamp and nonce is fixed (see [`scenario`]), the first a new
//! pairing (set reconciliation over several rounds, batches both ways, requests for concurrent
//! edits answered in a second round), the second between the same peers from their cursors.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crmsync::sync::{Message, ReconcileMode, SyncMachine, SyncOptions, decode_frame, encode_frame};
use crmsync::{DeviceId, RecordId};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use uuid::Uuid;

use crate::mem_replica::MemReplica;

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/sync_v2_sessions.json"
);

/// One recorded session: the frames each side sent, hex-encoded, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Recorded {
    pub a_to_b: Vec<String>,
    pub b_to_a: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Fixture {
    pub recorded_with: String,
    pub sessions: Vec<Recorded>,
}

pub fn workspace() -> Uuid {
    Uuid::from_u128(0x7e57_0000_0000_0000_0000_0000_0000_0077)
}

/// Side A has the smaller id: it drives set reconciliation.
pub fn replicas() -> (MemReplica, MemReplica) {
    (
        MemReplica::new(workspace(), DeviceId([0xa1; 16])),
        MemReplica::new(workspace(), DeviceId([0xb2; 16])),
    )
}

pub fn id(n: u128) -> RecordId {
    // Spread over the id space so reconciliation splits ranges at several levels.
    RecordId::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

/// The batch limits make the exchange take several frames each way.
pub fn options() -> SyncOptions {
    SyncOptions {
        batch_records: 16,
        ..SyncOptions::default()
    }
}

/// The edits before session `n` (0 or 1).
pub fn scenario(n: usize, a: &MemReplica, b: &MemReplica) {
    if n == 0 {
        for i in 0..60 {
            a.put(id(i), "name", &format!("a record {i}"));
        }
        for i in 100..150 {
            b.put(id(i), "name", &format!("b record {i}"));
        }
        // Shared before they meet: the same documents on both sides...
        for i in 200..212 {
            a.put(id(i), "name", &format!("shared {i}"));
            b.copy_from(a, id(i));
        }
        // ...then edited on both sides (each asks the other), on one side only.
        for i in 200..203 {
            a.put(id(i), "phone", "+33 1 00 00 00 00");
            b.put(id(i), "email", "x@example.com");
        }
        a.put(id(205), "phone", "+49 30 0000");
        b.put(id(207), "phone", "+1 555 0100");
    } else {
        a.put(id(3), "name", "a record 3, renamed");
        a.put(id(120), "stage", "won");
        b.put(id(120), "owner", "jane");
        b.put(id(150), "name", "b record 150");
        b.put(id(206), "name", "shared 206, renamed");
    }
}

/// The frames of a recorded byte stream.
pub fn frames_of(hex: &[String]) -> Vec<Vec<u8>> {
    hex.iter()
        .map(|h| data_encoding::HEXLOWER.decode(h.as_bytes()).unwrap())
        .collect()
}

pub fn load() -> Fixture {
    let text = std::fs::read_to_string(FIXTURE).expect("the recorded fixture");
    serde_json::from_str(&text).unwrap()
}

/// A writer that keeps a copy of what passes through.
struct Tap<W> {
    inner: W,
    copy: Arc<Mutex<Vec<u8>>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tap<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.copy.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn split_frames(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, len): (Message, usize) = decode_frame(bytes, 1 << 30).unwrap();
        out.push(data_encoding::HEXLOWER.encode(&bytes[..len]));
        bytes = &bytes[len..];
    }
    out
}

/// Records the fixture with the build under test. Run only to re-record, on purpose:
/// `CRMSYNC_RECORD_FIXTURE=1 cargo test --workspace record_the_wire_fixture -- --ignored`.
#[tokio::test]
#[ignore = "writes the fixture; run by hand to re-record it"]
async fn record_the_wire_fixture() {
    if std::env::var_os("CRMSYNC_RECORD_FIXTURE").is_none() {
        return;
    }
    let (a, b) = replicas();
    let mut sessions = Vec::new();
    for n in 0..2 {
        scenario(n, &a, &b);
        let (x, y) = tokio::io::duplex(1 << 16);
        let (xr, xw) = tokio::io::split(x);
        let (yr, yw) = tokio::io::split(y);
        let (ab, ba) = (Arc::default(), Arc::default());
        let xw = Tap {
            inner: xw,
            copy: Arc::clone(&ab),
        };
        let yw = Tap {
            inner: yw,
            copy: Arc::clone(&ba),
        };
        let options = options();
        let (ra, rb) = tokio::join!(
            crmsync::sync::sync(&a, xr, xw, &options),
            crmsync::sync::sync(&b, yr, yw, &options)
        );
        ra.unwrap();
        rb.unwrap();
        sessions.push(Recorded {
            a_to_b: split_frames(&ab.lock().unwrap()),
            b_to_a: split_frames(&ba.lock().unwrap()),
        });
    }
    assert_eq!(a.contents(), b.contents());
    let fixture = Fixture {
        recorded_with: std::env::var("CRMSYNC_RECORD_FIXTURE").unwrap(),
        sessions,
    };
    std::fs::create_dir_all(std::path::Path::new(FIXTURE).parent().unwrap()).unwrap();
    std::fs::write(FIXTURE, serde_json::to_string_pretty(&fixture).unwrap()).unwrap();
}

/// The nonce in a recorded hello frame.
fn nonce_of(hello: &[u8]) -> [u8; 16] {
    match decode_frame(hello, 1 << 20).unwrap().0 {
        Message::Hello(hello) => hello.nonce,
        other => panic!("the first frame is not a hello: {other:?}"),
    }
}

/// Plays one side of every recorded session on the current code: the recorded frames of the
/// other side go in, and what comes out must be the recorded frames of this side. Whatever
/// is ready to send is sent before the next frame is taken, as the recording build did over a
/// roomy in-memory pipe.
fn replay(play_a: bool) -> MemReplica {
    let fixture = load();
    assert_eq!(fixture.sessions.len(), 2);
    let (a, b) = replicas();
    for (n, recorded) in fixture.sessions.iter().enumerate() {
        scenario(n, &a, &b);
        let (me, incoming, expected) = if play_a {
            (&a, frames_of(&recorded.b_to_a), frames_of(&recorded.a_to_b))
        } else {
            (&b, frames_of(&recorded.a_to_b), frames_of(&recorded.b_to_a))
        };
        let mut machine = SyncMachine::new(me, options(), nonce_of(&expected[0])).unwrap();
        let mut sent = Vec::new();
        for frame in incoming {
            while let Some(message) = machine.poll_transmit().unwrap() {
                sent.push(encode_frame(&message).unwrap());
            }
            let (message, used) = decode_frame(&frame, 16 << 20).unwrap();
            assert_eq!(used, frame.len());
            machine.handle(message).unwrap();
        }
        while let Some(message) = machine.poll_transmit().unwrap() {
            sent.push(encode_frame(&message).unwrap());
        }
        assert!(machine.is_finished(), "session {n} did not complete");
        let hex = |frames: &[Vec<u8>]| -> Vec<String> {
            frames
                .iter()
                .map(|f| data_encoding::HEXLOWER.encode(f))
                .collect()
        };
        assert_eq!(
            hex(&sent),
            hex(&expected),
            "session {n}: the frames sent differ from the recording"
        );
        let report = machine.report().unwrap();
        let mode = if n == 0 {
            ReconcileMode::Ranges
        } else {
            ReconcileMode::Cursor
        };
        assert_eq!(report.mode, mode, "session {n}");
    }
    if play_a { a } else { b }
}

#[test]
fn the_current_code_plays_either_side_of_a_recorded_protocol_2_session() {
    let a = replay(true);
    let b = replay(false);
    // Each side, played against the other's recording, ends where the recording ended:
    // with the same records in the same states as the other.
    assert_eq!(a.contents(), b.contents());
    assert_eq!(a.contents().len(), 60 + 51 + 12);
    assert_eq!(
        a.field(id(120), "stage").as_deref(),
        Some("won"),
        "an edit of the second session arrived"
    );
    assert_eq!(
        b.field(id(3), "name").as_deref(),
        Some("a record 3, renamed")
    );
}
