//! The one error type of the bindings, mapped from every core error in one place.
//!
//! Every variant carries `detail`: the core's message, naming the record type, field, id and
//! what to do. (Not `message`: Kotlin exceptions already have a `message` property, which the
//! generated code fills from the variant's fields.)

use crmsync::Error;
use crmsync::analytics::AnalyticsError;
use crmsync::net::NetError;
use crmsync::search::SearchError;
use crmsync::sync::{AbortCode, SyncError};

use crmsync::RowError;

use crate::net::Refusal;

/// Everything a call can fail with. Kotlin sees `CrmException`, Swift `CrmError`, Python
/// `CrmError` (each variant a subclass).
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
#[error("{detail}")]
pub enum CrmError {
    /// The record or patch breaks the schema; nothing was written.
    Validation {
        /// The record type being written.
        record_type: String,
        /// The field at fault, if one is.
        field: Option<String>,
        /// Why the value is refused (e.g. "is required", "'x' is not one of: a, b").
        reason: String,
        /// The whole message: `type.field: reason`.
        detail: String,
    },
    /// A schema change (custom field or type, pipeline) is not allowed.
    Schema {
        /// The core's message.
        detail: String,
    },
    /// No record has this id (or it was never received here).
    NotFound {
        /// The record id.
        id: String,
        /// The core's message.
        detail: String,
    },
    /// A record with this id exists already.
    AlreadyExists {
        /// The record id.
        id: String,
        /// The core's message.
        detail: String,
    },
    /// The record is deleted; restore it before editing.
    Deleted {
        /// The record id.
        id: String,
        /// The core's message.
        detail: String,
    },
    /// A search query is malformed.
    Query {
        /// Character (not byte) offset of the problem, from 0.
        position: u64,
        /// The core's message, with what to fix.
        detail: String,
    },
    /// The search index failed, or the engine was opened with search disabled.
    Search {
        /// The core's message.
        detail: String,
    },
    /// The storage layer failed (I/O, corrupt file, another workspace's file, newer format).
    Store {
        /// The core's message.
        detail: String,
    },
    /// A record's document is unreadable, or changes received for it were refused.
    Document {
        /// The record id.
        id: String,
        /// The core's message.
        detail: String,
    },
    /// Changes received for a record claim another type than the record has here.
    TypeMismatch {
        /// The record id.
        id: String,
        /// The type it has here.
        expected: String,
        /// The type the changes give it.
        found: String,
        /// The core's message.
        detail: String,
    },
    /// A strict CSV import found bad rows; nothing was stored.
    Import {
        /// The bad rows, in file order.
        rows: Vec<RowError>,
        /// The core's message.
        detail: String,
    },
    /// Reading or writing a file, CSV or JSON failed.
    Io {
        /// The core's message.
        detail: String,
    },
    /// An analysis could not run (a parameter out of range, a missing exchange rate, too
    /// little data).
    Analytics {
        /// The core's message.
        detail: String,
    },
    /// An argument does not parse: a record id, date, currency code, version or head.
    InvalidInput {
        /// What is wrong with it.
        detail: String,
    },
    /// The engine was closed; open it again.
    Closed {
        /// What to do.
        detail: String,
    },
    /// A failure of the bindings themselves (the runtime could not start, a task failed).
    Internal {
        /// What failed.
        detail: String,
    },
    /// This device has no credential: `join` with one (or `init_admin` on the admin's device)
    /// before going online.
    NotJoined {
        /// The core's message.
        detail: String,
    },
    /// This device already holds a credential (`init_admin` twice, or on a member).
    AlreadyJoined {
        /// The core's message.
        detail: String,
    },
    /// Only the workspace admin's device may invite or revoke devices.
    NotAdmin {
        /// The core's message.
        detail: String,
    },
    /// A credential's text does not parse or verify, has expired, or was signed by another
    /// admin than this device's workspace.
    InvalidCredential {
        /// The core's message.
        detail: String,
    },
    /// The credential is for another workspace than the database's: open the engine with
    /// `OpenOptions.workspace_id` set to the credential's workspace (see `credential_info`).
    WrongWorkspace {
        /// The credential's workspace id.
        credential_workspace: String,
        /// The database's workspace id.
        store_workspace: String,
        /// The core's message.
        detail: String,
    },
    /// The credential was issued to another device.
    NotForThisDevice {
        /// The node id it was issued to.
        issued_to: String,
        /// This device's node id.
        this_device: String,
        /// The core's message.
        detail: String,
    },
    /// This device refused the peer: its membership check failed. Nothing was exchanged.
    PeerRefused {
        /// Why.
        reason: Refusal,
        /// The core's message.
        detail: String,
    },
    /// The peer refused this device (e.g. its credential expired or was revoked). Nothing was
    /// exchanged.
    RefusedByPeer {
        /// Why.
        reason: Refusal,
        /// The core's message.
        detail: String,
    },
    /// The membership handshake broke (a malformed or oversized frame).
    Handshake {
        /// The core's message.
        detail: String,
    },
    /// Networking could not start (e.g. the bind address is in use).
    Bind {
        /// The core's message.
        detail: String,
    },
    /// No connection to the peer could be made.
    Connect {
        /// The peer's node id.
        peer: String,
        /// Why.
        reason: String,
        /// The core's message.
        detail: String,
    },
    /// The connection failed mid-session; the next session resumes where this one stopped.
    Connection {
        /// The core's message.
        detail: String,
    },
    /// The network was shut down; enable it again.
    NetworkClosed {
        /// What to do.
        detail: String,
    },
    /// This device refused a read-only member's changes: the peer sent changes although its
    /// credential only lets it receive. None of them were applied and the session ended. A
    /// read-only device running this library never sends changes, so this means an outdated
    /// or altered app on the peer; invite the device as a member to accept its edits.
    ReadOnlyPeer {
        /// The core's message, with what happened to the changes.
        detail: String,
    },
    /// The peer refused this device's changes because this device is a read-only member of
    /// the workspace. Nothing this device sent was applied there; it still receives changes.
    RefusedAsReadOnly {
        /// The peer's message.
        detail: String,
    },
    /// A sync session failed (protocol, version or workspace mismatch, timeout, the peer
    /// aborted). Batches applied before stay; the next session resumes.
    Sync {
        /// The core's message.
        detail: String,
    },
}

