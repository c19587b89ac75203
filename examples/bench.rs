//! Benchmark: crmsync against a plain SQLite baseline (one JSON row per record).
//!
//! Run with `cargo run --release -p crmsync --example bench [-- --records N]` (default
//! 100,000). Each system runs in its own child process (this binary, re-executed with
//! `--only crmsync` or `--only sqlite`) so their resident memory is measured separately. Both
//! get the same deterministic companies and contacts. Files live in a fresh directory under the
//! system temp directory, removed at the end.

#[path = "bench_data.rs"]
mod data;
#[path = "bench_report.rs"]
mod report;

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use crmsync::{Engine, ListQuery, Patch, RecordId, RecordType};
use data::Generator;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

const SEED: u64 = 0x00c0_ffee;
const CHUNK: usize = 10_000;
const SINGLE_WRITES: usize = 1000;
const POINT_READS: usize = 10_000;
const LIST_RUNS: usize = 50;
const OPEN_CYCLES: usize = 10;
const FSYNCS: usize = 200;

struct Args {
    records: usize,
    only: Option<String>,
    dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        records: 100_000,
        only: None,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--records" => {
                let v = value()?;
                args.records = v.replace('_', "").parse().context("--records N")?;
            }
            "--only" => args.only = Some(value()?),
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other} (usage: bench [--records N])"),
        }
    }
    ensure!(args.records >= 100, "--records must be at least 100");
    Ok(args)
}

/// Median and 95th percentile (nearest rank) in microseconds.
fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.95))
}

/// Times `n` calls of `f`, one sample per call.
fn time_each(
    n: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// (VmRSS, VmHWM) of this process in MiB, from /proc/self/status (NaN where unavailable).
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (CPU time, run-queue wait) of this thread in seconds, from /proc/thread-self/schedstat.
fn sched_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = stat
        .split_whitespace()
        .map(|v| v.parse::<f64>().map_or(f64::NAN, |ns| ns / 1e9));
    (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
}

/// The 1-, 5- and 15-minute load averages, as printed by /proc/loadavg.
fn load_average() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn file_mb(paths: &[PathBuf]) -> f64 {
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    bytes as f64 / (1024.0 * 1024.0)
}

/// Total size in MiB of the files under `dir` (0 when it does not exist).
fn dir_mb(dir: &Path) -> f64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    file_mb(&files)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Results of one system's child process, printed as `@result key value` lines.
struct Out;

impl Out {
    fn put(&self, key: &str, value: f64) {
        println!("@result {key} {value}");
    }

    fn put_stats(&self, key: &str, samples: Vec<Duration>) {
        let (p50, p95) = stats(samples);
        self.put(&format!("{key}_p50"), p50);
        self.put(&format!("{key}_p95"), p95);
    }

    fn put_memory(&self, phase: &str) {
        let (rss, hwm) = memory_mb();
        self.put(&format!("rss_{phase}"), rss);
        self.put(&format!("hwm_{phase}"), hwm);
    }
}

/// Times `OPEN_CYCLES` runs of `open` (open + first page), then dropping what it returned.
fn open_cycles<T>(out: &Out, mut open: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<()> {
    let (mut opens, mut closes) = (Vec::new(), Vec::new());
    for _ in 0..OPEN_CYCLES {
        let t = Instant::now();
        let handle = open()?;
        opens.push(t.elapsed());
        let t = Instant::now();
        drop(handle);
        closes.push(t.elapsed());
    }
    out.put("open_first", opens[0].as_secs_f64() * 1e3);
    let (p50, p95) = stats(opens);
    out.put("open_p50", p50 / 1e3);
    out.put("open_p95", p95 / 1e3);
    out.put("close_p50", stats(closes).0 / 1e3);
    Ok(())
}

/// Random sample of indices into the imported records (the same for both systems).
fn sample(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..len)).collect()
}

