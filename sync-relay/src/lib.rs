//! crmsync-relay: a self-hostable store-and-forward peer for crmsync workspaces.
//!
//! The relay is built from the core's store and (once they exist) its sync and network layers;
//! it is not built yet.

pub use crmsync;
