//! The device's iroh endpoint: dials and accepts connections, reuses them for later sessions,
//! and runs one membership handshake plus one sync session per bi-directional stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iroh::endpoint::{Connection, PortmapperConfig, RecvStream, SendStream, presets};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMap, RelayMode, TransportAddr};
use tokio::sync::watch;

use super::background::Background;
use super::handshake::{self, Agreed};
use super::{ALPN, NetError, NetOptions};
use crate::engine::Engine;
use crate::model::DeviceId;
use crate::sync::{self, SyncOptions, SyncReport};

/// How long a finished session waits for the peer to read its last frames before the stream
/// is dropped (only matters when the endpoint closes right after).
const LINGER: Duration = Duration::from_secs(2);

/// What the network knows of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub node_id: EndpointId,
    /// Whether a connection to it is open.
    pub connected: bool,
    /// When the last session with it completed.
    pub last_sync: Option<DateTime<Utc>>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Local writes not yet delivered to it, as of the last completed session (all of them
    /// before the first).
    pub pending_changes: u64,
}

/// The network's state, published after every session and on every local change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStatus {
    /// Known peers, by node id.
    pub peers: Vec<PeerStatus>,
    /// Whether background mode runs.
    pub background: bool,
}

#[derive(Debug, Default)]
struct PeerEntry {
    addr: Option<EndpointAddr>,
    replica: Option<DeviceId>,
    last_sync: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// What the network serves: one device's replica, or a host's replicas of many workspaces.
pub(super) enum Home {
    Device(Engine),
    Host(Arc<dyn WorkspaceHost>),
}

/// A host of many workspaces under one node identity (the relay): incoming sessions are
/// routed to the replica of the workspace named in the peer's credential. Each replica must
/// hold a credential issued to the host's node id ([`Engine::set_node_key`], then
/// [`Engine::join`]).
pub trait WorkspaceHost: Send + Sync + 'static {
    /// The replica of `workspace`, if it is served here.
    fn replica(&self, workspace: uuid::Uuid) -> Option<Engine>;
}

pub(super) struct Shared {
    pub home: Home,
    pub options: NetOptions,
    endpoint: Endpoint,
    connections: Mutex<HashMap<EndpointId, Connection>>,
    /// One outgoing session per peer at a time (incoming ones are not held back: two peers
    /// each waiting for the other's lock would deadlock).
    outgoing: Mutex<HashMap<EndpointId, Arc<tokio::sync::Mutex<()>>>>,
    peers: Mutex<BTreeMap<EndpointId, PeerEntry>>,
    status: watch::Sender<NetStatus>,
    background: Mutex<Option<Background>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running network: the device's endpoint and its peers. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("node_id", &self.shared.endpoint.id())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts networking: binds an iroh endpoint with this device's node key and accepts
    /// sessions from members of the workspace. The device must have joined (or created) the
    /// workspace first. Must be called within a tokio runtime.
    pub async fn enable_network(&self, options: NetOptions) -> Result<Network, NetError> {
        if self.credential()?.is_none() {
            return Err(NetError::NotJoined);
        }
        Network::start(self.node_key()?, Home::Device(self.clone()), options).await
    }
}

impl Network {
    /// Starts a network that hosts many workspaces under the node key `key` (a relay): it
    /// accepts sessions from members of every workspace `host` serves and dials nobody.
    pub async fn host(
        key: iroh::SecretKey,
        host: Arc<dyn WorkspaceHost>,
        options: NetOptions,
    ) -> Result<Network, NetError> {
        Network::start(key, Home::Host(host), options).await
    }

