//! The relay's Prometheus metrics: counters updated as sessions end, gauges read from the
//! network when scraped.

use std::sync::Mutex;

use crmsync::net::{ConnectedPeer, Direction, NetError, Refusal, SessionEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use uuid::Uuid;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkspaceLabel {
    workspace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    workspace: String,
    direction: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    workspace: String,
    reason: String,
}

/// Every metric the relay exports.
pub struct Metrics {
    registry: Registry,
    sessions: Family<SessionLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    bytes_received: Family<WorkspaceLabel, Counter>,
    bytes_sent: Family<WorkspaceLabel, Counter>,
    records_applied: Family<WorkspaceLabel, Counter>,
    records_sent: Family<WorkspaceLabel, Counter>,
    session_seconds: Histogram,
    connected_devices: Family<WorkspaceLabel, Gauge>,
    active_sessions: Gauge,
    workspaces: Gauge,
    /// Encoding reads the families while sessions update them; one scrape at a time keeps
    /// the gauges set for a scrape from being overwritten by another mid-way.
    scrape: Mutex<()>,
}

/// A workspace label. Refused peers may name any workspace id; only the ones served here
/// become label values, so a hostile client cannot grow the metric set without bound.
fn workspace_label(workspace: Option<Uuid>) -> WorkspaceLabel {
    WorkspaceLabel {
        workspace: workspace.map_or_else(|| "none".to_string(), |w| w.to_string()),
    }
}

fn refusal_reason(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::NoCredential => "no_credential",
        Refusal::OtherWorkspace { .. } => "other_workspace",
        Refusal::UnknownAdmin => "unknown_admin",
        Refusal::BadSignature => "bad_signature",
        Refusal::NodeMismatch { .. } => "node_mismatch",
        Refusal::Expired { .. } => "expired",
        Refusal::Revoked => "revoked",
        Refusal::UnknownWorkspace { .. } => "unknown_workspace",
        Refusal::Busy { .. } => "busy",
        Refusal::RateLimited { .. } => "rate_limited",
        _ => "other",
    }
}

/// Registers metrics and hands back the handle the relay updates (metrics share their state
/// with their clones).
struct Registrar<'r>(&'r mut Registry);

impl Registrar<'_> {
    fn register<M>(&mut self, name: &str, help: &str, metric: M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        self.0.register(name, help, metric.clone());
        metric
    }

    fn add<M>(&mut self, name: &str, help: &str) -> M
    where
        M: prometheus_client::registry::Metric + Clone + Default,
    {
        self.register(name, help, M::default())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("crmsync_relay");
        let mut r = Registrar(&mut registry);
        let sessions = r.add(
            "sessions",
            "Sync sessions ended, by workspace, direction (incoming: a device opened it; \
             outgoing: a push to a connected device) and outcome (ok, refused, failed)",
        );
        let refused = r.add(
            "refused_peers",
            "Sessions refused, by workspace (none: refused before one was chosen) and reason",
        );
        let bytes_received = r.add("received_bytes", "Bytes read from devices, by workspace");
        let bytes_sent = r.add("sent_bytes", "Bytes written to devices, by workspace");
        let records_applied = r.add(
            "records_applied",
            "Records whose changes were received from devices and applied, by workspace",
        );
        let records_sent = r.add(
            "records_sent",
            "Records whose changes were sent to devices, by workspace",
        );
        let session_seconds = r.register(
            "session_duration_seconds",
            "Duration of completed sync sessions",
            Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        );
        let connected_devices = r.add(
            "connected_devices",
            "Devices with an open connection, by the workspace they were accepted in",
        );
        let active_sessions = r.add("active_sessions", "Sessions running now");
        let workspaces = r.add("workspaces", "Workspaces served");
        Self {
            registry,
            sessions,
            refused,
            bytes_received,
            bytes_sent,
            records_applied,
            records_sent,
            session_seconds,
            connected_devices,
            active_sessions,
            workspaces,
            scrape: Mutex::new(()),
        }
    }

    /// Counts a finished session.
    pub fn session_ended(&self, event: &SessionEvent<'_>) {
        let label = workspace_label(event.workspace);
        let outcome = match event.outcome {
            Ok(_) => "ok",
            Err(NetError::PeerRefused(_)) => "refused",
            Err(_) => "failed",
        };
        let direction = match event.direction {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        };
        self.sessions
            .get_or_create(&SessionLabels {
                workspace: label.workspace.clone(),
                direction: direction.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.bytes_received
            .get_or_create(&label)
            .inc_by(event.bytes_received);
        self.bytes_sent
            .get_or_create(&label)
            .inc_by(event.bytes_sent);
        match event.outcome {
            Ok(report) => {
                self.records_applied
                    .get_or_create(&label)
                    .inc_by(report.records_received as u64);
                self.records_sent
                    .get_or_create(&label)
                    .inc_by(report.records_sent as u64);
                self.session_seconds.observe(report.duration.as_secs_f64());
            }
            Err(NetError::PeerRefused(refusal)) => {
                self.refused
                    .get_or_create(&RefusalLabels {
                        workspace: label.workspace,
                        reason: refusal_reason(refusal).into(),
                    })
                    .inc();
            }
            Err(_) => {}
        }
    }

    /// The text exposition, with the gauges set from the network's state now.
    pub fn render(
        &self,
        workspaces: &[Uuid],
        connected: &[ConnectedPeer],
        active_sessions: usize,
    ) -> String {
        let _one_scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for id in workspaces {
            let count = connected
                .iter()
                .filter(|p| p.workspace == Some(*id))
                .count();
            self.connected_devices
                .get_or_create(&workspace_label(Some(*id)))
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.active_sessions
            .set(i64::try_from(active_sessions).unwrap_or(i64::MAX));
        self.workspaces
            .set(i64::try_from(workspaces.len()).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
