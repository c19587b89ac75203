//! The write-ahead journal: small writes acknowledged through it come back after the process
//! ends without closing the store; a torn record and a journal of another database are ignored.
//!
//! The writer is a child process (this test binary, as in `crash`) that leaves with
//! `std::process::exit`, so no destructor runs: no checkpoint, no clean close of redb.

use std::path::Path;
use std::process::{Command, Stdio};

use crmsync::{Engine, NewRecord, Patch, RecordId, RecordType};

const DB_ENV: &str = "CRMSYNC_JOURNAL_DB";
const UPDATES: usize = 10;

fn name(n: usize) -> String {
    format!("name {n}")
}

/// Not a test by itself: the writer that the tests below start.
#[test]
#[ignore = "child process of the journal tests"]
fn journal_child_writer() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let engine = Engine::open(&path).expect("child opens the database");
    let company = engine
        .create(NewRecord::new(RecordType::Company).with("name", name(0)))
        .expect("create");
    for n in 1..=UPDATES {
        engine
            .update(company.id, Patch::new().set("name", name(n)))
            .expect("update");
    }
    println!("\n@@ {}", company.id);
    // Ends the process as a crash would, as far as the files are concerned.
    std::process::exit(0);
}

/// Runs the child writer on `db`; returns the id of the company it wrote.
fn write_and_vanish(db: &Path) -> RecordId {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "journal::journal_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, db)
        .stdin(Stdio::null())
        .output()
        .expect("run the child writer");
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@ "))
        .unwrap_or_else(|| panic!("child printed no id: {stdout}"));
    id.parse().expect("record id")
}

fn journal_of(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".wal");
    name.into()
}

#[test]
fn writes_left_in_the_journal_are_replayed_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let id = write_and_vanish(&db);

    let engine = Engine::open(&db).expect("reopen");
    assert_eq!(
        engine.replayed_writes(),
        UPDATES + 1,
        "the create and every update came back from the journal"
    );
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some(name(UPDATES).as_str()));
    assert_eq!(engine.history(id).expect("history").len(), UPDATES + 1);
    assert_eq!(
        engine.changes_since(0, 100).expect("log").len(),
        UPDATES + 1
    );
    // The replica goes on from there: its next change follows the replayed ones.
    engine
        .update(id, Patch::new().set("name", "after"))
        .expect("update after replay");
    drop(engine);

    let engine = Engine::open(&db).expect("reopen after a clean close");
    assert_eq!(
        engine.replayed_writes(),
        0,
        "a clean close leaves nothing to replay"
    );
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some("after"));
    assert_eq!(engine.history(id).expect("history").len(), UPDATES + 2);
}

#[test]
fn a_torn_last_record_is_not_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let id = write_and_vanish(&db);

    // The journal's records start at its beginning and the rest is zeros: alter the last byte
    // of the last record, as a write cut short by power loss would leave it.
    let path = journal_of(&db);
    let mut bytes = std::fs::read(&path).expect("read the journal");
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .expect("the journal holds records");
    bytes[end] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write the journal");

    let engine = Engine::open(&db).expect("reopen");
    assert_eq!(engine.replayed_writes(), UPDATES);
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some(name(UPDATES - 1).as_str()));
    assert_eq!(engine.history(id).expect("history").len(), UPDATES);
    engine
        .update(id, Patch::new().set("name", "after"))
        .expect("update after replay");
    assert_eq!(engine.history(id).expect("history").len(), UPDATES + 1);
}

#[test]
fn a_journal_left_by_another_database_is_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    write_and_vanish(&db);
    // The user deletes the database file but not the journal beside it.
    std::fs::remove_file(&db).expect("remove the database");

    let engine = Engine::open(&db).expect("open a new database");
    assert_eq!(engine.replayed_writes(), 0);
    assert_eq!(engine.count(&RecordType::Company).expect("count"), 0);
}

#[test]
fn a_journal_that_cannot_be_opened_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    std::fs::create_dir(journal_of(&db)).expect("a directory where the journal goes");
    match Engine::open(&db) {
        Err(crmsync::Error::Store(crmsync::StoreError::Journal { path, what, .. })) => {
            assert_eq!(path, journal_of(&db));
            assert_eq!(what, "opening");
        }
        other => panic!("expected a journal error, got {other:?}"),
    }
}

#[test]
fn a_journal_of_another_size_keeps_its_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let id = write_and_vanish(&db);
    // As a build with a smaller journal would have left it: the records, nothing after.
    let path = journal_of(&db);
    let bytes = std::fs::read(&path).expect("read the journal");
    let full = bytes.len();
    let end = bytes.iter().rposition(|&b| b != 0).expect("records") + 1;
    std::fs::write(&path, &bytes[..end]).expect("write the journal");

    let engine = Engine::open(&db).expect("reopen");
    assert_eq!(engine.replayed_writes(), UPDATES + 1);
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some(name(UPDATES).as_str()));
    let len = std::fs::metadata(&path).expect("journal").len() as usize;
    assert_eq!(
        len, full,
        "the journal has its full size again after the replay"
    );
    engine
        .update(id, Patch::new().set("name", "after"))
        .expect("update after replay");
}

fn without_journal() -> crmsync::EngineOptions {
    crmsync::EngineOptions {
        store: crmsync::StoreOptions {
            journal_bytes: 0,
            ..crmsync::StoreOptions::default()
        },
    }
}

#[test]
fn without_a_journal_writes_commit_durably_and_a_left_journal_is_replayed_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let id = write_and_vanish(&db);

    let engine = Engine::open_with(&db, without_journal()).expect("reopen without a journal");
    assert_eq!(engine.replayed_writes(), UPDATES + 1);
    assert!(!journal_of(&db).exists(), "the replayed journal is removed");
    engine
        .update(id, Patch::new().set("name", "no journal"))
        .expect("update");
    assert!(!journal_of(&db).exists(), "no journal is made");
    drop(engine);

    let engine = Engine::open(&db).expect("reopen with the journal");
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some("no journal"));
}
