//! The index on disk: the one in the directory if this store and this index version wrote it
//! and it is whole, else a new empty one to rebuild.
//!
//! Each commit carries a payload naming the index version, the store's workspace and device,
//! and the last log sequence indexed: the sequence to catch up from on the next open.

use std::path::Path;

use tantivy::{Index, IndexSettings};

use super::Result;
use super::SearchError;
use super::directory::UnsyncedDirectory;
use super::fields::{self, Fields, INDEX_VERSION};
use crate::store::Store;

/// First word of the commit payload.
const PAYLOAD_TAG: &str = "crmsync-search";

/// The commit payload for an index reflecting `store` up to log sequence `seq`.
pub(super) fn payload(store: &Store, seq: u64) -> String {
    format!(
        "{PAYLOAD_TAG} v{INDEX_VERSION} {} {} {seq}",
        store.workspace(),
        store.identity()
    )
}

/// The sequence an index payload names, if it was written by this index version for this store.
fn parse_payload(stored: &str, store: &Store) -> Option<u64> {
    let expected = payload(store, 0);
    let (prefix, seq) = stored.rsplit_once(' ')?;
    let (expected_prefix, _) = expected.rsplit_once(' ')?;
    (prefix == expected_prefix).then_some(())?;
    seq.parse().ok()
}

/// Opens a usable index in `dir` that was built from this store up to a sequence it has.
fn try_open(dir: &Path, store: &Store, last: u64) -> Option<(Index, u64)> {
    let index = Index::open(UnsyncedDirectory::open(dir).ok()?).ok()?;
    Fields::of(&index)?;
    let seq = parse_payload(index.load_metas().ok()?.payload.as_deref()?, store)?;
    if seq > last {
        // The database is older than the index (restored from a backup).
        return None;
    }
    if !index.validate_checksum().ok()?.is_empty() {
        return None;
    }
    fields::register_analyzers(&index);
    index.reader().ok()?;
    Some((index, seq))
}

fn io_error(dir: &Path) -> impl FnOnce(std::io::Error) -> SearchError {
    move |source| SearchError::Io {
        path: dir.to_path_buf(),
        source,
    }
}

/// Opens the index in `dir`, or creates it empty there (`None`: it must be rebuilt).
pub(super) fn open_dir(dir: &Path, store: &Store, last: u64) -> Result<(Index, Option<u64>)> {
    if dir.exists() {
        if let Some((index, seq)) = try_open(dir, store, last) {
            return Ok((index, Some(seq)));
        }
        tracing::warn!(dir = %dir.display(), "search index missing, stale or corrupt: rebuilding");
        if dir.is_dir() {
            std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
        } else {
            std::fs::remove_file(dir).map_err(io_error(dir))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let directory = UnsyncedDirectory::open(dir).map_err(|e| SearchError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let (schema, _) = Fields::schema();
    let index =
        Index::create(directory, schema, IndexSettings::default()).map_err(SearchError::from)?;
    Ok((index, None))
}
