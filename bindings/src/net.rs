//! Workspace membership and peer-to-peer sync: the [`Network`] handle over
//! [`crmsync::net::Network`], its records, and the status listener.
//!
//! Membership calls are short store writes and run on the caller's thread. The network's
//! calls that wait on peers (`enable_network`, `sync_with`, `shutdown`) are `async` and run as
//! tasks of the bindings' tokio runtime, where iroh and background mode live.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use crmsync::net::{
    self as core_net, EndpointAddr, EndpointId, NetOptions, NetStatus, PeerStatus, PublicKey,
    RelayUrl, Role,
};
use crmsync::sync::{ReconcileMode, SyncReport};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::error::CrmError;
use crate::listener::{IDLE_CHECK, ListenerHandle, Shared};
use crate::runtime::{run_async, runtime};
use crate::value::to_utc;

type NodeId = PublicKey;

crmsync::uniffi_remote_Role!();
crmsync::uniffi_remote_ReconcileMode!();
crmsync::uniffi_remote_SyncReport!();
crmsync::uniffi_remote_PeerStatus!();
crmsync::uniffi_remote_NetStatus!();

uniffi::custom_type!(
    /// A device's node id (its public key), as `node_id()` shows it.
    NodeId, String, { remote, lower: |id| id.to_string(), try_lift: |id| Ok(parse_node_id(&id)?) }
);

// Copy: the core's `Credential` is a signed statement whose parts are read through methods.
/// What a credential says (read from its text with [`credential_info`], or this device's own
/// from `Engine.credential`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CredentialInfo {
    /// The workspace it grants membership of (a UUID): a new device opens its engine with
    /// this workspace id before joining.
    pub workspace_id: String,
    /// The node id of the device it was issued to.
    pub device: String,
    /// The node id (public key) of the workspace admin that signed it.
    pub admin: String,
    /// The role it grants.
    pub role: Role,
    /// When it stops being valid; absent: never.
    pub expires_at: Option<SystemTime>,
}

impl From<&core_net::Credential> for CredentialInfo {
    fn from(c: &core_net::Credential) -> Self {
        CredentialInfo {
            workspace_id: c.workspace().to_string(),
            device: c.device().to_string(),
            admin: c.admin().to_string(),
            role: c.role(),
            expires_at: c.expires_at().map(SystemTime::from),
        }
    }
}

// Copy: the core's `Revocation` is read through methods; `test_generated.py` pins its shape.
/// The workspace admin's signed statement that a device is no longer a member, as this device
/// knows it. Revocations travel with every sync session, so each device learns them from
/// whichever peer it meets, and refuses the revoked device from then on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Revocation {
    /// The revoked device's node id.
    pub device: String,
    /// When the admin revoked it (whole seconds); absent if out of the platform's range.
    pub revoked_at: Option<SystemTime>,
}

impl From<&core_net::Revocation> for Revocation {
    fn from(r: &core_net::Revocation) -> Self {
        Revocation {
            device: r.device().to_string(),
            revoked_at: r.revoked_at().map(SystemTime::from),
        }
    }
}

/// Reads a credential's text (as `Engine.invite_device` returns it): its workspace, device,
/// role and expiry. A new device opens its engine with `workspace_id` set to the credential's
/// workspace, then calls `join`. Fails with `InvalidCredential` if the text does not parse.
#[uniffi::export]
pub fn credential_info(credential: String) -> Result<CredentialInfo, CrmError> {
    let credential = core_net::Credential::from_str(&credential)?;
    Ok(CredentialInfo::from(&credential))
}

