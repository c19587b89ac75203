//! crmsync core: an embedded, local-first store of CRM records.
//!
//! Every record (company, contact, deal, activity, case, order, product, campaign, or an
//! app-defined type) is an Automerge document persisted in redb, with a materialized row for
//! fast reads, its heads for sync, and an entry in a local change log. Edits made offline on
//! two devices merge without conflicts; every record keeps its history.
//!
//! ```
//! use crmsync::{Engine, FilterOp, ListQuery, NewRecord, Patch, RecordType};
//!
//! # fn main() -> crmsync::Result<()> {
//! let engine = Engine::in_memory()?; // or Engine::open("crm.redb")
//! let acme = engine.create(NewRecord::new(RecordType::Company).with("name", "Acme Ltd"))?;
//! let deal = engine.create(
//!     NewRecord::new(RecordType::Deal)
//!         .with("name", "Acme renewal")
//!         .with("company", acme.id)
//!         .with("amount", "12000.00 EUR".parse::<crmsync::Money>()?)
//!         .with("stage", "proposal"),
//! )?;
//! engine.update(deal.id, Patch::new().set("stage", "negotiation").add_tag("q3"))?;
//!
//! let open = engine.list(&ListQuery::new(RecordType::Deal).filter("stage", FilterOp::Eq, "negotiation"))?;
//! assert_eq!(open.len(), 1);
//! assert_eq!(engine.history(deal.id)?.len(), 2);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod analytics;
pub mod doc;
mod engine;
mod error;
pub mod events;
pub mod export;
pub mod import;
pub mod model;
pub mod net;
pub mod query;
pub mod search;
pub mod store;
pub mod sync;

pub use doc::{Conflict, FieldChange, HistoryEntry, Version};
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result, StoreError};
pub use events::{ChangeEvent, ChangeKind, Subscription};
pub use import::{ImportOptions, ImportReport, RowError};
pub use model::{
    Currency, DeviceId, FieldDef, FieldKind, FieldOp, Money, NewRecord, OrderLine, Patch, Pipeline,
    Reason, Record, RecordId, RecordType, Schema, Stage, ValidationError, Value,
};
pub use query::{Filter, FilterOp, ListQuery, SortOrder};
pub use search::{
    DateRange, Page, SearchError, SearchFilters, SearchHit, SearchOptions, SearchResults, Snippet,
};
pub use store::{Merged, PeerCursor, Store, StoreOptions};
