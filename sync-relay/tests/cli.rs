//! The `crmsync-relay` binary as an operator runs it: init, workspace add, serve, status.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::common::{add_workspace, init, relay, stdout_of};
use crmsync::net::{EndpointAddr, NetOptions, Role, TransportAddr};
use crmsync::sync::Replica;
use crmsync::{Engine, NewRecord, RecordType};

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["serve", "--help"],
        vec!["status", "--help"],
        vec!["workspace", "add", "--help"],
    ] {
        let out = stdout_of(relay().args(&args));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_add_serve_status_and_sigterm_as_an_operator_would() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let config_arg = config.to_str().unwrap();

    let node_id = init(config_arg);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("# crmsync-relay configuration"),
        "commented: {text}"
    );
    // A second init does not overwrite.
    assert!(
        !relay()
            .args(["init", "--config", config_arg])
            .status()
            .unwrap()
            .success()
    );
    // Any free port on loopback for devices; a known free one for `status` to ask.
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = text
        .replace("127.0.0.1:7788", "127.0.0.1:0")
        .replace("127.0.0.1:7789", &format!("127.0.0.1:{ops_port}"));
    std::fs::write(&config, text).unwrap();

    let admin = Engine::in_memory().unwrap();
    let admin_credential = admin.init_admin().unwrap();
    let for_relay = admin.invite_device(node_id, Role::Member, None).unwrap();
    let ws = admin.workspace_id().to_string();
    let admin_key = admin_credential.admin().to_string();
    add_workspace(config_arg, &admin, &admin_key, &for_relay.to_string());
    // A credential for someone else is refused with a reason.
    let wrong = admin
        .invite_device(admin.node_id().unwrap(), Role::Member, None)
        .unwrap();
    let out = relay()
        .args([
            "workspace",
            "add",
            "--config",
            config_arg,
            "--id",
            &ws,
            "--admin-key",
            &admin_key,
            "--credential",
            &wrong.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not this relay"));

    let mut server = relay()
        .args(["serve", "--config", config_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on: ") {
            break a.parse().unwrap();
        }
    };
    admin
        .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
        .unwrap();
    let network = admin.enable_network(NetOptions::loopback()).await.unwrap();
    let report = network
        .sync_with(EndpointAddr::from_parts(node_id, [TransportAddr::Ip(addr)]))
        .await
        .unwrap();
    assert_eq!(report.records_sent, 1);

    // While it serves, `status` asks the relay itself: the admin's device is connected.
    let out = stdout_of(relay().args(["status", "--config", config_arg]));
    assert!(out.contains("state: running"), "{out}");
    assert!(
        out.contains(&format!(
            "{ws}  records: 1  revoked devices: 0  connected devices: 1"
        )),
        "{out}"
    );
    assert!(out.contains(&network.node_id().to_string()), "{out}");
    let (code, body) =
        crmsync_relay::fetch(SocketAddr::from(([127, 0, 0, 1], ops_port)), "/healthz")
            .await
            .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    network.shutdown().await;

    // SIGTERM: a graceful stop, exit code 0.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(server.wait().unwrap().success());

    let out = stdout_of(relay().args(["status", "--config", config_arg]));
    assert!(out.contains("state: not running"), "{out}");
    assert!(out.contains(&format!("{ws}  records: 1")), "{out}");
}

/// A UDP port free on loopback now (the relay must come back on the same address after a
/// restart, so the test cannot let it pick one).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(config_arg: &str) -> (std::process::Child, SocketAddr) {
    let mut server = relay()
        .args(["serve", "--config", config_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(server.stderr.take().unwrap());
    let addr = loop {
        let Some(line) = lines.next() else {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut errors, &mut text).unwrap();
            panic!("serve printed no address; stderr: {text}");
        };
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening on: ") {
            break a.parse().unwrap();
        }
    };
    // Keep reading so the relay never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::spawn(move || std::io::copy(&mut errors, &mut std::io::sink()));
    (server, addr)
}

fn records_in(status: &str) -> usize {
    status
        .lines()
        .find_map(|l| l.split("records: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_sync_keeps_every_applied_batch_and_devices_complete_later() {
    const RECORDS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let config_arg = config.to_str().unwrap();
    let node_id = init(config_arg);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:7788", &format!("127.0.0.1:{}", free_udp_port()))
        .replace("127.0.0.1:7789", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();

    let admin = Engine::in_memory().unwrap();
    let admin_credential = admin.init_admin().unwrap();
    let for_relay = admin.invite_device(node_id, Role::Member, None).unwrap();
    add_workspace(
        config_arg,
        &admin,
        &admin_credential.admin().to_string(),
        &for_relay.to_string(),
    );
    admin
        .create_many(
            (0..RECORDS)
                .map(|i| NewRecord::new(RecordType::Company).with("name", format!("Company {i}")))
                .collect(),
        )
        .unwrap();

    let (mut server, addr) = serve(config_arg);
    let relay_addr = EndpointAddr::from_parts(node_id, [TransportAddr::Ip(addr)]);
    // Small batches: the relay commits many of them before it is killed.
    let mut options = NetOptions::loopback();
    options.sync.batch_records = 100;
    // A killed peer never says goodbye: give up on it soon.
    options.sync.idle_timeout = std::time::Duration::from_secs(10);
    let network = admin.enable_network(options).await.unwrap();
    let session = tokio::spawn({
        let network = network.clone();
        let relay_addr = relay_addr.clone();
        async move { network.sync_with(relay_addr).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let first = session.await.unwrap();
    eprintln!("session when the relay was killed: {first:?}");

    // The relay's file opens after the crash and holds whole batches only.
    let kept = records_in(&stdout_of(relay().args(["status", "--config", config_arg])));
    eprintln!("records the relay had committed: {kept}");
    assert!(kept <= RECORDS);

    let (mut server, _) = serve(config_arg);
    let report = network.sync_with(relay_addr.clone()).await.unwrap();
    assert_eq!(
        report.records_sent,
        RECORDS - kept,
        "the next session sends exactly what the relay had not committed"
    );
    network.shutdown().await;

    let laptop = {
        let mut options = crmsync::EngineOptions::default();
        options.store.workspace = Some(admin.workspace_id());
        let laptop = Engine::in_memory_with(options).unwrap();
        let credential = admin
            .invite_device(laptop.node_id().unwrap(), Role::Member, None)
            .unwrap();
        laptop.join(&credential.to_string()).unwrap();
        laptop
    };
    let nl = laptop.enable_network(NetOptions::loopback()).await.unwrap();
    nl.sync_with(relay_addr).await.unwrap();
    assert_eq!(laptop.all_heads().unwrap(), admin.all_heads().unwrap());
    nl.shutdown().await;
    server.kill().unwrap();
    server.wait().unwrap();
}