// Copy: the core's `Refusal` is non-exhaustive, so the foreign one has an `Other` variant for
// reasons added later; its ids are strings, as `tests/sync_errors.rs` pins.
/// Why a peer was refused. Each reason is checked before any record moves.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Refusal {
    /// The device has no credential (it never joined a workspace).
    NoCredential,
    /// The credential is for another workspace.
    OtherWorkspace {
        /// The refusing side's workspace id.
        ours: String,
        /// The credential's.
        theirs: String,
    },
    /// The credential was signed by a key that is not this workspace's admin.
    UnknownAdmin,
    /// The credential's signature does not verify (forged or altered).
    BadSignature,
    /// The credential was issued to another node than the one that presented it.
    NodeMismatch {
        /// The node id in the credential.
        issued_to: String,
        /// The node id the connection authenticated.
        connected: String,
    },
    /// The credential has expired.
    Expired {
        /// When.
        expired_at: SystemTime,
    },
    /// The workspace admin revoked the device.
    Revoked,
    /// The peer (a relay, say) does not host the credential's workspace.
    UnknownWorkspace {
        /// The credential's workspace id.
        workspace: String,
    },
    /// The peer already serves as many sessions as it allows at once; retry later
    /// (background mode does, with backoff).
    Busy {
        /// The peer's limit of sessions at once.
        max_sessions: u32,
    },
    /// This device used up the bytes per minute the peer allows it.
    RateLimited {
        /// The peer's limit.
        bytes_per_minute: u64,
        /// Seconds until the budget allows a session again.
        retry_after_secs: u32,
    },
    /// A reason this version of the bindings does not know.
    Other {
        /// The core's message.
        detail: String,
    },
}

impl From<core_net::Refusal> for Refusal {
    fn from(r: core_net::Refusal) -> Self {
        use core_net::Refusal as R;
        match r {
            R::NoCredential => Refusal::NoCredential,
            R::OtherWorkspace { ours, theirs } => Refusal::OtherWorkspace {
                ours: ours.to_string(),
                theirs: theirs.to_string(),
            },
            R::UnknownAdmin => Refusal::UnknownAdmin,
            R::BadSignature => Refusal::BadSignature,
            R::NodeMismatch {
                issued_to,
                connected,
            } => Refusal::NodeMismatch {
                issued_to,
                connected,
            },
            R::Expired { expired_at } => Refusal::Expired {
                expired_at: expired_at.into(),
            },
            R::Revoked => Refusal::Revoked,
            R::UnknownWorkspace { workspace } => Refusal::UnknownWorkspace {
                workspace: workspace.to_string(),
            },
            R::Busy { max_sessions } => Refusal::Busy { max_sessions },
            R::RateLimited {
                bytes_per_minute,
                retry_after_secs,
            } => Refusal::RateLimited {
                bytes_per_minute,
                retry_after_secs,
            },
            // `Refusal` is non-exhaustive: a reason added later still arrives with its message.
            other => Refusal::Other {
                detail: other.to_string(),
            },
        }
    }
}

// Copy: the core's `NetOptions` holds socket addresses, URLs and `Duration`s; here they are
// strings and milliseconds, each optional.
/// How the network runs. Every field has a default: all interfaces on a random port, no relay,
/// the core's intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct NetworkOptions {
    /// Bind 127.0.0.1 on a random port (nothing leaves the machine: tests, previews) instead of
    /// `0.0.0.0:0`. `bind_addr`, when given, wins.
    #[uniffi(default = false)]
    pub loopback: bool,
    /// Local UDP address to bind, `ip:port` (absent: `0.0.0.0:0`, or `127.0.0.1:0` with
    /// `loopback`).
    #[uniffi(default = None)]
    pub bind_addr: Option<String>,
    /// A relay server (e.g. the team's self-hosted one) to reach peers behind NATs and be
    /// reached through. Absent: direct addresses only; public relays are never used.
    #[uniffi(default = None)]
    pub relay_url: Option<String>,
    /// Background mode: sync each known peer at least this often, in milliseconds (core
    /// default 30 s). Local changes are pushed at once.
    #[uniffi(default = None)]
    pub poll_interval_ms: Option<u64>,
    /// Background mode: the first wait after a failed attempt, doubled per failure, in
    /// milliseconds (core default 500 ms).
    #[uniffi(default = None)]
    pub backoff_min_ms: Option<u64>,
    /// Background mode: the longest wait between attempts, in milliseconds (core default
    /// 60 s).
    #[uniffi(default = None)]
    pub backoff_max_ms: Option<u64>,
    /// How long to wait for a connection to a peer, in milliseconds (core default 10 s).
    #[uniffi(default = None)]
    pub connect_timeout_ms: Option<u64>,
}

