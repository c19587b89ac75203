//! The store's own errors. The store knows nothing of search, import or the network: what it
//! can fail with is here, and the engine's [`crate::Error`] wraps it.

use crate::doc::DocError;
use crate::model::{RecordId, ValidationError};

/// What a read or a write of the store can fail with: the storage itself (redb, the journal,
/// bytes that do not decode, a file of another workspace or a newer build), or the record
/// asked for (unknown, deleted, invalid, its changes refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed: I/O error, corrupt or truncated file, or a file of another program.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// A stored row, document or log entry does not decode.
    #[error("stored data for {what} is corrupt: {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The file belongs to another workspace than the one asked for.
    #[error("the database belongs to workspace {file}, not {requested}")]
    WorkspaceMismatch {
        /// The file's workspace.
        file: uuid::Uuid,
        /// The workspace asked for.
        requested: uuid::Uuid,
    },
    /// The write-ahead journal beside the file (`<file>.wal`) could not be created, read or
    /// written.
    #[error("journal {path}: {what}: {source}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The journal beside the file (`<file>.wal`) holds a write, not yet in the file, that a
    /// newer crmsync recorded in a form this build cannot read. Opening anyway would lose that
    /// write, so the file is refused until a build that reads it opens (and so replays) it.
    #[error(
        "journal {path}: a write not yet in the database was recorded by a newer crmsync \
         (journal record version {found}, this crmsync reads up to {supported}): upgrade the app"
    )]
    JournalVersion {
        /// The journal file.
        path: std::path::PathBuf,
        /// The record's version.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The file was written by a newer crmsync.
    #[error(
        "the database format is version {found}, this crmsync reads up to {supported}: upgrade the app"
    )]
    NewerFormat {
        /// The file's format.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The record or patch breaks the schema; nothing was written. (Boxed: the engine's
    /// error, which holds this one, stays small.)
    #[error("invalid record: {0}")]
    Validation(Box<ValidationError>),
    /// No record has this id (or it was never received here).
    #[error("record {0} not found")]
    NotFound(RecordId),
    /// A record with this id exists already.
    #[error("record {0} already exists")]
    AlreadyExists(RecordId),
    /// The record is deleted; restore it before editing.
    #[error("record {0} is deleted; call restore first to edit it")]
    Deleted(RecordId),
    /// A record's Automerge document is unreadable, or changes for it were refused.
    #[error("record {id}: {source}")]
    Doc {
        /// The record.
        id: RecordId,
        /// What is wrong.
        #[source]
        source: Box<DocError>,
    },
    /// Changes received for a record claim another type than the record has here.
    #[error("record {id} is a {expected} here, but the changes make it a {found}")]
    TypeMismatch {
        /// The record.
        id: RecordId,
        /// The type it has here.
        expected: String,
        /// The type the changes give it.
        found: String,
    },
}

impl StoreError {
    pub(crate) fn doc(id: RecordId) -> impl FnOnce(DocError) -> StoreError {
        move |source| StoreError::Doc {
            id,
            source: Box::new(source),
        }
    }

    pub(crate) fn corrupt(what: impl ToString, reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<ValidationError> for StoreError {
    fn from(e: ValidationError) -> Self {
        StoreError::Validation(Box::new(e))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
