//! The engine's public API: create, read, update, delete, list, history, conflicts, events.

use std::time::Duration;

use crmsync::{
    ChangeKind, Engine, Error, FieldDef, FieldKind, FilterOp, ListQuery, NewRecord, Patch, Reason,
    RecordType, SortOrder, Value,
};

use crate::common::{company, engine, money, sync};

fn validation(err: Error) -> crmsync::ValidationError {
    match err {
        Error::Validation(v) => v,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn create_get_update_round_trip_every_value_kind() {
    let e = engine();
    let acme = company(&e, "Acme");
    let contact = e
        .create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", "Ada")
                .with("last_name", "Lovelace")
                .with("emails", Value::List(vec!["ada@acme.example".into()]))
                .with("company", acme)
                .with("lifecycle", "customer"),
        )
        .unwrap();
    let deal = e
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Acme renewal")
                .with("company", acme)
                .with("contacts", Value::Links(vec![contact.id]))
                .with("amount", money("12000.50 EUR"))
                .with("stage", "proposal")
                .with("probability", 40i64)
                .with(
                    "expected_close",
                    chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
                )
                .with("closed_at", chrono::Utc::now()),
        )
        .unwrap();
    let got = e.get(deal.id).unwrap().unwrap();
    assert_eq!(got, deal);
    assert_eq!(got.get("stage"), Some(&Value::Enum("proposal".into())));
    assert_eq!(
        got.get("amount"),
        Some(&Value::Money(money("12000.50 EUR")))
    );

    let updated = e
        .update(
            deal.id,
            Patch::new()
                .set("stage", "negotiation")
                .unset("probability")
                .add_tag("q4"),
        )
        .unwrap();
    assert_eq!(updated.text("stage"), Some("negotiation"));
    assert!(updated.get("probability").is_none());
    assert_eq!(updated.get("tags"), Some(&Value::List(vec!["q4".into()])));
    assert_eq!(e.get(deal.id).unwrap().unwrap(), updated);

    let note = e
        .create(
            NewRecord::new(RecordType::Activity)
                .with("kind", "note")
                .with("body", Value::LongText("Customer wants a quote".into())),
        )
        .unwrap();
    let edited = e
        .update(note.id, Patch::new().splice_text("body", 9, 5, "needs"))
        .unwrap();
    assert_eq!(edited.text("body"), Some("Customer needs a quote"));
}

#[test]
fn validation_names_type_field_and_reason_and_writes_nothing() {
    let e = engine();
    let err = validation(e.create(NewRecord::new(RecordType::Company)).unwrap_err());
    assert_eq!(
        (err.record_type.as_str(), err.field.as_deref()),
        ("company", Some("name"))
    );
    assert_eq!(err.reason, Reason::Required);

    let err = validation(
        e.create(NewRecord::new(RecordType::Contact).with("title", "CTO"))
            .unwrap_err(),
    );
    assert!(matches!(err.reason, Reason::OneOfRequired(_)), "{err}");

    let err = validation(
        e.create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", "Bo")
                .with("emails", Value::List(vec!["not-an-email".into()])),
        )
        .unwrap_err(),
    );
    assert_eq!(err.field.as_deref(), Some("emails"));
    assert!(err.to_string().contains("not-an-email"), "{err}");

    let err = validation(
        e.create(
            NewRecord::new(RecordType::Deal)
                .with("name", "X")
                .with("stage", "won-ish"),
        )
        .unwrap_err(),
    );
    assert!(matches!(err.reason, Reason::NotInEnum { .. }), "{err}");

    let err = validation(
        e.create(
            NewRecord::new(RecordType::Company)
                .with("name", "A")
                .with("colour", "red"),
        )
        .unwrap_err(),
    );
    assert_eq!(err.reason, Reason::UnknownField);

    let err = validation(
        e.create(
            NewRecord::new(RecordType::Company)
                .with("name", "A")
                .with("employee_count", "many"),
        )
        .unwrap_err(),
    );
    assert!(matches!(err.reason, Reason::WrongKind { .. }), "{err}");

    let person = e
        .create(NewRecord::new(RecordType::Contact).with("first_name", "Cy"))
        .unwrap();
    let err = validation(
        e.create(
            NewRecord::new(RecordType::Deal)
                .with("name", "D")
                .with("company", person.id),
        )
        .unwrap_err(),
    );
    assert!(matches!(err.reason, Reason::WrongLinkType { .. }), "{err}");

    assert!("12 QQQ".parse::<crmsync::Money>().is_err());
    assert_eq!(e.count(&RecordType::Company).unwrap(), 0);
    assert_eq!(e.count(&RecordType::Deal).unwrap(), 0);

    // A patch that breaks the schema changes nothing.
    let acme = company(&e, "Acme");
    let err = validation(e.update(acme, Patch::new().set("name", "")).unwrap_err());
    assert_eq!(err.reason, Reason::Required);
    let err = validation(e.update(acme, Patch::new().unset("name")).unwrap_err());
    assert_eq!(err.reason, Reason::Required);
    assert_eq!(e.get(acme).unwrap().unwrap().text("name"), Some("Acme"));
    assert_eq!(e.history(acme).unwrap().len(), 1);
}

