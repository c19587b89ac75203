//! crmsync-relay: a self-hostable store-and-forward peer for crmsync workspaces.
//!
//! The relay is a peer that is always on: devices of a workspace sync with it as they would
//! with each other, so two devices that are never online at the same time still converge. It
//! is built from the core's store, sync and net modules — the same membership handshake and
//! sync protocol, no second implementation — and keeps one database file per workspace, so one
//! tenant's damage or deletion touches no other.
//!
//! Trust: a workspace is registered with its admin's public key and a credential the admin
//! issued to the relay's node id (role member). Devices check the relay's credential like any
//! peer's; the relay checks theirs against the admin key, the node id of the connection, the
//! expiry and the revocations. The relay never holds the admin's private key.
//!
//! ```no_run
//! # async fn run() -> Result<(), crmsync_relay::RelayError> {
//! use crmsync_relay::{Config, Relay};
//!
//! let relay = Relay::open(Config::default())?;
//! let running = relay.serve().await?;
//! println!("devices dial {:?}", running.addr());
//! # Ok(())
//! # }
//! ```

mod config;
mod http;
mod metrics;
mod storage;
mod workspaces;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crmsync::net::{EndpointAddr, NetError, NetOptions, Network, RelayUrl};
use iroh::SecretKey;
use tokio::sync::watch;

pub use config::{Config, TEMPLATE};
pub use crmsync;
pub use http::{LiveStatus, LiveWorkspace, fetch};
pub use metrics::Metrics;
pub use storage::{LocalFiles, WorkspaceStorage};
pub use workspaces::{WorkspaceStatus, Workspaces};

/// Why a relay operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The config file cannot be read or parsed.
    #[error("config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The node key file is missing or damaged.
    #[error("node key {path}: {reason}")]
    NodeKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A workspace cannot be registered as asked.
    #[error("workspace {id}: {reason}")]
    Workspace {
        /// The workspace id.
        id: uuid::Uuid,
        /// Why.
        reason: String,
    },
    /// A file or directory of the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A workspace's database.
    #[error(transparent)]
    Store(#[from] crmsync::Error),
    /// Networking.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The operations endpoint (`/healthz`, `/metrics`, `/status`).
    #[error("operations endpoint: {0}")]
    Http(String),
    /// The embedded iroh relay server.
    #[error("iroh relay server: {0}")]
    IrohRelay(String),
}

const NODE_KEY_FILE: &str = "node.key";

