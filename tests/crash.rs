//! A write that returned Ok survives a crash: a child process writes in a loop and is killed
//! with SIGKILL at random moments; on reopen, every acknowledged write is there.
//!
//! The child is this same test binary, run with `--exact crash::child_writer_loop --ignored`
//! and the database path in an environment variable, so the approach works under both
//! `cargo test` and `cargo nextest`. Before each write the child prints `@@ try ...`, after each
//! Ok it prints `@@ ack ...`; the parent reads those lines, kills the child, reopens the file and
//! checks it against them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crmsync::sync::Replica;
use crmsync::{Engine, ListQuery, NewRecord, Patch, RecordId, RecordType};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Path of the database the child writes to; the child does nothing without it.
const DB_ENV: &str = "CRMSYNC_CRASH_DB";
/// First value counter of the child's round, so values grow across rounds.
const BASE_ENV: &str = "CRMSYNC_CRASH_BASE";
/// Values written by one round of the child stay below the next round's base.
const ROUND_SPAN: u64 = 10_000_000;
const ROUNDS: u64 = 16;
const BATCH: usize = 20;

fn name_of(n: u64) -> String {
    format!("v{n}")
}

fn value_of(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.parse().ok()
}

/// Not a test by itself: the process that `acknowledged_writes_survive_sigkill` starts and kills.
#[test]
#[ignore = "child process of crash::acknowledged_writes_survive_sigkill"]
fn child_writer_loop() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let base: u64 = std::env::var(BASE_ENV)
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    let engine = Engine::open(&path).expect("child opens the database");
    let mut ids: Vec<RecordId> = engine
        .all_heads()
        .expect("child reads the record ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut rng = StdRng::seed_from_u64(base);
    let stdout = std::io::stdout();
    // libtest prints "test crash::child_writer_loop ... " without a newline before the test
    // runs: start on a fresh line, and mark every line the parent should read.
    let say = |line: String| {
        let mut out = stdout.lock();
        writeln!(out, "\n@@ {line}").expect("stdout");
        out.flush().expect("stdout");
    };
    say("started".to_string());
    let mut counter = base;
    // A safety net in case the parent died without killing this process.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        counter += 1;
        let name = name_of(counter);
        let choice = rng.random_range(0..10u32);
        if ids.is_empty() || choice < 3 {
            let id = RecordId::new();
            say(format!("try create {id} {counter}"));
            let mut new = NewRecord::new(RecordType::Company).with("name", name.as_str());
            new.id = Some(id);
            engine.create(new).expect("create");
            say(format!("ack create {id} {counter}"));
            ids.push(id);
        } else if choice < 4 {
            let batch: Vec<RecordId> = (0..BATCH).map(|_| RecordId::new()).collect();
            let list: Vec<String> = batch.iter().map(ToString::to_string).collect();
            let list = list.join(" ");
            say(format!("try batch {counter} {list}"));
            let records = batch
                .iter()
                .map(|id| {
                    let mut new = NewRecord::new(RecordType::Company)
                        .with("name", name.as_str())
                        .with("industry", "crash testing");
                    new.id = Some(*id);
                    new
                })
                .collect();
            let stored = engine.create_many(records).expect("create_many");
            assert_eq!(stored, batch, "create_many keeps the given ids in order");
            say(format!("ack batch {counter} {list}"));
            ids.extend(batch);
        } else {
            let id = ids[rng.random_range(0..ids.len())];
            say(format!("try update {id} {counter}"));
            engine
                .update(id, Patch::new().set("name", name.as_str()))
                .expect("update");
            say(format!("ack update {id} {counter}"));
        }
    }
}

/// What the child said it tried and what it said succeeded, over all rounds.
#[derive(Default)]
struct Ledger {
    /// Every value written (or about to be written) to each record's name.
    tried: HashMap<RecordId, BTreeSet<u64>>,
    /// The newest acknowledged value of each record.
    acked: HashMap<RecordId, u64>,
    /// Batches of records created together: all of one or none must exist.
    batches: Vec<Vec<RecordId>>,
    /// Acknowledged writes.
    acks: usize,
}

impl Ledger {
    fn read_line(&mut self, line: &str) {
        let Some(start) = line.find("@@ ") else {
            return;
        };
        let words: Vec<&str> = line[start + 3..].split_whitespace().collect();
        let id = |w: &str| -> RecordId { w.parse().expect("child prints valid ids") };
        let n = |w: &str| -> u64 { w.parse().expect("child prints valid counters") };
        match words.as_slice() {
            ["started"] => {}
            ["try", "create" | "update", rid, value] => {
                self.tried.entry(id(rid)).or_default().insert(n(value));
            }
            ["ack", "create" | "update", rid, value] => {
                let (rid, value) = (id(rid), n(value));
                let newest = self.acked.entry(rid).or_default();
                *newest = (*newest).max(value);
                self.acks += 1;
            }
            ["try", "batch", value, rids @ ..] => {
                let batch: Vec<RecordId> = rids.iter().map(|r| id(r)).collect();
                for rid in &batch {
                    self.tried.entry(*rid).or_default().insert(n(value));
                }
                self.batches.push(batch);
            }
            ["ack", "batch", value, rids @ ..] => {
                for rid in rids {
                    let newest = self.acked.entry(id(rid)).or_default();
                    *newest = (*newest).max(n(value));
                }
                self.acks += 1;
            }
            other => panic!("unexpected line from the child: {other:?}"),
        }
    }
}

