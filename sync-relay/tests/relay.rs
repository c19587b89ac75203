//! The relay as a library, in-process on loopback: store-and-forward and refusals.

use std::net::SocketAddr;

use crmsync::net::{NetError, NetOptions, Refusal, Role};
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType, Value};
use crmsync_relay::{Config, Relay, RunningRelay};

fn loopback_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.join("relay"),
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// A relay serving the admin's workspace, with the credential the admin issued it.
async fn relay_for(admin: &Engine, dir: &std::path::Path) -> (Relay, RunningRelay) {
    let relay = Relay::open(loopback_config(dir)).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_outsiders_revoked_devices_and_read_only_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let a = admin();
    company(&a, "Acme");
    let (relay, running) = relay_for(&a, dir.path()).await;
    let na = a.enable_network(NetOptions::loopback()).await.unwrap();
    na.sync_with(running.addr()).await.unwrap();
    let ws = a.workspace_id();
    let heads = || {
        relay
            .workspaces()
            .get(ws)
            .unwrap()
            .store()
            .all_heads()
            .unwrap()
    };
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
    let acme = reader.store().all_heads().unwrap()[0].0;
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
