//! Local edits of scalar fields are made into changes without loading the record's document.
//! Each must be the change an Automerge transaction on the stored document would make — same
//! ops, predecessors, dependencies and numbering — and leave a row the document agrees with,
//! whatever concurrent edits and conflicts the record went through.

use automerge::{Automerge, Change};
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType, StoreOptions, Value};
use proptest::prelude::*;

use crate::common::{money, sync};
use crmsync::sync::Replica;

/// Without the cache of decoded documents, which sends an edit of a cached record the
/// general way: every edit here takes the shortcut when it can.
fn replica() -> Engine {
    let store = StoreOptions {
        doc_cache: 0,
        ..StoreOptions::default()
    };
    Engine::in_memory_with(EngineOptions { store }).expect("in-memory engine opens")
}

fn deal(e: &Engine) -> RecordId {
    e.create(
        NewRecord::new(RecordType::Deal)
            .with("name", "Fleet renewal")
            .with("stage", "prospecting")
            .with("amount", money("1200.00 EUR"))
            .with("lost_reason", "none yet"),
    )
    .expect("create deal")
    .id
}

/// The changes a document has that `before` lacks, decoded, with their times left out.
fn new_changes(before: &Automerge, after: &Automerge) -> Vec<automerge::ExpandedChange> {
    after
        .get_changes(&before.get_heads())
        .into_iter()
        .map(|c: Change| {
            let mut c = c.decode();
            c.time = 0;
            c.hash = None;
            c
        })
        .collect()
}

/// Applies `patch` on `e` and checks the outcome against the same patch applied by Automerge
/// to the document as stored before.
fn edit_and_check(e: &Engine, id: RecordId, patch: Patch, what: &str) {
    let before = e.doc(id).unwrap().expect("document");
    assert_eq!(
        e.heads(id).unwrap(),
        before.get_heads(),
        "{what}: stored heads against the document's, before the edit"
    );
    let mut reference = before.fork();
    crmsync::doc::apply_ops(
        &mut reference,
        e.device_id(),
        &patch.ops,
        chrono::Utc::now(),
    )
    .expect("reference edit");
    e.update(id, patch).expect("update");
    let after = e.doc(id).unwrap().expect("document after");
    assert_eq!(
        new_changes(&before, &after),
        new_changes(&before, &reference),
        "{what}: the stored change differs from Automerge's"
    );
    let row = e.get_including_deleted(id).unwrap().expect("row");
    let read = crmsync::doc::materialize(&after, id, &e.schema()).expect("materialize");
    assert_eq!(row, read, "{what}: the row differs from the document");
    assert_eq!(
        e.conflicts(id).unwrap(),
        crmsync::doc::conflicts(&reference, &e.schema()).unwrap(),
        "{what}: conflicts"
    );
}

#[test]
fn scalar_edits_match_automerge_through_conflicts_and_merges() {
    let (a, b) = (replica(), replica());
    let id = deal(&a);
    edit_and_check(
        &a,
        id,
        Patch::new().set("name", "Fleet renewal 2027"),
        "set",
    );
    edit_and_check(
        &a,
        id,
        Patch::new().set("name", "Fleet renewal 2027"),
        "same value",
    );
    edit_and_check(&a, id, Patch::new().unset("lost_reason"), "unset");
    edit_and_check(&a, id, Patch::new().unset("lost_reason"), "unset again");
    edit_and_check(
        &a,
        id,
        Patch::new()
            .set("amount", money("1500.00 EUR"))
            .set("probability", 40)
            .set("probability", 45),
        "several ops, one field twice",
    );
    sync(&a, &b);
    // Concurrent writes of one field: a conflict, then each side writes over it.
    edit_and_check(&a, id, Patch::new().set("stage", "proposal"), "a's side");
    edit_and_check(&b, id, Patch::new().set("stage", "negotiation"), "b's side");
    sync(&a, &b);
    assert_eq!(a.conflicts(id).unwrap().len(), 1, "a conflict to resolve");
    edit_and_check(
        &b,
        id,
        Patch::new().set("stage", "qualification"),
        "resolve",
    );
    edit_and_check(
        &a,
        id,
        Patch::new().set("name", "Renewal"),
        "edit beside it",
    );
    sync(&a, &b);
    assert!(a.conflicts(id).unwrap().is_empty());
    // A conflict resolved by writing the value that already wins.
    edit_and_check(&a, id, Patch::new().set("stage", "closed_won"), "a again");
    edit_and_check(&b, id, Patch::new().set("stage", "closed_lost"), "b again");
    sync(&a, &b);
    let winner = a.get(id).unwrap().unwrap().fields["stage"].clone();
    edit_and_check(&a, id, Patch::new().set("stage", winner), "keep the winner");
    edit_and_check(&b, id, Patch::new().unset("lost_reason"), "unset on b");
    sync(&a, &b);
    assert_eq!(
        a.get_including_deleted(id).unwrap(),
        b.get_including_deleted(id).unwrap()
    );
    assert_eq!(a.heads(id).unwrap(), b.heads(id).unwrap());
}

#[derive(Debug, Clone)]
enum Step {
    Edit {
        on_b: bool,
        field: usize,
        value: Option<u8>,
    },
    Sync,
}

const FIELDS: [&str; 3] = ["name", "probability", "lost_reason"];

fn value(field: usize, v: u8) -> Value {
    match field {
        1 => Value::Int(i64::from(v % 4) * 10),
        _ => Value::Text(format!("v{}", v % 4)),
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), 0..FIELDS.len(), proptest::option::of(any::<u8>()))
            .prop_map(|(on_b, field, value)| Step::Edit { on_b, field, value }),
        1 => Just(Step::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sets and unsets on two replicas, synced now and then: every edit is Automerge's.
    #[test]
    fn random_scalar_edits_are_automerges(steps in proptest::collection::vec(step(), 1..24)) {
        let (a, b) = (replica(), replica());
        let id = deal(&a);
        sync(&a, &b);
        for (n, s) in steps.into_iter().enumerate() {
            match s {
                Step::Sync => sync(&a, &b),
                Step::Edit { on_b, field, value: v } => {
                    let e = if on_b { &b } else { &a };
                    // The name is required: it is only ever set.
                    let patch = match v {
                        None if field > 0 => Patch::new().unset(FIELDS[field]),
                        v => Patch::new().set(FIELDS[field], value(field, v.unwrap_or(0))),
                    };
                    edit_and_check(e, id, patch, &format!("step {n}"));
                }
            }
        }
        sync(&a, &b);
        prop_assert_eq!(a.get_including_deleted(id).unwrap(), b.get_including_deleted(id).unwrap());
    }
}
