//! The relay's configuration file (TOML), with defaults that work out of the box on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RelayError;

/// Where the relay keeps its data and how it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the node key and one database file per workspace. A relative path is
    /// relative to the config file's directory.
    pub data_dir: PathBuf,
    /// UDP address devices connect to (iroh QUIC).
    pub bind_addr: SocketAddr,
    /// TCP address of the operations endpoint: `/healthz`, Prometheus `/metrics`, and
    /// `/status` (what `crmsync-relay status` asks a running relay). `None`: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// Sessions served at once; a device opening one more is refused as busy and retries.
    pub max_sessions: usize,
    /// Largest sync frame accepted or sent, in bytes.
    pub max_frame_bytes: usize,
    /// Bytes each device may move per minute (both directions); 0: no limit.
    pub device_bytes_per_minute: u64,
    /// Size a workspace's database may reach; past it the relay takes no more changes for
    /// that workspace (devices keep theirs and still receive). 0: no limit.
    pub max_workspace_bytes: u64,
    /// Also run an iroh relay server (NAT traversal for devices that cannot reach each other
    /// directly) on this TCP address, plain HTTP. `None` (default): not run.
    pub iroh_relay_addr: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("relay-data"),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 7788)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 7789))),
            max_sessions: 512,
            max_frame_bytes: 16 << 20,
            device_bytes_per_minute: 1 << 30,
            max_workspace_bytes: 0,
            iroh_relay_addr: None,
        }
    }
}

/// The file `crmsync-relay init` writes: every setting with its default and why.
pub const TEMPLATE: &str = r#"# crmsync-relay configuration.

# Directory of the relay's node key (node.key) and of one database file per workspace
# (workspaces/<id>.redb). Relative to this file's directory.
data_dir = "relay-data"

# UDP address devices connect to (QUIC). The default listens on loopback only, so a fresh
# relay is reachable from this machine and nothing else; use "0.0.0.0:7788" to serve a team.
bind_addr = "127.0.0.1:7788"

# TCP address of /healthz, Prometheus /metrics and /status (`crmsync-relay status` reads it
# while the relay runs). Keep it off the public internet; remove the line to turn it off.
metrics_addr = "127.0.0.1:7789"

# Sessions served at once. A device opening one more is told the relay is busy and retries
# with backoff. Each session holds little memory; the bound protects the two cores.
max_sessions = 512

# Largest sync frame accepted or sent, in bytes (16 MiB). Larger frames end the session.
max_frame_bytes = 16777216

# Bytes each device may move per minute, both directions together (1 GiB); 0 disables the
# limit. A device over it is refused with the time to wait, and a session exceeding it is cut
# (what it applied is kept; the next session resumes).
device_bytes_per_minute = 1073741824

# Size a workspace's database file may reach, in bytes; 0 (default) sets no limit. Past it the
# relay takes no more changes for that workspace: devices keep theirs (their sessions say the
# changes were held back) and still receive, so one tenant cannot fill the disk all share.
max_workspace_bytes = 0

# Run an iroh relay server on this TCP address (plain HTTP), so devices behind NATs can reach
# each other without anyone's public relays: point devices at http://<this address>. Put a
# TLS-terminating proxy in front of it on the internet. Off unless set.
# iroh_relay_addr = "127.0.0.1:7790"
"#;

impl Config {
    /// Reads a config file; settings it omits keep their defaults.
    pub fn load(path: &Path) -> Result<Self, RelayError> {
        let text = std::fs::read_to_string(path).map_err(|e| RelayError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| RelayError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if config.max_sessions == 0 {
            return Err(RelayError::Config {
                path: path.to_path_buf(),
                reason: "max_sessions must be at least 1".into(),
            });
        }
        if config.max_frame_bytes < 64 << 10 {
            return Err(RelayError::Config {
                path: path.to_path_buf(),
                reason: "max_frame_bytes below 65536 would refuse ordinary batches".into(),
            });
        }
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_says_what_the_defaults_are() {
        let parsed: Config = toml::from_str(TEMPLATE).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
