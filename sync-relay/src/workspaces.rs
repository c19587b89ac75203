//! The relay's workspaces: the replicas it serves, opened from its storage.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crmsync::Engine;
use crmsync::net::{PublicKey, SessionEvent, SharedReplica, WorkspaceHost};
use iroh::SecretKey;
use uuid::Uuid;

use crate::RelayError;
use crate::metrics::Metrics;
use crate::storage::WorkspaceStorage;

/// One workspace as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceStatus {
    /// Its id.
    pub id: Uuid,
    /// Records stored, deleted ones included (they carry their history).
    pub records: usize,
    /// Revoked devices known to the relay.
    pub revoked_devices: usize,
}

/// The open workspaces of a relay, and the metrics of their sessions.
pub struct Workspaces {
    storage: Box<dyn WorkspaceStorage>,
    open: RwLock<BTreeMap<Uuid, Engine>>,
    metrics: Metrics,
    /// `max_workspace_bytes`, if set.
    quota: Option<u64>,
}

impl Workspaces {
    /// Opens every workspace in `storage`; each must hold a credential for this relay's node
    /// key.
    pub fn open(storage: Box<dyn WorkspaceStorage>, key: &SecretKey) -> Result<Self, RelayError> {
        let mut open = BTreeMap::new();
        for id in storage.list()? {
            let engine = storage.open(id)?;
            if engine
                .credential()?
                .is_none_or(|c| c.device() != key.public())
            {
                return Err(RelayError::Workspace {
                    id,
                    reason: format!(
                        "{} holds no credential for this relay's node key",
                        storage.location(id)
                    ),
                });
            }
            open.insert(id, engine);
        }
        Ok(Self {
            storage,
            open: RwLock::new(open),
            metrics: Metrics::new(),
            quota: None,
        })
    }

    /// Takes no more changes for a workspace whose storage reached `bytes` (`None`: no limit).
    pub fn set_quota(&mut self, bytes: Option<u64>) {
        self.quota = bytes;
    }

    /// Registers (or re-registers with a new credential) a workspace.
    pub fn add(
        &self,
        id: Uuid,
        admin_key: PublicKey,
        credential: &str,
        key: &SecretKey,
    ) -> Result<(), RelayError> {
        let refuse = |reason: String| RelayError::Workspace { id, reason };
        let parsed: crmsync::net::Credential =
            credential.parse().map_err(|e| refuse(format!("{e}")))?;
        if parsed.workspace() != id {
            return Err(refuse(format!(
                "the credential is for workspace {}",
                parsed.workspace()
            )));
        }
        if parsed.admin() != admin_key {
            return Err(refuse(
                "the credential was not signed by the given admin key".into(),
            ));
        }
        if parsed.device() != key.public() {
            return Err(refuse(format!(
                "the credential was issued to node {}, not this relay ({}); ask the admin for \
                 one issued to the relay's node id",
                parsed.device(),
                key.public()
            )));
        }
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        let engine = match open.get(&id) {
            Some(engine) => engine.clone(),
            None => self.storage.open(id)?,
        };
        engine.set_node_key(key)?;
        engine.join(credential)?;
        open.insert(id, engine);
        Ok(())
    }

    /// Every workspace with its record count.
    pub fn status(&self) -> Result<Vec<WorkspaceStatus>, RelayError> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.iter()
            .map(|(id, engine)| {
                Ok(WorkspaceStatus {
                    id: *id,
                    // Counted from the table's length: /status must not read every record.
                    records: usize::try_from(engine.record_count()?).unwrap_or(usize::MAX),
                    revoked_devices: engine.revocations()?.len(),
                })
            })
            .collect()
    }

    /// The ids of the workspaces served.
    pub fn ids(&self) -> Vec<Uuid> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.keys().copied().collect()
    }

    /// The metrics of their sessions.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The replica of one workspace.
    pub fn get(&self, id: Uuid) -> Option<Engine> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.get(&id).cloned()
    }
}

impl WorkspaceHost for Workspaces {
    fn replica(&self, workspace: Uuid) -> Option<SharedReplica> {
        self.get(workspace)
            .map(|engine| Arc::new(engine) as SharedReplica)
    }

    fn accepts_changes(&self, workspace: Uuid) -> bool {
        match (self.quota, self.storage.bytes(workspace)) {
            (Some(quota), Some(used)) => used < quota,
            _ => true,
        }
    }

    fn session_ended(&self, event: &SessionEvent<'_>) {
        self.metrics.session_ended(event);
    }
}
