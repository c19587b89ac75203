//! Changes that follow a record's stored heads are merged into its row without decoding the
//! document, and a known peer's changes are read from the stored chunks. Both shortcuts must
//! give exactly what the document says, and hostile changes must not get past them.

use std::num::NonZeroU64;

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Automerge, Change, ExpandedChange, ROOT, ReadDoc, ScalarValue};
use crmsync::sync::Replica;
use crmsync::{Engine, NewRecord, Patch, Record, RecordId, RecordType, Value};
use proptest::prelude::*;

fn replica() -> Engine {
    Engine::in_memory().expect("in-memory engine opens")
}

/// Sends every record `to` lacks or holds at other heads, as `export_changes` gives them.
fn send(from: &Engine, to: &Engine) {
    let mut batch = Vec::new();
    for (id, heads) in from.all_heads().unwrap() {
        let have = to.heads(id).unwrap();
        if have != heads {
            batch.push((id, from.export_changes(id, &have).unwrap().unwrap()));
        }
    }
    to.apply_changes(&batch)
        .expect("changes of a healthy replica apply");
}

/// The record as its stored document reads, the reference the row must match.
fn from_document(e: &Engine, id: RecordId) -> Record {
    let doc = e.doc(id).unwrap().expect("document");
    crmsync::doc::materialize(&doc, id, &e.schema()).expect("document materializes")
}

fn assert_same_everywhere(a: &Engine, b: &Engine, ids: &[RecordId], what: &str) {
    for id in ids {
        // Tombstoned rows too: the store's own read.
        let row_b = b.get_including_deleted(*id).unwrap().expect("record on b");
        assert_eq!(
            row_b,
            from_document(b, *id),
            "{what}: b's row against its document"
        );
        assert_eq!(
            Some(row_b),
            a.get_including_deleted(*id).unwrap(),
            "{what}: b's row against a's"
        );
        assert_eq!(
            b.heads(*id).unwrap(),
            a.heads(*id).unwrap(),
            "{what}: heads"
        );
    }
}

/// A company, a deal and a note on `a`, then a contact: values of every kind, lists, links
/// and text included (what a new record's creating change must read back as).
fn records(a: &Engine) -> Vec<RecordId> {
    let company = a
        .create(
            NewRecord::new(RecordType::Company)
                .with("name", "Acme")
                .with("employee_count", 40)
                .with("tags", Value::List(vec!["key".into(), "eu".into()])),
        )
        .unwrap()
        .id;
    let deal = a
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Renewal")
                .with("company", company)
                .with("amount", "1200.00 EUR".parse::<crmsync::Money>().unwrap()),
        )
        .unwrap()
        .id;
    let note = a
        .create(
            NewRecord::new(RecordType::Activity)
                .with("kind", "note")
                .with("body", "first draft, très bien")
                .with("related", Value::Links(vec![deal, company])),
        )
        .unwrap()
        .id;
    let contact = a
        .create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", "Zoë")
                .with("company", company)
                .with("lifecycle", "customer")
                .with("emails", Value::List(vec!["zoe@acme.example".into()])),
        )
        .unwrap()
        .id;
    vec![company, deal, note, contact]
}

#[test]
fn edits_merged_onto_the_stored_state_read_as_the_document_says() {
    let (a, b) = (replica(), replica());
    let ids = records(&a);
    let [company, deal, note, _] = ids[..] else {
        unreachable!()
    };
    send(&a, &b);
    assert_same_everywhere(&a, &b, &ids, "first copy");

    // Scalar edits, one after another: what the shortcut takes (several changes at once).
    a.update(deal, Patch::new().set("stage", "proposal"))
        .unwrap();
    a.update(
        deal,
        Patch::new()
            .set("amount", "1500.00 EUR".parse::<crmsync::Money>().unwrap())
            .set("probability", 40),
    )
    .unwrap();
    a.update(company, Patch::new().set("industry", "Retail"))
        .unwrap();
    a.delete(company).unwrap();
    send(&a, &b);
    assert_same_everywhere(&a, &b, &ids, "scalar edits and a delete");

    // What it leaves to the document: a removed field, text, tags, a restore.
    a.update(deal, Patch::new().unset("probability").add_tag("q3"))
        .unwrap();
    a.update(note, Patch::new().splice_text("body", 0, 5, "second"))
        .unwrap();
    a.restore(company).unwrap();
    send(&a, &b);
    assert_same_everywhere(&a, &b, &ids, "unset, tags, text, restore");

    // Concurrent edits: b's changes do not follow a's heads, so they merge the general way,
    // and both sides agree on the winner.
    a.update(deal, Patch::new().set("stage", "negotiation"))
        .unwrap();
    b.update(deal, Patch::new().set("stage", "closed_lost"))
        .unwrap();
    b.update(deal, Patch::new().set("name", "Renewal 2027"))
        .unwrap();
    send(&a, &b);
    send(&b, &a);
    assert_same_everywhere(&a, &b, &ids, "concurrent edits");

    // And the shortcut again on top of a merged state, in both directions.
    b.update(deal, Patch::new().set("stage", "closed_won"))
        .unwrap();
    send(&b, &a);
    a.update(deal, Patch::new().set("probability", 100))
        .unwrap();
    send(&a, &b);
    assert_same_everywhere(&a, &b, &ids, "after the merge");
    // The stored chunks load back into the same document on both sides.
    for id in ids {
        let (da, db) = (a.doc(id).unwrap(), b.doc(id).unwrap());
        assert_eq!(da.unwrap().get_heads(), db.unwrap().get_heads());
    }
}