    async fn start(
        key: iroh::SecretKey,
        home: Home,
        options: NetOptions,
    ) -> Result<Network, NetError> {
        let relay_mode = match &options.relay_url {
            Some(url) => RelayMode::Custom(RelayMap::from(url.clone())),
            None => RelayMode::Disabled,
        };
        // No address lookup service and no port mapper: peers are dialed by the addresses the
        // app gives, and nothing is announced or sent to multicast.
        let builder = Endpoint::builder(presets::Minimal)
            .secret_key(key)
            .alpns(vec![ALPN.to_vec()])
            .relay_mode(relay_mode)
            .clear_address_lookup()
            .portmapper_config(PortmapperConfig::Disabled)
            .clear_ip_transports()
            .bind_addr(options.bind_addr)
            .map_err(|e| NetError::Bind(e.to_string()))?;
        let endpoint = with_lan_discovery(builder, options.lan_discovery)?
            .bind()
            .await
            .map_err(|e| NetError::Bind(e.to_string()))?;
        let shared = Arc::new(Shared {
            home,
            options,
            endpoint,
            connections: Mutex::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            peers: Mutex::new(BTreeMap::new()),
            status: watch::Sender::new(NetStatus::default()),
            background: Mutex::new(None),
        });
        tokio::spawn(accept_loop(Arc::downgrade(&shared)));
        Ok(Network { shared })
    }
}

#[cfg(feature = "lan-discovery")]
fn with_lan_discovery(
    builder: iroh::endpoint::Builder,
    enabled: bool,
) -> Result<iroh::endpoint::Builder, NetError> {
    Ok(if enabled {
        builder.address_lookup(iroh_mdns_address_lookup::MdnsAddressLookup::builder())
    } else {
        builder
    })
}

#[cfg(not(feature = "lan-discovery"))]
fn with_lan_discovery(
    builder: iroh::endpoint::Builder,
    enabled: bool,
) -> Result<iroh::endpoint::Builder, NetError> {
    if enabled {
        return Err(NetError::Bind(
            "LAN discovery was asked for, but crmsync was built without the \
             `lan-discovery` feature"
                .to_string(),
        ));
    }
    Ok(builder)
}

impl Network {
    /// This device's node id.
    pub fn node_id(&self) -> EndpointId {
        self.shared.endpoint.id()
    }

    /// How peers reach this device: its node id, its direct addresses (the bound sockets, or
    /// the interfaces' addresses when bound to all of them) and relay (if configured).
    pub fn addr(&self) -> EndpointAddr {
        // Bound to an unspecified address, the sockets say 0.0.0.0: the endpoint's own view
        // lists the interfaces' addresses instead, which a peer can dial.
        let mut addrs: Vec<TransportAddr> = self
            .shared
            .endpoint
            .bound_sockets()
            .into_iter()
            .filter(|a| !a.ip().is_unspecified())
            .map(TransportAddr::Ip)
            .collect();
        for addr in self.shared.endpoint.addr().addrs {
            if matches!(addr, TransportAddr::Ip(_)) && !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if let Some(url) = &self.shared.options.relay_url {
            addrs.push(TransportAddr::Relay(url.clone()));
        }
        EndpointAddr::from_parts(self.node_id(), addrs)
    }

    /// Remembers a peer (for background mode and status) without syncing now.
    pub fn add_peer(&self, addr: EndpointAddr) {
        let id = addr.id;
        lock(&self.shared.peers).entry(id).or_default().addr = Some(addr);
        self.shared.publish_status();
        self.shared.peers_changed();
    }

    /// Runs one session with `peer` (connecting, or reusing the open connection) and returns
    /// what it exchanged. The peer is remembered for background mode.
    pub async fn sync_with(&self, peer: impl Into<EndpointAddr>) -> Result<SyncReport, NetError> {
        let addr = peer.into();
        {
            let mut peers = lock(&self.shared.peers);
            let entry = peers.entry(addr.id).or_default();
            if !addr.addrs.is_empty() || entry.addr.is_none() {
                entry.addr = Some(addr.clone());
            }
        }
        self.shared.peers_changed();
        self.shared.sync_with(addr).await
    }

    /// The current status.
    pub fn status(&self) -> NetStatus {
        self.shared.compute_status()
    }

    /// A live view of the status, updated after every session and local change.
    pub fn subscribe_status(&self) -> watch::Receiver<NetStatus> {
        self.shared.status.subscribe()
    }

    /// Starts background mode: every known peer (and every peer added later) is synced
    /// whenever this device changes something, at least every
    /// [`NetOptions::poll_interval`], and retried with backoff while unreachable.
    pub fn start_background(&self) {
        let mut slot = lock(&self.shared.background);
        if slot.is_none() {
            *slot = Some(Background::start(&self.shared));
        }
        drop(slot);
        self.shared.publish_status();
    }

    /// Stops background mode (a session in flight is abandoned; the next one resumes).
    pub fn stop_background(&self) {
        let taken = lock(&self.shared.background).take();
        drop(taken);
        self.shared.publish_status();
    }

    /// Stops background mode, closes every connection and the endpoint.
    pub async fn shutdown(&self) {
        self.stop_background();
        self.shared.endpoint.close().await;
        lock(&self.shared.connections).clear();
    }
}

impl Shared {
    pub(super) fn known_peers(&self) -> Vec<(EndpointId, EndpointAddr)> {
        lock(&self.peers)
            .iter()
            .filter_map(|(id, e)| e.addr.clone().map(|a| (*id, a)))
            .collect()
    }

