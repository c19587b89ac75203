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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("relay-data"),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 7788)),
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
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }
}
