//! A corrupted or truncated database file gives a clear error on open, never a panic. When the
//! file opens anyway (redb repaired it, or the damage hit unused space), reads and writes may
//! fail with errors but must not panic.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crmsync::sync::Replica;
use crmsync::{Engine, Error, ListQuery, NewRecord, Patch, RecordId, RecordType, StoreError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A healthy database file with some history: its bytes and a sample of its record ids.
struct Healthy {
    bytes: Vec<u8>,
    ids: Vec<RecordId>,
}

fn healthy_database() -> Healthy {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("healthy.redb");
    let mut ids = Vec::new();
    {
        let engine = Engine::open(&path).expect("a new database opens");
        for batch in 0..4 {
            let records = (0..50)
                .map(|i| {
                    NewRecord::new(RecordType::Company)
                        .with("name", format!("Company {batch}-{i}"))
                        .with("domain", format!("c{batch}x{i}.example"))
                        .with("employee_count", i64::from(i) * 10)
                })
                .collect();
            ids.extend(engine.create_many(records).expect("companies are valid"));
        }
        // Updates append change chunks; deletes leave tombstones; both live in other tables.
        for (n, id) in ids.iter().enumerate().take(60) {
            engine
                .update(*id, Patch::new().set("industry", "retail").add_tag("vip"))
                .expect("update");
            if n % 10 == 0 {
                engine.delete(*id).expect("delete");
            }
        }
    }
    let bytes = std::fs::read(&path).expect("read the database file");
    Healthy { bytes, ids }
}

/// What opening a damaged file did.
enum Outcome {
    /// `Engine::open` returned this error.
    Refused(Error),
    /// The file opened; reads and writes were attempted (errors allowed).
    Opened,
}

/// Opens the file and, if that works, uses the engine every way a caller would. `stage` names
/// the call in progress, so a panic can be reported with the call that raised it.
fn probe(path: &Path, ids: &[RecordId], stage: &Cell<&'static str>) -> Outcome {
    stage.set("Engine::open");
    let engine = match Engine::open(path) {
        Ok(engine) => engine,
        Err(e) => return Outcome::Refused(e),
    };
    stage.set("all_heads");
    let _ = engine.all_heads();
    for record_type in [RecordType::Company, RecordType::Contact] {
        stage.set("list");
        let _ = engine.list(&ListQuery::new(record_type.clone()).page(0, 1000));
        stage.set("count");
        let _ = engine.count(&record_type);
    }
    for id in ids {
        stage.set("get");
        let _ = engine.get(*id);
        stage.set("heads");
        let _ = engine.heads(*id);
    }
    for id in ids.iter().step_by(25) {
        stage.set("history");
        let _ = engine.history(*id);
        stage.set("export_changes");
        let _ = engine.export_changes(*id, &[]);
    }
    stage.set("changes_since");
    let _ = engine.changes_since(0, 10_000);
    stage.set("create");
    if let Ok(record) =
        engine.create(NewRecord::new(RecordType::Company).with("name", "After the damage"))
    {
        stage.set("update of a new record");
        let _ = engine.update(record.id, Patch::new().set("industry", "repair"));
        let _ = engine.get(record.id);
    }
    if let Some(id) = ids.first() {
        stage.set("update");
        let _ = engine.update(*id, Patch::new().set("industry", "repair"));
    }
    stage.set("drop");
    drop(engine);
    Outcome::Opened
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_string())
}