#[test]
fn custom_fields_and_types_are_declared_validated_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    {
        let e = Engine::open(&path).unwrap();
        e.define_field(
            &RecordType::Company,
            "vat_number",
            FieldDef::optional(FieldKind::Text),
        )
        .unwrap();
        let fields = [
            ("name".to_string(), FieldDef::required(FieldKind::Text)),
            (
                "visited_on".to_string(),
                FieldDef::optional(FieldKind::Date),
            ),
        ]
        .into_iter()
        .collect();
        e.define_type("site_visit", fields).unwrap();
        assert!(
            e.define_field(
                &RecordType::Company,
                "name",
                FieldDef::optional(FieldKind::Bool)
            )
            .is_err()
        );
    }
    let e = Engine::open(&path).unwrap();
    let c = e
        .create(
            NewRecord::new(RecordType::Company)
                .with("name", "A")
                .with("vat_number", "DE123"),
        )
        .unwrap();
    assert_eq!(c.text("vat_number"), Some("DE123"));
    let visit_type = RecordType::from("site_visit");
    let v = e
        .create(
            NewRecord::new(visit_type.clone())
                .with("name", "Plant tour")
                .with(
                    "visited_on",
                    chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
                ),
        )
        .unwrap();
    assert_eq!(e.get(v.id).unwrap().unwrap().record_type, visit_type);
    assert!(e.create(NewRecord::new(visit_type)).is_err());
}

#[test]
fn delete_hides_the_record_and_restore_brings_it_back() {
    let e = engine();
    let acme = company(&e, "Acme");
    e.delete(acme).unwrap();
    assert!(e.get(acme).unwrap().is_none());
    assert!(
        e.list(&ListQuery::new(RecordType::Company))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        e.update(acme, Patch::new().set("name", "B")),
        Err(Error::Deleted(_))
    ));
    e.delete(acme).unwrap();
    let back = e.restore(acme).unwrap();
    assert_eq!(back.text("name"), Some("Acme"));
    assert_eq!(
        e.list(&ListQuery::new(RecordType::Company)).unwrap().len(),
        1
    );
    let history = e.history(acme).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].deleted, Some(true));
    assert_eq!(history[2].deleted, Some(false));
}

