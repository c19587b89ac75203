//! The relay's workspaces: one database file each, under `<data_dir>/workspaces/<id>.redb`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crmsync::net::{PublicKey, WorkspaceHost};
use crmsync::{Engine, EngineOptions};
use iroh::SecretKey;
use uuid::Uuid;

use crate::RelayError;

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

/// The open workspaces of a relay.
pub struct Workspaces {
    dir: PathBuf,
    open: RwLock<BTreeMap<Uuid, Engine>>,
}

fn open_engine(path: &Path, id: Uuid) -> Result<Engine, RelayError> {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(id);
    Ok(Engine::open_with(path, options)?)
}

impl Workspaces {
    /// Opens every workspace file under `data_dir`.
    pub fn open(data_dir: &Path, key: &SecretKey) -> Result<Self, RelayError> {
        let dir = data_dir.join("workspaces");
        std::fs::create_dir_all(&dir).map_err(|source| RelayError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut open = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| RelayError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".redb"))
                .and_then(|n| n.parse::<Uuid>().ok());
            let Some(id) = id else { continue };
            let engine = open_engine(&path, id)?;
            if engine
                .credential()?
                .is_none_or(|c| c.device() != key.public())
            {
                return Err(RelayError::Workspace {
                    id,
                    reason: "its file holds no credential for this relay's node key".into(),
                });
            }
            open.insert(id, engine);
        }
        Ok(Self {
            dir,
            open: RwLock::new(open),
        })
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
            None => open_engine(&self.dir.join(format!("{id}.redb")), id)?,
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
                    records: engine.store().all_heads()?.len(),
                    revoked_devices: engine.revocations()?.len(),
                })
            })
            .collect()
    }

    /// The replica of one workspace.
    pub fn get(&self, id: Uuid) -> Option<Engine> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.get(&id).cloned()
    }
}

impl WorkspaceHost for Workspaces {
    fn replica(&self, workspace: Uuid) -> Option<Engine> {
        self.get(workspace)
    }
}
