//! Long-text fields under concurrency: records are created with an empty text object for each
//! long-text field, so the first text written offline on two replicas merges character by
//! character instead of one replica's text replacing the other's; an unset empties the text in
//! place, so text added concurrently elsewhere survives it; an empty text is no value.

use crmsync::{NewRecord, Patch, RecordType, Value};

use crate::common::{engine, sync, sync_one_way};

fn body(replica: &crmsync::Engine, id: crmsync::RecordId) -> Option<String> {
    let record = replica.get(id).unwrap().expect("activity");
    record.get("body").map(|v| match v {
        Value::LongText(t) => t.clone(),
        other => panic!("body is {other:?}"),
    })
}

fn call() -> NewRecord {
    NewRecord::new(RecordType::Activity)
        .with("kind", "call")
        .with("subject", "Renewal call")
}

#[test]
fn first_text_written_offline_on_two_replicas_both_survive() {
    let (a, b) = (engine(), engine());
    let id = a.create(call()).expect("activity").id;
    sync_one_way(&a, &b);
    a.update(id, Patch::new().splice_text("body", 0, 0, "Went well."))
        .expect("text on a");
    b.update(
        id,
        Patch::new().set("body", Value::LongText("Send quote.".into())),
    )
    .expect("text on b");
    sync(&a, &b);
    let merged = body(&a, id).expect("a body");
    assert_eq!(body(&b, id).as_deref(), Some(merged.as_str()));
    assert!(merged.contains("Went well."), "{merged}");
    assert!(merged.contains("Send quote."), "{merged}");
    assert_eq!(merged.len(), "Went well.Send quote.".len());
    assert!(a.conflicts(id).unwrap().is_empty());
}

#[test]
fn text_added_while_another_replica_unsets_survives() {
    let (a, b) = (engine(), engine());
    let id = a
        .create(call().with("body", Value::LongText("Hello".into())))
        .expect("activity")
        .id;
    sync_one_way(&a, &b);
    let cleared = a
        .update(id, Patch::new().unset("body"))
        .expect("unset on a");
    assert_eq!(cleared.get("body"), None);
    b.update(id, Patch::new().splice_text("body", 5, 0, " and thanks"))
        .expect("append on b");
    sync(&a, &b);
    assert_eq!(body(&a, id).as_deref(), Some(" and thanks"));
    assert_eq!(a.get(id).unwrap(), b.get(id).unwrap());
}

#[test]
fn empty_text_is_no_value_in_rows_and_history() {
    let e = engine();
    let record = e.create(call()).expect("activity");
    assert_eq!(record.get("body"), None);
    let history = e.history(record.id).unwrap();
    assert_eq!(history[0].fields, ["kind", "subject"]);

    let written = e
        .update(record.id, Patch::new().splice_text("body", 0, 0, "Note"))
        .unwrap();
    assert_eq!(written.get("body"), Some(&Value::LongText("Note".into())));
    let emptied = e
        .update(record.id, Patch::new().splice_text("body", 0, 4, ""))
        .unwrap();
    assert_eq!(emptied.get("body"), None);
    assert_eq!(e.get(record.id).unwrap().unwrap(), emptied);
    let history = e.history(record.id).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].fields, ["body"]);
    assert_eq!(history[2].fields, ["body"]);
}