#[test]
fn list_filters_sorts_and_pages() {
    let e = engine();
    let stages = [
        "prospecting",
        "proposal",
        "proposal",
        "negotiation",
        "closed_won",
    ];
    for (i, stage) in stages.iter().enumerate() {
        e.create(
            NewRecord::new(RecordType::Deal)
                .with("name", format!("Deal {i}"))
                .with("stage", *stage)
                .with("amount", money(&format!("{}.00 USD", (i + 1) * 1000)))
                .with("owner", if i % 2 == 0 { "ana" } else { "ben" }),
        )
        .unwrap();
    }
    let proposals = e
        .list(&ListQuery::new(RecordType::Deal).filter("stage", FilterOp::Eq, "proposal"))
        .unwrap();
    assert_eq!(proposals.len(), 2);
    let big_first = e
        .list(
            &ListQuery::new(RecordType::Deal)
                .filter("amount", FilterOp::Ge, money("2000 USD"))
                .sort_by("amount", SortOrder::Desc)
                .page(1, 2),
        )
        .unwrap();
    let names: Vec<_> = big_first.iter().map(|r| r.text("name").unwrap()).collect();
    assert_eq!(names, ["Deal 3", "Deal 2"]);
    let page = e
        .list(&ListQuery::new(RecordType::Deal).page(3, 10))
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].text("name"), Some("Deal 3"));
    let ana = e
        .list(&ListQuery::new(RecordType::Deal).filter("owner", FilterOp::Eq, "ANA"))
        .unwrap();
    assert_eq!(ana.len(), 3);
}

#[test]
fn history_lists_changes_and_get_at_reads_the_past() {
    let e = engine();
    let acme = company(&e, "Acme");
    e.update(acme, Patch::new().set("industry", "Retail"))
        .unwrap();
    e.update(
        acme,
        Patch::new()
            .set("name", "Acme Group")
            .set("phone", "+1 415 555 0000"),
    )
    .unwrap();
    let history = e.history(acme).unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[0].created);
    assert_eq!(history[0].fields, ["name"]);
    assert_eq!(history[1].fields, ["industry"]);
    assert_eq!(history[2].fields, ["name", "phone"]);
    assert!(history.iter().all(|h| h.by == e.device_id()));
    let past = e.get_at(acme, &history[1].version).unwrap();
    assert_eq!(past.text("name"), Some("Acme"));
    assert_eq!(past.text("industry"), Some("Retail"));
    assert!(past.get("phone").is_none());
    let parsed: crmsync::Version = history[0].version.to_string().parse().unwrap();
    assert_eq!(e.get_at(acme, &parsed).unwrap().get("industry"), None);
}

#[test]
fn subscribers_hear_local_writes_and_merges() {
    let a = engine();
    let b = engine();
    let feed = b.subscribe();
    let acme = company(&a, "Acme");
    let own = company(&b, "Own");
    sync(&a, &b);
    let events = feed.drain();
    let kinds: Vec<_> = events.iter().map(|ev| (ev.id, ev.kind)).collect();
    assert_eq!(
        kinds,
        [(own, ChangeKind::Created), (acme, ChangeKind::Merged)]
    );
    assert!(events[0].seq < events[1].seq);
    assert_eq!(
        b.changes_since(events[0].seq, 10).unwrap(),
        events[1..].to_vec()
    );

    let threaded = b.clone();
    let handle = std::thread::spawn(move || {
        threaded
            .update(own, Patch::new().set("industry", "Energy"))
            .unwrap();
    });
    let event = feed
        .recv_timeout(Duration::from_secs(5))
        .expect("event arrives");
    assert_eq!((event.id, event.kind), (own, ChangeKind::Updated));
    handle.join().unwrap();
    drop(feed);
    // Writes after the subscriber left still succeed.
    b.update(own, Patch::new().set("industry", "Mining"))
        .unwrap();
}

#[test]
fn concurrent_edits_merge_and_report_conflicts() {
    let a = engine();
    let b = engine();
    let acme = company(&a, "Acme");
    sync(&a, &b);
    a.update(
        acme,
        Patch::new().set("industry", "Retail").set("phone", "1"),
    )
    .unwrap();
    b.update(
        acme,
        Patch::new().set("domain", "acme.example").set("phone", "2"),
    )
    .unwrap();
    sync(&a, &b);
    let (ra, rb) = (a.get(acme).unwrap().unwrap(), b.get(acme).unwrap().unwrap());
    assert_eq!(ra, rb);
    assert_eq!(ra.text("industry"), Some("Retail"));
    assert_eq!(ra.text("domain"), Some("acme.example"));
    let conflicts = a.conflicts(acme).unwrap();
    assert_eq!(conflicts, b.conflicts(acme).unwrap());
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "phone");
    let shown = ra.get("phone").unwrap().clone();
    assert_eq!(conflicts[0].value, shown);
    let other = if shown == Value::Text("1".into()) {
        "2"
    } else {
        "1"
    };
    assert_eq!(conflicts[0].others, [Value::Text(other.into())]);
    // Writing the field again settles the conflict.
    a.update(acme, Patch::new().set("phone", "3")).unwrap();
    assert!(a.conflicts(acme).unwrap().is_empty());
}

