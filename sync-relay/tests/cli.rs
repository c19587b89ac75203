//! The `crmsync-relay` binary as an operator runs it: init, workspace add, serve, status.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use assert_cmd::cargo::cargo_bin;
use crmsync::net::{EndpointAddr, NetOptions, PublicKey, Role, TransportAddr};
use crmsync::{Engine, NewRecord, RecordType};

fn relay() -> Command {
    Command::new(cargo_bin("crmsync-relay"))
}

fn stdout_of(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

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

    let out = stdout_of(relay().args(["init", "--config", config_arg]));
    let node_id: PublicKey = out
        .lines()
        .find_map(|l| l.strip_prefix("relay node id: "))
        .expect("init prints the node id")
        .parse()
        .unwrap();
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
    // Any free port on loopback, for the test.
    std::fs::write(&config, text.replace("127.0.0.1:7788", "127.0.0.1:0")).unwrap();

    let admin = Engine::in_memory().unwrap();
    let admin_credential = admin.init_admin().unwrap();
    let for_relay = admin.invite_device(node_id, Role::Member, None).unwrap();
    let ws = admin.workspace_id().to_string();
    let admin_key = admin_credential.admin().to_string();
    stdout_of(relay().args([
        "workspace",
        "add",
        "--config",
        config_arg,
        "--id",
        &ws,
        "--admin-key",
        &admin_key,
        "--credential",
        &for_relay.to_string(),
    ]));
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
    network.shutdown().await;

    // SIGTERM: a graceful stop, exit code 0.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(server.wait().unwrap().success());

    let out = stdout_of(relay().args(["status", "--config", config_arg]));
    assert!(out.contains(&format!("{ws}  records: 1")), "{out}");
}
