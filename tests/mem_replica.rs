//! A replica kept in memory, for driving the sync protocol without a store: every id, actor,
//! timestamp and nonce is chosen by the test, so a session is the same bytes every run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ChangeHash, ROOT};
use crmsync::sync::{Applied, PeerRef, Replica};
use crmsync::{DeviceId, PeerCursor, RecordId};
use uuid::Uuid;

#[derive(Default)]
struct State {
    docs: BTreeMap<RecordId, Arc<Automerge>>,
    /// (seq, record, its heads before the write).
    log: Vec<(u64, RecordId, Vec<ChangeHash>)>,
    cursors: HashMap<String, PeerCursor>,
}

/// Automerge documents by record id, a change log and peer cursors, behind one lock.
pub struct MemReplica {
    workspace: Uuid,
    id: DeviceId,
    state: Mutex<State>,
}

impl MemReplica {
    pub fn new(workspace: Uuid, id: DeviceId) -> Self {
        Self {
            workspace,
            id,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Sets `field` of record `id` to `value` as this replica's actor (creating the record),
    /// committed at time 0 so the change's bytes depend on nothing else.
    pub fn put(&self, id: RecordId, field: &str, value: &str) {
        let mut state = self.state();
        let mut doc = match state.docs.get(&id) {
            Some(doc) => (**doc).clone(),
            None => Automerge::new(),
        };
        doc.set_actor(ActorId::from(self.id.0.to_vec()));
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        tx.put(ROOT, field, value).unwrap();
        tx.commit_with(CommitOptions::default().with_time(0));
        let seq = state.log.len() as u64 + 1;
        state.log.push((seq, id, before));
        state.docs.insert(id, Arc::new(doc));
    }

    /// Copies a record as it is on `other` (both then hold the same document).
    pub fn copy_from(&self, other: &MemReplica, id: RecordId) {
        let bytes = other.doc_bytes(id).unwrap().unwrap();
        self.apply(&[(id, bytes)]).unwrap();
    }

    /// Every record's saved document, for comparing two replicas.
    pub fn contents(&self) -> BTreeMap<RecordId, Vec<ChangeHash>> {
        let state = self.state();
        state
            .docs
            .iter()
            .map(|(id, doc)| {
                let mut heads = doc.get_heads();
                heads.sort();
                (*id, heads)
            })
            .collect()
    }

    /// The value of a field, as text.
    pub fn field(&self, id: RecordId, field: &str) -> Option<String> {
        let state = self.state();
        let doc = state.docs.get(&id)?;
        let (value, _) = automerge::ReadDoc::get(&**doc, ROOT, field).ok()??;
        value.into_string().ok()
    }

    /// The cursor kept for `peer`.
    pub fn cursor(&self, peer: &PeerRef) -> Option<PeerCursor> {
        self.state().cursors.get(&peer.cursor_name()).copied()
    }
}

fn failed(what: impl std::fmt::Display) -> crmsync::Error {
    crmsync::Error::Io(std::io::Error::other(what.to_string()))
}

impl Replica for MemReplica {
    fn workspace(&self) -> Uuid {
        self.workspace
    }

    fn replica_id(&self) -> DeviceId {
        self.id
    }

    fn last_seq(&self) -> crmsync::Result<u64> {
        Ok(self.state().log.len() as u64)
    }

    fn all_heads(&self) -> crmsync::Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        Ok(self
            .state()
            .docs
            .iter()
            .map(|(id, doc)| (*id, doc.get_heads()))
            .collect())
    }

    fn changed_since(&self, seq: u64) -> crmsync::Result<Vec<(RecordId, Vec<ChangeHash>)>> {
        let state = self.state();
        let mut first: BTreeMap<RecordId, Vec<ChangeHash>> = BTreeMap::new();
        for (_, id, before) in state.log.iter().filter(|(s, _, _)| *s > seq) {
            first.entry(*id).or_insert_with(|| before.clone());
        }
        Ok(first.into_iter().collect())
    }

    fn heads(&self, id: RecordId) -> crmsync::Result<Vec<ChangeHash>> {
        Ok(self
            .state()
            .docs
            .get(&id)
            .map(|d| d.get_heads())
            .unwrap_or_default())
    }

    fn doc(&self, id: RecordId) -> crmsync::Result<Option<Arc<Automerge>>> {
        Ok(self.state().docs.get(&id).cloned())
    }

    fn doc_bytes(&self, id: RecordId) -> crmsync::Result<Option<Vec<u8>>> {
        Ok(self.state().docs.get(&id).map(|d| d.save()))
    }

    fn apply(&self, batch: &[(RecordId, Vec<u8>)]) -> crmsync::Result<Applied> {
        let mut state = self.state();
        // All or nothing, like the store's transaction.
        let mut merged = Vec::new();
        for (id, bytes) in batch {
            let mut doc = match state.docs.get(id) {
                Some(doc) => (**doc).clone(),
                None => Automerge::new(),
            };
            let before = doc.get_heads();
            doc.load_incremental(bytes).map_err(failed)?;
            if doc.get_heads() != before {
                merged.push((*id, before, doc));
            }
        }
        let mut applied = Applied::default();
        for (id, before, doc) in merged {
            let seq = state.log.len() as u64 + 1;
            state.log.push((seq, id, before));
            state.docs.insert(id, Arc::new(doc));
            applied.seqs.push(seq);
        }
        Ok(applied)
    }

    fn peer_cursor(&self, peer: &PeerRef) -> crmsync::Result<Option<PeerCursor>> {
        Ok(self.cursor(peer))
    }

    fn set_peer_cursor(&self, peer: &PeerRef, cursor: PeerCursor) -> crmsync::Result<()> {
        self.state().cursors.insert(peer.cursor_name(), cursor);
        Ok(())
    }

    fn forget_peer_cursor(&self, peer: &PeerRef) -> crmsync::Result<()> {
        self.state().cursors.remove(&peer.cursor_name());
        Ok(())
    }
}
