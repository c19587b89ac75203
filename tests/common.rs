//! Helpers shared by the integration tests.

#![allow(dead_code)]

use crmsync::sync::Replica;
use crmsync::{Engine, Money, NewRecord, RecordId, RecordType};

/// A fresh in-memory engine.
pub fn engine() -> Engine {
    Engine::in_memory().expect("in-memory engine opens")
}

/// Creates a company and returns its id.
pub fn company(engine: &Engine, name: &str) -> RecordId {
    engine
        .create(NewRecord::new(RecordType::Company).with("name", name))
        .expect("company is valid")
        .id
}

/// Parses money, for brevity.
pub fn money(text: &str) -> Money {
    text.parse().expect("valid money literal")
}

/// Sends every change `from` has that `to` lacks, in one batch; returns how many records changed.
pub fn sync_one_way(from: &Engine, to: &Engine) -> usize {
    let mut batch = Vec::new();
    for (id, _) in from.all_heads().expect("heads") {
        let have = to.heads(id).expect("heads");
        if let Some(bytes) = from.export_changes(id, &have).expect("export") {
            batch.push((id, bytes));
        }
    }
    to.apply_changes(&batch).expect("apply").len()
}

/// Syncs both ways.
pub fn sync(a: &Engine, b: &Engine) {
    sync_one_way(a, b);
    sync_one_way(b, a);
}
