//! Error types. Each layer has its own enum; [`Error`] is what the engine returns.

use crate::doc::DocError;
use crate::model::{RecordId, SchemaError, ValidationError};
pub use crate::store::StoreError;

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
    /// The storage layer failed (a record-level failure of the store arrives as the variant
    /// above that says it: `NotFound`, `Deleted`, `Doc`, ...).
    #[error(transparent)]
    Store(StoreError),
    /// Search failed: a malformed query (with its position), or the index.
    #[error(transparent)]
    Search(crate::search::SearchError),
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

/// A record-level failure of the store is the engine's error of the same name; the rest is a
/// storage failure.
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Validation(e) => Error::Validation(*e),
            StoreError::NotFound(id) => Error::NotFound(id),
            StoreError::AlreadyExists(id) => Error::AlreadyExists(id),
            StoreError::Deleted(id) => Error::Deleted(id),
            StoreError::Doc { id, source } => Error::Doc { id, source },
            StoreError::TypeMismatch {
                id,
                expected,
                found,
            } => Error::TypeMismatch {
                id,
                expected,
                found,
            },
            other => Error::Store(other),
        }
    }
}

/// A store failure met while searching is the store's; the rest is search's own.
impl From<crate::search::SearchError> for Error {
    fn from(e: crate::search::SearchError) -> Self {
        match e {
            crate::search::SearchError::Store(e) => Error::from(e),
            other => Error::Search(other),
        }
    }
}