impl TryFrom<NetworkOptions> for NetOptions {
    type Error = CrmError;
    fn try_from(o: NetworkOptions) -> Result<Self, CrmError> {
        let mut options = if o.loopback {
            NetOptions::loopback()
        } else {
            NetOptions::default()
        };
        if let Some(addr) = o.bind_addr {
            options.bind_addr = parse_socket_addr(&addr)?;
        }
        options.relay_url = o.relay_url.as_deref().map(parse_relay_url).transpose()?;
        let ms = Duration::from_millis;
        if let Some(t) = o.poll_interval_ms {
            options.poll_interval = ms(t);
        }
        if let Some(t) = o.backoff_min_ms {
            options.backoff_min = ms(t);
        }
        if let Some(t) = o.backoff_max_ms {
            options.backoff_max = ms(t);
        }
        if let Some(t) = o.connect_timeout_ms {
            options.connect_timeout = ms(t);
        }
        Ok(options)
    }
}

// Copy: the core's `EndpointAddr` is iroh's.
/// How to reach a device: what [`Network::addr`] returns on one device and
/// [`Network::sync_with`] / [`Network::add_peer`] take on another (e.g. through a QR code).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerAddr {
    /// The device's node id.
    pub node_id: String,
    /// Its direct UDP addresses, `ip:port`.
    #[uniffi(default)]
    pub addrs: Vec<String>,
    /// A relay it can be reached through.
    #[uniffi(default = None)]
    pub relay_url: Option<String>,
}

impl From<EndpointAddr> for PeerAddr {
    fn from(a: EndpointAddr) -> Self {
        PeerAddr {
            node_id: a.id.to_string(),
            addrs: a.ip_addrs().map(ToString::to_string).collect(),
            relay_url: a.relay_urls().next().map(ToString::to_string),
        }
    }
}

impl TryFrom<PeerAddr> for EndpointAddr {
    type Error = CrmError;
    fn try_from(a: PeerAddr) -> Result<Self, CrmError> {
        let mut addrs = a
            .addrs
            .iter()
            .map(|s| parse_socket_addr(s).map(core_net::TransportAddr::Ip))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(url) = &a.relay_url {
            addrs.push(core_net::TransportAddr::Relay(parse_relay_url(url)?));
        }
        Ok(EndpointAddr::from_parts(parse_node_id(&a.node_id)?, addrs))
    }
}

/// Parses a node id (as `node_id()` shows it).
fn parse_node_id(id: &str) -> Result<PublicKey, CrmError> {
    PublicKey::from_str(id.trim())
        .map_err(|e| CrmError::input(format!("'{id}' is not a node id: {e}")))
}

fn parse_socket_addr(addr: &str) -> Result<SocketAddr, CrmError> {
    addr.trim().parse().map_err(|_| {
        CrmError::input(format!(
            "'{addr}' is not a socket address such as 127.0.0.1:4433"
        ))
    })
}

fn parse_relay_url(url: &str) -> Result<RelayUrl, CrmError> {
    url.trim()
        .parse()
        .map_err(|e| CrmError::input(format!("'{url}' is not a relay URL: {e}")))
}

/// Implemented by the app to follow the network's status (peers, last sync, errors, pending
/// changes, background mode), e.g. for a sync indicator. Called on a background thread after
/// every change of the status; switch to the UI thread before touching views. An exception
/// thrown here is logged and does not stop later calls.
#[uniffi::export(callback_interface)]
pub trait NetStatusListener: Send + Sync {
    /// The status changed.
    fn on_status(&self, status: NetStatus) -> Result<(), CrmError>;
}

/// Hands every new status of `status` to `listener` until unregistered or the network is gone.
fn deliver_status(
    mut status: watch::Receiver<NetStatus>,
    listener: &dyn NetStatusListener,
    shared: &Shared,
) {
    let Ok(runtime) = runtime() else { return };
    while !shared.stopped() {
        // The timer is created inside the runtime's context (this thread has none).
        let changed =
            runtime.block_on(async { tokio::time::timeout(IDLE_CHECK, status.changed()).await });
        match changed {
            Err(_idle) => continue,
            Ok(Err(_gone)) => return,
            Ok(Ok(())) => {}
        }
        let current = status.borrow_and_update().clone();
        let _gate = shared.gate();
        if shared.stopped() {
            return;
        }
        if let Err(e) = listener.on_status(current) {
            tracing::warn!("crmsync status listener failed: {e}");
        }
    }
}

