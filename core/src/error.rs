//! Error types. Each layer has its own enum; [`Error`] is what the engine returns.

use crate::doc::DocError;
use crate::model::{RecordId, SchemaError, ValidationError};

/// A failure of the storage layer (redb, or bytes in it that do not decode).
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
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(redb::Error::from(e))
            }
        }
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(StoreError::from(e))
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

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The record or patch breaks the schema; nothing was written.
    #[error("invalid record: {0}")]
    Validation(#[from] ValidationError),
    /// The schema change is not allowed.
    #[error("schema: {0}")]
    Schema(#[from] SchemaError),
    /// No record has this id (or it was never received here).
    #[error("record {0} not found")]
    NotFound(RecordId),
    /// A record with this id exists already.
    #[error("record {0} already exists")]
    AlreadyExists(RecordId),
    /// The record is deleted; restore it before editing.
    #[error("record {0} is deleted; call restore first to edit it")]
    Deleted(RecordId),
    /// The storage layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Search failed: a malformed query (with its position), or the index.
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    /// Text that should be money is not.
    #[error(transparent)]
    Money(#[from] crate::model::MoneyParseError),
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
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A CSV file could not be read or written.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// A CSV import in strict mode found bad rows; nothing was stored.
    #[error("import refused, nothing stored: {}", crate::import::summary(.0))]
    Import(Vec<crate::import::RowError>),
    /// JSON output failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn doc(id: RecordId) -> impl FnOnce(DocError) -> Error {
        move |source| Error::Doc {
            id,
            source: Box::new(source),
        }
    }

    pub(crate) fn corrupt(what: impl ToString, reason: impl ToString) -> Error {
        Error::Store(StoreError::Corrupt {
            what: what.to_string(),
            reason: reason.to_string(),
        })
    }
}

/// The result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
