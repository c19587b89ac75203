//! uniffi bindings of crmsync for Kotlin, Swift and Python.
//!
//! This crate will hold only thin `Arc` handles over [`crmsync`] and the conversions of its
//! types; the bindings themselves are not built yet. Until then, depend on `crmsync` directly.

pub use crmsync;
