//! Sessions running at the same time on one replica (a relay serving many devices, pushing to
//! some while they dial it), records written while a session runs, and what a successful
//! session leaves in the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use automerge::ChangeHash;
use crmsync::sync::{Applied, PeerRef, Replica, SyncError, SyncOptions, SyncReport, sync};
use crmsync::{DeviceId, Engine, NewRecord, Patch, PeerCursor, RecordId, RecordType};
use tokio::io::{duplex, split};
use uuid::Uuid;

use crate::common::sync_one_way;
use crate::sync::{replica, rows};

fn company(e: &Engine, name: &str) -> RecordId {
    e.create(NewRecord::new(RecordType::Company).with("name", name))
        .unwrap()
        .id
}

/// One session between two replicas (either may be wrapped); both sides' outcomes.
async fn session_of<A, B>(
    a: &A,
    b: &B,
    options: &SyncOptions,
) -> (Result<SyncReport, SyncError>, Result<SyncReport, SyncError>)
where
    A: Replica + ?Sized,
    B: Replica + ?Sized,
{
    let (x, y) = duplex(16 * 1024);
    let (xr, xw) = split(x);
    let (yr, yw) = split(y);
    tokio::join!(sync(a, xr, xw, options), sync(b, yr, yw, options))
}

async fn ok_session<A, B>(a: &A, b: &B) -> (SyncReport, SyncReport)
where
    A: Replica + ?Sized,
    B: Replica + ?Sized,
{
    let (ra, rb) = session_of(a, b, &SyncOptions::default()).await;
    (
        ra.expect("first side succeeds"),
        rb.expect("second side succeeds"),
    )
}

// ---- What a healthy session logs -------------------------------------------------------------

/// A subscriber that keeps every ERROR event, with its target and fields.
#[derive(Default)]
struct ErrorEvents {
    seen: Mutex<Vec<String>>,
    next_span: AtomicU64,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for ErrorEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut fields = Fields(event.metadata().target().to_string());
            event.record(&mut fields);
            self.seen.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The relay's log under load was full of Automerge ERRORs "change's deps should already be in
/// the document" while no session failed: the merge path checks that incoming bytes decode
/// whole by loading them on their own, which for changes building on a record the receiver has
/// fails with `MissingDeps` by design, and Automerge logs every error of a load at ERROR level.
/// A session that merges ordinary edits must log no error.
#[tokio::test]
async fn merging_edits_of_a_known_record_logs_no_error() {
    let errors = Arc::new(ErrorEvents::default());
    let _guard = tracing::subscriber::set_default(errors.clone());
    let ws = Uuid::new_v4();
    let (a, b) = (replica(ws), replica(ws));
    let shared = company(&a, "Acme");
    ok_session(&a, &b).await;
    a.update(shared, Patch::new().set("industry", "Retail"))
        .unwrap();
    b.update(shared, Patch::new().set("phone", "+1 555"))
        .unwrap();
    let (ra, rb) = ok_session(&a, &b).await;
    assert_eq!((ra.records_received, rb.records_received), (1, 1));
    assert_eq!(rows(&a), rows(&b));
    // Ranges too: a new pairing whose peer has the record with other heads.
    let c = replica(ws);
    sync_one_way(&a, &c);
    c.update(shared, Patch::new().set("industry", "Energy"))
        .unwrap();
    let (ra, _) = ok_session(&a, &c).await;
    assert_eq!(ra.records_received, 1);
    assert_eq!(rows(&a), rows(&c));
    // Bytes that are really broken still fail, and are still refused.
    let before = rows(&b);
    let mut bad = a.export_changes(shared, &[]).unwrap().unwrap();
    bad.truncate(bad.len() - 3);
    assert!(b.apply_changes(&[(shared, bad)]).is_err());
    assert_eq!(rows(&b), before);
    let seen = errors.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|e| !e.starts_with("automerge")),
        "automerge logged errors for merges that succeeded: {seen:#?}"
    );
}

// ---- Sessions at the same time --------------------------------------------------------------

