//! What the tests that run the `crmsync-relay` binary share.

use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use crmsync::Engine;
use crmsync::net::PublicKey;

/// The relay binary this workspace built.
pub fn relay() -> Command {
    Command::new(cargo_bin("crmsync-relay"))
}

/// Runs a command that must succeed and returns what it printed (its stderr on failure).
pub fn stdout_of(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `crmsync-relay init` on `config` and returns the node id it prints.
pub fn init(config: &str) -> PublicKey {
    stdout_of(relay().args(["init", "--config", config]))
        .lines()
        .find_map(|l| l.strip_prefix("relay node id: "))
        .expect("init prints the node id")
        .parse()
        .unwrap()
}

/// Registers `admin`'s workspace with the relay of `config`, proven by `admin_key`, with
/// `credential` (the relay's invitation) as the relay's membership.
pub fn add_workspace(config: &str, admin: &Engine, admin_key: &str, credential: &str) -> String {
    stdout_of(relay().args([
        "workspace",
        "add",
        "--config",
        config,
        "--id",
        &admin.workspace_id().to_string(),
        "--admin-key",
        admin_key,
        "--credential",
        credential,
    ]))
}
