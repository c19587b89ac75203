//! Replicas converge: random edits on several replicas, exchanged in random order, always end
//! in identical materialized rows and conflicts; plus the merge rules one by one (concurrent
//! fields, scalar conflicts, atomic money, delete against edit, long text) and the refusal of
//! bad change bytes.

use std::collections::BTreeSet;

use crmsync::sync::Replica;
use crmsync::{
    Conflict, Engine, Error, Money, NewRecord, Patch, Record, RecordId, RecordType, Value,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Replicas and exchanges
// ---------------------------------------------------------------------------------------------

fn replica() -> Engine {
    Engine::in_memory().expect("in-memory engine opens")
}

fn money(text: &str) -> Money {
    text.parse().expect("valid money literal")
}

/// Every change `from` has that `to` lacks, one entry per record whose heads differ.
fn changes_for(from: &Engine, to: &Engine) -> Vec<(RecordId, Vec<u8>)> {
    let mut batch = Vec::new();
    for (id, heads) in from.all_heads().expect("all_heads") {
        let have = to.heads(id).expect("heads");
        if have == heads {
            continue;
        }
        if let Some(bytes) = from.export_changes(id, &have).expect("export_changes") {
            batch.push((id, bytes));
        }
    }
    batch
}

/// Sends `from`'s changes to `to` in one batch; returns how many records changed on `to`.
fn send(from: &Engine, to: &Engine) -> usize {
    let batch = changes_for(from, to);
    if batch.is_empty() {
        return 0;
    }
    to.apply_changes(&batch)
        .unwrap_or_else(|e| panic!("applying changes from a healthy replica failed: {e}"))
        .len()
}

fn sync_pair(a: &Engine, b: &Engine) {
    send(a, b);
    send(b, a);
}

/// Exchanges changes between every ordered pair until a full pass changes nothing.
fn sync_until_quiet(replicas: &[Engine]) {
    for pass in 0.. {
        assert!(
            pass < 8,
            "replicas still exchange changes after {pass} passes"
        );
        let mut changed = 0;
        for (i, from) in replicas.iter().enumerate() {
            for (j, to) in replicas.iter().enumerate() {
                if i != j {
                    changed += send(from, to);
                }
            }
        }
        if changed == 0 {
            return;
        }
    }
}

fn all_ids(replicas: &[Engine]) -> BTreeSet<RecordId> {
    replicas
        .iter()
        .flat_map(|r| r.all_heads().expect("all_heads"))
        .map(|(id, _)| id)
        .collect()
}

/// Rows (tombstones included), heads, conflicts, sorted history and type listings are the same
/// on every replica.
fn assert_converged(replicas: &[Engine]) {
    let (first, rest) = replicas.split_first().expect("at least one replica");
    for id in all_ids(replicas) {
        let row = first.get_including_deleted(id).expect("get");
        assert!(row.is_some(), "record {id} is missing on replica 0");
        let heads = first.heads(id).expect("heads");
        let conflicts = first.conflicts(id).expect("conflicts");
        let history = sorted_history(first, id);
        for (k, other) in rest.iter().enumerate() {
            let k = k + 1;
            assert_eq!(
                other.get_including_deleted(id).expect("get"),
                row,
                "record {id}: replica {k} materialized another row than replica 0"
            );
            assert_eq!(
                other.heads(id).expect("heads"),
                heads,
                "record {id}: replica {k} has other heads"
            );
            assert_eq!(
                other.conflicts(id).expect("conflicts"),
                conflicts,
                "record {id}: replica {k} reports other conflicts"
            );
            assert_eq!(
                sorted_history(other, id),
                history,
                "record {id}: replica {k} has another history"
            );
        }
    }
    for record_type in [
        RecordType::Company,
        RecordType::Contact,
        RecordType::Deal,
        RecordType::Activity,
    ] {
        let query = crmsync::ListQuery::new(record_type.clone()).page(0, usize::MAX);
        let listed = first.list(&query).expect("list");
        let count = first.count(&record_type).expect("count");
        assert_eq!(count, listed.len() as u64, "{record_type}: count != list");
        for (k, other) in rest.iter().enumerate() {
            assert_eq!(
                other.list(&query).expect("list"),
                listed,
                "{record_type}: replica {} lists other records",
                k + 1
            );
        }
    }
}

fn sorted_history(engine: &Engine, id: RecordId) -> Vec<String> {
    let mut entries: Vec<String> = engine
        .history(id)
        .expect("history")
        .into_iter()
        .map(|h| format!("{h:?}"))
        .collect();
    entries.sort();
    entries
}

/// Every record's id, heads and row (tombstones included), and the newest log sequence number.
type Snapshot = (Vec<(RecordId, Vec<String>, Option<Record>)>, u64);

/// Everything a replica stores that a caller can see: rows, heads, and the change log.
fn snapshot(engine: &Engine) -> Snapshot {
    let rows = engine
        .all_heads()
        .expect("all_heads")
        .into_iter()
        .map(|(id, heads)| {
            let heads = heads.iter().map(ToString::to_string).collect();
            (id, heads, engine.get_including_deleted(id).expect("get"))
        })
        .collect();
    (rows, engine.last_seq().expect("last_seq"))
}

// ---------------------------------------------------------------------------------------------
// Random edits
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Kind {
    Company,
    Contact,
    Deal,
    Activity,
}

/// One step of a scenario. `at`, `target` and friends are reduced modulo what exists when the
/// step runs, so every generated sequence is meaningful.
#[derive(Debug, Clone)]
enum Op {
    Create {
        at: usize,
        kind: Kind,
        n: u16,
    },
    Set {
        at: usize,
        target: usize,
        slot: u8,
        n: u16,
    },
    Splice {
        at: usize,
        target: usize,
        pos: usize,
        delete: usize,
        text: String,
    },
    Tag {
        at: usize,
        target: usize,
        add: bool,
        tag: usize,
    },
    Delete {
        at: usize,
        target: usize,
    },
    Restore {
        at: usize,
        target: usize,
    },
    Sync {
        from: usize,
        to: usize,
    },
}

const TAGS: [&str; 4] = ["vip", "q3", "churn-risk", "partner"];
const STAGES: [&str; 6] = [
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "JPY"];

fn op_strategy() -> impl Strategy<Value = Op> {
    let at = 0..3usize;
    let kind = prop_oneof![
        Just(Kind::Company),
        Just(Kind::Contact),
        Just(Kind::Deal),
        Just(Kind::Activity),
    ];
    prop_oneof![
        3 => (at.clone(), kind, any::<u16>()).prop_map(|(at, kind, n)| Op::Create { at, kind, n }),
        4 => (at.clone(), any::<usize>(), 0..5u8, any::<u16>())
            .prop_map(|(at, target, slot, n)| Op::Set { at, target, slot, n }),
        4 => (at.clone(), any::<usize>(), any::<usize>(), 0..4usize, "[a-z é日🙂\n]{0,6}")
            .prop_map(|(at, target, pos, delete, text)| Op::Splice { at, target, pos, delete, text }),
        2 => (at.clone(), any::<usize>(), any::<bool>(), 0..TAGS.len())
            .prop_map(|(at, target, add, tag)| Op::Tag { at, target, add, tag }),
        1 => (at.clone(), any::<usize>()).prop_map(|(at, target)| Op::Delete { at, target }),
        1 => (at.clone(), any::<usize>()).prop_map(|(at, target)| Op::Restore { at, target }),
        3 => (at.clone(), at).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// The records a replica knows (tombstones included) that pass `keep`, in id order.
fn known(engine: &Engine, keep: impl Fn(&Record) -> bool) -> Vec<Record> {
    engine
        .all_heads()
        .expect("all_heads")
        .into_iter()
        .filter_map(|(id, _)| engine.get_including_deleted(id).expect("get"))
        .filter(keep)
        .collect()
}

fn pick(engine: &Engine, target: usize, keep: impl Fn(&Record) -> bool) -> Option<Record> {
    let records = known(engine, keep);
    (!records.is_empty()).then(|| records[target % records.len()].clone())
}

/// A live record of `record_type`, to link to.
fn live_link(engine: &Engine, record_type: RecordType, n: u16) -> Option<RecordId> {
    pick(engine, usize::from(n), |r| {
        !r.deleted && r.record_type == record_type
    })
    .map(|r| r.id)
}

fn new_record(engine: &Engine, kind: Kind, n: u16) -> NewRecord {
    match kind {
        Kind::Company => NewRecord::new(RecordType::Company)
            .with("name", format!("Company {n}"))
            .with("employee_count", i64::from(n % 500)),
        Kind::Contact => {
            let mut new = NewRecord::new(RecordType::Contact)
                .with("first_name", format!("Ada{n}"))
                .with("last_name", "Lovelace");
            if let Some(company) = live_link(engine, RecordType::Company, n) {
                new = new.with("company", company);
            }
            new
        }
        Kind::Deal => {
            let mut new = NewRecord::new(RecordType::Deal)
                .with("name", format!("Deal {n}"))
                .with("stage", STAGES[usize::from(n) % STAGES.len()])
                .with(
                    "amount",
                    Money::new(i64::from(n) * 100, CURRENCIES[usize::from(n) % 3])
                        .expect("currency"),
                );
            if let Some(company) = live_link(engine, RecordType::Company, n) {
                new = new.with("company", company);
            }
            new
        }
        Kind::Activity => NewRecord::new(RecordType::Activity)
            .with("kind", "note")
            .with("subject", format!("Call {n}"))
            .with(
                "body",
                Value::LongText(format!("Notes of call {n}: the customer wants a quote.")),
            ),
    }
}

fn set_patch(record_type: &RecordType, slot: u8, n: u16) -> Patch {
    let i = usize::from(n);
    let cash = Money::new(i64::from(n) * 25, CURRENCIES[i % 3]).expect("currency");
    match (record_type, slot) {
        (RecordType::Company, 0) => Patch::new().set("name", format!("Renamed {n}")),
        (RecordType::Company, 1) => Patch::new().set("industry", format!("industry {}", n % 7)),
        (RecordType::Company, 2) => Patch::new().set("employee_count", i64::from(n)),
        (RecordType::Company, 3) => Patch::new().set("annual_revenue", cash),
        (RecordType::Company, _) => Patch::new().unset("industry"),
        (RecordType::Contact, 0) => Patch::new().set("first_name", format!("Grace{n}")),
        (RecordType::Contact, 1) => Patch::new().set("title", format!("Title {n}")),
        (RecordType::Contact, 2) => Patch::new().set(
            "lifecycle",
            ["lead", "prospect", "customer", "churned"][i % 4],
        ),
        (RecordType::Contact, 3) => Patch::new().set(
            "phones",
            Value::List(vec![format!("+1 555 {n:04}"), "+44 20 7946 0000".into()]),
        ),
        (RecordType::Contact, _) => Patch::new().unset("title"),
        (RecordType::Deal, 0) => Patch::new().set("name", format!("Deal renamed {n}")),
        (RecordType::Deal, 1) => Patch::new().set("stage", STAGES[i % STAGES.len()]),
        (RecordType::Deal, 2) => Patch::new().set("amount", cash),
        (RecordType::Deal, 3) => Patch::new().set("probability", i64::from(n % 101)),
        (RecordType::Deal, _) => Patch::new().unset("probability"),
        (_, 0) => Patch::new().set("subject", format!("Subject {n}")),
        (_, 1) => Patch::new().set(
            "body",
            Value::LongText(format!("Rewritten {n}: the customer wants a quote soon.")),
        ),
        (_, 2) => Patch::new().set("kind", ["call", "meeting", "email", "note"][i % 4]),
        (_, 3) => Patch::new().set("outcome", format!("outcome {n}")),
        (_, _) => Patch::new().unset("outcome"),
    }
}

/// Runs an update; editing a tombstone is refused with `Deleted`, anything else must work.
fn update(engine: &Engine, record: &Record, patch: Patch) {
    match engine.update(record.id, patch.clone()) {
        Ok(_) => {}
        Err(Error::Deleted(_)) if record.deleted => {}
        Err(e) => panic!("update {patch:?} of {record:?} failed: {e}"),
    }
}

fn run_op(replicas: &[Engine], op: &Op) {
    let n = replicas.len();
    match op {
        Op::Create { at, kind, n: seed } => {
            let engine = &replicas[at % n];
            engine
                .create(new_record(engine, *kind, *seed))
                .expect("generated records are valid");
        }
        Op::Set {
            at,
            target,
            slot,
            n: seed,
        } => {
            let engine = &replicas[at % n];
            if let Some(record) = pick(engine, *target, |_| true) {
                update(
                    engine,
                    &record,
                    set_patch(&record.record_type, *slot, *seed),
                );
            }
        }
        Op::Splice {
            at,
            target,
            pos,
            delete,
            text,
        } => {
            let engine = &replicas[at % n];
            if let Some(record) = pick(engine, *target, |r| r.record_type == RecordType::Activity) {
                let len = record.text("body").map_or(0, |t| t.chars().count());
                let patch = Patch::new().splice_text("body", pos % (len + 1), *delete, text);
                update(engine, &record, patch);
            }
        }
        Op::Tag {
            at,
            target,
            add,
            tag,
        } => {
            let engine = &replicas[at % n];
            if let Some(record) = pick(engine, *target, |_| true) {
                let patch = if *add {
                    Patch::new().add_tag(TAGS[*tag])
                } else {
                    Patch::new().remove_tag(TAGS[*tag])
                };
                update(engine, &record, patch);
            }
        }
        Op::Delete { at, target } => {
            let engine = &replicas[at % n];
            if let Some(record) = pick(engine, *target, |_| true) {
                engine.delete(record.id).expect("delete");
            }
        }
        Op::Restore { at, target } => {
            let engine = &replicas[at % n];
            if let Some(record) = pick(engine, *target, |_| true) {
                engine.restore(record.id).expect("restore");
            }
        }
        Op::Sync { from, to } => {
            let (from, to) = (from % n, to % n);
            if from != to {
                send(&replicas[from], &replicas[to]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn two_replicas_converge_after_random_edits_and_exchanges(
        ops in prop::collection::vec(op_strategy(), 1..30)
    ) {
        let replicas = [replica(), replica()];
        for op in &ops {
            run_op(&replicas, op);
        }
        sync_until_quiet(&replicas);
        assert_converged(&replicas);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn three_replicas_converge_after_random_edits_and_exchanges(
        ops in prop::collection::vec(op_strategy(), 1..30)
    ) {
        let replicas = [replica(), replica(), replica()];
        for op in &ops {
            run_op(&replicas, op);
        }
        // Along the chain first (A-B, then B-C), then every pair until quiet.
        sync_pair(&replicas[0], &replicas[1]);
        sync_pair(&replicas[1], &replicas[2]);
        sync_until_quiet(&replicas);
        assert_converged(&replicas);
    }
}

// ---------------------------------------------------------------------------------------------
// The merge rules, one by one
// ---------------------------------------------------------------------------------------------

/// Two replicas holding the same deal.
fn shared_deal() -> (Engine, Engine, RecordId) {
    let (a, b) = (replica(), replica());
    let deal = a
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Acme renewal")
                .with("stage", "prospecting")
                .with("amount", money("100.00 EUR")),
        )
        .expect("deal")
        .id;
    send(&a, &b);
    assert_eq!(a.get(deal).unwrap(), b.get(deal).unwrap());
    (a, b, deal)
}

#[test]
fn concurrent_edits_of_different_fields_of_one_deal_both_survive() {
    let (a, b, deal) = shared_deal();
    a.update(deal, Patch::new().set("stage", "proposal"))
        .unwrap();
    b.update(deal, Patch::new().set("probability", 60i64).add_tag("q3"))
        .unwrap();
    sync_pair(&a, &b);
    for engine in [&a, &b] {
        let record = engine.get(deal).unwrap().expect("deal");
        assert_eq!(record.get("stage"), Some(&Value::Enum("proposal".into())));
        assert_eq!(record.get("probability"), Some(&Value::Int(60)));
        assert_eq!(record.get("tags"), Some(&Value::List(vec!["q3".into()])));
        assert!(engine.conflicts(deal).unwrap().is_empty());
    }
    assert_converged(&[a, b]);
}

#[test]
fn concurrent_edits_of_the_same_field_resolve_identically_and_show_the_loser_as_a_conflict() {
    // Several fresh pairs, so both orders of the random device ids are exercised.
    for _ in 0..8 {
        let (a, b, deal) = shared_deal();
        a.update(deal, Patch::new().set("stage", "proposal"))
            .unwrap();
        b.update(deal, Patch::new().set("stage", "negotiation"))
            .unwrap();
        sync_pair(&a, &b);
        let shown = a.get(deal).unwrap().expect("deal");
        assert_eq!(b.get(deal).unwrap().expect("deal"), shown);
        let winner = shown.get("stage").cloned().expect("stage is set");
        let proposal = Value::Enum("proposal".into());
        let negotiation = Value::Enum("negotiation".into());
        let loser = if winner == proposal {
            negotiation
        } else {
            assert_eq!(winner, negotiation);
            proposal
        };
        let expected = vec![Conflict {
            field: "stage".into(),
            value: winner.clone(),
            others: vec![loser.clone()],
        }];
        assert_eq!(a.conflicts(deal).unwrap(), expected, "conflicts on A");
        assert_eq!(b.conflicts(deal).unwrap(), expected, "conflicts on B");

        // Writing the field again settles the conflict everywhere.
        a.update(deal, Patch::new().set("stage", "closed_won"))
            .unwrap();
        sync_pair(&a, &b);
        assert!(a.conflicts(deal).unwrap().is_empty());
        assert!(b.conflicts(deal).unwrap().is_empty());
        assert_converged(&[a, b]);
    }
}

#[test]
fn concurrent_money_edits_never_mix_one_sides_minor_units_with_the_others_currency() {
    for _ in 0..8 {
        let (a, b, deal) = shared_deal();
        // A changes only the currency, B only the amount: a field-wise merge would give
        // 250.00 USD, which nobody wrote.
        let from_a = money("100.00 USD");
        let from_b = money("250.00 EUR");
        a.update(deal, Patch::new().set("amount", from_a)).unwrap();
        b.update(deal, Patch::new().set("amount", from_b)).unwrap();
        sync_pair(&a, &b);
        for engine in [&a, &b] {
            let amount = engine
                .get(deal)
                .unwrap()
                .expect("deal")
                .get("amount")
                .and_then(Value::as_money)
                .expect("amount is money");
            assert!(
                amount == from_a || amount == from_b,
                "merged amount {amount} is neither side's value"
            );
            let conflict = engine.conflicts(deal).unwrap();
            let [
                Conflict {
                    field,
                    value,
                    others,
                },
            ] = conflict.as_slice()
            else {
                panic!("expected one conflict on amount, got {conflict:?}");
            };
            assert_eq!(field, "amount");
            assert_eq!(value, &Value::Money(amount));
            let other = if amount == from_a { from_b } else { from_a };
            assert_eq!(others, &vec![Value::Money(other)]);
        }
        assert_converged(&[a, b]);
    }
}

#[test]
fn delete_wins_over_a_concurrent_edit_and_the_edit_stays_in_history() {
    let (a, b, deal) = shared_deal();
    a.delete(deal).unwrap();
    b.update(deal, Patch::new().set("lost_reason", "budget cut"))
        .unwrap();
    sync_pair(&a, &b);
    for engine in [&a, &b] {
        assert_eq!(engine.get(deal).unwrap(), None, "the deal is deleted");
        let tombstone = engine
            .get_including_deleted(deal)
            .unwrap()
            .expect("tombstone kept");
        assert!(tombstone.deleted);
        let history = engine.history(deal).unwrap();
        assert!(
            history
                .iter()
                .any(|h| h.by == b.device_id() && h.fields == ["lost_reason"]),
            "B's edit is missing from the history: {history:?}"
        );
        assert!(
            history
                .iter()
                .any(|h| h.by == a.device_id() && h.deleted == Some(true)),
            "A's delete is missing from the history: {history:?}"
        );
    }
    assert_converged(&[a.clone(), b.clone()]);
    // Restoring brings the record back with the concurrent edit in it.
    let restored = b.restore(deal).unwrap();
    assert_eq!(restored.text("lost_reason"), Some("budget cut"));
    sync_pair(&a, &b);
    assert_eq!(a.get(deal).unwrap(), Some(restored));
}

#[test]
fn long_text_edited_at_different_positions_on_two_replicas_keeps_both_insertions() {
    let (a, b) = (replica(), replica());
    let note = a
        .create(
            NewRecord::new(RecordType::Activity)
                .with("kind", "note")
                .with("body", Value::LongText("Customer wants a quote".into())),
        )
        .unwrap()
        .id;
    send(&a, &b);
    a.update(note, Patch::new().splice_text("body", 0, 0, "Urgent: "))
        .unwrap();
    b.update(note, Patch::new().splice_text("body", 22, 0, " by Friday"))
        .unwrap();
    // And a whole-text set on B, which is diffed, so it too merges character by character.
    b.update(
        note,
        Patch::new().set(
            "body",
            Value::LongText("Customer wants a firm quote by Friday".into()),
        ),
    )
    .unwrap();
    sync_pair(&a, &b);
    let expected = "Urgent: Customer wants a firm quote by Friday";
    for engine in [&a, &b] {
        assert_eq!(
            engine.get(note).unwrap().expect("note").text("body"),
            Some(expected)
        );
    }
    assert_converged(&[a, b]);
}

// ---------------------------------------------------------------------------------------------
// Bad change bytes
// ---------------------------------------------------------------------------------------------

/// A source replica with a record of several changes, and a target that has only its first
/// state (so the remaining changes are news to it).
fn source_and_stale_target() -> (Engine, Engine, RecordId) {
    let (a, b) = (replica(), replica());
    let company = a
        .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
        .unwrap()
        .id;
    send(&a, &b);
    for i in 0..5i64 {
        a.update(
            company,
            Patch::new()
                .set("employee_count", i * 10)
                .add_tag(&format!("t{i}")),
        )
        .unwrap();
    }
    // B also holds an unrelated record of its own.
    b.create(NewRecord::new(RecordType::Company).with("name", "Globex"))
        .unwrap();
    (a, b, company)
}

fn garbage(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ 0x5a)
        .collect()
}

fn assert_refused_and_unchanged(target: &Engine, batch: &[(RecordId, Vec<u8>)], what: &str) {
    let before = snapshot(target);
    let result = target.apply_changes(batch);
    assert!(
        result.is_err(),
        "{what}: apply_changes accepted bad bytes (returned {result:?})"
    );
    let message = result.unwrap_err().to_string();
    assert!(!message.is_empty(), "{what}: empty error message");
    assert_eq!(snapshot(target), before, "{what}: the store changed");
}

#[test]
fn garbage_change_bytes_are_refused_and_change_nothing() {
    let (_a, b, company) = source_and_stale_target();
    let unknown = RecordId::new();
    for (len, seed) in [(1, 1), (7, 2), (64, 3), (1000, 4)] {
        assert_refused_and_unchanged(
            &b,
            &[(unknown, garbage(len, seed))],
            &format!("{len} garbage bytes for a record unknown here"),
        );
        assert_refused_and_unchanged(
            &b,
            &[(company, garbage(len, seed))],
            &format!("{len} garbage bytes for a record known here"),
        );
    }
}

#[test]
fn truncated_change_bytes_are_refused_and_change_nothing() {
    let (a, b, company) = source_and_stale_target();
    let update = a
        .export_changes(company, &b.heads(company).unwrap())
        .unwrap()
        .expect("known record");
    let whole = a
        .export_changes(company, &[])
        .unwrap()
        .expect("known record");
    let fresh = replica();
    for cut in [1, update.len() / 3, update.len() / 2, update.len() - 1] {
        assert_refused_and_unchanged(
            &b,
            &[(company, update[..cut].to_vec())],
            &format!("changes cut to {cut} of {} bytes", update.len()),
        );
    }
    for cut in [1, whole.len() / 2, whole.len() - 1] {
        assert_refused_and_unchanged(
            &fresh,
            &[(company, whole[..cut].to_vec())],
            &format!(
                "a new record's changes cut to {cut} of {} bytes",
                whole.len()
            ),
        );
    }
    // The whole bytes still apply afterwards.
    assert_eq!(b.apply_changes(&[(company, update)]).unwrap().len(), 1);
    assert_eq!(fresh.apply_changes(&[(company, whole)]).unwrap().len(), 1);
    let replicas = [a, b, fresh];
    sync_until_quiet(&replicas);
    assert_converged(&replicas);
}

#[test]
fn batch_whose_second_record_is_bad_stores_nothing_of_the_first() {
    let (a, b, company) = source_and_stale_target();
    let new_on_a = a
        .create(NewRecord::new(RecordType::Company).with("name", "Initech"))
        .unwrap()
        .id;
    let update = a
        .export_changes(company, &b.heads(company).unwrap())
        .unwrap()
        .expect("known");
    let created = a.export_changes(new_on_a, &[]).unwrap().expect("known");
    // A good new record, then garbage for a known one.
    assert_refused_and_unchanged(
        &b,
        &[(new_on_a, created.clone()), (company, garbage(100, 9))],
        "good new record, then garbage",
    );
    assert_eq!(b.get_including_deleted(new_on_a).unwrap(), None);
    // A good update of a known record, then a new record cut short.
    assert_refused_and_unchanged(
        &b,
        &[
            (company, update.clone()),
            (new_on_a, created[..created.len() / 2].to_vec()),
        ],
        "good update, then truncated new record",
    );
    // Good records, then changes whose dependencies are missing.
    assert_refused_and_unchanged(
        &b,
        &[(new_on_a, created.clone()), (company, Vec::new())]
            .into_iter()
            .chain(missing_dependency_batch(&a, company))
            .collect::<Vec<_>>(),
        "good records, then changes with missing dependencies",
    );
    // The good parts alone apply.
    assert_eq!(
        b.apply_changes(&[(new_on_a, created), (company, update)])
            .unwrap()
            .len(),
        2
    );
    let replicas = [a, b];
    sync_until_quiet(&replicas);
    assert_converged(&replicas);
}

/// Changes of `id` made after a state the receiver does not have: their dependencies are missing.
fn missing_dependency_batch(a: &Engine, id: RecordId) -> Vec<(RecordId, Vec<u8>)> {
    let known = a.heads(id).unwrap();
    a.update(id, Patch::new().set("industry", "late change"))
        .unwrap();
    let bytes = a.export_changes(id, &known).unwrap().expect("known");
    vec![(id, bytes)]
}

#[test]
fn changes_with_missing_dependencies_are_refused_and_change_nothing() {
    let (a, b, company) = source_and_stale_target();
    let batch = missing_dependency_batch(&a, company);
    assert_refused_and_unchanged(&b, &batch, "changes whose dependencies are missing");
    match b.apply_changes(&batch) {
        Err(Error::Doc { id, .. }) => assert_eq!(id, company),
        other => panic!("expected Error::Doc for the record, got {other:?}"),
    }
}

#[test]
fn applying_the_same_changes_twice_changes_nothing_the_second_time() {
    let (a, b, company) = source_and_stale_target();
    let batch = changes_for(&a, &b);
    assert_eq!(b.apply_changes(&batch).unwrap().len(), 1);
    let after = snapshot(&b);
    assert!(b.apply_changes(&batch).unwrap().is_empty());
    assert_eq!(snapshot(&b), after);
    assert_eq!(
        a.get_including_deleted(company).unwrap(),
        b.get_including_deleted(company).unwrap()
    );
}

/// The same record id created as a company on A and as a deal on B (ids are normally minted,
/// but callers may pass their own). A replica never lets merged changes turn its record into
/// another type: it refuses them (`TypeMismatch`, or a refusal of the separately created
/// document) and keeps its store exactly as it was.
#[test]
fn changes_that_would_change_a_records_type_are_refused() {
    for _ in 0..6 {
        let (a, b) = (replica(), replica());
        let id = RecordId::new();
        let mut company = NewRecord::new(RecordType::Company).with("name", "Acme");
        company.id = Some(id);
        a.create(company).unwrap();
        let mut deal = NewRecord::new(RecordType::Deal).with("name", "Acme renewal");
        deal.id = Some(id);
        b.create(deal).unwrap();

        let to_b = changes_for(&a, &b);
        let to_a = changes_for(&b, &a);
        let (before_a, before_b) = (snapshot(&a), snapshot(&b));
        let on_b = b.apply_changes(&to_b);
        let on_a = a.apply_changes(&to_a);
        let refusals = [&on_a, &on_b].iter().filter(|r| r.is_err()).count();
        assert!(
            refusals >= 1,
            "neither replica refused changes that change the record's type: {on_a:?} / {on_b:?}"
        );
        for (engine, result, before, own, other, name) in [
            (&a, &on_a, &before_a, "company", "deal", "Acme"),
            (&b, &on_b, &before_b, "deal", "company", "Acme renewal"),
        ] {
            match result {
                Err(Error::TypeMismatch {
                    id: bad,
                    expected,
                    found,
                }) => {
                    assert_eq!(*bad, id);
                    assert_eq!(expected, own);
                    assert_eq!(found, other);
                    assert_eq!(
                        &snapshot(engine),
                        before,
                        "a refused merge changed the store"
                    );
                }
                Err(Error::Doc { id: bad, .. }) => {
                    assert_eq!(*bad, id);
                    assert_eq!(
                        &snapshot(engine),
                        before,
                        "a refused merge changed the store"
                    );
                }
                Err(e) => panic!("expected TypeMismatch or Doc, got {e}"),
                Ok(_) => {
                    let row = engine.get(id).unwrap().expect("record");
                    assert_eq!(row.record_type.to_string(), own, "the record changed type");
                    assert_eq!(
                        row.text("name"),
                        Some(name),
                        "the {own} took the fields of the other record"
                    );
                }
            }
        }
    }
}