/// When the child is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after it said it opened the database: in the middle of its writes.
    AfterStart(Duration),
    /// This long after it was spawned: possibly while it opens (and repairs) the file.
    AfterSpawn(Duration),
}

/// Runs the child against `db` until it is killed; returns its complete stdout lines (a line
/// cut by the kill is dropped: the child had not finished saying it).
fn run_child_until_killed(db: &Path, base: u64, kill: Kill) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "crash::child_writer_loop",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, db)
        .env(BASE_ENV, base.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (sender, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if sender.send(line.trim_end().to_string()).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut said = Vec::new();
    let delay = match kill {
        Kill::AfterSpawn(delay) => delay,
        Kill::AfterStart(delay) => {
            // Startup can be slow on a loaded machine: wait for the child to open the file.
            let deadline = Instant::now() + Duration::from_secs(60);
            while let Ok(line) =
                lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                let started = line.ends_with("@@ started");
                said.push(line);
                if started {
                    break;
                }
            }
            delay
        }
    };
    thread::sleep(delay);
    let early = child.try_wait().expect("poll the child");
    // SIGKILL on unix: no destructors, no flush, no clean shutdown of the database.
    let _ = child.kill();
    child.wait().expect("reap the child");
    said.extend(lines.iter());
    reader.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    if let Some(status) = early {
        panic!("the child writer exited by itself ({status}) before it was killed:\n{errors}");
    }
    said
}

/// Reopens the file and checks it against everything the child said.
/// Checks the reopened file against the ledger; returns how many writes the open replayed
/// from the journal.
fn check_against_ledger(db: &Path, ledger: &Ledger, round: u64) -> usize {
    let engine = Engine::open(db).unwrap_or_else(|e| {
        panic!("round {round}: the database does not reopen after SIGKILL: {e}")
    });
    let stored: HashSet<RecordId> = engine
        .all_heads()
        .expect("all_heads after a crash")
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    for (id, &acked) in &ledger.acked {
        let record = engine
            .get(*id)
            .expect("get after a crash")
            .unwrap_or_else(|| panic!("round {round}: acknowledged record {id} is lost"));
        let name = record.text("name").expect("every record has a name");
        let value = value_of(name).unwrap_or_else(|| panic!("record {id} has name {name:?}"));
        assert!(
            value >= acked,
            "round {round}: record {id} has value {value}, older than its acknowledged {acked}"
        );
        assert!(
            ledger.tried[id].contains(&value),
            "round {round}: record {id} has value {value}, which was never written"
        );
    }
    for id in &stored {
        assert!(
            ledger.tried.contains_key(id),
            "round {round}: record {id} exists but was never written"
        );
    }
    for batch in &ledger.batches {
        let present = batch.iter().filter(|id| stored.contains(id)).count();
        assert!(
            present == 0 || present == batch.len(),
            "round {round}: only {present} of a create_many batch of {} survived",
            batch.len()
        );
    }

    // The indexes agree with the rows: counts, listings and the change log.
    let companies = engine
        .list(&ListQuery::new(RecordType::Company).page(0, usize::MAX))
        .expect("list after a crash");
    let listed: HashSet<RecordId> = companies.iter().map(|r| r.id).collect();
    assert_eq!(
        listed, stored,
        "round {round}: list disagrees with the rows"
    );
    assert_eq!(
        engine.count(&RecordType::Company).expect("count"),
        stored.len() as u64,
        "round {round}: count disagrees with the rows"
    );
    let log = engine
        .changes_since(0, usize::MAX)
        .expect("change log after a crash");
    let logged: HashSet<RecordId> = log.iter().map(|e| e.id).collect();
    assert_eq!(
        logged, stored,
        "round {round}: the change log names other records than the rows"
    );
    engine.replayed_writes()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.redb");
    let mut rng = rand::rng();
    let mut ledger = Ledger::default();
    let (mut mid_write_rounds, mut rounds_with_acks, mut replayed) = (0, 0, 0);
    for round in 0..ROUNDS {
        // Mostly in the middle of the writes; every fourth round early, perhaps while the
        // child opens (and repairs) the file the previous round left.
        let kill = if round % 4 == 3 {
            Kill::AfterSpawn(Duration::from_millis(rng.random_range(0..=60)))
        } else {
            mid_write_rounds += 1;
            Kill::AfterStart(Duration::from_millis(rng.random_range(50..=400)))
        };
        let acks_before = ledger.acks;
        let lines = run_child_until_killed(&db, (round + 1) * ROUND_SPAN, kill);
        for line in &lines {
            ledger.read_line(line);
        }
        if ledger.acks > acks_before {
            rounds_with_acks += 1;
        }
        eprintln!(
            "round {round}: killed {kill:?}, {} lines, {} acks in all, {} records",
            lines.len(),
            ledger.acks,
            ledger.tried.len()
        );
        replayed += check_against_ledger(&db, &ledger, round);
    }
    // The kills must have caught journaled writes that only a replay brought back.
    assert!(replayed > 0, "no round replayed a journaled write");
    // Guard against a vacuous pass (a child that never got to write).
    assert!(
        rounds_with_acks >= mid_write_rounds / 2,
        "only {rounds_with_acks} of {mid_write_rounds} rounds killed mid-write acknowledged a write ({} acks in all)",
        ledger.acks
    );
    assert!(!ledger.batches.is_empty(), "no create_many batch was tried");
}