#[test]
fn a_stale_replica_gets_exactly_what_it_lacks_from_any_earlier_state() {
    let a = replica();
    let deal = records(&a)[1];
    let mut states = vec![a.heads(deal).unwrap()];
    let mut stale = Vec::new();
    for stage in ["qualification", "proposal", "negotiation", "closed_won"] {
        let copy = replica();
        send(&a, &copy);
        stale.push(copy);
        a.update(deal, Patch::new().set("stage", stage)).unwrap();
        states.push(a.heads(deal).unwrap());
    }
    let doc = a.doc(deal).unwrap().unwrap();
    for (n, copy) in stale.iter().enumerate() {
        let have = copy.heads(deal).unwrap();
        assert_eq!(have, states[n]);
        let bytes = a.export_changes(deal, &have).unwrap().unwrap();
        let mut expected = Automerge::load(&copy.doc_bytes(deal).unwrap().unwrap()).unwrap();
        expected.load_incremental(&doc.save_after(&have)).unwrap();
        copy.apply_changes(&[(deal, bytes)]).unwrap();
        assert_eq!(copy.heads(deal).unwrap(), doc.get_heads(), "from state {n}");
        assert_eq!(
            copy.heads(deal).unwrap(),
            expected.get_heads(),
            "from state {n}"
        );
        assert_eq!(
            copy.get(deal).unwrap(),
            a.get(deal).unwrap(),
            "from state {n}"
        );
    }
    // Heads a never had give nothing wrong: the document path drops them.
    let unknown = [automerge::ChangeHash([7; 32])];
    let all = a.export_changes(deal, &unknown).unwrap().unwrap();
    let fresh = replica();
    fresh.apply_changes(&[(deal, all)]).unwrap();
    assert_eq!(fresh.get(deal).unwrap(), a.get(deal).unwrap());
}

/// A deal known to both replicas, and what a hand-made change needs: the fields map's id.
fn shared_deal() -> (Engine, Engine, RecordId, OpId) {
    let (a, b) = (replica(), replica());
    let deal = records(&a)[1];
    send(&a, &b);
    let doc = a.doc(deal).unwrap().unwrap();
    let Some((_, automerge::ObjId::Id(counter, actor, _))) = doc.get(ROOT, "f").unwrap() else {
        panic!("no fields map");
    };
    (a, b, deal, OpId(counter, actor))
}

/// A change by a fresh actor putting the deal's name, built as a hostile peer could.
fn hand_made(deps: Vec<automerge::ChangeHash>, map: &OpId, seq: u64, start_op: u64) -> Vec<u8> {
    let change = Change::from(ExpandedChange {
        operations: vec![Op {
            action: OpType::Put(ScalarValue::Str("Hijacked".into())),
            obj: ObjectId::Id(map.clone()),
            key: Key::Map("name".into()),
            pred: SortedVec::new(),
            insert: false,
        }],
        actor_id: ActorId::from(&[9u8; 16][..]),
        hash: None,
        seq,
        start_op: NonZeroU64::new(start_op).unwrap(),
        time: 0,
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    });
    change.raw_bytes().to_vec()
}

#[test]
fn a_change_numbered_out_of_turn_is_refused_without_a_panic() {
    let (_a, b, deal, map) = shared_deal();
    let before = (b.get(deal).unwrap(), b.heads(deal).unwrap());
    // Automerge 0.12 asserts (panics) on an actor's change numbered 2 before its 1.
    let bytes = hand_made(b.heads(deal).unwrap(), &map, 2, 1000);
    let result = b.apply_changes(&[(deal, bytes)]);
    assert!(result.is_err(), "accepted: {result:?}");
    assert_eq!((b.get(deal).unwrap(), b.heads(deal).unwrap()), before);
    // The same for a record b has never seen: its whole history, out of turn.
    let c = replica();
    let whole = b.export_changes(deal, &[]).unwrap().unwrap();
    let mut bad = whole.clone();
    bad.extend(hand_made(b.heads(deal).unwrap(), &map, 3, 1000));
    assert!(c.apply_changes(&[(deal, bad)]).is_err());
    assert_eq!(c.get(deal).unwrap(), None);
    // In turn, the same change merges.
    let good = hand_made(b.heads(deal).unwrap(), &map, 1, 1000);
    b.apply_changes(&[(deal, good)]).unwrap();
    assert_eq!(
        b.get(deal).unwrap().unwrap().fields["name"],
        "Hijacked".into()
    );
    assert_eq!(b.get(deal).unwrap().unwrap(), from_document(&b, deal));
}

