//! The device's iroh endpoint: dials and accepts connections, reuses them for later sessions,
//! and runs one membership handshake plus one sync session per bi-directional stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::endpoint::{QuicTransportConfig, VarInt};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMap, RelayMode, TransportAddr};
use tokio::sync::{Notify, Semaphore, watch};

use super::background::Background;
use super::limits::{ByteBudgets, Gate, Traffic};
use super::observer::{ConnectedPeer, Direction, SessionEvent};
use super::replica::{SharedReplica, SyncedReplica};
use super::session::breaks_connection;
use super::tasks::Tasks;
use super::{ALPN, NetError, NetOptions};
use crate::sync::{PeerRef, SyncReport};

/// How long a finished session waits for the peer to read its last frames before the stream
/// is dropped (only matters when the endpoint closes right after).
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// Bi-directional streams a peer may have open at once on one connection.
const STREAMS_PER_CONNECTION: u32 = 8;
/// Handshakes one peer may have in progress at once.
const HANDSHAKES_PER_PEER: usize = 2;

/// What the network knows of one peer.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
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
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
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
    last_sync: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// What the network serves: one device's replica, or a host's replicas of many workspaces.
pub(super) enum Home {
    Device(SharedReplica),
    Host(Arc<dyn WorkspaceHost>),
}

/// A host of many workspaces under one node identity (the relay): incoming sessions are
/// routed to the replica of the workspace named in the peer's credential. Each replica must
/// hold a credential issued to the host's node id ([`crate::Engine::set_node_key`], then
/// [`crate::Engine::join`]).
pub trait WorkspaceHost: Send + Sync + 'static {
    /// The replica of `workspace`, if it is served here.
    fn replica(&self, workspace: uuid::Uuid) -> Option<SharedReplica>;

    /// Whether `workspace` takes changes now (default: yes). A host over a storage quota says
    /// no: its sessions still send, and devices keep their changes for later. Asked once per
    /// session, on the network's tasks: keep it quick.
    fn accepts_changes(&self, workspace: uuid::Uuid) -> bool {
        let _ = workspace;
        true
    }

    /// Called after every session, refused ones included (for logs and metrics). Runs on the
    /// network's tasks: keep it quick.
    fn session_ended(&self, event: &SessionEvent<'_>) {
        let _ = event;
    }
}

/// A peer accepted in a workspace on its current connection (what a host pushes to).
#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    pub workspace: uuid::Uuid,
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
    /// Sessions peers opened, once authenticated: `max_sessions` in all, a few per peer.
    pub(super) sessions: Gate,
    /// Handshakes in progress (peers not yet authenticated): few, a small share per peer.
    pub(super) handshakes: Gate,
    /// Sessions this node opened, running now.
    pub(super) outgoing_sessions: AtomicUsize,
    /// Open connections per peer.
    connection_counts: Mutex<HashMap<EndpointId, usize>>,
    /// A host's pushes run at most this many at once (a quarter of the session slots), so
    /// devices' own sessions always find a slot, and a device woken many times while its push
    /// waits gets everything in one session.
    pub(super) push_slots: Semaphore,
    pub(super) budgets: Arc<ByteBudgets>,
    /// Peers accepted on their current connection, with their workspace.
    pub(super) members: Mutex<HashMap<EndpointId, Member>>,
    /// A host's push task per connected peer, woken when its workspace changes.
    pub(super) pushers: Mutex<HashMap<EndpointId, Arc<Notify>>>,
    /// Sessions and pushes in flight, which hold this state (and a host's replicas).
    pub(super) tasks: Arc<Tasks>,
}

