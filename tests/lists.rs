//! List fields (tags, emails, phones, links) under concurrency: records are created with their
//! empty lists, so first items added offline on two replicas both survive the merge; documents
//! written before that (without the lists) still read and edit; an empty list is no value.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ScalarValue};
use crmsync::{NewRecord, Patch, RecordId, RecordType, Value};

use crate::common::{engine, sync, sync_one_way};

fn texts(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| s.to_string()).collect())
}

fn sorted(value: Option<&Value>) -> Value {
    match value {
        Some(Value::List(items)) => {
            let mut items = items.clone();
            items.sort();
            Value::List(items)
        }
        Some(Value::Links(ids)) => {
            let mut ids = ids.clone();
            ids.sort();
            Value::Links(ids)
        }
        other => panic!("not a list: {other:?}"),
    }
}

#[test]
fn first_tags_added_offline_on_two_replicas_both_survive() {
    let (a, b) = (engine(), engine());
    let id = a
        .create(NewRecord::new(RecordType::Contact).with("first_name", "Ada"))
        .expect("contact")
        .id;
    sync_one_way(&a, &b);
    a.update(id, Patch::new().add_tag("vip")).expect("tag on a");
    b.update(id, Patch::new().add_tag("churn-risk"))
        .expect("tag on b");
    sync(&a, &b);
    for replica in [&a, &b] {
        let record = replica.get(id).unwrap().expect("contact");
        assert_eq!(sorted(record.get("tags")), texts(&["churn-risk", "vip"]));
        assert!(replica.conflicts(id).unwrap().is_empty());
    }
    assert_eq!(a.get(id).unwrap(), b.get(id).unwrap());
}

#[test]
fn first_emails_phones_and_links_added_offline_on_two_replicas_all_survive() {
    let (a, b) = (engine(), engine());
    let ada = a
        .create(NewRecord::new(RecordType::Contact).with("first_name", "Ada"))
        .expect("contact")
        .id;
    let bob = a
        .create(NewRecord::new(RecordType::Contact).with("first_name", "Bob"))
        .expect("contact")
        .id;
    let deal = a
        .create(NewRecord::new(RecordType::Deal).with("name", "Renewal"))
        .expect("deal")
        .id;
    sync_one_way(&a, &b);
    a.update(
        ada,
        Patch::new()
            .add("emails", "ada@example.com")
            .add("phones", "+1 415 555 0001"),
    )
    .unwrap();
    b.update(
        ada,
        Patch::new()
            .add("emails", "ada@work.example")
            .add("phones", "+1 415 555 0002"),
    )
    .unwrap();
    a.update(deal, Patch::new().add("contacts", ada)).unwrap();
    b.update(deal, Patch::new().add("contacts", bob)).unwrap();
    sync(&a, &b);
    let mut both = vec![ada, bob];
    both.sort();
    for replica in [&a, &b] {
        let contact = replica.get(ada).unwrap().expect("contact");
        assert_eq!(
            sorted(contact.get("emails")),
            texts(&["ada@example.com", "ada@work.example"])
        );
        assert_eq!(
            sorted(contact.get("phones")),
            texts(&["+1 415 555 0001", "+1 415 555 0002"])
        );
        let deal = replica.get(deal).unwrap().expect("deal");
        assert_eq!(sorted(deal.get("contacts")), Value::Links(both.clone()));
    }
}

#[test]
fn empty_lists_are_no_value_in_rows_and_history() {
    let e = engine();
    let record = e
        .create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", "Ada")
                .with("tags", Value::List(Vec::new())),
        )
        .expect("contact");
    assert_eq!(record.get("tags"), None);
    assert_eq!(record.get("emails"), None);
    let history = e.history(record.id).unwrap();
    assert_eq!(history[0].fields, ["first_name"]);

    let tagged = e.update(record.id, Patch::new().add_tag("vip")).unwrap();
    assert_eq!(tagged.get("tags"), Some(&texts(&["vip"])));
    let emptied = e.update(record.id, Patch::new().remove_tag("vip")).unwrap();
    assert_eq!(emptied.get("tags"), None);
    assert_eq!(e.get(record.id).unwrap().unwrap(), emptied);
    let history = e.history(record.id).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].fields, ["tags"]);
    assert_eq!(history[2].fields, ["tags"]);
}

/// A contact document as written before records got their empty lists: no list objects at all.
fn document_without_lists(device: [u8; 16], first_name: &str) -> Vec<u8> {
    let mut doc = Automerge::new().with_actor(ActorId::from(&device[..]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "type", "contact").unwrap();
    tx.put(
        ROOT,
        "created_at",
        ScalarValue::Timestamp(1_700_000_000_000),
    )
    .unwrap();
    tx.put(ROOT, "created_by", ScalarValue::Bytes(device.to_vec()))
        .unwrap();
    tx.put(ROOT, "deleted", false).unwrap();
    let fields = tx.put_object(ROOT, "f", ObjType::Map).unwrap();
    tx.put(&fields, "first_name", first_name).unwrap();
    tx.commit();
    doc.save()
}

#[test]
fn documents_written_without_empty_lists_still_read_edit_and_merge() {
    let (a, b) = (engine(), engine());
    let id = RecordId::new();
    let old = document_without_lists([9; 16], "Grace");
    a.apply_changes(&[(id, old.clone())]).expect("old document");
    b.apply_changes(&[(id, old)]).expect("old document");
    let record = a.get(id).unwrap().expect("contact");
    assert_eq!(record.text("first_name"), Some("Grace"));
    assert_eq!(record.get("tags"), None);

    // Each side creates a different list; both survive.
    a.update(id, Patch::new().add_tag("vip")).expect("tag on a");
    b.update(id, Patch::new().add("emails", "grace@example.com"))
        .expect("email on b");
    sync(&a, &b);
    let (on_a, on_b) = (a.get(id).unwrap().unwrap(), b.get(id).unwrap().unwrap());
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.get("tags"), Some(&texts(&["vip"])));
    assert_eq!(on_a.get("emails"), Some(&texts(&["grace@example.com"])));
    let again = a.update(id, Patch::new().add_tag("board")).unwrap();
    assert_eq!(again.get("tags"), Some(&texts(&["vip", "board"])));
}