/// Reads the relay's node key from the data directory, creating it on first use.
pub fn node_key(data_dir: &std::path::Path) -> Result<SecretKey, RelayError> {
    let path = data_dir.join(NODE_KEY_FILE);
    let io = |source| RelayError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| RelayError::NodeKey {
                    path: path.clone(),
                    reason: "not 64 hex digits".into(),
                })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let key = SecretKey::generate();
            let text = data_encoding::HEXLOWER.encode(&key.to_bytes());
            write_private(&path, text.as_bytes()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a file only its owner can read (the node key is the relay's identity).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A relay's data: its node key and its workspaces.
pub struct Relay {
    config: Config,
    key: SecretKey,
    workspaces: Arc<Workspaces>,
}

impl Relay {
    /// Opens the data directory (creating it and the node key on first use) and every
    /// registered workspace, one file each under `<data_dir>/workspaces/`.
    pub fn open(config: Config) -> Result<Self, RelayError> {
        let storage = LocalFiles::new(&config.data_dir.join("workspaces"))?;
        Self::open_with_storage(config, Box::new(storage))
    }

    /// Opens a relay whose workspaces live in `storage` (the node key stays in the data
    /// directory).
    pub fn open_with_storage(
        config: Config,
        storage: Box<dyn WorkspaceStorage>,
    ) -> Result<Self, RelayError> {
        let key = node_key(&config.data_dir)?;
        let mut workspaces = Workspaces::open(storage, &key)?;
        workspaces
            .set_quota((config.max_workspace_bytes > 0).then_some(config.max_workspace_bytes));
        let workspaces = Arc::new(workspaces);
        Ok(Self {
            config,
            key,
            workspaces,
        })
    }

    /// The relay's node id: what an admin issues the relay's credential to.
    pub fn node_id(&self) -> crmsync::net::PublicKey {
        self.key.public()
    }

    /// The registered workspaces.
    pub fn workspaces(&self) -> &Workspaces {
        &self.workspaces
    }

    /// Registers a workspace: `admin_key` is its trust anchor, `credential` the one its admin
    /// issued to this relay's node id.
    pub fn add_workspace(
        &self,
        id: uuid::Uuid,
        admin_key: crmsync::net::PublicKey,
        credential: &str,
    ) -> Result<(), RelayError> {
        self.workspaces.add(id, admin_key, credential, &self.key)
    }

    /// Starts serving devices on the configured address, the operations endpoint and, if
    /// configured, the embedded iroh relay server.
    pub async fn serve(&self) -> Result<RunningRelay, RelayError> {
        let listener = match self.config.metrics_addr {
            Some(addr) => Some(http::bind(addr).await?),
            None => None,
        };
        let iroh_relay = match self.config.iroh_relay_addr {
            Some(addr) => Some(start_iroh_relay(addr).await?),
            None => None,
        };
        let options = NetOptions {
            bind_addr: self.config.bind_addr,
            relay_url: iroh_relay.as_ref().map(|(_, url)| url.clone()),
            max_sessions: self.config.max_sessions,
            // A relay's devices often reconnect together (after its restart, say): as many
            // may be mid-handshake as may run sessions.
            max_handshakes: self.config.max_sessions,
            peer_bytes_per_minute: (self.config.device_bytes_per_minute > 0)
                .then_some(self.config.device_bytes_per_minute),
            sync: crmsync::sync::SyncOptions {
                max_frame: self.config.max_frame_bytes,
                ..Default::default()
            },
            ..NetOptions::default()
        };
        let network = Network::host(self.key.clone(), self.workspaces.clone(), options).await?;
        let (stop, stopped) = watch::channel(false);
        let operations = match listener {
            Some(listener) => {
                let operations = Arc::new(http::Operations {
                    network: network.clone(),
                    workspaces: self.workspaces.clone(),
                });
                Some(http::serve(listener, operations, stopped)?)
            }
            None => None,
        };
        let metrics_addr = operations.as_ref().map(|(addr, _)| *addr);
        tracing::info!(
            node_id = %network.node_id(),
            addr = ?network.addr(),
            ?metrics_addr,
            iroh_relay = ?iroh_relay.as_ref().map(|(_, url)| url),
            "relay serving"
        );
        Ok(RunningRelay {
            network,
            stop,
            operations,
            iroh_relay,
        })
    }
}

async fn start_iroh_relay(
    addr: SocketAddr,
) -> Result<(iroh_relay::server::Server, RelayUrl), RelayError> {
    use iroh_relay::server::{RelayConfig, Server, ServerConfig};
    // Non-exhaustive: built by mutation.
    let mut config = ServerConfig::default();
    config.relay = Some(RelayConfig::new(addr));
    let server = Server::spawn(config)
        .await
        .map_err(|e| RelayError::IrohRelay(e.to_string()))?;
    let bound = server
        .http_addr()
        .ok_or_else(|| RelayError::IrohRelay("no HTTP address bound".into()))?;
    // Bound to all interfaces, the relay reaches its own server over loopback.
    let host = if bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    };
    let url = format!("http://{host}")
        .parse()
        .map_err(|e| RelayError::IrohRelay(format!("{e}")))?;
    Ok((server, url))
}

/// A relay that serves devices until [`RunningRelay::shutdown`].
pub struct RunningRelay {
    network: Network,
    stop: watch::Sender<bool>,
    operations: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    iroh_relay: Option<(iroh_relay::server::Server, RelayUrl)>,
}

impl RunningRelay {
    /// The address devices dial: node id, bound sockets, and the embedded iroh relay's URL
    /// if it runs.
    pub fn addr(&self) -> EndpointAddr {
        self.network.addr()
    }

    /// Where `/healthz`, `/metrics` and `/status` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.operations.as_ref().map(|(addr, _)| *addr)
    }

    /// The embedded iroh relay server's URL (what devices set as their relay), if it runs.
    pub fn iroh_relay_url(&self) -> Option<&RelayUrl> {
        self.iroh_relay.as_ref().map(|(_, url)| url)
    }

    /// The network serving devices.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Stops accepting, closes every connection and the endpoint, then the operations
    /// endpoint and the iroh relay server. Sessions in flight end; every batch they applied
    /// is committed (a batch is one transaction), and the devices' next session resumes.
    pub async fn shutdown(self) {
        self.network.shutdown().await;
        self.stop.send_replace(true);
        if let Some((_, task)) = self.operations {
            // Once it ended, nothing of the endpoint holds the workspaces open.
            let _ = task.await;
        }
        if let Some((server, _)) = self.iroh_relay
            && let Err(e) = server.shutdown().await
        {
            tracing::warn!(error = %e, "iroh relay server did not stop cleanly");
        }
    }
}
