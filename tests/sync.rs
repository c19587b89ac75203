//! The sync protocol over in-memory duplex streams: convergence, efficiency, resumption,
//! and hostile input.

use std::pin::Pin;
use std::task::{Context, Poll};

use crmsync::sync::{ReconcileMode, SyncError, SyncOptions, SyncReport, sync};
use crmsync::{Engine, EngineOptions, NewRecord, Patch, Record, RecordId, RecordType, Value};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf, duplex, split};
use uuid::Uuid;

use crate::common::money;
use crmsync::sync::Replica;

/// An in-memory replica of a given workspace.
pub fn replica(workspace: Uuid) -> Engine {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(workspace);
    Engine::in_memory_with(options).expect("in-memory engine")
}

async fn session_with(
    a: &Engine,
    b: &Engine,
    options: &SyncOptions,
) -> (Result<SyncReport, SyncError>, Result<SyncReport, SyncError>) {
    let (x, y) = duplex(64 * 1024);
    let (xr, xw) = split(x);
    let (yr, yw) = split(y);
    tokio::join!(sync(a, xr, xw, options), sync(b, yr, yw, options))
}

/// One session between two replicas; both sides must succeed.
pub async fn session(a: &Engine, b: &Engine) -> (SyncReport, SyncReport) {
    let (ra, rb) = session_with(a, b, &SyncOptions::default()).await;
    (
        ra.expect("a's side succeeds"),
        rb.expect("b's side succeeds"),
    )
}

/// Every record of a replica, tombstones included, by id.
pub fn rows(e: &Engine) -> Vec<Record> {
    e.all_heads()
        .unwrap()
        .into_iter()
        .map(|(id, _)| e.get_including_deleted(id).unwrap().unwrap())
        .collect()
}

fn company(e: &Engine, name: &str) -> RecordId {
    e.create(NewRecord::new(RecordType::Company).with("name", name))
        .unwrap()
        .id
}

#[tokio::test]
async fn offline_edits_on_both_sides_converge_in_one_session() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let shared = company(&a, "Acme");
    session(&a, &b).await;
    a.update(shared, Patch::new().set("industry", "Retail"))
        .unwrap();
    b.update(shared, Patch::new().set("phone", "+1 555"))
        .unwrap();
    let only_a = company(&a, "Only A");
    let only_b = company(&b, "Only B");
    b.delete(only_b).unwrap();
    let (ra, rb) = session(&a, &b).await;
    assert_eq!(rows(&a), rows(&b));
    let merged = b.get(shared).unwrap().unwrap();
    assert_eq!(merged.text("industry"), Some("Retail"));
    assert_eq!(merged.text("phone"), Some("+1 555"));
    assert!(b.get(only_a).unwrap().is_some());
    assert!(a.get(only_b).unwrap().is_none(), "the delete travelled too");
    assert_eq!(
        (ra.mode, rb.mode),
        (ReconcileMode::Cursor, ReconcileMode::Cursor)
    );
    assert_eq!((ra.records_received, rb.records_received), (2, 2));
    assert_eq!(ra.bytes_sent, rb.bytes_received);
    // Hello, offers, exchange, answers to the concurrent edit's requests, done.
    assert!(ra.round_trips <= 5, "{ra:?}");
}

#[tokio::test]
async fn resync_right_after_a_sync_sends_only_hello_and_an_empty_reconcile() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    for i in 0..50 {
        company(&a, &format!("A{i}"));
        company(&b, &format!("B{i}"));
    }
    let (first, _) = session(&a, &b).await;
    assert_eq!(first.mode, ReconcileMode::Ranges);
    let (again, other) = session(&a, &b).await;
    assert_eq!(again.mode, ReconcileMode::Cursor);
    assert_eq!(again.round_trips, 2, "{again:?}");
    assert_eq!((again.differing, again.records_sent), (0, 0));
    assert!(again.bytes_sent < 100, "{again:?}");
    assert_eq!(other.bytes_sent, again.bytes_received);
}

