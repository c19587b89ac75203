//! What the tests that run the `crmsync-relay` binary share.

use std::process::Command;

use assert_cmd::cargo::cargo_bin;

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
