//! The relay as a library, in-process on loopback: store-and-forward and refusals.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crmsync::net::{EndpointAddr, NetError, NetOptions, Refusal, Role};
use crmsync::sync::Replica;
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType, Value};
use crmsync_relay::{Config, Relay, RunningRelay};

fn loopback_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.join("relay"),
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::default()
    }
}

/// A relay serving the admin's workspace, with the credential the admin issued it.
async fn relay_for(admin: &Engine, dir: &std::path::Path) -> (Relay, RunningRelay) {
    relay_with(admin, loopback_config(dir)).await
}

async fn relay_with(admin: &Engine, config: Config) -> (Relay, RunningRelay) {
    let relay = Relay::open(config).unwrap();
    let credential = admin
        .invite_device(relay.node_id(), Role::Member, None)
        .unwrap();
    relay
        .add_workspace(
            admin.workspace_id(),
            credential.admin(),
            &credential.to_string(),
        )
        .unwrap();
    let running = relay.serve().await.unwrap();
    (relay, running)
}

fn admin() -> Engine {
    let e = Engine::in_memory().unwrap();
    e.init_admin().unwrap();
    e
}

fn invited(admin: &Engine, role: Role) -> Engine {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(admin.workspace_id());
    let device = Engine::in_memory_with(options).unwrap();
    let credential = admin
        .invite_device(device.node_id().unwrap(), role, None)
        .unwrap();
    device.join(&credential.to_string()).unwrap();
    device
}

fn company(e: &Engine, name: &str) -> RecordId {
    e.create(NewRecord::new(RecordType::Company).with("name", name))
        .unwrap()
        .id
}

fn name_of(e: &Engine, id: RecordId) -> Option<Value> {
    e.get(id).unwrap().and_then(|r| r.get("name").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_pushed_monday_morning_are_pulled_monday_night() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let b = invited(&a, Role::Member);
    let (relay, running) = relay_for(&a, dir.path()).await;

    let deal = a
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Renewal")
                .with("stage", "proposal"),
        )
        .unwrap()
        .id;
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    na.sync_with(running.addr()).await.unwrap();
    na.shutdown().await; // A is gone before B ever comes online
    drop(a);

    let nb = b.enable_network(NetOptions::loopback()).await.unwrap();
    nb.sync_with(running.addr()).await.unwrap();
    assert_eq!(
        b.get(deal).unwrap().unwrap().get("stage"),
        Some(&Value::Enum("proposal".into()))
    );
    // B's edit goes back the same way.
    b.update(deal, Patch::new().set("stage", "negotiation"))
        .unwrap();
    nb.sync_with(running.addr()).await.unwrap();
    let stored = relay.workspaces().status().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].records, 1);
    nb.shutdown().await;
    running.shutdown().await;

    // The relay's data survives a restart.
    drop(relay);
    let relay = Relay::open(loopback_config(dir.path())).unwrap();
    assert_eq!(relay.workspaces().status().unwrap()[0].records, 1);
}

