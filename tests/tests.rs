//! Integration tests of the crmsync core, through its public API. One binary, many modules.

mod analytics;
mod common;
mod convergence;
mod corrupt;
mod crash;
mod engine;
mod fast_forward;
mod hostile;
mod import_export;
mod journal;
mod layers;
mod lists;
mod local_edits;
mod mem_replica;
mod net;
mod search;
mod sync;
mod sync_concurrent;
mod sync_fixture;
mod sync_machine;
mod sync_props;
mod texts;