    pub(super) fn peer_addr(&self, id: &EndpointId) -> Option<EndpointAddr> {
        lock(&self.peers).get(id).and_then(|e| e.addr.clone())
    }

    fn peers_changed(&self) {
        if let Some(bg) = lock(&self.background).as_ref() {
            bg.peers_changed();
        }
    }

    pub(super) fn background_running(&self) -> bool {
        lock(&self.background).is_some()
    }

    /// The device's replica; `None` on a host of many workspaces.
    pub(super) fn device(&self) -> Option<&Engine> {
        match &self.home {
            Home::Device(engine) => Some(engine),
            Home::Host(_) => None,
        }
    }

    fn compute_status(&self) -> NetStatus {
        let device = self.device();
        let last_seq = device.map_or(0, |e| e.store().last_seq().unwrap_or(0));
        let connections = lock(&self.connections);
        let peers = lock(&self.peers)
            .iter()
            .map(|(id, e)| {
                let cursor = e
                    .replica
                    .zip(device)
                    .and_then(|(r, d)| d.store().peer_cursor(r).ok().flatten())
                    .unwrap_or(0);
                PeerStatus {
                    node_id: *id,
                    connected: connections
                        .get(id)
                        .is_some_and(|c| c.close_reason().is_none()),
                    last_sync: e.last_sync,
                    last_error: e.last_error.clone(),
                    pending_changes: last_seq.saturating_sub(cursor),
                }
            })
            .collect();
        NetStatus {
            peers,
            background: self.background_running(),
        }
    }

