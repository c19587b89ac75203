//! Property tests: replicas editing offline and syncing over real sessions in random orders and
//! topologies always converge to identical rows, conflicts and search results.

use crmsync::{Engine, NewRecord, Page, Patch, RecordId, RecordType, SearchFilters, Value};
use proptest::prelude::*;
use uuid::Uuid;

use crate::sync::{replica, rows, session};

#[derive(Debug, Clone)]
enum Op {
    CreateCompany(u8),
    CreateNote(String),
    SetName(usize, u8),
    SetIndustry(usize, u8),
    EditBody(usize, usize, usize, String),
    AddTag(usize, u8),
    RemoveTag(usize, u8),
    Delete(usize),
    Restore(usize),
    Sync(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u8>().prop_map(Op::CreateCompany),
        1 => "[a-z ]{0,12}".prop_map(Op::CreateNote),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(r, v)| Op::SetName(r, v)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(r, v)| Op::SetIndustry(r, v)),
        2 => (any::<usize>(), any::<usize>(), 0usize..3, "[a-z]{0,4}")
            .prop_map(|(r, i, d, s)| Op::EditBody(r, i, d, s)),
        1 => (any::<usize>(), 0u8..4).prop_map(|(r, t)| Op::AddTag(r, t)),
        1 => (any::<usize>(), 0u8..4).prop_map(|(r, t)| Op::RemoveTag(r, t)),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Restore),
        2 => any::<usize>().prop_map(Op::Sync),
    ]
}

fn pick(e: &Engine, n: usize, record_type: RecordType) -> Option<RecordId> {
    let ids: Vec<RecordId> = rows(e)
        .into_iter()
        .filter(|r| r.record_type == record_type)
        .map(|r| r.id)
        .collect();
    (!ids.is_empty()).then(|| ids[n % ids.len()])
}

/// Applies one local edit; edits the model refuses (a deleted record, say) are skipped.
fn edit(e: &Engine, op: &Op) {
    let company = |n| pick(e, n, RecordType::Company);
    let _ = match op {
        Op::CreateCompany(v) => e
            .create(NewRecord::new(RecordType::Company).with("name", format!("C{v}")))
            .map(|_| ()),
        Op::CreateNote(body) => e
            .create(
                NewRecord::new(RecordType::Activity)
                    .with("kind", "note")
                    .with("body", Value::LongText(body.clone())),
            )
            .map(|_| ()),
        Op::SetName(r, v) => match company(*r) {
            Some(id) => e
                .update(id, Patch::new().set("name", format!("N{v}")))
                .map(|_| ()),
            None => Ok(()),
        },
        Op::SetIndustry(r, v) => match company(*r) {
            Some(id) => e
                .update(id, Patch::new().set("industry", format!("I{v}")))
                .map(|_| ()),
            None => Ok(()),
        },
        Op::EditBody(r, i, d, s) => match pick(e, *r, RecordType::Activity) {
            Some(id) => {
                let len = e
                    .get(id)
                    .ok()
                    .flatten()
                    .and_then(|n| n.text("body").map(|b| b.chars().count()))
                    .unwrap_or(0);
                e.update(id, Patch::new().splice_text("body", i % (len + 1), *d, s))
                    .map(|_| ())
            }
            None => Ok(()),
        },
        Op::AddTag(r, t) => match company(*r) {
            Some(id) => e
                .update(id, Patch::new().add_tag(&format!("t{t}")))
                .map(|_| ()),
            None => Ok(()),
        },
        Op::RemoveTag(r, t) => match company(*r) {
            Some(id) => e
                .update(id, Patch::new().remove_tag(&format!("t{t}")))
                .map(|_| ()),
            None => Ok(()),
        },
        Op::Delete(r) => match company(*r) {
            Some(id) => e.delete(id),
            None => Ok(()),
        },
        Op::Restore(r) => match company(*r) {
            Some(id) => e.restore(id).map(|_| ()),
            None => Ok(()),
        },
        Op::Sync(_) => Ok(()),
    };
}