impl CrmError {
    /// An argument that does not parse.
    pub(crate) fn input(detail: impl ToString) -> Self {
        CrmError::InvalidInput {
            detail: detail.to_string(),
        }
    }

    /// A failure of the bindings.
    pub(crate) fn internal(detail: impl ToString) -> Self {
        CrmError::Internal {
            detail: detail.to_string(),
        }
    }
}

impl From<Error> for CrmError {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match e {
            Error::Validation(v) => CrmError::Validation {
                record_type: v.record_type,
                field: v.field,
                reason: v.reason.to_string(),
                detail,
            },
            Error::Schema(_) => CrmError::Schema { detail },
            Error::NotFound(id) => CrmError::NotFound {
                id: id.to_string(),
                detail,
            },
            Error::AlreadyExists(id) => CrmError::AlreadyExists {
                id: id.to_string(),
                detail,
            },
            Error::Deleted(id) => CrmError::Deleted {
                id: id.to_string(),
                detail,
            },
            Error::Search(
                SearchError::Syntax { position, .. } | SearchError::UnknownField { position, .. },
            ) => CrmError::Query {
                position: position as u64,
                detail,
            },
            Error::Search(_) => CrmError::Search { detail },
            Error::Store(_) => CrmError::Store { detail },
            Error::Money(_) => CrmError::InvalidInput { detail },
            Error::Doc { id, .. } => CrmError::Document {
                id: id.to_string(),
                detail,
            },
            Error::TypeMismatch {
                id,
                expected,
                found,
            } => CrmError::TypeMismatch {
                id: id.to_string(),
                expected,
                found,
                detail,
            },
            Error::Import(rows) => CrmError::Import { rows, detail },
            Error::Io(_) | Error::Csv(_) | Error::Json(_) => CrmError::Io { detail },
            // `Error` is non-exhaustive: a variant added later still arrives with its message.
            _ => CrmError::Internal { detail },
        }
    }
}

impl From<AnalyticsError> for CrmError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Engine(e) => CrmError::from(e),
            other => CrmError::Analytics {
                detail: other.to_string(),
            },
        }
    }
}

impl From<NetError> for CrmError {
    fn from(e: NetError) -> Self {
        let detail = e.to_string();
        match e {
            NetError::NotJoined => CrmError::NotJoined { detail },
            NetError::AlreadyJoined => CrmError::AlreadyJoined { detail },
            NetError::NotAdmin => CrmError::NotAdmin { detail },
            NetError::InvalidCredential(_) => CrmError::InvalidCredential { detail },
            NetError::WrongWorkspace { credential, store } => CrmError::WrongWorkspace {
                credential_workspace: credential.to_string(),
                store_workspace: store.to_string(),
                detail,
            },
            NetError::NotForThisDevice {
                issued_to,
                this_device,
            } => CrmError::NotForThisDevice {
                issued_to,
                this_device,
                detail,
            },
            NetError::PeerRefused(reason) => CrmError::PeerRefused {
                reason: reason.into(),
                detail,
            },
            NetError::RefusedByPeer(reason) => CrmError::RefusedByPeer {
                reason: reason.into(),
                detail,
            },
            NetError::Handshake(_) => CrmError::Handshake { detail },
            NetError::Bind(_) => CrmError::Bind { detail },
            NetError::Connect { peer, reason } => CrmError::Connect {
                peer,
                reason,
                detail,
            },
            NetError::Connection(_) | NetError::Deadline(_) => CrmError::Connection { detail },
            NetError::Closed => CrmError::NetworkClosed {
                detail: format!("{detail}; enable it again"),
            },
            NetError::Sync(e) => e.into(),
            NetError::Store(e) => e.into(),
            // `NetError` is non-exhaustive: a variant added later still arrives with its message.
            _ => CrmError::Internal { detail },
        }
    }
}

impl From<SyncError> for CrmError {
    fn from(e: SyncError) -> Self {
        match e {
            // The store refused received changes (or failed): the store's own variant.
            SyncError::Store(e) => CrmError::from(*e),
            SyncError::Io(e) => CrmError::Connection {
                detail: e.to_string(),
            },
            SyncError::ReadOnlyPeer => CrmError::ReadOnlyPeer {
                detail: "refused the peer's changes: it is a read-only member of the workspace, \
                         so none of them were applied (its app sends changes it may not send)"
                    .to_string(),
            },
            SyncError::Remote {
                code: AbortCode::ReadOnly,
                ..
            } => CrmError::RefusedAsReadOnly {
                detail: "the peer refused this device's changes: this device is a read-only \
                         member of the workspace, so nothing it sent was applied"
                    .to_string(),
            },
            other => CrmError::Sync {
                detail: other.to_string(),
            },
        }
    }
}

/// A foreign [`crate::ChangeListener`] or [`crate::NetStatusListener`] threw: it is reported
/// as `Internal` and logged.
impl From<uniffi::UnexpectedUniFFICallbackError> for CrmError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CrmError::internal(format!("listener failed: {}", e.reason))
    }
}