/// A relay, devices a and b, all synced once (so every pair has cursors).
async fn relay_and_two_devices() -> (Engine, Engine, Engine, Vec<RecordId>) {
    let ws = Uuid::new_v4();
    let (relay, a, b) = (replica(ws), replica(ws), replica(ws));
    let seed: Vec<RecordId> = (0..5)
        .map(|i| company(&relay, &format!("Seed {i}")))
        .collect();
    ok_session(&a, &relay).await;
    ok_session(&relay, &b).await;
    (relay, a, b, seed)
}

fn assert_converged(replicas: &[&Engine]) {
    for r in &replicas[1..] {
        assert_eq!(rows(replicas[0]), rows(r));
    }
}

/// The relay pushes to a device while the device dials it, and serves another device at the
/// same time; records are created on every side. All three sessions succeed, and the next
/// sessions (by cursor) move whatever the overlapping ones did not.
#[tokio::test]
async fn an_incoming_and_an_outgoing_session_with_one_device_at_once() {
    let (relay, a, b, seed) = relay_and_two_devices().await;
    let new_on_a = company(&a, "New on a");
    a.update(seed[0], Patch::new().set("industry", "Retail"))
        .unwrap();
    let new_on_b = company(&b, "New on b");
    b.update(seed[0], Patch::new().set("phone", "+1 555"))
        .unwrap();
    relay
        .update(seed[1], Patch::new().set("industry", "Energy"))
        .unwrap();
    let options = SyncOptions {
        batch_records: 1,
        ..SyncOptions::default()
    };
    let (dialed, pushed, other) = tokio::join!(
        session_of(&a, &relay, &options),
        session_of(&relay, &a, &options),
        session_of(&b, &relay, &options),
    );
    for (x, y) in [dialed, pushed, other] {
        x.expect("first side succeeds");
        y.expect("second side succeeds");
    }
    for _ in 0..2 {
        ok_session(&a, &relay).await;
        ok_session(&b, &relay).await;
    }
    assert_converged(&[&relay, &a, &b]);
    for id in [new_on_a, new_on_b] {
        assert!(relay.get(id).unwrap().is_some());
    }
    let merged = relay.get(seed[0]).unwrap().unwrap();
    assert_eq!(merged.text("industry"), Some("Retail"));
    assert_eq!(merged.text("phone"), Some("+1 555"));
}

/// A replica that runs `hook` once, right after the session listed what to offer (cursor mode)
/// or what it holds (ranges), and again after its first applied batch: a write by another
/// session, or a local edit, landing in the middle of this one.
struct Interleaved<'e, F: Fn(&str)> {
    engine: &'e Engine,
    hook: F,
}

impl<F: Fn(&str)> Replica for Interleaved<'_, F> {
    fn workspace(&self) -> Uuid {
        self.engine.workspace()
    }
    fn replica_id(&self) -> DeviceId {
        self.engine.replica_id()
    }
    fn last_seq(&self) -> crmsync::Result<u64> {
        self.engine.last_seq()
    }
    fn all_heads(&self) -> crmsync::Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        let out = self.engine.all_heads();
        (self.hook)("listed");
        out
    }
    fn changed_since(&self, seq: u64) -> crmsync::Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        let out = self.engine.changed_since(seq);
        (self.hook)("listed");
        out
    }
    fn heads(&self, id: RecordId) -> crmsync::Result<Vec<ChangeHash>> {
        Replica::heads(self.engine, id)
    }
    fn doc(&self, id: RecordId) -> crmsync::Result<Option<std::sync::Arc<automerge::Automerge>>> {
        self.engine.doc(id)
    }
    fn doc_bytes(&self, id: RecordId) -> crmsync::Result<Option<Vec<u8>>> {
        self.engine.doc_bytes(id)
    }
    fn apply(&self, batch: &[(RecordId, Vec<u8>)]) -> crmsync::Result<Applied> {
        let out = self.engine.apply(batch);
        (self.hook)("applied");
        out
    }
    fn peer_cursor(&self, peer: &PeerRef) -> crmsync::Result<Option<PeerCursor>> {
        self.engine.peer_cursor(peer)
    }
    fn set_peer_cursor(&self, peer: &PeerRef, cursor: PeerCursor) -> crmsync::Result<()> {
        self.engine.set_peer_cursor(peer, cursor)
    }
    fn forget_peer_cursor(&self, peer: &PeerRef) -> crmsync::Result<()> {
        self.engine.forget_peer_cursor(peer)
    }
}