#[tokio::test]
async fn new_pairing_of_equal_replicas_exchanges_kilobytes_not_the_list() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let batch: Vec<_> = (0..10_000)
        .map(|i| NewRecord::new(RecordType::Company).with("name", format!("Company {i}")))
        .collect();
    let ids = a.create_many(batch).unwrap();
    // Copy without a session, so the two have never synced: reconciliation must use ranges.
    crate::common::sync(&a, &b);
    for id in ids.iter().step_by(1000) {
        b.update(*id, Patch::new().set("industry", "Energy"))
            .unwrap();
    }
    let (ra, rb) = session(&a, &b).await;
    assert_eq!(ra.mode, ReconcileMode::Ranges);
    assert_eq!((ra.differing, ra.records_received), (10, 10));
    assert_eq!(rb.records_sent, 10);
    let total = ra.bytes_sent + rb.bytes_sent;
    assert!(total < 64 * 1024, "{total} bytes on the wire");
    // log16(10,000 / 16) rounds of ranges, plus hello, offers and the exchange.
    assert!(ra.round_trips <= 8, "{ra:?}");
    assert_eq!(rows(&a), rows(&b));
}

#[tokio::test]
async fn concurrent_edits_of_one_deal_keep_both_fields_and_show_the_conflict() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let deal = a
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Big")
                .with("stage", "proposal"),
        )
        .unwrap()
        .id;
    session(&a, &b).await;
    a.update(
        deal,
        Patch::new()
            .set("amount", money("100 USD"))
            .set("stage", "negotiation"),
    )
    .unwrap();
    b.update(
        deal,
        Patch::new()
            .set("probability", 70i64)
            .set("stage", "closed_won"),
    )
    .unwrap();
    let (ra, _) = session(&a, &b).await;
    assert_eq!(ra.differing, 1);
    let (da, db) = (a.get(deal).unwrap().unwrap(), b.get(deal).unwrap().unwrap());
    assert_eq!(da, db);
    assert_eq!(da.get("amount"), Some(&Value::Money(money("100 USD"))));
    assert_eq!(da.get("probability"), Some(&Value::Int(70)));
    let conflicts = a.conflicts(deal).unwrap();
    assert_eq!(conflicts, b.conflicts(deal).unwrap());
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "stage");
    assert_eq!(conflicts[0].others.len(), 1);
}

#[tokio::test]
async fn replicas_of_other_workspaces_are_refused_and_nothing_moves() {
    let (a, b) = (replica(Uuid::new_v4()), replica(Uuid::new_v4()));
    company(&a, "Secret");
    let (ra, rb) = session_with(&a, &b, &SyncOptions::default()).await;
    assert!(matches!(ra, Err(SyncError::Workspace { .. })), "{ra:?}");
    assert!(matches!(rb, Err(SyncError::Workspace { .. })), "{rb:?}");
    assert!(rows(&b).is_empty());
    let (ra, rb) = session_with(&a, &a, &SyncOptions::default()).await;
    assert!(matches!(ra, Err(SyncError::SameReplica)), "{ra:?}");
    assert!(rb.is_err());
}

/// A stream that ends (EOF on read, broken pipe on write) after `budget` bytes were read.
struct CutAfter {
    inner: DuplexStream,
    budget: usize,
}

impl AsyncRead for CutAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.budget == 0 {
            return Poll::Ready(Ok(()));
        }
        let max = self.budget.min(buf.remaining());
        let mut limited = ReadBuf::new(&mut buf.initialize_unfilled()[..max]);
        let poll = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        self.budget -= n;
        poll
    }
}

impl AsyncWrite for CutAfter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.budget == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_session_cut_off_midway_resumes_without_resending_applied_batches() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let batch: Vec<_> = (0..500)
        .map(|i| NewRecord::new(RecordType::Company).with("name", format!("C{i}")))
        .collect();
    a.create_many(batch).unwrap();
    let options = SyncOptions {
        batch_records: 50,
        ..SyncOptions::default()
    };
    // b reads only part of what a sends, then its connection dies.
    let (x, y) = duplex(1 << 20);
    let (xr, xw) = split(x);
    let cut = CutAfter {
        inner: y,
        // Past the reconcile of 500 ids (~25 KB) and into the batches.
        budget: 70_000,
    };
    let (yr, yw) = split(cut);
    let (ra, rb) = tokio::join!(sync(&a, xr, xw, &options), sync(&b, yr, yw, &options));
    assert!(rb.is_err(), "b's session must fail: {rb:?}");
    drop(ra);
    let applied = rows(&b).len();
    assert!(
        applied > 0 && applied < 500,
        "{applied} records arrived before the cut"
    );
    assert_eq!(applied % 50, 0, "whole batches only");
    let (ra, rb) = session_with(&a, &b, &options).await;
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(rb.records_received, 500 - applied);
    assert_eq!(ra.records_sent, 500 - applied);
    assert_eq!(rows(&a), rows(&b));
}

