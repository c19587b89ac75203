//! Where the relay keeps its workspaces' replicas. Today: one redb file per workspace in the
//! data directory ([`LocalFiles`]). The trait is the seam a replicated backend fills when one
//! relay machine is not enough (see the crate's README, "Beyond one machine").

use std::path::{Path, PathBuf};

use crmsync::{Engine, EngineOptions, SearchOptions};
use uuid::Uuid;

use crate::RelayError;

/// The replicas of the workspaces a relay serves. Each replica is an [`Engine`]: the sync
/// protocol, membership settings and merge path all run through it, so a backend only decides
/// where its data lives and how it is opened.
pub trait WorkspaceStorage: Send + Sync + 'static {
    /// The workspaces stored.
    fn list(&self) -> Result<Vec<Uuid>, RelayError>;

    /// Opens the replica of `workspace`, creating an empty one on first use.
    fn open(&self, workspace: Uuid) -> Result<Engine, RelayError>;

    /// Where a workspace lives, for messages (a path, a URL).
    fn location(&self, workspace: Uuid) -> String;

    /// The bytes a workspace takes in storage, if known (for `max_workspace_bytes`).
    fn bytes(&self, workspace: Uuid) -> Option<u64> {
        let _ = workspace;
        None
    }
}

/// One redb file per workspace, `<dir>/<id>.redb`: one tenant's corruption or deletion
/// touches no other, and a workspace is backed up or moved by copying one file.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    dir: PathBuf,
}

impl LocalFiles {
    /// Keeps workspaces under `dir`, creating it if needed.
    pub fn new(dir: &Path) -> Result<Self, RelayError> {
        std::fs::create_dir_all(dir).map_err(|source| RelayError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, workspace: Uuid) -> PathBuf {
        self.dir.join(format!("{workspace}.redb"))
    }
}

impl WorkspaceStorage for LocalFiles {
    fn list(&self) -> Result<Vec<Uuid>, RelayError> {
        let io = |source| RelayError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            // Other files (an operator's backup copy, say) are not workspaces.
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".redb"))
                .and_then(|n| n.parse::<Uuid>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn open(&self, workspace: Uuid) -> Result<Engine, RelayError> {
        let mut options = EngineOptions::default();
        options.store.workspace = Some(workspace);
        // Nobody searches on a relay: an index would only cost a commit per applied batch.
        let search = SearchOptions {
            enabled: false,
            ..SearchOptions::default()
        };
        Engine::open_with_search(self.path(workspace), options, search).map_err(|e| {
            RelayError::Workspace {
                id: workspace,
                reason: format!("{}: {e}", self.path(workspace).display()),
            }
        })
    }

    fn location(&self, workspace: Uuid) -> String {
        self.path(workspace).display().to_string()
    }

    fn bytes(&self, workspace: Uuid) -> Option<u64> {
        // The database file; its journal beside it has a fixed size.
        std::fs::metadata(self.path(workspace))
            .ok()
            .map(|m| m.len())
    }
}
