//! crmsync core.
pub mod doc;
mod engine;
mod error;
pub mod events;
pub mod export;
pub mod import;
pub mod model;
pub mod query;
pub mod store;

pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result, StoreError};