async fn feed_raw(bytes: Vec<u8>) -> (Engine, Result<SyncReport, SyncError>, Vec<Record>) {
    let e = replica(Uuid::new_v4());
    company(&e, "Existing");
    let before = rows(&e);
    let (x, mut y) = duplex(1 << 20);
    let (xr, xw) = split(x);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = y.write_all(&bytes).await;
        let _ = y.shutdown().await;
        // Keep reading so the engine's writes never block.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut y, &mut sink).await;
    });
    let result = sync(&e, xr, xw, &SyncOptions::default()).await;
    writer.await.unwrap();
    (e, result, before)
}

#[tokio::test]
async fn hostile_bytes_end_the_session_with_an_error_and_change_nothing() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0, 0],
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 10, 1, 2],
    ];
    for len in [1usize, 7, 64, 4096] {
        cases.push((0..len).map(|_| rng.random()).collect());
    }
    for bytes in cases {
        let (e, result, before) = feed_raw(bytes.clone()).await;
        assert!(result.is_err(), "{bytes:?} was accepted");
        assert_eq!(rows(&e), before);
    }
    let (_, oversized, _) = feed_raw(vec![0x7f, 0, 0, 0]).await;
    assert!(
        matches!(oversized, Err(SyncError::FrameTooLarge { .. })),
        "{oversized:?}"
    );
    let (_, truncated, _) = feed_raw(vec![0, 0, 0, 50, 1, 2, 3]).await;
    assert!(
        matches!(truncated, Err(SyncError::Truncated)),
        "{truncated:?}"
    );
}

/// Two records created separately under one id (a modified client can do that) cannot be
/// merged: each replica keeps its own, the session reports the id as skipped and goes on, and
/// the records around it travel. Refusing the whole batch would stop every later session of
/// the pair at the same record.
#[tokio::test]
async fn a_record_created_separately_under_the_same_id_is_left_out_and_the_rest_arrives() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let id = RecordId::new();
    let mut as_company = NewRecord::new(RecordType::Company).with("name", "Acme");
    as_company.id = Some(id);
    let mut as_contact = NewRecord::new(RecordType::Contact).with("first_name", "Ann");
    as_contact.id = Some(id);
    a.create(as_company).unwrap();
    b.create(as_contact).unwrap();
    let bystander = company(&b, "Innocent bystander");
    let (before_a, before_b) = (a.get(id).unwrap(), b.get(id).unwrap());
    let (ra, rb) = session_with(&a, &b, &SyncOptions::default()).await;
    let (ra, rb) = (ra.expect("a goes on"), rb.expect("b goes on"));
    assert_eq!(
        (ra.skipped.as_slice(), rb.skipped.as_slice()),
        (&[id][..], &[id][..])
    );
    assert!(a.get(bystander).unwrap().is_some());
    assert_eq!(a.get(id).unwrap(), before_a, "a keeps its record");
    assert_eq!(b.get(id).unwrap(), before_b, "b keeps its record");
}

