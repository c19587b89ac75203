//! Peer-to-peer sync over real iroh connections on loopback: convergence, background mode,
//! chains of devices, membership refusals, read-only members, dropped connections.
//!
//! Every endpoint binds 127.0.0.1 with relays, address lookup and the port mapper off.

use std::time::Duration;

use chrono::Utc;
use crmsync::net::{NetError, NetOptions, Network, Refusal, Role};
use crmsync::sync::Replica;
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType, Value};
use iroh::{EndpointAddr, SecretKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// An in-memory engine of `workspace`.
fn engine_in(workspace: Uuid) -> Engine {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(workspace);
    Engine::in_memory_with(options).expect("in-memory engine")
}

/// A workspace admin's engine.
pub(crate) fn admin() -> Engine {
    let admin = Engine::in_memory().expect("engine");
    admin.init_admin().expect("admin key created");
    admin
}

/// A device invited by `admin` with `role` (and an expiry), joined.
pub(crate) fn invited(
    admin: &Engine,
    role: Role,
    expires: Option<chrono::DateTime<Utc>>,
) -> Engine {
    let device = engine_in(admin.workspace_id());
    let credential = admin
        .invite_device(device.node_id().unwrap(), role, expires)
        .expect("admin invites");
    device
        .join(&credential.to_string())
        .expect("device joins with its credential");
    device
}

pub(crate) async fn online(engine: &Engine) -> Network {
    engine
        .enable_network(NetOptions::loopback())
        .await
        .expect("network starts on loopback")
}

pub(crate) fn company(e: &Engine, name: &str) -> RecordId {
    e.create(NewRecord::new(RecordType::Company).with("name", name))
        .unwrap()
        .id
}

fn name_of(e: &Engine, id: RecordId) -> Option<Value> {
    e.get(id).unwrap().and_then(|r| r.get("name").cloned())
}

/// A digest of every record's id and heads: equal digests, equal stores.
pub(crate) fn digest(e: &Engine) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (id, heads) in e.all_heads().unwrap() {
        hasher.update(id.to_string().as_bytes());
        for h in heads {
            hasher.update(h.0);
        }
    }
    hasher.finalize().into()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_and_background_mode_pushes_new_changes() {
    let a = admin();
    let b = invited(&a, Role::Member, None);
    let from_a = company(&a, "Acme");
    let from_b = company(&b, "Globex");
    let shared = company(&a, "Initech");

    let (na, nb) = (online(&a).await, online(&b).await);
    let report = na.sync_with(nb.addr()).await.expect("session over iroh");
    assert_eq!(report.records_sent, 2);
    assert_eq!(report.records_received, 1);
    assert_eq!(digest(&a), digest(&b));
    assert!(name_of(&b, from_a).is_some() && name_of(&a, from_b).is_some());

    // Offline edits of different fields of one record on both sides, then a session.
    a.update(shared, Patch::new().set("industry", "software"))
        .unwrap();
    b.update(shared, Patch::new().set("phone", "+1 555 0100"))
        .unwrap();
    nb.sync_with(na.addr()).await.expect("second session");
    let merged = a.get(shared).unwrap().unwrap();
    assert_eq!(merged.get("industry"), Some(&Value::from("software")));
    assert_eq!(merged.get("phone"), Some(&Value::from("+1 555 0100")));
    assert_eq!(digest(&a), digest(&b));

    // Background mode: the poll interval is far away, so only the push can deliver this.
    na.add_peer(nb.addr());
    na.start_background();
    let mut status = na.subscribe_status();
    let pushed = company(&a, "Pushed Ltd");
    eventually("background mode delivers a new record", || {
        name_of(&b, pushed).is_some()
    })
    .await;
    eventually("status shows the peer up to date", || {
        let s = status.borrow_and_update().clone();
        s.background
            && s.peers.iter().any(|p| {
                p.node_id == nb.node_id() && p.pending_changes == 0 && p.last_sync.is_some()
            })
    })
    .await;
    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_devices_carries_edits_between_devices_that_never_met() {
    let a = admin();
    let b = invited(&a, Role::Member, None);
    let c = invited(&a, Role::Member, None);
    let deal = a
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Car park deal")
                .with("stage", "proposal"),
        )
        .unwrap()
        .id;
    let (na, nb, nc) = (online(&a).await, online(&b).await, online(&c).await);
    na.sync_with(nb.addr()).await.unwrap();
    na.shutdown().await; // A goes offline for good
    nb.sync_with(nc.addr()).await.unwrap();
    assert_eq!(
        c.get(deal).unwrap().unwrap().get("stage"),
        Some(&Value::Enum("proposal".into()))
    );
    assert_eq!(digest(&a), digest(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_its_node_identity_and_membership_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    let (id, credential) = {
        let e = Engine::open(&path).unwrap();
        e.init_admin().unwrap();
        (e.node_id().unwrap(), e.credential().unwrap())
    };
    let e = Engine::open(&path).unwrap();
    assert_eq!(e.node_id().unwrap(), id);
    assert_eq!(e.credential().unwrap(), credential);
    let n = online(&e).await;
    assert_eq!(n.node_id(), id);
    n.shutdown().await;
}

#[tokio::test]
async fn a_new_device_shows_its_node_id_first_and_joins_the_workspace_of_its_invite() {
    let a = admin();
    // The natural order: the app opens a database, shows the node id, gets invited.
    let phone = Engine::in_memory().unwrap();
    assert_ne!(phone.workspace_id(), a.workspace_id());
    let invite = a
        .invite_device(phone.node_id().unwrap(), Role::Member, None)
        .unwrap();
    phone.join(&invite.to_string()).unwrap();
    assert_eq!(phone.workspace_id(), a.workspace_id());

    // A database that already holds records of its own workspace is not moved.
    let busy = Engine::in_memory().unwrap();
    company(&busy, "Mine");
    let invite = a
        .invite_device(busy.node_id().unwrap(), Role::Member, None)
        .unwrap();
    let err = busy.join(&invite.to_string()).unwrap_err();
    assert!(matches!(err, NetError::WrongWorkspace { .. }), "{err}");
    assert!(busy.credential().unwrap().is_none());
}

/// A hostile or foreign client: a bare iroh endpoint that speaks the handshake with whatever
/// bytes it is given, and returns the verdict frame's body.
async fn raw_handshake(secret: SecretKey, target: EndpointAddr, presentation: &[u8]) -> Vec<u8> {
    let endpoint = crate::hostile::bare_endpoint(secret).await;
    let conn = endpoint.connect(target, crmsync::net::ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let len = u32::try_from(presentation.len()).unwrap();
    send.write_all(&len.to_be_bytes()).await.unwrap();
    send.write_all(presentation).await.unwrap();
    let _their_presentation = read_frame(&mut recv).await;
    let verdict = read_frame(&mut recv).await;
    endpoint.close().await;
    verdict
}

pub(crate) async fn read_frame(recv: &mut iroh::endpoint::RecvStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    recv.read_exact(&mut body).await.unwrap();
    body
}

/// The handshake's presentation for a credential given in text form, as postcard lays it out:
/// `Some` (1), the credential.
fn presentation_of(credential_text: &str) -> Vec<u8> {
    let encoded = credential_text.strip_prefix("CRMSYNC1").unwrap();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(encoded.as_bytes())
        .unwrap();
    [vec![1u8], bytes].concat()
}

/// The verdict frame of a refusal, as postcard lays out `Verdict::Refuse(reason)`.
fn refusal_tag(verdict: &[u8]) -> (u8, u8) {
    (verdict[0], verdict[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_are_refused_each_with_its_own_reason_and_nothing_changes() {
    let a = admin();
    for i in 0..20 {
        company(&a, &format!("Customer {i}"));
    }
    let before = digest(&a);
    let na = online(&a).await;

    // No credential at all: the app cannot go online, and a bare client is refused.
    let stranger = Engine::in_memory().unwrap();
    assert!(matches!(
        stranger.enable_network(NetOptions::loopback()).await,
        Err(NetError::NotJoined)
    ));
    let verdict = raw_handshake(SecretKey::generate(), na.addr(), &[0]).await;
    assert_eq!(refusal_tag(&verdict), (1, 0), "Refuse(NoCredential)");

    // A member of another workspace.
    let other = admin();
    company(&other, "Not yours");
    let no = online(&other).await;
    let err = no.sync_with(na.addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::PeerRefused(Refusal::OtherWorkspace { .. })
                | NetError::RefusedByPeer(Refusal::OtherWorkspace { .. })
        ),
        "{err}"
    );
    no.shutdown().await;

    // An expired credential.
    let expiring = invited(
        &a,
        Role::Member,
        Some(Utc::now() + chrono::Duration::seconds(2)),
    );
    company(&expiring, "Written after expiry");
    let ne = online(&expiring).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = ne.sync_with(na.addr()).await.unwrap_err();
    assert!(
        matches!(err, NetError::RefusedByPeer(Refusal::Expired { .. })),
        "{err}"
    );
    ne.shutdown().await;

    // A forged signature: a real credential with one signature bit flipped.
    let secret = SecretKey::generate();
    let credential = a
        .invite_device(secret.public(), Role::Member, None)
        .unwrap()
        .to_string();
    let mut forged = presentation_of(&credential);
    let last_signature_byte = forged.len() - 1;
    forged[last_signature_byte] ^= 1;
    let verdict = raw_handshake(secret.clone(), na.addr(), &forged).await;
    assert_eq!(refusal_tag(&verdict), (1, 3), "Refuse(BadSignature)");

    // A valid credential presented by another node than it was issued to.
    let verdict = raw_handshake(
        SecretKey::generate(),
        na.addr(),
        &presentation_of(&credential),
    )
    .await;
    assert_eq!(refusal_tag(&verdict), (1, 4), "Refuse(NodeMismatch)");

    // ... and by its own node it passes the handshake (the control for the two above).
    let verdict = raw_handshake(secret, na.addr(), &presentation_of(&credential)).await;
    assert_eq!(verdict, vec![0], "Accept");

    // A revoked device, refused by a peer that learned the revocation from a third device.
    let b = invited(&a, Role::Member, None);
    let c = invited(&a, Role::Member, None);
    company(&b, "From a revoked device");
    let (nb, nc) = (online(&b).await, online(&c).await);
    a.revoke(b.node_id().unwrap()).unwrap();
    let err = nb.sync_with(na.addr()).await.unwrap_err();
    assert!(
        matches!(err, NetError::RefusedByPeer(Refusal::Revoked)),
        "{err}"
    );
    let c_before = digest(&c);
    na.sync_with(nc.addr()).await.unwrap(); // c learns the revocation
    let c_after_admin = digest(&c);
    assert_ne!(c_before, c_after_admin);
    let err = nb.sync_with(nc.addr()).await.unwrap_err();
    assert!(
        matches!(err, NetError::RefusedByPeer(Refusal::Revoked)),
        "{err}"
    );
    assert_eq!(
        digest(&c),
        c_after_admin,
        "the revoked device changed nothing"
    );

    assert_eq!(
        digest(&a),
        before,
        "no refused peer changed the admin's store"
    );
    for n in [na, nb, nc] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_device_receives_but_its_edits_stay_local() {
    let a = admin();
    let reader = invited(&a, Role::ReadOnly, None);
    let acme = company(&a, "Acme");
    let (na, nr) = (online(&a).await, online(&reader).await);
    nr.sync_with(na.addr()).await.unwrap();
    assert_eq!(name_of(&reader, acme), Some(Value::from("Acme")));

    reader
        .update(acme, Patch::new().set("name", "Renamed by a reader"))
        .unwrap();
    let local_only = company(&reader, "Reader's own");
    let before = digest(&a);
    // Both directions: the reader's session succeeds, nothing of its own edits is applied.
    nr.sync_with(na.addr()).await.unwrap();
    na.sync_with(nr.addr()).await.unwrap();
    assert_eq!(digest(&a), before);
    assert_eq!(name_of(&a, acme), Some(Value::from("Acme")));
    assert!(a.get(local_only).unwrap().is_none());

    // It keeps receiving.
    a.update(acme, Patch::new().set("industry", "retail"))
        .unwrap();
    nr.sync_with(na.addr()).await.unwrap();
    assert_eq!(
        reader.get(acme).unwrap().unwrap().get("industry"),
        Some(&Value::from("retail"))
    );
    na.shutdown().await;
    nr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_sync_is_completed_by_the_next_session() {
    const RECORDS: usize = 10_000;
    let a = admin();
    let b = invited(&a, Role::Member, None);
    let records: Vec<NewRecord> = (0..RECORDS)
        .map(|i| NewRecord::new(RecordType::Company).with("name", format!("Company {i}")))
        .collect();
    a.create_many(records).unwrap();
    let mut options = NetOptions::loopback();
    options.sync.batch_records = 50; // many batches, so the cut lands mid-session
    let na = a.enable_network(options.clone()).await.unwrap();
    let nb = b.enable_network(options.clone()).await.unwrap();

    let arrivals = b.subscribe();
    let session = {
        let nb = nb.clone();
        let target = na.addr();
        tokio::spawn(async move { nb.sync_with(target).await })
    };
    // Close b's endpoint as soon as the first batch is applied.
    tokio::task::spawn_blocking(move || arrivals.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("a first batch arrives");
    nb.shutdown().await;
    let cut = session.await.unwrap();
    assert!(cut.is_err(), "the session was cut off");
    let partial = b.all_heads().unwrap().len();
    assert!(partial > 0 && partial < RECORDS, "partial: {partial}");

    // The same device comes back (same node key) and finishes.
    let nb = b.enable_network(options).await.unwrap();
    let report = nb
        .sync_with(na.addr())
        .await
        .expect("next session completes");
    assert_eq!(report.records_received, RECORDS - partial);
    assert_eq!(digest(&a), digest(&b));
    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reach_each_other_through_a_configured_relay_url() {
    use iroh_relay::server::{RelayConfig, Server, ServerConfig};
    // A relay of our own on loopback; the peer is dialed by its relay URL alone.
    let mut config = ServerConfig::default();
    config.relay = Some(RelayConfig::new(([127, 0, 0, 1], 0)));
    let relay = Server::spawn(config).await.expect("relay starts");
    let url: iroh::RelayUrl = format!("http://{}", relay.http_addr().unwrap())
        .parse()
        .unwrap();
    let mut options = NetOptions::loopback();
    options.relay_url = Some(url.clone());

    let a = admin();
    let b = invited(&a, Role::Member, None);
    let acme = company(&a, "Acme");
    let na = a.enable_network(options.clone()).await.unwrap();
    let nb = b.enable_network(options).await.unwrap();
    let by_relay_only = EndpointAddr::from_parts(na.node_id(), [iroh::TransportAddr::Relay(url)]);
    nb.sync_with(by_relay_only)
        .await
        .expect("session through the relay");
    assert_eq!(name_of(&b, acme), Some(Value::from("Acme")));
    na.shutdown().await;
    nb.shutdown().await;
    relay.shutdown().await.unwrap();
}