/// How long shutdown waits for the sessions in flight to end once their connections closed.
pub(super) const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whom a replica keeps its cursor for `peer` under: sessions over the network key cursors by
/// the node id the connection authenticated.
pub(super) fn cursor_of(peer: &EndpointId) -> PeerRef {
    PeerRef::Authenticated(*peer.as_bytes())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    /// Starts the network of one device's replica (see `Engine::enable_network`).
    pub(crate) async fn device(
        key: iroh::SecretKey,
        replica: SharedReplica,
        options: NetOptions,
    ) -> Result<Network, NetError> {
        Network::start(key, Home::Device(replica), options).await
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
        // A session is one bi-directional stream and peers take turns; a peer opening many at
        // once gains nothing but a wait. No uni-directional streams are used at all.
        let transport = QuicTransportConfig::builder()
            .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .build();
        let builder = Endpoint::builder(presets::Minimal)
            .secret_key(key)
            .transport_config(transport)
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
        let max_sessions = options.max_sessions;
        let bytes_per_minute = options.peer_bytes_per_minute;
        let shared = Arc::new(Shared {
            home,
            endpoint,
            connections: Mutex::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            peers: Mutex::new(BTreeMap::new()),
            status: watch::Sender::new(NetStatus::default()),
            background: Mutex::new(None),
            sessions: Gate::new(max_sessions, options.max_sessions_per_peer),
            handshakes: Gate::new(options.max_handshakes, HANDSHAKES_PER_PEER),
            options,
            outgoing_sessions: AtomicUsize::new(0),
            connection_counts: Mutex::new(HashMap::new()),
            push_slots: Semaphore::new((max_sessions / 4).max(1)),
            budgets: Arc::new(ByteBudgets::new(bytes_per_minute)),
            members: Mutex::new(HashMap::new()),
            pushers: Mutex::new(HashMap::new()),
            tasks: Arc::default(),
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

    /// The peers connected to this node now, with the workspace each was accepted in.
    pub fn connected_peers(&self) -> Vec<ConnectedPeer> {
        let members = lock(&self.shared.members);
        lock(&self.shared.connections)
            .iter()
            .filter(|(_, c)| c.close_reason().is_none())
            .map(|(id, _)| ConnectedPeer {
                node_id: *id,
                workspace: members.get(id).map(|m| m.workspace),
            })
            .collect()
    }

    /// Sessions running now (both directions).
    pub fn active_sessions(&self) -> usize {
        self.shared.sessions.in_use() + self.shared.outgoing_sessions.load(Ordering::Relaxed)
    }

    /// Stops background mode, closes every connection and the endpoint, and waits (up to
    /// 10 s) for the sessions in flight to let go of the replicas they use.
    pub async fn shutdown(&self) {
        self.stop_background();
        self.shared.endpoint.close().await;
        lock(&self.shared.connections).clear();
        if !self.shared.tasks.idle(SHUTDOWN_WAIT).await {
            tracing::warn!("sessions still running {SHUTDOWN_WAIT:?} after shutdown");
        }
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
    pub(super) fn device(&self) -> Option<&SharedReplica> {
        match &self.home {
            Home::Device(engine) => Some(engine),
            Home::Host(_) => None,
        }
    }

    fn compute_status(&self) -> NetStatus {
        let device = self.device();
        let last_seq = device.map_or(0, |e| e.last_seq().unwrap_or(0));
        let connections = lock(&self.connections);
        let peers = lock(&self.peers)
            .iter()
            .map(|(id, e)| {
                let cursor = device
                    .and_then(|d| d.peer_cursor(&cursor_of(id)).ok().flatten())
                    .map_or(0, |c| c.seq);
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
                Ok(_) => {
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

    /// Keeps a connection for reuse and serves the sessions the peer opens on it. A peer
    /// holding `max_connections_per_peer` connections already gets this one closed.
    fn adopt(self: &Arc<Self>, conn: Connection) {
        let remote = conn.remote_id();
        {
            let mut counts = lock(&self.connection_counts);
            let count = counts.entry(remote).or_default();
            if *count >= self.options.max_connections_per_peer {
                drop(counts);
                tracing::info!(peer = %remote, "too many connections from one peer; closing");
                conn.close(2u32.into(), b"too many connections");
                return;
            }
            *count += 1;
        }
        lock(&self.connections).insert(remote, conn.clone());
        tokio::spawn(serve(Arc::downgrade(self), conn));
    }

    /// Counts off a connection `adopt` counted, once it is closed and served no more.
    fn released(&self, peer: &EndpointId) {
        let mut counts = lock(&self.connection_counts);
        if let Some(count) = counts.get_mut(peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(peer);
            }
        }
    }

    /// Open connections, all peers together.
    fn connection_total(&self) -> usize {
        lock(&self.connection_counts).values().sum()
    }

    /// Drops a closed connection (unless the peer has a newer one) and what hangs on it.
    fn forget(&self, conn: &Connection) {
        let id = conn.remote_id();
        let mut connections = lock(&self.connections);
        if connections
            .get(&id)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            connections.remove(&id);
            lock(&self.members).remove(&id);
            lock(&self.pushers).remove(&id);
        }
    }

    /// The open connection to `peer`, if any (a host never dials: it pushes on the
    /// connections devices opened).
    pub(super) fn open_connection(&self, peer: &EndpointId) -> Option<Connection> {
        lock(&self.connections)
            .get(peer)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    pub(super) async fn sync_with(
        self: &Arc<Self>,
        addr: EndpointAddr,
    ) -> Result<SyncReport, NetError> {
        let peer = addr.id;
        let _one_at_a_time = self.outgoing_gate(peer).await;
        let outcome = self.outgoing_session(addr).await;
        self.record_outcome(peer, outcome.as_ref());
        outcome
    }

    /// One outgoing session per peer at a time.
    pub(super) async fn outgoing_gate(&self, peer: EndpointId) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = lock(&self.outgoing).entry(peer).or_default().clone();
        gate.lock_owned().await
    }

    async fn outgoing_session(
        self: &Arc<Self>,
        addr: EndpointAddr,
    ) -> Result<SyncReport, NetError> {
        if self.endpoint.is_closed() {
            return Err(NetError::Closed);
        }
        let engine = self
            .device()
            .ok_or(NetError::Unsupported("a host does not dial"))?;
        let peer = addr.id;
        let reused = self.open_connection(&peer).is_some();
        let conn = self.connection(addr.clone()).await?;
        let outcome = self.session_over(&**engine, &peer, &conn).await;
        match outcome {
            Err(e) if breaks_connection(&e) => {
                // A peer that crashed or restarted leaves a connection that looks open until
                // QUIC's idle timeout; a fresh one is dialed instead of reusing it.
                self.discard(&conn);
                if !reused {
                    return Err(e);
                }
                tracing::debug!(%peer, error = %e, "reused connection failed; dialing again");
                let conn = self.connection(addr).await?;
                let outcome = self.session_over(&**engine, &peer, &conn).await;
                if outcome.as_ref().is_err_and(breaks_connection) {
                    self.discard(&conn);
                }
                outcome
            }
            outcome => outcome,
        }
    }

    async fn session_over(
        &self,
        engine: &dyn SyncedReplica,
        peer: &EndpointId,
        conn: &Connection,
    ) -> Result<SyncReport, NetError> {
        let streams = conn
            .open_bi()
            .await
            .map_err(|e| NetError::Connection(e.to_string()))?;
        self.dialed_session(engine, peer, streams, &Arc::new(Traffic::default()))
            .await
    }

    /// Closes a connection that failed and forgets it, so the next session dials afresh.
    fn discard(&self, conn: &Connection) {
        conn.close(0u32.into(), b"session failed");
        self.forget(conn);
    }
}

async fn accept_loop(shared: Weak<Shared>) {
    loop {
        let Some(endpoint) = shared.upgrade().map(|s| s.endpoint.clone()) else {
            return;
        };
        let Some(incoming) = endpoint.accept().await else {
            return; // closed
        };
        if let Some(s) = shared.upgrade()
            && s.connection_total() >= s.options.max_connections
        {
            tracing::warn!(
                "at the limit of {} connections; refusing one",
                s.options.max_connections
            );
            incoming.refuse();
            continue;
        }
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
    while let Ok(streams) = conn.accept_bi().await {
        let Some(s) = shared.upgrade() else { return };
        let live = s.tasks.enter();
        tokio::spawn(async move {
            // Declared in this order so that the state is let go of before the count ends.
            let _live = live;
            let s = s;
            let traffic = Arc::new(Traffic::default());
            let (workspace, outcome) = s.incoming_session(&remote, streams, &traffic).await;
            if let Err(e) = &outcome {
                tracing::info!(peer = %remote, error = %e, "incoming session failed");
            }
            if outcome.is_ok() || s.peer_addr(&remote).is_some() {
                s.record_outcome(remote, outcome.as_ref());
            }
            s.observe(SessionEvent {
                peer: remote,
                workspace,
                direction: Direction::Incoming,
                bytes_received: traffic.received.load(std::sync::atomic::Ordering::Relaxed),
                bytes_sent: traffic.sent.load(std::sync::atomic::Ordering::Relaxed),
                outcome: outcome.as_ref(),
            });
            if let Some(workspace) = workspace {
                s.after_session(workspace, outcome.as_ref().ok());
            }
        });
    }
    if let Some(s) = shared.upgrade() {
        s.forget(&conn);
        s.released(&remote);
    }
}