#[tokio::test]
async fn garbage_after_a_valid_hello_changes_nothing() {
    use tokio::io::AsyncWriteExt;
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    company(&a, "Acme");
    let before = rows(&a);
    // Record what b says first, then replay b's hello followed by garbage to a.
    let (x, y) = duplex(1 << 16);
    let (xr, xw) = split(x);
    let (mut yr, mut yw) = split(y);
    let hello_of_b = {
        let (p, q) = duplex(1 << 16);
        let (pr, pw) = split(p);
        let (mut qr, qw) = split(q);
        let options = SyncOptions {
            idle_timeout: std::time::Duration::from_millis(200),
            ..SyncOptions::default()
        };
        let grab = async {
            let mut prefix = [0u8; 4];
            tokio::io::AsyncReadExt::read_exact(&mut qr, &mut prefix)
                .await
                .unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
            tokio::io::AsyncReadExt::read_exact(&mut qr, &mut body)
                .await
                .unwrap();
            drop(qw);
            [prefix.to_vec(), body].concat()
        };
        let (_, hello) = tokio::join!(sync(&b, pr, pw, &options), grab);
        hello
    };
    let attacker = async {
        yw.write_all(&hello_of_b).await.unwrap();
        yw.write_all(&[0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut yr, &mut sink).await;
    };
    let options = SyncOptions::default();
    let (result, _) = tokio::join!(sync(&a, xr, xw, &options), attacker);
    assert!(matches!(result, Err(SyncError::Decode(_))), "{result:?}");
    assert_eq!(rows(&a), before);
}

#[tokio::test]
async fn known_peer_gets_one_sided_changes_in_four_round_trips_near_the_raw_size() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let batch: Vec<_> = (0..300)
        .map(|i| NewRecord::new(RecordType::Company).with("name", format!("C{i}")))
        .collect();
    let ids = a.create_many(batch).unwrap();
    session(&a, &b).await;
    let changed: Vec<RecordId> = ids.iter().step_by(3).copied().collect();
    for id in &changed {
        a.update(*id, Patch::new().set("industry", "Energy"))
            .unwrap();
    }
    let mut raw = 0;
    for id in &changed {
        raw += a
            .export_changes(*id, &b.heads(*id).unwrap())
            .unwrap()
            .unwrap()
            .len() as u64;
    }
    let (ra, rb) = session(&a, &b).await;
    assert_eq!(ra.mode, ReconcileMode::Cursor);
    assert_eq!(rb.records_received, changed.len());
    assert_eq!(
        ra.round_trips, 4,
        "hello, offers, one exchange, done: {ra:?}"
    );
    let wire = ra.bytes_sent + rb.bytes_sent;
    assert!(
        (wire as f64) <= 1.5 * raw as f64,
        "{wire} bytes on the wire for {raw} bytes of changes"
    );
    assert_eq!(rows(&a), rows(&b));
}

#[tokio::test]
async fn changes_from_a_read_only_peer_are_refused_and_nothing_is_applied() {
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    company(&b, "Sent anyway");
    let strict = SyncOptions {
        accept_changes: false,
        ..SyncOptions::default()
    };
    // b ignores that it is read-only here (a hostile or outdated app) and sends its changes:
    // it reads a's hello as if a took changes.
    let (x, y) = duplex(64 * 1024);
    let (xr, xw) = split(x);
    let (yr, yw) = split(y);
    let yr = ClaimsToAccept {
        inner: yr,
        read: 0,
        target: None,
        prefix: [0; 4],
    };
    let lenient = SyncOptions::default();
    let (ra, rb) = tokio::join!(sync(&a, xr, xw, &strict), sync(&b, yr, yw, &lenient));
    assert!(matches!(ra, Err(SyncError::ReadOnlyPeer)), "{ra:?}");
    // b may finish before a's abort reaches it (its part was sent), see the abort, or find the
    // stream closed under it: what matters is that a refused and applied nothing.
    drop(rb);
    assert!(rows(&a).is_empty());
}

/// Reads a peer's stream with the last byte of its first frame (the hello's "accepts changes")
/// set: what a client that ignores a refusal of its changes believes.
struct ClaimsToAccept<R> {
    inner: R,
    read: usize,
    target: Option<usize>,
    prefix: [u8; 4],
}

impl<R: AsyncRead + Unpin> AsyncRead for ClaimsToAccept<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let start = self.read;
            let filled = buf.filled_mut();
            for (i, byte) in filled[before..].iter_mut().enumerate() {
                let at = start + i;
                if at < 4 {
                    self.prefix[at] = *byte;
                    if at == 3 {
                        self.target = Some(4 + u32::from_be_bytes(self.prefix) as usize - 1);
                    }
                } else if Some(at) == self.target {
                    *byte = 1;
                }
            }
            self.read += filled.len() - before;
        }
        polled
    }
}