/// Writes each case to a file and probes it. Fails, naming every case, if any of them panicked
/// or was refused with an empty message. Returns the outcomes by case name.
fn probe_cases(cases: Vec<(String, Vec<u8>)>, ids: &[RecordId]) -> Vec<(String, Outcome)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.redb"));
        std::fs::write(&path, &bytes).expect("write the damaged copy");
        let stage = Cell::new("start");
        match catch_unwind(AssertUnwindSafe(|| probe(&path, ids, &stage))) {
            Ok(Outcome::Refused(e)) if e.to_string().trim().is_empty() => {
                failures.push(format!("{name}: refused with an empty message ({e:?})"));
            }
            Ok(outcome) => {
                match &outcome {
                    Outcome::Refused(e) => eprintln!("{name}: refused: {e}"),
                    Outcome::Opened => eprintln!("{name}: opened"),
                }
                outcomes.push((name, outcome));
            }
            Err(payload) => failures.push(format!(
                "{name}: PANIC in {}: {}",
                stage.get(),
                panic_message(&*payload)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} damaged file(s) were not handled cleanly:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    outcomes
}

/// Refusals of a damaged file must be storage errors that say what is wrong with the file.
fn assert_refusals_name_the_problem(outcomes: &[(String, Outcome)]) {
    for (name, outcome) in outcomes {
        if let Outcome::Refused(e) = outcome {
            assert!(
                matches!(e, Error::Store(_) | Error::Io(_)),
                "{name}: refused with a non-storage error: {e:?}"
            );
            let message = e.to_string().to_lowercase();
            assert!(
                message.starts_with("database")
                    || message.contains("corrupt")
                    || message.contains("i/o"),
                "{name}: the error does not say the database file is at fault: {e}"
            );
        }
    }
}

#[test]
fn truncated_database_file_is_refused_or_readable_never_a_panic() {
    let healthy = healthy_database();
    let len = healthy.bytes.len();
    let mut cuts = vec![
        1,
        100,
        512,
        4096,
        len / 4,
        len / 2,
        len * 3 / 4,
        len.saturating_sub(4096),
        len - 1,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let cases = cuts
        .into_iter()
        .filter(|&cut| cut > 0 && cut < len)
        .map(|cut| (format!("truncated_to_{cut}"), healthy.bytes[..cut].to_vec()))
        .collect();
    let outcomes = probe_cases(cases, &healthy.ids);
    assert_refusals_name_the_problem(&outcomes);
}

#[test]
fn overwritten_byte_ranges_are_refused_or_readable_never_a_panic() {
    let healthy = healthy_database();
    let len = healthy.bytes.len();
    let mut cases = Vec::new();
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut bytes = healthy.bytes.clone();
        for _ in 0..rng.random_range(1..=4) {
            let size = rng.random_range(1..=4096).min(len);
            let start = rng.random_range(0..=len - size);
            rng.fill(&mut bytes[start..start + size]);
        }
        cases.push((format!("garbage_seed_{seed}"), bytes));
    }
    // The header (both commit slots), the first page after it, and the tail of the file.
    let mut header = healthy.bytes.clone();
    StdRng::seed_from_u64(100).fill(&mut header[..512.min(len)]);
    cases.push(("garbage_header".to_string(), header));
    let mut after_header = healthy.bytes.clone();
    StdRng::seed_from_u64(101).fill(&mut after_header[4096..8192.min(len)]);
    cases.push(("garbage_second_page".to_string(), after_header));
    let mut tail = healthy.bytes.clone();
    StdRng::seed_from_u64(102).fill(&mut tail[len.saturating_sub(4096)..]);
    cases.push(("garbage_tail".to_string(), tail));
    let mut zeroed = healthy.bytes.clone();
    zeroed[len / 3..len / 3 + (len / 3).min(65536)].fill(0);
    cases.push(("zeroed_middle".to_string(), zeroed));
    let outcomes = probe_cases(cases, &healthy.ids);
    assert_refusals_name_the_problem(&outcomes);
}

/// A clean close leaves a stamp that lets the next open skip verifying an unchanged file; a
/// write in place right after the close (same size, likely the same timestamp tick) must void
/// it, so the damage is still found on open.
#[test]
fn a_file_damaged_in_place_right_after_a_clean_close_is_verified_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crm.redb");
    let healthy = healthy_database();
    std::fs::write(&path, &healthy.bytes).expect("copy");
    drop(Engine::open(&path).expect("a healthy copy opens"));
    let stamp = dir.path().join("crm.redb.closed");
    assert!(stamp.exists(), "a clean close leaves its stamp");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for damage");
        file.seek(SeekFrom::Start(4096)).expect("seek");
        file.write_all(&vec![0xA5; 64 << 10]).expect("damage");
    }
    let stage = Cell::new("start");
    let outcome = catch_unwind(AssertUnwindSafe(|| probe(&path, &healthy.ids, &stage)))
        .unwrap_or_else(|p| panic!("PANIC in {}: {}", stage.get(), panic_message(&*p)));
    match outcome {
        Outcome::Refused(e) => {
            assert_refusals_name_the_problem(&[("in place".into(), Outcome::Refused(e))])
        }
        Outcome::Opened => panic!("64 KiB of garbage over the tables went unnoticed"),
    }
}

#[test]
fn file_of_random_bytes_is_refused_with_a_store_error() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = Vec::new();
    for size in [16usize, 4096, 1 << 20] {
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes[..]);
        cases.push((format!("random_{size}_bytes"), bytes));
    }
    let outcomes = probe_cases(cases, &[]);
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Refused(Error::Store(StoreError::Db(_))) => {}
            Outcome::Refused(other) => panic!("{name}: expected Error::Store(Db), got {other:?}"),
            Outcome::Opened => panic!("{name}: a file of random bytes opened as a database"),
        }
    }
    assert_refusals_name_the_problem(&outcomes);
}

#[test]
fn text_file_is_refused_with_a_store_error() {
    let csv = "name,domain,industry\n".to_string() + &"Acme Ltd,acme.example,retail\n".repeat(400);
    let cases = vec![
        ("csv_text".to_string(), csv.into_bytes()),
        ("short_text".to_string(), b"hello, world\n".to_vec()),
    ];
    let outcomes = probe_cases(cases, &[]);
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Refused(e @ Error::Store(_)) => {
                assert!(!e.to_string().is_empty(), "{name}: empty message");
            }
            Outcome::Refused(other) => panic!("{name}: expected Error::Store, got {other:?}"),
            Outcome::Opened => panic!("{name}: a text file opened as a database"),
        }
    }
    assert_refusals_name_the_problem(&outcomes);
}

/// An empty file is what a crash right after creating the file leaves (or what a file picker
/// or `tempfile` hands over): it holds no data, so it opens as a new, empty database.
#[test]
fn zero_length_file_opens_as_a_new_empty_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").expect("create an empty file");
    let id = {
        let engine = Engine::open(&path)
            .unwrap_or_else(|e| panic!("a zero-length file does not open: {e} ({e:?})"));
        assert!(engine.all_heads().expect("all_heads").is_empty());
        engine
            .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
            .expect("write to the new database")
            .id
    };
    let engine = Engine::open(&path).expect("reopen");
    assert_eq!(
        engine.get(id).expect("get").map(|r| r.title()),
        Some("Acme".to_string())
    );
}

#[test]
fn empty_path_or_directory_path_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, path) in [("empty path", Path::new("")), ("directory", dir.path())] {
        let result = catch_unwind(AssertUnwindSafe(|| Engine::open(path).map(|_| ())));
        match result {
            Ok(Err(e)) => assert!(!e.to_string().is_empty(), "{name}: empty message"),
            Ok(Ok(())) => panic!("{name}: opened as a database"),
            Err(payload) => panic!("{name}: PANIC: {}", panic_message(&*payload)),
        }
    }
}