/// While the relay's session with a runs, another device's records (new, and edits of records
/// a has) are merged into the relay, and the relay merges a's batches around them. Nothing the
/// session did not send may be counted as delivered: the next session sends it, as whole
/// documents where a lacks the record and as changes where it has it.
#[tokio::test]
async fn records_merged_by_another_session_mid_session_reach_the_device_next_time() {
    for ranges in [false, true] {
        let (relay, synced, b, seed) = relay_and_two_devices().await;
        // Cursor mode with a device the relay synced with; ranges with one that holds the
        // same records but never completed a session with the relay (a fresh pairing).
        let a = if ranges {
            let fresh = replica(relay.workspace_id());
            sync_one_way(&relay, &fresh);
            fresh
        } else {
            synced
        };
        let a_batch: Vec<_> = (0..6)
            .map(|i| NewRecord::new(RecordType::Company).with("name", format!("A{i}")))
            .collect();
        a.create_many(a_batch).unwrap();
        a.update(seed[2], Patch::new().set("industry", "Retail"))
            .unwrap();
        let new_on_b = company(&b, "Created on b mid-session");
        b.update(seed[3], Patch::new().set("phone", "+1 555"))
            .unwrap();
        let step = Mutex::new(0);
        let relay_side = Interleaved {
            engine: &relay,
            hook: |_: &str| {
                let mut n = step.lock().unwrap();
                *n += 1;
                // Between the relay's listing and its first merge, and between two merges.
                if *n == 1 || *n == 3 {
                    sync_one_way(&b, &relay);
                    b.update(seed[4], Patch::new().set("name", format!("b {n}")))
                        .unwrap();
                }
            },
        };
        let options = SyncOptions {
            batch_records: 2,
            ..SyncOptions::default()
        };
        let (ra, rr) = session_of(&a, &relay_side, &options).await;
        ra.expect("a's side succeeds");
        let rr = rr.expect("the relay's side succeeds");
        assert_eq!(rr.records_received, 7, "ranges: {ranges}");
        assert!(*step.lock().unwrap() >= 3, "the hook ran mid-session");
        // What b brought mid-session is on the relay, and reaches a in the next session.
        assert!(relay.get(new_on_b).unwrap().is_some());
        assert!(a.get(new_on_b).unwrap().is_none());
        let (to_a, _) = ok_session(&relay, &a).await;
        assert!(to_a.records_sent >= 2, "ranges: {ranges}: {to_a:?}");
        assert!(a.get(new_on_b).unwrap().is_some());
        ok_session(&relay, &b).await;
        ok_session(&relay, &a).await;
        assert_converged(&[&relay, &a, &b]);
        let (again, _) = ok_session(&relay, &a).await;
        assert_eq!(
            (again.differing, again.records_sent),
            (0, 0),
            "ranges: {ranges}"
        );
    }
}

/// Two sessions merging different changes of one record into the relay at once: the store's
/// write transaction loads the record inside it, so each merge builds on the other and no
/// update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_merges_of_one_record_lose_nothing() {
    let ws = Uuid::new_v4();
    let relay = replica(ws);
    let shared = company(&relay, "Shared");
    // The list exists before the devices edit it: they add to one list, not each create one
    // (concurrently created lists under one key conflict, and one of them wins).
    relay.update(shared, Patch::new().add_tag("base")).unwrap();
    let devices: Vec<Engine> = (0..4).map(|_| replica(ws)).collect();
    for d in &devices {
        sync_one_way(&relay, d);
    }
    for (i, d) in devices.iter().enumerate() {
        for j in 0..5 {
            d.update(shared, Patch::new().add_tag(&format!("d{i}-{j}")))
                .unwrap();
        }
    }
    let tasks: Vec<_> = devices
        .iter()
        .map(|d| {
            let (d, relay) = (d.clone(), relay.clone());
            tokio::spawn(async move {
                let (x, y) = session_of(&d, &relay, &SyncOptions::default()).await;
                x.and(y).map(|_| ())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("session succeeds");
    }
    let record = relay.get(shared).unwrap().unwrap();
    let tags = format!("{:?}", record.get("tags"));
    for i in 0..4 {
        for j in 0..5 {
            assert!(tags.contains(&format!("d{i}-{j}")), "d{i}-{j} lost: {tags}");
        }
    }
}