/// This device on the network: syncs with peers on demand ([`Network::sync_with`]) or in
/// background mode, and accepts sessions from members of the workspace while it runs.
/// [`Network::shutdown`] (or closing the engine) stops it.
#[derive(Debug, uniffi::Object)]
pub struct Network {
    /// `None` once shut down.
    inner: RwLock<Option<core_net::Network>>,
    node_id: String,
    listeners: Mutex<Vec<Arc<ListenerHandle>>>,
}

impl Network {
    fn core(&self) -> Result<core_net::Network, CrmError> {
        // The lock only guards an Option swap: a poisoned one still holds a valid value.
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| CrmError::NetworkClosed {
            detail: "the network was shut down; enable it again".to_string(),
        })
    }

    fn listeners(&self) -> MutexGuard<'_, Vec<Arc<ListenerHandle>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the core network out of the handle and stops the status listeners; later calls
    /// fail with `NetworkClosed`.
    fn take(&self) -> Option<core_net::Network> {
        let (taken, stopping) = {
            let mut listeners = self.listeners();
            let taken = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
            (taken, listeners.drain(..).collect::<Vec<_>>())
        };
        for listener in stopping {
            listener.unregister();
        }
        taken
    }

    /// Shuts the network down from synchronous code: with `wait` (closing the engine, which
    /// must release the database) until it is down unless called on the runtime itself; else
    /// (dropping the handle) in a task.
    pub(crate) fn shutdown_now(&self, wait: bool) {
        let (Some(net), Ok(runtime)) = (self.take(), runtime()) else {
            return;
        };
        if !wait || tokio::runtime::Handle::try_current().is_ok() {
            runtime.spawn(async move { net.shutdown().await });
        } else {
            runtime.block_on(net.shutdown());
        }
    }
}

#[uniffi::export]
impl Network {
    /// This device's node id.
    pub fn node_id(&self) -> String {
        self.node_id.clone()
    }

    /// How peers reach this device: its node id, bound sockets and relay. Give it to the other
    /// device (e.g. as a QR code) for its `sync_with` or `add_peer`.
    pub fn addr(&self) -> Result<PeerAddr, CrmError> {
        Ok(self.core()?.addr().into())
    }

    /// Remembers a peer (for background mode and status) without syncing now.
    pub fn add_peer(&self, peer: PeerAddr) -> Result<(), CrmError> {
        let addr = EndpointAddr::try_from(peer)?;
        self.core()?.add_peer(addr);
        Ok(())
    }

    /// Runs one session with `peer` (connecting, or reusing the open connection) and returns
    /// what it exchanged. The peer is remembered for background mode.
    pub async fn sync_with(&self, peer: PeerAddr) -> Result<SyncReport, CrmError> {
        let addr = EndpointAddr::try_from(peer)?;
        let net = self.core()?;
        run_async(async move { Ok(net.sync_with(addr).await?) }).await
    }

    /// Starts background mode: every known peer is synced whenever this device changes
    /// something, at least every `poll_interval_ms`, and retried with backoff while
    /// unreachable. Starting it twice is fine.
    pub fn start_background(&self) -> Result<(), CrmError> {
        let net = self.core()?;
        let _context = runtime()?.enter();
        net.start_background();
        Ok(())
    }

    /// Stops background mode (a session in flight is abandoned; the next one resumes).
    pub fn stop_background(&self) -> Result<(), CrmError> {
        self.core()?.stop_background();
        Ok(())
    }

    /// The current status.
    pub fn status(&self) -> Result<NetStatus, CrmError> {
        Ok(self.core()?.status())
    }

    /// Registers a listener told of every status change, on a background thread, until its
    /// handle is unregistered or the network shut down. Call `status()` for the current one.
    pub fn register_status_listener(
        &self,
        listener: Box<dyn NetStatusListener>,
    ) -> Result<Arc<ListenerHandle>, CrmError> {
        let mut listeners = self.listeners();
        let status = self.core()?.subscribe_status();
        let handle = Arc::new(ListenerHandle::spawn(
            "crmsync-net-status",
            move |shared| deliver_status(status, listener.as_ref(), shared),
        )?);
        listeners.retain(|l| l.is_active());
        listeners.push(handle.clone());
        Ok(handle)
    }