#[test]
fn reopening_a_file_keeps_records_device_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    let (id, device) = {
        let e = Engine::open(&path).unwrap();
        let id = company(&e, "Acme");
        for i in 0..70 {
            // Past the compaction threshold, so the folded document is read back too.
            e.update(id, Patch::new().set("employee_count", i as i64))
                .unwrap();
        }
        (id, e.device_id())
    };
    let e = Engine::open(&path).unwrap();
    assert_eq!(e.device_id(), device);
    let r = e.get(id).unwrap().unwrap();
    assert_eq!(r.get("employee_count"), Some(&Value::Int(69)));
    assert_eq!(e.history(id).unwrap().len(), 71);
}

#[test]
fn apps_define_their_own_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    {
        let e = Engine::open(&path).unwrap();
        let stage = |name: &str, probability, closed, won| crmsync::Stage {
            name: name.into(),
            probability,
            closed,
            won,
        };
        e.set_pipeline(crmsync::Pipeline {
            stages: vec![
                stage("lead", 5, false, false),
                stage("demo", 30, false, false),
                stage("won", 100, true, true),
                stage("lost", 0, true, false),
            ],
        })
        .unwrap();
    }
    let e = Engine::open(&path).unwrap();
    assert_eq!(e.schema().pipeline().position("demo"), Some(1));
    e.create(
        NewRecord::new(RecordType::Deal)
            .with("name", "A")
            .with("stage", "demo"),
    )
    .unwrap();
    let err = e
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "B")
                .with("stage", "proposal"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("lead, demo, won, lost"), "{err}");
}

#[test]
fn links_and_tags_are_added_and_removed() {
    let e = engine();
    let acme = company(&e, "Acme");
    let people: Vec<_> = ["Ann", "Bo", "Cy"]
        .iter()
        .map(|n| {
            e.create(NewRecord::new(RecordType::Contact).with("first_name", *n))
                .unwrap()
                .id
        })
        .collect();
    let deal = e
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "D")
                .with("company", acme),
        )
        .unwrap();
    let r = e
        .update(
            deal.id,
            Patch::new()
                .add("contacts", people[0])
                .add("contacts", people[1])
                .add("contacts", people[0])
                .add_tag("hot")
                .add_tag("q1"),
        )
        .unwrap();
    assert_eq!(
        r.get("contacts"),
        Some(&Value::Links(vec![people[0], people[1]]))
    );
    let r = e
        .update(
            deal.id,
            Patch::new()
                .remove("contacts", people[0])
                .add("contacts", people[2].to_string())
                .remove_tag("hot"),
        )
        .unwrap();
    assert_eq!(
        r.get("contacts"),
        Some(&Value::Links(vec![people[1], people[2]]))
    );
    assert_eq!(r.get("tags"), Some(&Value::List(vec!["q1".into()])));
    // A link to a record of the wrong type is refused, also when added to a list.
    let err = e
        .update(deal.id, Patch::new().add("contacts", acme))
        .unwrap_err();
    assert!(
        err.to_string().contains("only contact may be linked"),
        "{err}"
    );
    // Setting a list keeps its order.
    let r = e
        .update(
            deal.id,
            Patch::new().set(
                "tags",
                Value::List(vec!["b".into(), "a".into(), "q1".into()]),
            ),
        )
        .unwrap();
    assert_eq!(
        r.get("tags"),
        Some(&Value::List(vec!["b".into(), "a".into(), "q1".into()]))
    );
    let r = e
        .update(
            deal.id,
            Patch::new().set("tags", Value::List(vec!["q1".into(), "b".into()])),
        )
        .unwrap();
    assert_eq!(
        r.get("tags"),
        Some(&Value::List(vec!["q1".into(), "b".into()]))
    );
}