    pub(super) fn publish_status(&self) {
        let status = self.compute_status();
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn record_outcome(&self, peer: EndpointId, outcome: Result<&SyncReport, &NetError>) {
        {
            let mut peers = lock(&self.peers);
            let entry = peers.entry(peer).or_default();
            match outcome {
                Ok(report) => {
                    entry.replica = Some(report.peer);
                    entry.last_sync = Some(Utc::now());
                    entry.last_error = None;
                }
                Err(e) => entry.last_error = Some(e.to_string()),
            }
        }
        self.publish_status();
    }

    /// An open connection to `addr`, reused if there is one.
    async fn connection(self: &Arc<Self>, addr: EndpointAddr) -> Result<Connection, NetError> {
        let id = addr.id;
        if let Some(conn) = lock(&self.connections).get(&id)
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let connect = self.endpoint.connect(addr, ALPN);
        let conn = tokio::time::timeout(self.options.connect_timeout, connect)
            .await
            .map_err(|_| NetError::Connect {
                peer: id.to_string(),
                reason: format!("no answer within {:?}", self.options.connect_timeout),
            })?
            .map_err(|e| NetError::Connect {
                peer: id.to_string(),
                reason: e.to_string(),
            })?;
        self.adopt(conn.clone());
        Ok(conn)
    }

    /// Keeps a connection for reuse and serves the sessions the peer opens on it.
    fn adopt(self: &Arc<Self>, conn: Connection) {
        lock(&self.connections).insert(conn.remote_id(), conn.clone());
        tokio::spawn(serve(Arc::downgrade(self), conn));
    }

    pub(super) async fn sync_with(
        self: &Arc<Self>,
        addr: EndpointAddr,
    ) -> Result<SyncReport, NetError> {
        let peer = addr.id;
        let gate = lock(&self.outgoing).entry(peer).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        let outcome = self.outgoing_session(addr).await;
        self.record_outcome(peer, outcome.as_ref());
        outcome
    }

    async fn outgoing_session(
        self: &Arc<Self>,
        addr: EndpointAddr,
    ) -> Result<SyncReport, NetError> {
        if self.endpoint.is_closed() {
            return Err(NetError::Closed);
        }
        let peer = addr.id;
        let mut conn = self.connection(addr.clone()).await?;
        let streams = match conn.open_bi().await {
            Ok(streams) => streams,
            Err(_) => {
                // The reused connection died since: dial once more.
                lock(&self.connections).remove(&peer);
                conn = self.connection(addr).await?;
                conn.open_bi()
                    .await
                    .map_err(|e| NetError::Connection(e.to_string()))?
            }
        };
        let (mut send, mut recv) = streams;
        let engine = self
            .device()
            .ok_or(NetError::Unsupported("a host does not dial"))?;
        let agreed = handshake::dial(engine, &peer, &mut recv, &mut send).await?;
        run_session(engine, agreed, &self.options.sync, send, recv).await
    }

    /// Serves one session a peer opened.
    async fn incoming_session(
        &self,
        remote: &EndpointId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<SyncReport, NetError> {
        let pick = |workspace: Option<uuid::Uuid>| match &self.home {
            Home::Device(engine) => Some(engine.clone()),
            Home::Host(host) => workspace.and_then(|w| host.replica(w)),
        };
        let (engine, agreed) = handshake::accept(pick, remote, &mut recv, &mut send).await?;
        run_session(&engine, agreed, &self.options.sync, send, recv).await
    }
}

/// The sync protocol on a stream whose handshake agreed on the roles.
async fn run_session(
    engine: &Engine,
    agreed: Agreed,
    options: &SyncOptions,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<SyncReport, NetError> {
    let mut options = options.clone();
    options.send_changes = agreed.ours.can_write();
    options.accept_changes = agreed.theirs.can_write();
    let report = sync::sync(engine, &mut recv, &mut send, &options).await?;
    // Let the peer read our last frames before the stream goes away.
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
    Ok(report)
}

async fn accept_loop(shared: Weak<Shared>) {
    loop {
        let Some(endpoint) = shared.upgrade().map(|s| s.endpoint.clone()) else {
            return;
        };
        let Some(incoming) = endpoint.accept().await else {
            return; // closed
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "incoming connection failed");
                    return;
                }
            };
            if let Some(s) = shared.upgrade() {
                s.adopt(conn);
            }
        });
    }
}

/// Serves the sessions a peer opens on a connection, until it closes.
async fn serve(shared: Weak<Shared>, conn: Connection) {
    let remote = conn.remote_id();
    while let Ok((send, recv)) = conn.accept_bi().await {
        let Some(s) = shared.upgrade() else { return };
        tokio::spawn(async move {
            let outcome = s.incoming_session(&remote, send, recv).await;
            if let Err(e) = &outcome {
                tracing::info!(peer = %remote, error = %e, "incoming session failed");
            }
            if outcome.is_ok() || s.peer_addr(&remote).is_some() {
                s.record_outcome(remote, outcome.as_ref());
            }
        });
    }
}