/// Shutdown returns only once the sessions in flight let go of the workspaces, so the relay's
/// files reopen right after, every time (an operator's in-process restart; was a flaky test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_reopens_right_after_shutdown_even_with_sessions_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    for i in 0..50 {
        company(&a, &format!("Company {i}"));
    }
    let (mut relay, mut running) = relay_for(&a, dir.path()).await;
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    for round in 0..8u64 {
        company(&a, &format!("Round {round}"));
        let sync = tokio::spawn({
            let (na, addr) = (na.clone(), running.addr());
            async move { na.sync_with(addr).await }
        });
        // Shut down before, during or after the session.
        tokio::time::sleep(Duration::from_millis(round * 4)).await;
        running.shutdown().await;
        drop(relay);
        // The device's side may wait out its timeouts against the closed relay: not the point.
        sync.abort();
        relay = Relay::open(loopback_config(dir.path()))
            .unwrap_or_else(|e| panic!("round {round}: reopening: {e}"));
        running = relay.serve().await.unwrap();
    }
    na.sync_with(running.addr()).await.unwrap();
    assert_eq!(relay.workspaces().status().unwrap()[0].records, 58);
    na.shutdown().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_outsiders_revoked_devices_and_read_only_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    company(&a, "Acme");
    let (relay, running) = relay_for(&a, dir.path()).await;
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    na.sync_with(running.addr()).await.unwrap();
    let ws = a.workspace_id();
    let heads = || relay.workspaces().get(ws).unwrap().all_heads().unwrap();
    let before = heads();

    // A member of a workspace the relay does not serve.
    let stranger = admin();
    company(&stranger, "Elsewhere");
    let ns = stranger
        .enable_network(NetOptions::loopback())
        .await
        .unwrap();
    let err = ns.sync_with(running.addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::RefusedByPeer(Refusal::UnknownWorkspace { .. })
        ),
        "{err}"
    );

    // A revoked device: the relay learns the revocation from the admin's next session.
    let revoked = invited(&a, Role::Member);
    company(&revoked, "From a revoked device");
    a.revoke(revoked.node_id().unwrap()).unwrap();
    na.sync_with(running.addr()).await.unwrap();
    let nr = revoked
        .enable_network(NetOptions::loopback())
        .await
        .unwrap();
    let err = nr.sync_with(running.addr()).await.unwrap_err();
    assert!(
        matches!(err, NetError::RefusedByPeer(Refusal::Revoked)),
        "{err}"
    );

    // A read-only device receives, and its edits are not stored.
    let reader = invited(&a, Role::ReadOnly);
    let nro = reader.enable_network(NetOptions::loopback()).await.unwrap();
    nro.sync_with(running.addr()).await.unwrap();
    let acme = reader.all_heads().unwrap()[0].0;
    assert_eq!(name_of(&reader, acme), Some(Value::from("Acme")));
    reader
        .update(acme, Patch::new().set("name", "Renamed by a reader"))
        .unwrap();
    company(&reader, "Reader's own");
    nro.sync_with(running.addr()).await.unwrap();

    assert_eq!(
        heads(),
        before,
        "nothing of the refused or read-only devices was stored"
    );
    for n in [na, ns, nr, nro] {
        n.shutdown().await;
    }
    running.shutdown().await;
}

/// Waits until `done` holds, for at most 10 s; returns how long it took.
async fn eventually(what: &str, done: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_devices_receive_each_others_edits_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let b = invited(&a, Role::Member);
    let c = invited(&a, Role::Member);
    let (_relay, running) = relay_for(&a, dir.path()).await;
    let mut networks = Vec::new();
    for device in [&a, &b, &c] {
        let network = device.enable_network(NetOptions::loopback()).await.unwrap();
        network.sync_with(running.addr()).await.unwrap();
        networks.push(network);
    }

    // A syncs once; B and C never ask (no background mode): only the relay's push can deliver.
    let acme = company(&a, "Acme");
    networks[0].sync_with(running.addr()).await.unwrap();
    let took = eventually("B and C receive A's record", || {
        name_of(&b, acme).is_some() && name_of(&c, acme).is_some()
    })
    .await;
    eprintln!("A's edit reached B and C in {took:?} after A's session");

    // B's edit travels back to A and on to C the same way.
    b.update(acme, Patch::new().set("name", "Acme Ltd"))
        .unwrap();
    networks[1].sync_with(running.addr()).await.unwrap();
    eventually("A and C receive B's rename", || {
        name_of(&a, acme) == Some(Value::from("Acme Ltd"))
            && name_of(&c, acme) == Some(Value::from("Acme Ltd"))
    })
    .await;
    for n in networks {
        n.shutdown().await;
    }
    running.shutdown().await;
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A workspace over `max_workspace_bytes` takes no more changes: a device's session still
/// receives, keeps its own changes (the report says they were held back) and delivers them
/// nowhere; nothing fails, and other workspaces are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_over_its_storage_quota_takes_no_changes_but_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let config = Config {
        max_workspace_bytes: 1,
        ..loopback_config(dir.path())
    };
    let (relay, running) = relay_with(&a, config).await;
    let served = relay.workspaces().get(a.workspace_id()).unwrap();
    let on_relay = company(&served, "Already on the relay");
    let mine = company(&a, "Written on the device");
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    for _ in 0..2 {
        let report = na
            .sync_with(running.addr())
            .await
            .expect("the session works");
        assert!(report.changes_held_back, "{report:?}");
        assert_eq!(report.records_sent, 0);
    }
    assert!(
        a.get(on_relay).unwrap().is_some(),
        "the device still receives"
    );
    assert!(
        served.get(mine).unwrap().is_none(),
        "the relay took nothing"
    );
    assert_eq!(served.record_count().unwrap(), 1);
    na.shutdown().await;
}