#[test]
fn a_change_whose_ops_number_below_the_documents_does_not_win_by_shortcut() {
    let (_a, b, deal, map) = shared_deal();
    // It follows the heads, but its op counts from 1: lower than the name op it competes
    // with (and it does not name that op as overwritten), so Automerge keeps the old name.
    let low = hand_made(b.heads(deal).unwrap(), &map, 1, 1);
    b.apply_changes(&[(deal, low)]).unwrap();
    let row = b.get(deal).unwrap().unwrap();
    assert_eq!(row, from_document(&b, deal));
    assert_eq!(row.fields["name"], "Renewal".into());
}

/// `chunk` with one byte of its contents altered and its checksum made to match again, as a
/// peer forging changes would send it.
fn forged(chunk: &[u8], at: usize, xor: u8) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    // Magic and checksum (8 bytes), then type and length: what the checksum covers.
    let mut covered = chunk[8..].to_vec();
    let length_bytes = covered[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let body = 1 + length_bytes;
    let n = covered.len() - body;
    covered[body + at % n] ^= xor;
    let mut out = chunk[..4].to_vec();
    out.extend_from_slice(&Sha256::digest(&covered)[..4]);
    out.extend_from_slice(&covered);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Forged changes (any byte of a real edit or a real creating change altered, checksum
    /// fixed) are either refused with nothing changed, or merged into a row that reads as the
    /// stored document does. Nothing panics.
    #[test]
    fn forged_changes_never_leave_a_row_the_document_disagrees_with(
        at in 0usize..4096,
        xor in 1u8..=255,
        new_record in any::<bool>(),
    ) {
        let (a, b) = (replica(), replica());
        let deal = records(&a)[1];
        let target = if new_record { replica() } else { b };
        if new_record {
            // The bytes of a record the target has never seen: its creating change.
        } else {
            send(&a, &target);
            a.update(deal, Patch::new().set("stage", "proposal").set("probability", 30))
                .unwrap();
        }
        let have = target.heads(deal).unwrap();
        let real = a.export_changes(deal, &have).unwrap().unwrap();
        let bytes = forged(&real, at, xor);
        let before = state(&target, deal);
        match target.apply_changes(&[(deal, bytes)]) {
            Err(_) => {
                prop_assert_eq!(state(&target, deal), before);
            }
            Ok(_) => {
                let row = target.get_including_deleted(deal).unwrap().expect("merged record");
                prop_assert_eq!(row, from_document(&target, deal));
            }
        }
    }
}

/// A record's stored row (tombstoned too) and heads: what a refused change must leave as is.
fn state(e: &Engine, id: RecordId) -> (Option<Record>, Vec<automerge::ChangeHash>) {
    (e.get_including_deleted(id).unwrap(), e.heads(id).unwrap())
}

/// The company the forged_change fuzz target starts from, so its findings replay here.
fn fuzzed_company(a: &Engine) -> RecordId {
    a.create(
        NewRecord::new(RecordType::Company)
            .with("name", "Acme")
            .with("tags", Value::List(vec!["eu".into(), "key".into()])),
    )
    .unwrap()
    .id
}

#[test]
fn a_forged_edit_naming_an_unknown_actor_is_refused_not_stored() {
    // Found by the forged_change fuzz target: one bit of a real edit flipped makes it list an
    // actor the document does not know. It looked like a fast-forward (it follows the heads,
    // numbers in turn) and was stored; loading the record then panicked inside Automerge.
    let a = replica();
    let company = fuzzed_company(&a);
    let base = a.export_changes(company, &[]).unwrap().unwrap();
    let before = a.heads(company).unwrap();
    a.update(
        company,
        Patch::new()
            .set("industry", "Retail")
            .set("employee_count", 12),
    )
    .unwrap();
    let change = a.export_changes(company, &before).unwrap().unwrap();
    let b = replica();
    b.apply_changes(&[(company, base)]).unwrap();
    let stored = state(&b, company);
    assert!(
        b.apply_changes(&[(company, forged(&change, 2236, 4))])
            .is_err()
    );
    assert_eq!(state(&b, company), stored);
    assert_eq!(
        b.get_including_deleted(company).unwrap().unwrap(),
        from_document(&b, company)
    );
}

#[test]
fn a_forged_new_record_with_rich_text_marks_is_refused_without_aborting() {
    // Found by the forged_change fuzz target: two bytes of a creating change altered turn an
    // op into a mark; automerge panics loading it and panics again dropping the half-built
    // document, which aborts the process whatever catches the first panic.
    let a = replica();
    let company = fuzzed_company(&a);
    let real = a.export_changes(company, &[]).unwrap().unwrap();
    let bytes = forged(&forged(&real, 11782, 17), 1553, 6);
    let b = replica();
    assert!(b.apply_changes(&[(company, bytes)]).is_err());
    assert_eq!(b.get_including_deleted(company).unwrap(), None);
}
