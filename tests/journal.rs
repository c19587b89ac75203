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
    println!("\n@@ record {}", company.id);
    // Ends the process as a crash would, as far as the files are concerned.
    std::process::exit(0);
}

/// Runs the child writer on `db`; returns the id of the company it wrote and the database's
/// identity (which journal checksums cover).
fn write_and_vanish_with_identity(db: &Path) -> (RecordId, [u8; 16]) {
    // The file's identity is fixed when it is created: create it here, closed cleanly, and
    // the child writes into it.
    assert!(!db.exists(), "a fresh database");
    let identity = crmsync::Store::open(db, crmsync::StoreOptions::default())
        .expect("create the database")
        .identity()
        .0;
    (write_and_vanish(db), identity)
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
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("child printed no {prefix}: {stdout}"))
            .to_string()
    };
    line("@@ record ").parse().expect("record id")
}

/// The child's create and every update were replayed, and the last update is what reads.
fn assert_every_write_replayed(engine: &Engine, id: RecordId) {
    assert_eq!(engine.replayed_writes(), UPDATES + 1);
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some(name(UPDATES).as_str()));
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
    assert_every_write_replayed(&engine, id);
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

/// The journal's record layout, as `core/src/store/journal.rs` writes it: magic, version,
/// payload length, epoch, index, CRC-32; little-endian.
const MAGIC: u32 = 0x5657_5343;
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 4 + 8 + 4 + 4;
/// The layout before records carried a version: magic, payload length, epoch, index, CRC-32.
const LEGACY_MAGIC: u32 = 0x4c57_5343;