fn run_crmsync(n: usize, dir: &Path, out: &Out) -> anyhow::Result<()> {
    out.put_memory("start");
    let path = dir.join("crm.redb");
    let engine = Engine::open(&path).with_context(|| format!("opening {}", path.display()))?;

    // 1. Batch import: one create_many (one transaction) per chunk.
    let mut generator = Generator::new(n, SEED);
    let mut companies: Vec<RecordId> = Vec::with_capacity(generator.company_count());
    let mut contacts: Vec<RecordId> = Vec::with_capacity(n);
    let mut import = Duration::ZERO;
    let (cpu0, wait0) = sched_secs();
    while let Some(chunk) = generator.next_chunk(CHUNK) {
        let is_company = chunk[0].is_company();
        let records = chunk.iter().map(|s| s.to_new_record(&companies)).collect();
        drop(chunk);
        let t = Instant::now();
        let ids = engine.create_many(records).context("create_many")?;
        import += t.elapsed();
        (if is_company {
            &mut companies
        } else {
            &mut contacts
        })
        .extend(ids);
        eprint!(".");
    }
    eprintln!();
    out.put("import_rate", n as f64 / import.as_secs_f64());
    out.put("import_secs", import.as_secs_f64());
    let (cpu1, wait1) = sched_secs();
    out.put("import_cpu", cpu1 - cpu0);
    out.put("import_wait", wait1 - wait0);
    out.put("file_mb", file_mb(std::slice::from_ref(&path)));
    out.put_memory("import");
    let all: Vec<RecordId> = companies.iter().chain(&contacts).copied().collect();

    // Single writes are measured once the search index has caught up with the import (a
    // search waits for it): an edit in an app meets an idle indexer, while the import's
    // indexing, measured apart, keeps both cores busy for a few seconds.
    let t = Instant::now();
    engine.search("settle", &Default::default(), crmsync::Page::default())?;
    out.put("index_catch_up_secs", t.elapsed().as_secs_f64());

    // 2. Durable single creates.
    let extra: Vec<_> = (0..SINGLE_WRITES)
        .map(|_| generator.contact().to_new_record(&companies))
        .collect();
    let mut extra = extra.into_iter();
    let samples = time_each(SINGLE_WRITES, |_| {
        let record = extra.next().context("record to create")?;
        black_box(engine.create(record)?);
        Ok(())
    })?;
    out.put_stats("create", samples);

    // 3. Durable single updates of a contact's title.
    let targets = sample(SINGLE_WRITES, contacts.len(), SEED + 1);
    let samples = time_each(SINGLE_WRITES, |i| {
        let patch = Patch::new().set("title", format!("Title {i}"));
        black_box(engine.update(contacts[targets[i]], patch)?);
        Ok(())
    })?;
    out.put_stats("update", samples);
    // What the journal defers: one durable commit of everything written since the last.
    let t = Instant::now();
    engine.checkpoint()?;
    out.put("checkpoint_ms", t.elapsed().as_secs_f64() * 1e3);

    // 4. Point reads.
    let targets = sample(POINT_READS, all.len(), SEED + 2);
    let samples = time_each(POINT_READS, |i| {
        let record = engine.get(all[targets[i]])?.context("record exists")?;
        black_box(record);
        Ok(())
    })?;
    out.put_stats("get", samples);

    // 5. First page of contacts.
    let query = ListQuery::new(RecordType::Contact);
    let samples = time_each(LIST_RUNS, |_| {
        let page = engine.list(&query)?;
        ensure!(page.len() == 50, "page of {} records", page.len());
        black_box(page);
        Ok(())
    })?;
    out.put_stats("list", samples);
    out.put_memory("warm");
    drop(engine);

    // 6. Cold open to first page (OS page cache warm); closing is timed apart.
    open_cycles(out, || {
        let engine = Engine::open(&path)?;
        let page = engine.list(&query)?;
        ensure!(page.len() == 50, "page of {} records", page.len());
        black_box(page);
        Ok(engine)
    })?;
    // A search index kept beside the file (`<file>.search`), if this build has one.
    let mut search_dir = path.clone().into_os_string();
    search_dir.push(".search");
    out.put("search_mb", dir_mb(Path::new(&search_dir)));
    out.put_memory("end");
    Ok(())
}

