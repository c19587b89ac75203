//! uniffi bindings of crmsync for Kotlin, Swift and Python.
//!
//! This crate holds no logic: [`Engine`] is a handle over [`crmsync::Engine`], and every other
//! type here is a plain mirror of a core type (records, field values, patches, history,
//! search results, analytics reports) with its conversion. Generated code sees:
//!
//! - [`Engine`]: open a database file ([`Engine::open`]) or an in-memory one, then create, get,
//!   update, delete, restore, list, search, history, conflicts, CSV import and export, the merge
//!   path sync uses, and analytics (with the order facts and baskets they read); [`search_dir`]
//!   names a database file's search index directory. Calls that may take long (`list`,
//!   `search`, imports, exports, analytics) are `async` and run on one shared tokio runtime, off
//!   the caller's thread.
//! - [`FieldValue`]: the typed value of a field; [`FieldOp`]: one edit of a patch.
//! - [`CrmError`]: the one error type; every core error maps to one variant with its message.
//! - [`ChangeListener`]: a foreign callback told which records changed (local writes and
//!   merges), on a thread of its own, until [`ListenerHandle::unregister`].
//! - Membership on [`Engine`] (`node_id`, `init_admin`, `invite_device`, `join`, `revoke`,
//!   `credential`, `revocations`; [`credential_info`] reads a credential's text) and
//!   [`Network`], the peer-to-peer sync handle `Engine::enable_network` returns: `sync_with` a
//!   peer's [`PeerAddr`], background mode, [`NetStatus`] and a [`NetStatusListener`].
//!
//! ```
//! use std::collections::HashMap;
//! use crmsync_ffi::{Engine, FieldValue};
//!
//! # fn main() -> Result<(), crmsync_ffi::CrmError> {
//! let engine = Engine::in_memory()?;
//! let fields = HashMap::from([("name".to_string(), FieldValue::Text { value: "Acme".into() })]);
//! let acme = engine.create("company".into(), fields)?;
//! assert_eq!(engine.get(acme.id.clone())?.map(|r| r.record_type), Some("company".into()));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

uniffi::setup_scaffolding!("crmsync");

mod analytics;
mod engine;
mod error;
mod listener;
mod net;
mod record;
mod runtime;
mod search;
mod value;

pub use analytics::{
    AprioriOptions, AssociationRule, Associations, CltvOptions, CltvRow, ExchangeRates, Factor,
    FactorKind, ForecastMethod, ForecastModel, ForecastOptions, FunnelReport, FunnelStage,
    GroupTotals, Itemset, MonthValue, OrderFact, PipelineOptions, PipelineReport, Recommendation,
    RepeatCustomer, RfmOptions, RfmRow, SalesForecast, Segment, ServiceOptions, ServiceStats,
    Smoothing, Totals, VisitCandidate, VisitPlanOptions, VisitWeights,
};
pub use engine::{Engine, OpenOptions, search_dir};
pub use error::CrmError;
pub use listener::{Change, ChangeKind, ChangeListener, ListenerHandle};
pub use net::{
    CredentialInfo, NetStatus, NetStatusListener, Network, NetworkOptions, PeerAddr, PeerStatus,
    ReconcileMode, Refusal, Revocation, Role, SyncReport, credential_info,
};
pub use record::{
    ChangeBatch, Conflict, FieldChange, Filter, FilterOp, HistoryEntry, ImportReport, ListQuery,
    NewRecord, Record, RowError, Sort, SortOrder,
};
pub use search::{DateRange, Highlight, SearchFilters, SearchHit, SearchResults, Snippet};
pub use value::{
    FieldDef, FieldKind, FieldOp, FieldValue, Money, OrderLine, Schema, SchemaField, SchemaType,
    Stage,
};

/// The core crate, for Rust code that wants both.
pub use crmsync;