    /// Stops background mode, closes every connection and the endpoint, and stops the status
    /// listeners. Later calls fail with `NetworkClosed`; shutting down twice is fine.
    pub async fn shutdown(&self) -> Result<(), CrmError> {
        let Some(net) = self.take() else {
            return Ok(());
        };
        run_async(async move {
            net.shutdown().await;
            Ok(())
        })
        .await
    }

    /// Whether [`Network::shutdown`] was called (or the engine closed).
    pub fn is_shut_down(&self) -> bool {
        self.core().is_err()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.shutdown_now(false);
    }
}

/// Membership and networking on the engine.
#[uniffi::export]
impl Engine {
    /// This device's node id: what the workspace admin needs to invite it. Created on first
    /// use and kept in the database, so the device keeps it across restarts.
    pub fn node_id(&self) -> Result<String, CrmError> {
        Ok(self.core()?.node_id()?.to_string())
    }

    /// Makes this device the admin of its workspace: creates the workspace's admin key (kept
    /// in this database only) and an admin credential for this device. Fails with
    /// `AlreadyJoined` if the device holds a credential.
    pub fn init_admin(&self) -> Result<CredentialInfo, CrmError> {
        Ok(CredentialInfo::from(&self.core()?.init_admin()?))
    }

    /// Issues a credential for the device with `node_id` (admin only, else `NotAdmin`) and
    /// returns its text, to show the new device e.g. as a QR code; that device calls `join`
    /// with it. `expires_at` absent: never expires.
    #[uniffi::method(default(expires_at = None))]
    pub fn invite_device(
        &self,
        node_id: String,
        role: Role,
        expires_at: Option<SystemTime>,
    ) -> Result<String, CrmError> {
        let device = parse_node_id(&node_id)?;
        let expires_at = expires_at.map(to_utc).transpose()?;
        let credential = self.core()?.invite_device(device, role, expires_at)?;
        Ok(credential.to_string())
    }

    /// Joins the workspace with a credential issued to this device. The engine must have been
    /// opened with the credential's workspace id (see [`credential_info`]), else
    /// `WrongWorkspace`.
    pub fn join(&self, credential: String) -> Result<CredentialInfo, CrmError> {
        Ok(CredentialInfo::from(&self.core()?.join(&credential)?))
    }

    /// Revokes the device with `node_id` (admin only) and returns the revocation. Peers learn
    /// it at their next sync with any device that knows it, and refuse the device from then on.
    pub fn revoke(&self, node_id: String) -> Result<Revocation, CrmError> {
        let revocation = self.core()?.revoke(parse_node_id(&node_id)?)?;
        Ok(Revocation::from(&revocation))
    }

    /// The revocations this device knows: its own (on the admin's device) and those learned
    /// from peers, in the order it learned them.
    pub fn revocations(&self) -> Result<Vec<Revocation>, CrmError> {
        let revocations = self.core()?.revocations()?;
        Ok(revocations.iter().map(Revocation::from).collect())
    }

    /// This device's credential, if it joined (or administers) a workspace.
    pub fn credential(&self) -> Result<Option<CredentialInfo>, CrmError> {
        Ok(self
            .core()?
            .credential()?
            .as_ref()
            .map(CredentialInfo::from))
    }

    /// Starts networking: binds this device's endpoint and accepts sessions from members of
    /// the workspace. The device must have joined (or created) the workspace first, else
    /// `NotJoined`. Closing the engine shuts the network down.
    pub async fn enable_network(&self, options: NetworkOptions) -> Result<Arc<Network>, CrmError> {
        let options = NetOptions::try_from(options)?;
        let engine = self.core()?;
        let net = run_async(async move { Ok(engine.enable_network(options).await?) }).await?;
        let network = Arc::new(Network {
            node_id: net.node_id().to_string(),
            inner: RwLock::new(Some(net)),
            listeners: Mutex::new(Vec::new()),
        });
        self.adopt_network(&network);
        Ok(network)
    }
}