fn sqlite_open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.execute_batch("PRAGMA synchronous=FULL")?;
    Ok(conn)
}

const SQL_PAGE: &str = "SELECT json FROM records WHERE type = 'contact' ORDER BY id LIMIT 50";

fn sqlite_page(conn: &Connection) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut st = conn.prepare_cached(SQL_PAGE)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut page = Vec::with_capacity(50);
    for json in rows {
        page.push(serde_json::from_str(&json?)?);
    }
    ensure!(page.len() == 50, "page of {} records", page.len());
    Ok(page)
}

fn run_sqlite(n: usize, dir: &Path, out: &Out) -> anyhow::Result<()> {
    out.put_memory("start");
    let path = dir.join("baseline.sqlite");
    let mut conn = sqlite_open(&path)?;
    // (type, id) so the first page by type reads in id order, like crmsync's type index.
    conn.execute_batch(
        "CREATE TABLE records(id TEXT PRIMARY KEY, type TEXT NOT NULL, json TEXT NOT NULL);
         CREATE INDEX records_type ON records(type, id);",
    )?;
    const INSERT: &str = "INSERT INTO records(id, type, json) VALUES (?1, ?2, ?3)";

    // 1. Batch import: one transaction per chunk, JSON encoding included in the time.
    let mut generator = Generator::new(n, SEED);
    let mut companies: Vec<RecordId> = Vec::with_capacity(generator.company_count());
    let mut contacts: Vec<RecordId> = Vec::with_capacity(n);
    let mut import = Duration::ZERO;
    let (cpu0, wait0) = sched_secs();
    while let Some(chunk) = generator.next_chunk(CHUNK) {
        let is_company = chunk[0].is_company();
        let t = Instant::now();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(chunk.len());
        {
            let mut st = tx.prepare_cached(INSERT)?;
            for spec in &chunk {
                let id = RecordId::new();
                let (ty, json) = spec.to_json(&companies, now_ms());
                st.execute(params![id.to_string(), ty, json])?;
                ids.push(id);
            }
        }
        tx.commit()?;
        import += t.elapsed();
        (if is_company {
            &mut companies
        } else {
            &mut contacts
        })
        .extend(ids);
        eprint!(".");
    }
    eprintln!();
    out.put("import_rate", n as f64 / import.as_secs_f64());
    out.put("import_secs", import.as_secs_f64());
    let (cpu1, wait1) = sched_secs();
    out.put("import_cpu", cpu1 - cpu0);
    out.put("import_wait", wait1 - wait0);
    let _: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let wal = dir.join("baseline.sqlite-wal");
    out.put("file_mb", file_mb(&[path.clone(), wal]));
    out.put_memory("import");
    let all: Vec<RecordId> = companies.iter().chain(&contacts).copied().collect();

    // 2. Durable single-row inserts (autocommit).
    let extra: Vec<_> = (0..SINGLE_WRITES).map(|_| generator.contact()).collect();
    let samples = time_each(SINGLE_WRITES, |i| {
        let id = RecordId::new();
        let json = extra[i].to_json(&companies, now_ms());
        let mut st = conn.prepare_cached(INSERT)?;
        st.execute(params![id.to_string(), "contact", json])?;
        Ok(())
    })?;
    out.put_stats("create", samples);

    // 3. Durable updates: read-modify-write of the JSON in one transaction.
    let targets = sample(SINGLE_WRITES, contacts.len(), SEED + 1);
    let samples = time_each(SINGLE_WRITES, |i| {
        let id = contacts[targets[i]].to_string();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut get = tx.prepare_cached("SELECT json FROM records WHERE id = ?1")?;
            let json: String = get.query_row([&id], |r| r.get(0))?;
            let mut doc: serde_json::Value = serde_json::from_str(&json)?;
            doc["fields"]["title"] = format!("Title {i}").into();
            doc["updated_at"] = now_ms().into();
            let mut put = tx.prepare_cached("UPDATE records SET json = ?2 WHERE id = ?1")?;
            put.execute(params![id, doc.to_string()])?;
        }
        tx.commit()?;
        Ok(())
    })?;
    out.put_stats("update", samples);

    // 4. Point reads (ids formatted outside the timed calls).
    let targets: Vec<String> = sample(POINT_READS, all.len(), SEED + 2)
        .into_iter()
        .map(|i| all[i].to_string())
        .collect();
    let samples = time_each(POINT_READS, |i| {
        let mut st = conn.prepare_cached("SELECT json FROM records WHERE id = ?1")?;
        let json: Option<String> = st.query_row([&targets[i]], |r| r.get(0)).optional()?;
        let doc: serde_json::Value = serde_json::from_str(&json.context("record exists")?)?;
        black_box(doc);
        Ok(())
    })?;
    out.put_stats("get", samples);

    // 5. First page of contacts.
    let samples = time_each(LIST_RUNS, |_| {
        black_box(sqlite_page(&conn)?);
        Ok(())
    })?;
    out.put_stats("list", samples);
    out.put_memory("warm");
    drop(conn);

    // 6. Cold open to first page; closing is timed apart.
    open_cycles(out, || {
        let conn = Connection::open(&path)?;
        black_box(sqlite_page(&conn)?);
        Ok(conn)
    })?;
    out.put_memory("end");
    Ok(())
}