/// Queries built from the words the records hold (names, industries, note bodies) and their
/// tags, so each finds something on a replica that indexed the merged records.
fn queries(records: &[crmsync::Record]) -> Vec<String> {
    let mut words: Vec<String> = (0..4).map(|t| format!("tag:t{t}")).collect();
    for record in records {
        for field in ["name", "industry", "body"] {
            for word in record.text(field).unwrap_or("").split_whitespace() {
                if !words.iter().any(|w| w == word) {
                    words.push(word.to_string());
                }
            }
        }
    }
    words.truncate(16);
    words
}

/// The records a query finds, as a set: scores may differ between replicas (term statistics
/// count documents replaced in segments not yet merged), the matches may not.
fn found(e: &Engine, query: &str) -> Vec<RecordId> {
    let results = e
        .search(query, &SearchFilters::new(), Page::first(Page::MAX_LIMIT))
        .unwrap_or_else(|err| panic!("search {query:?}: {err}"));
    let mut ids: Vec<RecordId> = results.hits.into_iter().map(|h| h.id).collect();
    ids.sort();
    ids
}

fn assert_converged(replicas: &[Engine]) {
    let first = rows(&replicas[0]);
    let queries = queries(&first);
    // Every replica's index holds the merged records: a live company is found by its name.
    for record in first
        .iter()
        .filter(|r| !r.deleted && r.text("name").is_some())
        .take(5)
    {
        let name = record.text("name").unwrap_or_default();
        for (i, replica) in replicas.iter().enumerate() {
            assert!(
                found(replica, name).contains(&record.id),
                "replica {i} does not find {name:?}"
            );
        }
    }
    for (i, other) in replicas.iter().enumerate().skip(1) {
        assert_eq!(rows(other), first, "replica {i} differs from replica 0");
        for record in &first {
            assert_eq!(
                other.conflicts(record.id).unwrap(),
                replicas[0].conflicts(record.id).unwrap()
            );
        }
        for query in &queries {
            assert_eq!(
                found(other, query),
                found(&replicas[0], query),
                "replica {i} finds other records for {query:?}"
            );
        }
    }
}

/// Runs the scenario: `ops` are (replica, op); a `Sync(j)` syncs that replica with replica j
/// (over the `topology`'s allowed links). Ends by syncing along the topology until converged.
fn run(n: usize, star: bool, ops: Vec<(usize, Op)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ws = Uuid::new_v4();
        let replicas: Vec<Engine> = (0..n).map(|_| replica(ws)).collect();
        // Chain: i talks to i±1. Star: everyone talks to 0.
        let linked = |i: usize, j: usize| {
            if star {
                (i == 0) != (j == 0)
            } else {
                i.abs_diff(j) == 1
            }
        };
        for (who, op) in ops {
            let i = who % n;
            match op {
                Op::Sync(j) => {
                    let j = j % n;
                    if i != j && linked(i, j) {
                        session(&replicas[i], &replicas[j]).await;
                    }
                }
                other => edit(&replicas[i], &other),
            }
        }
        // Two passes along the topology reach everyone from everyone.
        for _ in 0..2 {
            for i in 1..n {
                let j = if star { 0 } else { i - 1 };
                session(&replicas[i], &replicas[j]).await;
            }
            if !star {
                for i in (1..n).rev() {
                    session(&replicas[i], &replicas[i - 1]).await;
                }
            }
        }
        assert_converged(&replicas);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn two_replicas_converge(ops in proptest::collection::vec((0usize..2, op()), 1..40)) {
        run(2, false, ops);
    }

    #[test]
    fn three_replicas_in_a_chain_converge(ops in proptest::collection::vec((0usize..3, op()), 1..40)) {
        run(3, false, ops);
    }

    #[test]
    fn five_replicas_in_a_star_converge(ops in proptest::collection::vec((0usize..5, op()), 1..50)) {
        run(5, true, ops);
    }

    #[test]
    fn five_replicas_in_a_chain_converge(ops in proptest::collection::vec((0usize..5, op()), 1..50)) {
        run(5, false, ops);
    }
}
