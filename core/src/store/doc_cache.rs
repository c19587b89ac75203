//! Recently loaded documents, kept so that sending one record's changes to many peers (a
//! relay fanning an edit out to every connected device) decodes its document once, not once
//! per peer. An entry is used only while the record's stored heads equal the heads it was
//! loaded at, and heads name a document's whole content: no write path has to invalidate it,
//! and a transaction that aborted cannot leave a wrong entry behind.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use automerge::{Automerge, ChangeHash};
use lru::LruCache;

use crate::model::RecordId;

/// A decoded document with the heads it was loaded at.
type Entry = (Vec<ChangeHash>, Arc<Automerge>);

pub(super) struct DocCache {
    entries: Option<Mutex<LruCache<RecordId, Entry>>>,
}

impl DocCache {
    /// Holds up to `capacity` documents; 0 turns the cache off.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The document of `id` as of `heads`, if it is cached.
    pub fn get(&self, id: RecordId, heads: &[ChangeHash]) -> Option<Arc<Automerge>> {
        let mut entries = self
            .entries
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match entries.get(&id) {
            Some((at, doc)) if at.as_slice() == heads => Some(doc.clone()),
            _ => None,
        }
    }

    /// Takes the document of `id` out of the cache if it is cached as of `heads`, for a write
    /// that will change it (and put the result back): no other copy need stay behind.
    pub fn take(&self, id: RecordId, heads: &[ChangeHash]) -> Option<Arc<Automerge>> {
        let mut entries = self
            .entries
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match entries.peek(&id) {
            Some((at, _)) if at.as_slice() == heads => entries.pop(&id).map(|(_, doc)| doc),
            _ => None,
        }
    }

    /// Keeps `doc`, loaded at `heads`.
    pub fn put(&self, id: RecordId, heads: Vec<ChangeHash>, doc: Arc<Automerge>) {
        if let Some(entries) = &self.entries {
            entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(id, (heads, doc));
        }
    }
}