#[test]
fn concurrent_tag_additions_on_two_devices_both_survive() {
    let a = engine();
    let b = engine();
    let acme = company(&a, "Acme");
    a.update(acme, Patch::new().add_tag("base")).unwrap();
    sync(&a, &b);
    a.update(acme, Patch::new().add_tag("from-a").remove_tag("base"))
        .unwrap();
    b.update(acme, Patch::new().add_tag("from-b")).unwrap();
    sync(&a, &b);
    let tags = a.get(acme).unwrap().unwrap().get("tags").cloned().unwrap();
    assert_eq!(Some(&tags), b.get(acme).unwrap().unwrap().get("tags"));
    let Value::List(mut tags) = tags else {
        panic!("tags are a list")
    };
    tags.sort();
    assert_eq!(tags, ["from-a", "from-b"]);
}

#[test]
fn field_history_follows_a_deal_through_its_stages() {
    let e = engine();
    let deal = e
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "D")
                .with("stage", "prospecting"),
        )
        .unwrap();
    e.update(deal.id, Patch::new().set("amount", money("10 USD")))
        .unwrap();
    e.update(deal.id, Patch::new().set("stage", "proposal"))
        .unwrap();
    e.update(deal.id, Patch::new().set("stage", "qualification"))
        .unwrap();
    e.update(deal.id, Patch::new().add_tag("x")).unwrap();
    e.update(
        deal.id,
        Patch::new().set("tags", Value::List(vec!["y".into()])),
    )
    .unwrap();
    let stages: Vec<_> = e
        .field_history(deal.id, "stage")
        .unwrap()
        .into_iter()
        .map(|c| c.value)
        .collect();
    let stage = |s: &str| Some(Value::Enum(s.into()));
    assert_eq!(
        stages,
        [
            stage("prospecting"),
            stage("proposal"),
            stage("qualification")
        ]
    );
    let tags: Vec<_> = e
        .field_history(deal.id, "tags")
        .unwrap()
        .into_iter()
        .map(|c| c.value)
        .collect();
    assert_eq!(
        tags,
        [
            Some(Value::List(vec!["x".into()])),
            Some(Value::List(vec!["y".into()]))
        ]
    );
}

#[test]
fn exported_changes_follow_every_write_through_the_document_cache() {
    let e = Engine::in_memory().unwrap();
    let id = e
        .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
        .unwrap()
        .id;
    let store = &e;
    let whole = store.export_changes(id, &[]).unwrap().unwrap();
    let first_heads = store.heads(id).unwrap();
    // A second export at the same heads is served from the cache, and is the same.
    assert_eq!(store.export_changes(id, &[]).unwrap().unwrap(), whole);

    e.update(id, Patch::new().set("name", "Acme Ltd")).unwrap();
    let delta = store.export_changes(id, &first_heads).unwrap().unwrap();
    let mut copy = automerge::Automerge::load(&whole).unwrap();
    copy.load_incremental(&delta).unwrap();
    assert_eq!(
        copy.get_heads(),
        store.heads(id).unwrap(),
        "the edit is exported"
    );

    // Turned off, exports are the same.
    let mut options = crmsync::EngineOptions::default();
    options.store.doc_cache = 0;
    let uncached = Engine::in_memory_with(options).unwrap();
    let other = uncached
        .create(NewRecord::new(RecordType::Company).with("name", "Globex"))
        .unwrap()
        .id;
    let before = uncached.heads(other).unwrap();
    uncached
        .update(other, Patch::new().set("name", "Globex Corp"))
        .unwrap();
    assert!(
        !uncached
            .export_changes(other, &before)
            .unwrap()
            .unwrap()
            .is_empty()
    );
}
