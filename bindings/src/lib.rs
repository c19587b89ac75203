//! uniffi bindings of crmsync for Kotlin, Swift and Python.
//!
//! This crate holds no logic: [`Engine`] is a handle over [`crmsync::Engine`], and the records
//! and enums the calls take and return are, for the most part, the core's own (uniffi remote
//! types, defined in the core and exported by its `uniffi` feature, so their doc comments are the
//! docs of the generated API). What is defined here: the object handles, the runtime of the
//! `async` calls, the custom types that give the core's leaf types a foreign form (ids and
//! record types as strings, timestamps as the platform's instant, currencies as codes), the one
//! error type, and the few records whose foreign shape differs from the core's (each says why).
//! Generated code sees:
//!
//! - [`Engine`]: open a database file ([`Engine::open`]) or an in-memory one, then create, get,
//!   update, delete, restore, list, search, history, conflicts, CSV import and export, the merge
//!   path sync uses, and analytics (with the order facts and baskets they read); [`search_dir`]
//!   names a database file's search index directory. Calls that may take long (`list`,
//!   `search`, imports, exports, analytics) are `async` and run on one shared tokio runtime, off
//!   the caller's thread.
//! - [`FieldValue`]: the typed value of a field; [`crmsync::FieldOp`]: one edit of a patch.
//! - [`CrmError`]: the one error type; every core error maps to one variant with its message.
//! - [`ChangeListener`]: a foreign callback told which records changed (local writes and
//!   merges), on a thread of its own, until [`ListenerHandle::unregister`].
//! - Membership on [`Engine`] (`node_id`, `init_admin`, `invite_device`, `join`, `revoke`,
//!   `credential`, `revocations`; [`credential_info`] reads a credential's text) and
//!   [`Network`], the peer-to-peer sync handle `Engine::enable_network` returns: `sync_with` a
//!   peer's [`PeerAddr`], background mode, the network's status and a [`NetStatusListener`].
//!
//! ```
//! use std::collections::HashMap;
//! use crmsync_ffi::{Engine, FieldValue};
//!
//! # fn main() -> Result<(), crmsync_ffi::CrmError> {
//! let engine = Engine::in_memory()?;
//! let fields = HashMap::from([("name".to_string(), FieldValue::Text { value: "Acme".into() })]);
//! let acme = engine.create("company".into(), fields)?;
//! assert_eq!(engine.get(acme.id.to_string())?.map(|r| r.record_type), Some("company".into()));
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
    AprioriOptions, CltvOptions, ExchangeRates, ForecastOptions, GroupTotals, OrderFact,
    PipelineOptions, PipelineReport, RfmOptions, RfmRow, ServiceOptions, VisitPlanOptions,
};
pub use engine::{Engine, OpenOptions, search_dir};
pub use error::CrmError;
pub use listener::{ChangeListener, ListenerHandle};
pub use net::{
    CredentialInfo, NetStatusListener, Network, NetworkOptions, PeerAddr, Refusal, Revocation,
    credential_info,
};
pub use record::{ChangeBatch, Filter, ListQuery, Sort};
pub use search::Highlight;
pub use value::{FieldDef, FieldValue, Schema, SchemaType};

/// The core crate, for Rust code that wants both.
pub use crmsync;