/// Median and p95 of a durable 4 KiB overwrite + fsync, in microseconds.
fn measure_fsync(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync.probe");
    let mut file = std::fs::File::create(&path).context("creating fsync probe")?;
    let block = [0x5au8; 4096];
    file.write_all(&block).context("writing fsync probe")?;
    file.sync_all().context("fsync")?;
    let samples = time_each(FSYNCS, |_| {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_all()?;
        Ok(())
    })?;
    drop(file);
    std::fs::remove_file(&path).context("removing fsync probe")?;
    Ok(stats(samples))
}

/// Runs one system in a child process and collects its `@result` lines.
fn run_child(system: &str, n: usize, dir: &Path) -> anyhow::Result<HashMap<String, f64>> {
    eprintln!("running {system} ({n} records) in a child process");
    let exe = std::env::current_exe().context("locating this binary")?;
    let sub = dir.join(system);
    std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
    let output = Command::new(exe)
        .args(["--only", system, "--records", &n.to_string(), "--dir"])
        .arg(&sub)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the {system} child"))?;
    ensure!(
        output.status.success(),
        "{system} child failed: {}",
        output.status
    );
    let mut results = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.strip_prefix("@result ") {
            let (key, value) = rest.split_once(' ').context("malformed result line")?;
            results.insert(key.to_string(), value.parse::<f64>()?);
        }
    }
    Ok(results)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let n = args.records;
    if let Some(system) = &args.only {
        let (dir, own) = match &args.dir {
            Some(d) => (d.clone(), false),
            None => (unique_dir()?, true),
        };
        let out = Out;
        let result = match system.as_str() {
            "crmsync" => run_crmsync(n, &dir, &out),
            "sqlite" => run_sqlite(n, &dir, &out),
            other => Err(anyhow::anyhow!("--only crmsync|sqlite, not {other}")),
        };
        if own {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        return result;
    }

    let dir = unique_dir()?;
    eprintln!("bench directory: {}", dir.display());
    let load_before = load_average();
    let run = || -> anyhow::Result<_> {
        let fsync = measure_fsync(&dir)?;
        let crm = run_child("crmsync", n, &dir)?;
        let sql = run_child("sqlite", n, &dir)?;
        Ok((fsync, crm, sql))
    };
    let result = run();
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let (fsync, crm, sql) = result?;
    report::report(n, fsync, &crm, &sql);
    println!(
        "load average (1/5/15 min) before: {load_before}; after: {}",
        load_average()
    );
    Ok(())
}

fn unique_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("crmsync-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