/// A client that sends half a request and waits is cut off after the header timeout (10 s),
/// and the endpoint keeps answering others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_endpoint_cuts_off_a_client_that_never_finishes_its_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let (_relay, running) = relay_for(&a, dir.path()).await;
    let ops = running.metrics_addr().expect("served by default");
    let mut slow = tokio::net::TcpStream::connect(ops).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(
        crmsync_relay::fetch(ops, "/healthz").await.unwrap(),
        (200, "ok\n".to_string())
    );
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the half-sent request is still held after 30 s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut off too early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_status_are_served_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    company(&a, "Acme");
    company(&a, "Globex");
    let (_relay, running) = relay_for(&a, dir.path()).await;
    let ops = running.metrics_addr().expect("served by default");
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    na.sync_with(running.addr()).await.unwrap();
    let stranger = admin();
    let ns = stranger
        .enable_network(NetOptions::loopback())
        .await
        .unwrap();
    ns.sync_with(running.addr()).await.unwrap_err();

    assert_eq!(
        crmsync_relay::fetch(ops, "/healthz").await.unwrap(),
        (200, "ok\n".to_string())
    );
    // A device's session returns once it has the relay's last frame; the relay counts a
    // session after it has seen the device close its side, a moment later.
    let ws = format!("workspace=\"{}\"", a.workspace_id());
    let ok = [ws.as_str(), "direction=\"incoming\"", "outcome=\"ok\""];
    let started = Instant::now();
    let metrics = loop {
        let (code, metrics) = crmsync_relay::fetch(ops, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        let refused = ["workspace=\"none\"", "reason=\"unknown_workspace\""];
        let counted = sample(&metrics, "crmsync_relay_sessions_total", &ok).is_some()
            && sample(&metrics, "crmsync_relay_refused_peers_total", &refused).is_some();
        if counted || started.elapsed() > Duration::from_secs(10) {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let ok_sessions = sample(&metrics, "crmsync_relay_sessions_total", &ok);
    assert_eq!(ok_sessions, Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "crmsync_relay_records_applied_total", &[&ws]),
        Some(2.0),
        "{metrics}"
    );
    assert!(sample(&metrics, "crmsync_relay_received_bytes_total", &[&ws]).unwrap() > 0.0);
    // The stranger's workspace is not served: counted without echoing its id.
    assert_eq!(
        sample(
            &metrics,
            "crmsync_relay_refused_peers_total",
            &["workspace=\"none\"", "reason=\"unknown_workspace\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains(&stranger.workspace_id().to_string()));
    assert_eq!(
        sample(&metrics, "crmsync_relay_connected_devices", &[&ws]),
        Some(1.0),
        "{metrics}"
    );

    let (code, status) = crmsync_relay::fetch(ops, "/status").await.unwrap();
    assert_eq!(code, 200);
    let status: crmsync_relay::LiveStatus = serde_json::from_str(&status).unwrap();
    assert_eq!(status.workspaces.len(), 1);
    assert_eq!(status.workspaces[0].records, 2);
    assert_eq!(
        status.workspaces[0].connected_devices,
        vec![na.node_id().to_string()]
    );
    assert_eq!(crmsync_relay::fetch(ops, "/nope").await.unwrap().0, 404);
    na.shutdown().await;
    ns.shutdown().await;
    running.shutdown().await;
}

/// A member whose client completes the membership handshake by hand and then says nothing,
/// so the relay holds a session slot for it (an outsider's silent stream takes none).
async fn silent_session(admin: &Engine, target: EndpointAddr) -> iroh::Endpoint {
    use iroh::endpoint::{PortmapperConfig, presets};
    let secret = iroh::SecretKey::generate();
    let credential = admin
        .invite_device(secret.public(), Role::Member, None)
        .unwrap()
        .to_string();
    let endpoint = iroh::Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_address_lookup()
        .portmapper_config(PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap();
    let conn = endpoint.connect(target, crmsync::net::ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let frame = |body: &[u8]| [&(body.len() as u32).to_be_bytes()[..], body].concat();
    async fn read_frame(recv: &mut iroh::endpoint::RecvStream) -> Vec<u8> {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        recv.read_exact(&mut body).await.unwrap();
        body
    }
    // Presentation: `Some` (1) and the credential, as postcard lays them out.
    let encoded = credential.strip_prefix("CRMSYNC1").unwrap();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(encoded.as_bytes())
        .unwrap();
    send.write_all(&frame(&[vec![1u8], bytes].concat()))
        .await
        .unwrap();
    read_frame(&mut recv).await; // the relay's presentation
    send.write_all(&frame(&[0])).await.unwrap(); // Accept
    assert_eq!(read_frame(&mut recv).await, vec![0], "the relay accepts");
    // No revocations: a count of 0 and the SHA-256 of nothing; the relay knows none either.
    let mut summary = vec![0u8];
    summary.extend(
        data_encoding::HEXLOWER
            .decode(b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap(),
    );
    send.write_all(&frame(&summary)).await.unwrap();
    read_frame(&mut recv).await;
    // Keep the stream open (the endpoint owns the connection), and say nothing more.
    std::mem::forget(send);
    std::mem::forget(recv);
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_a_reason_and_change_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,crmsync=debug")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let config = Config {
        max_sessions: 1,
        max_frame_bytes: 64 << 10,
        device_bytes_per_minute: 40_000,
        ..loopback_config(dir.path())
    };
    let (relay, running) = relay_with(&a, config).await;
    let ws = a.workspace_id();
    let records = || relay.workspaces().get(ws).unwrap().all_heads().unwrap();
    // Batches well under the relay's largest frame.
    let mut options = NetOptions::loopback();
    options.sync.batch_records = 50;
    let na = a.enable_network(options).await.unwrap();

    // Busy: a silent member holds the only session slot.
    let hog = silent_session(&a, running.addr()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    company(&a, "Acme");
    let err = na.sync_with(running.addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::RefusedByPeer(Refusal::Busy { max_sessions: 1 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("maximum of 1 sessions"), "{err}");
    assert!(records().is_empty());
    hog.close().await;
    // The slot is freed when the silent client goes.
    eventually("the slot is free", || {
        running.network().active_sessions() == 0
    })
    .await;
    na.sync_with(running.addr()).await.unwrap();
    assert_eq!(records().len(), 1);
    // The relay holds its one slot until the device has read the session's last frames.
    eventually("the slot is free again", || {
        running.network().active_sessions() == 0
    })
    .await;

    // Frame size: a device sends one record larger than the relay's largest frame.
    let f = invited(&a, Role::Member);
    f.create(
        NewRecord::new(RecordType::Activity)
            .with("kind", "note")
            .with("body", "x".repeat(100 << 10)),
    )
    .unwrap();
    let nf = f.enable_network(NetOptions::loopback()).await.unwrap();
    let before = records();
    let err = nf.sync_with(running.addr()).await.unwrap_err();
    assert!(err.to_string().contains("65536"), "names the limit: {err}");
    assert_eq!(records(), before);
    nf.shutdown().await;

    // Bytes per minute: a burst of records exceeds the device's budget; the session is cut,
    // and the next one is refused with the time to wait.
    for i in 0..120 {
        a.create(
            NewRecord::new(RecordType::Activity)
                .with("kind", "note")
                .with("body", format!("{i} {}", "y".repeat(300))),
        )
        .unwrap();
    }
    na.sync_with(running.addr())
        .await
        .expect_err("over the budget");
    eventually("the cut session's slot is free", || {
        running.network().active_sessions() == 0
    })
    .await;
    // The device dials again when its session is cut, and the relay's refusal of that retry
    // holds its one handshake place until the stream is done, a moment after the device read
    // it: until then the relay answers busy.
    let started = Instant::now();
    let err = loop {
        let err = na.sync_with(running.addr()).await.unwrap_err();
        if !matches!(err, NetError::RefusedByPeer(Refusal::Busy { .. })) {
            break err;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still busy: {err}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    match &err {
        NetError::RefusedByPeer(Refusal::RateLimited {
            bytes_per_minute: 40_000,
            retry_after_secs,
        }) => assert!(*retry_after_secs >= 1),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("40000 bytes per minute"), "{err}");
    na.shutdown().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reach_the_relay_through_its_embedded_iroh_relay() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    let b = invited(&a, Role::Member);
    let acme = company(&a, "Acme");
    let config = Config {
        iroh_relay_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..loopback_config(dir.path())
    };
    let (_relay, running) = relay_with(&a, config).await;
    let url = running
        .iroh_relay_url()
        .expect("embedded relay runs")
        .clone();
    assert!(
        running
            .addr()
            .addrs
            .contains(&iroh::TransportAddr::Relay(url.clone())),
        "the relay's address names its iroh relay"
    );
    // Devices know the relay by node id and iroh relay URL only: no direct address.
    let by_url =
        EndpointAddr::from_parts(running.addr().id, [iroh::TransportAddr::Relay(url.clone())]);
    let options = NetOptions {
        relay_url: Some(url),
        ..NetOptions::loopback()
    };
    for device in [&a, &b] {
        let network = device.enable_network(options.clone()).await.unwrap();
        network.sync_with(by_url.clone()).await.unwrap();
        network.shutdown().await;
    }
    assert_eq!(name_of(&b, acme), Some(Value::from("Acme")));
    running.shutdown().await;
}
