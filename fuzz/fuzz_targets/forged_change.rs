//! Changes forged from real ones — bytes of a creating change or of an edit altered, the
//! checksum made to match again, as a member of the workspace could send them — are refused
//! with the store unchanged, or merged into a row that reads as the stored document does.
//! Never a panic. (`session_input` rarely gets past the checksum; this target starts there.)
#![no_main]

use std::sync::OnceLock;

use crmsync::model::Schema;
use crmsync::sync::Replica;
use crmsync::{Engine, NewRecord, Patch, RecordId, RecordType, Store, StoreOptions, Value};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// A record's bytes before the forged change (empty for a new record) and a real change.
struct Case {
    id: RecordId,
    base: Vec<u8>,
    change: Vec<u8>,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        // libfuzzer-sys aborts from its panic hook, before any unwinding: the panics that
        // automerge raises on forged input, and that the store catches and refuses, would end
        // the run. A silent hook lets them unwind to that catch; a panic nobody catches still
        // reaches the fuzzer's own catch, which aborts and reports it.
        std::panic::set_hook(Box::new(|_| {}));
        let a = Engine::in_memory().expect("engine");
        let company = a
            .create(
                NewRecord::new(RecordType::Company)
                    .with("name", "Acme")
                    .with("tags", Value::List(vec!["eu".into(), "key".into()])),
            )
            .expect("company")
            .id;
        let note = a
            .create(
                NewRecord::new(RecordType::Activity)
                    .with("kind", "note")
                    .with("body", "called, très bien")
                    .with("related", Value::Links(vec![company])),
            )
            .expect("note")
            .id;
        let mut cases = Vec::new();
        for id in [company, note] {
            let base = a.export_changes(id, &[]).expect("export").expect("record");
            cases.push(Case {
                id,
                base: Vec::new(),
                change: base.clone(),
            });
            let before = a.heads(id).expect("heads");
            let patch = if id == company {
                Patch::new()
                    .set("industry", "Retail")
                    .set("employee_count", 12)
            } else {
                Patch::new().splice_text("body", 0, 6, "met")
            };
            a.update(id, patch).expect("edit");
            let change = a
                .export_changes(id, &before)
                .expect("export")
                .expect("record");
            cases.push(Case { id, base, change });
        }
        // Whole documents, as a compacted record travels: new here, and known here.
        let saved = a.doc(note).expect("doc").expect("note").save();
        cases.push(Case {
            id: note,
            base: Vec::new(),
            change: saved.clone(),
        });
        let base = cases[2].change.clone();
        cases.push(Case {
            id: note,
            base,
            change: saved,
        });
        a.delete(company).expect("delete");
        let before = a
            .export_changes(company, &[])
            .expect("export")
            .expect("record");
        cases.push(Case {
            id: company,
            base: Vec::new(),
            change: before,
        });
        cases
    })
}

/// The chunk with its contents altered by (offset, xor) pairs and its checksum fixed.
fn forge(chunk: &[u8], edits: &[u8]) -> Option<Vec<u8>> {
    let mut covered = chunk.get(8..)?.to_vec();
    let length_bytes = covered.get(1..)?.iter().position(|b| b & 0x80 == 0)? + 1;
    let body = 1 + length_bytes;
    let n = covered.len().checked_sub(body).filter(|n| *n > 0)?;
    for edit in edits.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % n;
        covered[body + at] ^= edit[2];
    }
    let mut out = chunk[..4].to_vec();
    out.extend_from_slice(&Sha256::digest(&covered)[..4]);
    out.extend_from_slice(&covered);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    let cases = cases();
    let case = &cases[usize::from(pick) % cases.len()];
    // Whole documents (a record with edits sent whole) are several chunks; forge the first.
    let Some(bytes) = forge(&case.change, edits) else {
        return;
    };
    let store = Store::in_memory(StoreOptions::default()).expect("store");
    let schema = Schema::default();
    if !case.base.is_empty() {
        store
            .apply_changes(&schema, &[(case.id, case.base.clone())])
            .expect("base applies");
    }
    let before = (
        store.get(case.id).expect("row"),
        store.heads(case.id).expect("heads"),
    );
    match store.apply_changes(&schema, &[(case.id, bytes)]) {
        Err(_) => {
            let after = (
                store.get(case.id).expect("row"),
                store.heads(case.id).expect("heads"),
            );
            assert_eq!(after, before, "a refused change altered the store");
        }
        Ok(_) => {
            let row = store.get(case.id).expect("row").expect("merged record");
            let doc = store
                .doc(case.id)
                .expect("document loads")
                .expect("document");
            let read = crmsync::doc::materialize(&doc, case.id, &schema).expect("materializes");
            assert_eq!(row, read, "row and document disagree");
        }
    }
});