/// CRC-32 over the database identity, the version (none in the legacy layout), epoch, index,
/// payload length and payload.
fn checksum(
    identity: &[u8; 16],
    version: Option<u8>,
    epoch: u64,
    index: u32,
    payload: &[u8],
) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(identity);
    if let Some(version) = version {
        h.update(&[version]);
    }
    h.update(&epoch.to_le_bytes());
    h.update(&index.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn record_bytes(
    identity: &[u8; 16],
    version: u8,
    epoch: u64,
    index: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = MAGIC.to_le_bytes().to_vec();
    out.push(version);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    let sum = checksum(identity, Some(version), epoch, index, payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn legacy_record_bytes(identity: &[u8; 16], epoch: u64, index: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = LEGACY_MAGIC.to_le_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&checksum(identity, None, epoch, index, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A record read back from the journal.
#[derive(Debug, PartialEq)]
struct Written {
    epoch: u64,
    index: u32,
    payload: Vec<u8>,
}

/// The records at the start of a journal, each checked to be of the current layout and
/// version with the checksum computed above; and the offset after them.
fn read_journal(bytes: &[u8], identity: &[u8; 16]) -> (Vec<Written>, usize) {
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= bytes.len() && u32_at(at) == MAGIC {
        assert_eq!(bytes[at + 4], VERSION, "records carry the current version");
        let len = u32_at(at + 5) as usize;
        let epoch = u64::from_le_bytes(bytes[at + 9..at + 17].try_into().expect("8 bytes"));
        let index = u32_at(at + 17);
        let payload = bytes[at + HEADER..at + HEADER + len].to_vec();
        assert_eq!(
            u32_at(at + 21),
            checksum(identity, Some(VERSION), epoch, index, &payload),
            "the checksum is computed as this test does"
        );
        out.push(Written {
            epoch,
            index,
            payload,
        });
        at += HEADER + len;
    }
    (out, at)
}

/// The child's journal with one more record appended: whole, of the current epoch and the next
/// index, of `version`.
fn append_forged(db: &Path, identity: &[u8; 16], version: u8, payload: &[u8]) -> usize {
    let path = journal_of(db);
    let mut bytes = std::fs::read(&path).expect("read the journal");
    let (records, end) = read_journal(&bytes, identity);
    assert_eq!(records.len(), UPDATES + 1);
    let index = records.len() as u32;
    let forged = record_bytes(identity, version, records[0].epoch, index, payload);
    bytes[end..end + forged.len()].copy_from_slice(&forged);
    std::fs::write(&path, &bytes).expect("write the journal");
    end
}

#[test]
fn a_record_of_a_newer_version_refuses_the_open_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let (id, identity) = write_and_vanish_with_identity(&db);
    let end = append_forged(
        &db,
        &identity,
        VERSION + 1,
        b"a write this build cannot read",
    );

    for _ in 0..2 {
        match Engine::open(&db) {
            Err(crmsync::Error::Store(
                e @ crmsync::StoreError::JournalVersion {
                    found, supported, ..
                },
            )) => {
                assert_eq!((found, supported), (VERSION + 1, VERSION));
                let message = e.to_string();
                assert!(message.contains("version 2"), "{message}");
                assert!(message.contains("upgrade the app"), "{message}");
            }
            other => panic!("expected a journal version error, got {other:?}"),
        }
    }

    // What a newer build would do after replaying its record: the records before it are still
    // there, none was replayed and dropped by the refused opens.
    let path = journal_of(&db);
    let mut bytes = std::fs::read(&path).expect("read the journal");
    bytes[end..end + HEADER].fill(0);
    std::fs::write(&path, &bytes).expect("write the journal");
    let engine = Engine::open(&db).expect("reopen");
    assert_every_write_replayed(&engine, id);
}

#[test]
fn a_torn_record_of_a_newer_version_ends_the_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let (id, identity) = write_and_vanish_with_identity(&db);
    let end = append_forged(&db, &identity, VERSION + 1, b"cut short");
    // Its checksum fails: a record cut short, not one to refuse the open for.
    let path = journal_of(&db);
    let mut bytes = std::fs::read(&path).expect("read the journal");
    bytes[end + HEADER] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write the journal");

    let engine = Engine::open(&db).expect("reopen");
    assert_every_write_replayed(&engine, id);
}

#[test]
fn a_journal_in_the_layout_before_versions_is_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let (id, identity) = write_and_vanish_with_identity(&db);
    // As the build before versions would have left the same writes.
    let path = journal_of(&db);
    let bytes = std::fs::read(&path).expect("read the journal");
    let (records, _) = read_journal(&bytes, &identity);
    assert_eq!(records.len(), UPDATES + 1);
    let mut legacy = Vec::with_capacity(bytes.len());
    for r in &records {
        legacy.extend(legacy_record_bytes(&identity, r.epoch, r.index, &r.payload));
    }
    legacy.resize(bytes.len(), 0);
    std::fs::write(&path, &legacy).expect("write the journal");

    let engine = Engine::open(&db).expect("reopen");
    assert_every_write_replayed(&engine, id);
    assert_eq!(engine.history(id).expect("history").len(), UPDATES + 1);
    engine
        .update(id, Patch::new().set("name", "after"))
        .expect("update after replay");
    // The journal goes on in the current layout.
    let bytes = std::fs::read(&path).expect("read the journal");
    let (records, _) = read_journal(&bytes, &identity);
    assert_eq!(records.len(), 1);
    drop(engine);

    let engine = Engine::open(&db).expect("reopen after a clean close");
    assert_eq!(engine.replayed_writes(), 0);
    let company = engine.get(id).expect("get").expect("company exists");
    assert_eq!(company.text("name"), Some("after"));
}

#[test]
fn a_transaction_that_changes_nothing_writes_no_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crm.redb");
    let identity = crmsync::Store::open(&db, crmsync::StoreOptions::default())
        .expect("create the database")
        .identity()
        .0;
    let engine = Engine::open(&db).expect("open");
    let path = journal_of(&db);
    let company = engine
        .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
        .expect("create");
    engine.delete(company.id).expect("delete");
    let before = std::fs::read(&path).expect("read the journal");
    let (records, _) = read_journal(&before, &identity);
    assert_eq!(records.len(), 2, "the create and the delete");

    // Deleting what is deleted, and merging changes the replica holds already (what a sync
    // session that brings nothing new does), change nothing.
    engine.delete(company.id).expect("delete again");
    let known = engine
        .export_changes(company.id, &[])
        .expect("export")
        .expect("the record is known");
    let events = engine
        .apply_changes(&[(company.id, known)])
        .expect("merge what is known");
    assert!(events.is_empty());
    assert_eq!(
        std::fs::read(&path).expect("read the journal"),
        before,
        "no record was written"
    );

    // No checkpoint either (which would start a new epoch): the next write's record follows
    // the last one in the same epoch.
    engine.restore(company.id).expect("restore");
    let (after, _) = read_journal(&std::fs::read(&path).expect("read"), &identity);
    assert_eq!(&after[..2], &records[..]);
    assert_eq!(after.len(), 3);
    assert_eq!((after[2].epoch, after[2].index), (records[0].epoch, 2));
}
